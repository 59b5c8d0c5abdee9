//! Peer cards: what one node hands another so they can federate.
//!
//! A card is public: the node's name and id, where its federation listener
//! is, its node CA (which the other side pins for TLS) and its Ed25519
//! signing keys (which check the records it originates): its first key and
//! the rotations since (see [`crate::model::keychain`]). The node id is
//! derived from the first key, so a card whose id and key disagree is
//! refused: nobody can hand out a card claiming another node's id.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::PeerError;
use crate::identity::keys::KeyHistory;
use crate::model::keychain::KeyRotation;

/// Largest card accepted (a CA certificate is about 600 bytes).
pub const MAX_CARD_BYTES: usize = 16 << 10;

/// A node as another node learns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerCard {
    /// The node's name (the origin part of the set ids it publishes).
    pub name: String,
    /// Its node id.
    pub node_id: String,
    /// `host:port` of its federation listener.
    pub endpoint: String,
    /// Its first Ed25519 public key, hex (its node id derives from it).
    pub signing_key: String,
    /// Its node CA certificate, PEM.
    pub ca: String,
    /// Its signing key's rotations since `signing_key`, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rotations: Vec<KeyRotation>,
}

impl PeerCard {
    /// The card of the node in `dir`, reachable at `endpoint`.
    pub fn of_node(dir: &Path, endpoint: &str) -> Result<PeerCard, PeerError> {
        let config = crate::identity::load_config(dir)?;
        if config.dev_certs {
            return Err(PeerError::Invalid(
                "this node uses the development certificates, which every development node \
                 shares: it cannot federate (run `hashfed init` without --dev-certs)"
                    .into(),
            ));
        }
        let history = crate::identity::keys::history(dir)?;
        let ca_path = dir.join("tls/node-ca.pem");
        let ca = std::fs::read_to_string(&ca_path).map_err(|source| PeerError::Io {
            path: ca_path,
            source,
        })?;
        let card = PeerCard {
            name: config.name,
            node_id: config.node_id,
            endpoint: endpoint.to_owned(),
            signing_key: history.first_key,
            ca,
            rotations: history.rotations,
        };
        card.check()?;
        Ok(card)
    }

    /// Reads a card (TOML) and checks it.
    pub fn parse(text: &str) -> Result<PeerCard, PeerError> {
        if text.len() > MAX_CARD_BYTES {
            return Err(PeerError::Invalid(format!(
                "a peer card is at most {MAX_CARD_BYTES} bytes, this one is {}",
                text.len()
            )));
        }
        let card: PeerCard =
            toml::from_str(text).map_err(|e| PeerError::Invalid(format!("peer card: {e}")))?;
        card.check()?;
        Ok(card)
    }

    /// The card as TOML.
    pub fn to_toml(&self) -> Result<String, PeerError> {
        let body = toml::to_string(self).map_err(|e| PeerError::Invalid(e.to_string()))?;
        Ok(format!(
            "# hashfed peer card of {} (public: give it to the operators of nodes you federate with)\n{body}",
            self.name
        ))
    }

    /// Its key history, as the card carries it (unchecked).
    pub fn history(&self) -> KeyHistory {
        KeyHistory {
            node_id: self.node_id.clone(),
            first_key: self.signing_key.clone(),
            rotations: self.rotations.clone(),
        }
    }

    /// Every signing key it has had, oldest first (the last signs now),
    /// after checking the node id against the first and each rotation.
    pub fn keys(&self) -> Result<Vec<ed25519_dalek::VerifyingKey>, PeerError> {
        self.history()
            .keys()
            .map_err(|e| PeerError::Invalid(format!("peer card of {:?}: {e}", self.name)))
    }

    /// Its key chain: every key with the bounds its rotations put on it
    /// (what records it signed are checked against).
    pub fn chain(&self) -> Result<crate::model::keychain::KeyChain, PeerError> {
        self.history()
            .chain()
            .map_err(|e| PeerError::Invalid(format!("peer card of {:?}: {e}", self.name)))
    }

    /// The card without its key history: what identifies the node and
    /// where to reach it.
    pub fn identity(&self) -> PeerCard {
        PeerCard {
            rotations: Vec::new(),
            ..self.clone()
        }
    }

    fn check(&self) -> Result<(), PeerError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok {
            return Err(PeerError::Invalid(format!(
                "peer name {:?} must be 1-64 of a-z 0-9 -",
                self.name.chars().take(80).collect::<String>()
            )));
        }
        self.keys()?;
        check_endpoint(&self.endpoint)?;
        if !self.ca.contains("-----BEGIN CERTIFICATE-----") {
            return Err(PeerError::Invalid("ca must be a PEM certificate".into()));
        }
        Ok(())
    }
}

/// `host:port` with a port and a plain host name or address.
fn check_endpoint(endpoint: &str) -> Result<(), PeerError> {
    let bad = || {
        PeerError::Invalid(format!(
            "endpoint {:?} must be host:port",
            endpoint.chars().take(80).collect::<String>()
        ))
    };
    let (host, port) = endpoint.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>().map_err(|_| bad())?;
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b));
    if host_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cards_round_trip_and_forged_ids_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a");
        crate::identity::init(&dir, "hotline-a").unwrap();
        let card = PeerCard::of_node(&dir, "127.0.0.1:7701").unwrap();
        let text = card.to_toml().unwrap();
        assert_eq!(PeerCard::parse(&text).unwrap(), card);

        let other = tmp.path().join("b");
        crate::identity::init(&other, "hotline-b").unwrap();
        let b = PeerCard::of_node(&other, "127.0.0.1:7701").unwrap();
        let forged = PeerCard {
            node_id: b.node_id.clone(),
            ..card.clone()
        };
        assert!(PeerCard::parse(&forged.to_toml().unwrap())
            .unwrap_err()
            .to_string()
            .contains("does not derive"));
        for endpoint in ["nohost", "h:99999", ":1", "a b:1"] {
            let bad = PeerCard {
                endpoint: endpoint.into(),
                ..card.clone()
            };
            assert!(
                PeerCard::parse(&bad.to_toml().unwrap()).is_err(),
                "{endpoint}"
            );
        }
        assert!(PeerCard::parse("name = 1").is_err());
        assert!(PeerCard::parse(&"x".repeat(MAX_CARD_BYTES + 1)).is_err());
        let extra = format!("{text}\nsurprise = 1\n");
        assert!(PeerCard::parse(&extra).is_err());
    }

    #[test]
    fn a_rotated_nodes_card_carries_its_chain() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a");
        crate::identity::init(&dir, "hotline-a").unwrap();
        let before = PeerCard::of_node(&dir, "127.0.0.1:7701").unwrap();
        let (key, _) = crate::identity::keys::rotate(&dir, 5, Vec::new()).unwrap();
        let card = PeerCard::of_node(&dir, "127.0.0.1:7701").unwrap();
        assert_eq!(card.node_id, before.node_id);
        assert_eq!(card.identity(), before);
        let parsed = PeerCard::parse(&card.to_toml().unwrap()).unwrap();
        assert_eq!(parsed.keys().unwrap().last(), Some(&key.verifying_key()));
        let mut forged = card.clone();
        forged.rotations[0].time_ms += 1;
        assert!(PeerCard::parse(&forged.to_toml().unwrap()).is_err());
    }
}

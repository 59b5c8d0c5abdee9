//! `hashfed.toml`: a node's name and id, where it listens, and the limits
//! operators tune. Read by the identity's `load_config` (which checks the
//! node id against the node's key); every part of the node takes the
//! settings it needs from here, so no part's types leak into another's
//! configuration.

use serde::{Deserialize, Serialize};

/// The id the development certificates' CAs are named for (nodes built
/// with `init --dev-certs`).
pub const DEV_ID: &str = "development";

/// Listen addresses of the node's services.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listen {
    /// Peers (federation service).
    pub federation: String,
    /// Local services (match service).
    #[serde(rename = "match")]
    pub match_: String,
    /// Operators (admin service).
    pub admin: String,
    /// Prometheus metrics (plain HTTP; bind to loopback).
    pub metrics: String,
    /// A Unix socket for same-host local services (relative paths are
    /// inside the node directory); none unless set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_socket: Option<String>,
}

impl Default for Listen {
    fn default() -> Self {
        Listen {
            federation: "127.0.0.1:7701".into(),
            match_: "127.0.0.1:7702".into(),
            admin: "127.0.0.1:7703".into(),
            metrics: "127.0.0.1:7709".into(),
            match_socket: None,
        }
    }
}

/// `hashfed.toml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Human name of the node (e.g. `hotline-a`).
    pub name: String,
    /// The node id, derived from the signing key (checked at load).
    pub node_id: String,
    /// Where the services listen.
    #[serde(default)]
    pub listen: Listen,
    /// The TLS files came from the development set (`init --dev-certs`):
    /// never for production; the CA names follow that set's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dev_certs: bool,
    /// When an entry that matches too often is switched off on this node
    /// (`[quarantine]`: `per_minute`, `share`, `min_matches`).
    #[serde(default)]
    pub quarantine: FloodLimits,
    /// How long records are kept (`[retention]`: `match_days`).
    #[serde(default)]
    pub retention: Retention,
    /// Limits on what one caller may hold (`[limits]`: `request_secs`).
    #[serde(default)]
    pub limits: Limits,
    /// Outside services the node keeps sets current from (`[[exchange]]`).
    #[serde(default, rename = "exchange", skip_serializing_if = "Vec::is_empty")]
    pub exchanges: Vec<ExchangeConfig>,
}

/// The outside services hashfed pulls from (see `crate::exchange`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExchangeKind {
    /// NCMEC's Hash Sharing API v2 (XML).
    Ncmec,
    /// StopNCII.org's hash API (JSON).
    Stopncii,
    /// Meta's ThreatExchange Graph API (through which GIFCT's hash-sharing
    /// database is reached).
    Threatexchange,
    /// Tech Against Terrorism's TCAP hash list.
    Tcap,
}

impl ExchangeKind {
    /// Every kind.
    pub const ALL: [ExchangeKind; 4] = [
        ExchangeKind::Ncmec,
        ExchangeKind::Stopncii,
        ExchangeKind::Threatexchange,
        ExchangeKind::Tcap,
    ];

    /// The name in `hashfed.toml` (`ncmec`, `stopncii`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ExchangeKind::Ncmec => "ncmec",
            ExchangeKind::Stopncii => "stopncii",
            ExchangeKind::Threatexchange => "threatexchange",
            ExchangeKind::Tcap => "tcap",
        }
    }
}

/// One `[[exchange]]`: an outside service, the set it fills, and how.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeConfig {
    /// Which API.
    pub kind: ExchangeKind,
    /// Its name on this node (`[a-z0-9-]`, 1-64): `hashfed exchange
    /// fetch NAME`, metrics, the audit log.
    pub name: String,
    /// The set it fills, `<origin>/<name>`: one of this node's own
    /// (created at the first fetch).
    pub set: String,
    /// The API's base URL, `https://host[:port][/path]`.
    pub endpoint: String,
    /// The file with its credentials (TOML; owner-only, mode 0600, else
    /// refused). Relative paths are inside the node directory.
    pub credentials: String,
    /// Seconds between fetches once caught up.
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// One more CA to trust for this endpoint (PEM; a private deployment,
    /// a test's stand-in server), beside the public web's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Seconds one HTTP request may take, answer included.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Records asked for per page (where the API takes a size).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// What to take (each API reads the filters it has).
    #[serde(default)]
    pub filters: ExchangeFilters,
}

/// What an exchange takes of its service's lists.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExchangeFilters {
    /// NCMEC: the environment (`exploitative`, `predictive`, ...); the
    /// API's default if empty.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub environment: String,
    /// NCMEC: the ESP (member) id feedback is sent as.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub member_id: String,
    /// StopNCII: categories to take (all if empty).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    /// ThreatExchange: the privacy groups (collaborations) to follow.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub privacy_groups: Vec<String>,
    /// Signal types to take (hashfed's names; all if empty).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub signal_types: Vec<String>,
}

fn default_interval() -> u64 {
    300
}

fn default_timeout() -> u64 {
    30
}

fn default_page_size() -> u32 {
    1000
}

/// Limits on what one caller may hold on the federation and match
/// listeners.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Seconds a request may take to arrive and be answered; a caller that
    /// sends half a message and stalls gets CANCELLED then. Streams are
    /// not cut: their messages come when they come (HTTP/2 keepalive
    /// finds dead connections).
    pub request_secs: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { request_secs: 60 }
    }
}

/// How long the node keeps records that only reporting and feedback need.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    /// Days a match record is kept (0: for ever). The transparency
    /// report's daily counts are kept regardless.
    pub match_days: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention { match_days: 365 }
    }
}

impl Config {
    /// The id the node's CAs are named for.
    pub fn ca_id(&self) -> &str {
        if self.dev_certs {
            DEV_ID
        } else {
            &self.node_id
        }
    }
}

/// When an entry counts as flooding (`[quarantine]` in hashfed.toml).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FloodLimits {
    /// Matches of one entry within a minute that quarantine it (0: no
    /// such limit).
    pub per_minute: u64,
    /// Share of all of the minute's queries that one entry's matches may
    /// reach (0: no such limit)...
    pub share: f64,
    /// ...once it has at least this many matches in the minute (so a
    /// quiet node's first matches do not count as a flood).
    pub min_matches: u64,
}

impl Default for FloodLimits {
    fn default() -> Self {
        FloodLimits {
            per_minute: 1000,
            share: 0.01,
            min_matches: 200,
        }
    }
}

//! The audit log on disk: `a` + seq → stored digest (32) + record bytes,
//! and its head (seq, digest, the node's signature) under `maudit_head`.
//! The chain and its check are in [`crate::model::audit`].

// Part of the store, the one module that touches sled.
#![allow(clippy::disallowed_types)]

use super::keys;
use super::{Store, StoreError};
use crate::model::audit::{self, AuditCheck, AuditEvent, Note};
use crate::model::signed::verify_audit_head;

/// The audit log's head as stored.
struct Head {
    seq: u64,
    digest: [u8; 32],
    signature: Option<[u8; 64]>,
}

/// What a journal entry stands for: a change made to files beside the
/// store, audited in the store before it is put in place (see
/// `Store::journal_peers`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Journal {
    /// A change of the peer registry (`peers.toml`).
    Peers,
    /// A key rotation and/or certificate renewal (`keys/`, `tls/`).
    Keys,
}

impl Journal {
    fn key(self) -> &'static [u8] {
        match self {
            Journal::Peers => keys::PEERS_JOURNAL,
            Journal::Keys => keys::KEYS_JOURNAL,
        }
    }
}

impl Store {
    fn audit_head(&self) -> Result<Head, StoreError> {
        let Some(bytes) = self.tree.get(keys::AUDIT_HEAD)? else {
            return Ok(Head {
                seq: 0,
                digest: audit::genesis(),
                signature: None,
            });
        };
        let corrupt = || StoreError::Corrupt("the audit head is malformed".into());
        let seq = u64::from_be_bytes(
            bytes
                .get(..8)
                .ok_or_else(corrupt)?
                .try_into()
                .map_err(|_| corrupt())?,
        );
        let digest: [u8; 32] = bytes
            .get(8..40)
            .ok_or_else(corrupt)?
            .try_into()
            .map_err(|_| corrupt())?;
        let signature = match bytes.get(40..) {
            Some([]) => None,
            Some(sig) => Some(<[u8; 64]>::try_from(sig).map_err(|_| corrupt())?),
            None => return Err(corrupt()),
        };
        Ok(Head {
            seq,
            digest,
            signature,
        })
    }

    /// Appends one event to the audit log on its own: for events that are
    /// their own effect (a backup taken, a dispute raised). A change to the
    /// database carries its notes in its own write instead (see
    /// `Store::audit_into`). Returns the event's seq.
    pub fn audit(&self, time_ms: u64, note: Note) -> Result<u64, StoreError> {
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut batch = sled::Batch::default();
        let seq = self.audit_into(&mut batch, time_ms, vec![note])?;
        // Not a store generation bump: the audit log is not in the index
        // snapshot.
        self.tree.apply_batch(batch)?;
        Ok(seq)
    }

    /// Puts `notes` into `batch` as the next audit records (numbered,
    /// chained, the head signed when the node has its signing key), so
    /// that they land with the change the batch makes, or not at all.
    /// The caller holds the writer lock from here until the batch is
    /// applied: the head read here must still be the head then. Returns
    /// the seq of the last record (the head's, if `notes` is empty).
    pub(super) fn audit_into(
        &self,
        batch: &mut sled::Batch,
        time_ms: u64,
        notes: Vec<Note>,
    ) -> Result<u64, StoreError> {
        let mut head = self.audit_head()?;
        if notes.is_empty() {
            return Ok(head.seq);
        }
        for note in notes {
            let event = AuditEvent {
                seq: head.seq + 1,
                time_ms,
                actor: note.actor,
                action: note.action,
                subject: note.subject,
                detail: note.detail,
            };
            let bytes = event.to_bytes();
            let digest = audit::link(&head.digest, &bytes);
            let mut value = Vec::with_capacity(32 + bytes.len());
            value.extend_from_slice(&digest);
            value.extend_from_slice(&bytes);
            batch.insert(&keys::audit(event.seq)[..], value);
            head.seq = event.seq;
            head.digest = digest;
        }
        let mut head_value = Vec::with_capacity(104);
        head_value.extend_from_slice(&head.seq.to_be_bytes());
        head_value.extend_from_slice(&head.digest);
        if let Some(signer) = self
            .signer
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            head_value.extend_from_slice(&signer.audit_head(head.seq, &head.digest));
        }
        batch.insert(keys::AUDIT_HEAD, head_value);
        Ok(head.seq)
    }

    /// Records that a change to the peer registry, written beside it with
    /// this digest, happened, with its audit records, in one batch: after
    /// a crash the change is put in place if and only if this landed.
    pub(crate) fn journal_peers(
        &self,
        digest: [u8; 32],
        notes: Vec<Note>,
    ) -> Result<(), StoreError> {
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        self.journal_locked(Journal::Peers, digest, notes)
    }

    /// As [`Store::journal_peers`], for `which`, the writer lock held.
    pub(super) fn journal_locked(
        &self,
        which: Journal,
        digest: [u8; 32],
        notes: Vec<Note>,
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        batch.insert(which.key(), &digest[..]);
        self.audit_into(&mut batch, super::wall_ms(), notes)?;
        self.tree.apply_batch(batch)?;
        // The renames that follow must not overtake this on disk.
        self.tree.flush()?;
        Ok(())
    }

    /// The digest of the last change of `which` journalled and not yet
    /// cleared.
    pub(crate) fn journalled(&self, which: Journal) -> Result<Option<[u8; 32]>, StoreError> {
        Ok(self
            .tree
            .get(which.key())?
            .and_then(|v| <[u8; 32]>::try_from(v.as_ref()).ok()))
    }

    /// Forgets the journalled change of `which` (once it is in place).
    pub(crate) fn clear_journal(&self, which: Journal) -> Result<(), StoreError> {
        self.tree.remove(which.key())?;
        Ok(())
    }

    /// Audit records after `after_seq`, at most `limit`, in order. A record
    /// that does not read back is an error (`hashfed audit verify` says
    /// which).
    pub fn audit_events(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let start = keys::audit(after_seq.saturating_add(1));
        let end = keys::prefix_end(&[keys::AUDIT]).unwrap_or_default();
        let mut out = Vec::new();
        for kv in self.tree.range(start.to_vec()..end).take(limit) {
            let (_, v) = kv?;
            let event = v
                .get(32..)
                .and_then(|b| AuditEvent::from_bytes(b).ok())
                .ok_or_else(|| StoreError::Corrupt("an audit record does not read back".into()))?;
            out.push(event);
        }
        Ok(out)
    }

    /// Recomputes the audit chain and checks its head (and the head's
    /// signature, when the node's signing key is set).
    pub fn check_audit(&self) -> Result<AuditCheck, StoreError> {
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let head = self.audit_head()?;
        let mut records = Vec::new();
        for kv in self.tree.scan_prefix([keys::AUDIT]) {
            let (k, v) = kv?;
            let seq = keys::audit_seq(&k).unwrap_or(0);
            let digest: [u8; 32] = v
                .get(..32)
                .and_then(|d| d.try_into().ok())
                .unwrap_or([0; 32]);
            records.push((seq, digest, v.get(32..).unwrap_or_default().to_vec()));
        }
        let mut check = audit::check(records, (head.seq, head.digest));
        let signer = self
            .signer
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(signer) = signer {
            check.head_signed = Some(match head.signature {
                Some(sig) => {
                    verify_audit_head(signer.public_keys(), head.seq, &head.digest, &sig).is_ok()
                }
                None => head.seq == 0,
            });
        }
        Ok(check)
    }
}

//! The store's side of federation: origin-signed checkpoints, signed set
//! configurations, and received sets, whose records are applied verbatim.
//!
//! **Own sets** (origin = this node's name, written here) get a checkpoint
//! signed in the same batch as the records it covers: at the end of every
//! write and at least every [`CHECKPOINT_EVERY`] records, so every head has
//! one. **Received sets** take records only through
//! `Store::apply_remote`, which recomputes the chain over the records and
//! refuses the whole batch unless the digest at the end equals the
//! origin's checkpoint (whose signature the caller has checked). Records,
//! entry states, index keys, the set's head (the sync cursor) and the
//! checkpoint land in one sled batch: after a crash the set is at the old
//! checkpoint or the new one, never in between, so a restart resumes from
//! the head and fetches nothing twice.

// Part of the store, the one module that touches sled.
#![allow(clippy::disallowed_types)]

use std::sync::Arc;

use super::keys;
use super::state::SetState;
use super::write::{Applied, Pending};
use super::{Store, StoreError};
use crate::model::audit::{unaudited, Action, Note};
use crate::model::keychain::KeyBound;
use crate::model::record::{chain_digest, genesis_digest};
use crate::model::signed::{Checkpoint, FeedbackNote, SignedInfo, Signer, CHECKPOINT_EVERY};
use crate::model::{SetId, SetInfo, SetPolicy};

/// Checkpoint bytes as stored: digest then signature.
pub(super) fn encode_checkpoint(cp: &Checkpoint) -> Vec<u8> {
    let mut v = Vec::with_capacity(96);
    v.extend_from_slice(&cp.digest);
    v.extend_from_slice(&cp.signature);
    v
}

fn decode_checkpoint(seq: u64, bytes: &[u8]) -> Result<Checkpoint, StoreError> {
    if bytes.len() != 96 {
        return Err(StoreError::Corrupt(format!(
            "checkpoint at seq {seq} is {} bytes",
            bytes.len()
        )));
    }
    let mut digest = [0; 32];
    let mut signature = [0; 64];
    digest.copy_from_slice(&bytes[..32]);
    signature.copy_from_slice(&bytes[32..]);
    Ok(Checkpoint {
        seq,
        digest,
        signature,
    })
}

impl Store {
    /// Makes this node the origin of sets named after `signer`: their
    /// writes get signed checkpoints from now on. Call
    /// `Store::sign_missing` next for what was written before.
    pub(crate) fn set_signer(&self, signer: Arc<Signer>) {
        *self.signer.write().unwrap_or_else(|p| p.into_inner()) = Some(signer);
    }

    /// A key rotation (and/or certificate renewal), under the writer lock:
    /// `rotate` is given what the current signer signed, set by set (each
    /// own set's head and configuration version), and a `journal` that
    /// records the rotation's audit notes ([`super::Journal::Keys`]) in one
    /// flushed batch; it stages the new files, journals, puts them in
    /// place, and returns the new signer (`None`: keep this one). Nothing
    /// is signed between the reading of the bounds and the new signer
    /// taking over, so the bounds the rotation states for the old key
    /// hold (see `model::keychain`).
    pub(crate) fn rotate_signer<E: From<StoreError>>(
        &self,
        rotate: impl FnOnce(
            Vec<KeyBound>,
            &mut dyn FnMut(Vec<Note>) -> Result<(), StoreError>,
        ) -> Result<Option<Arc<Signer>>, E>,
    ) -> Result<(), E> {
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let bounds = self
            .sets()
            .iter()
            .filter(|s| self.signer_for(s).is_some())
            .map(|s| KeyBound {
                set: s.id().to_string(),
                seq: s.head_seq,
                info_version: s.signed_info.as_ref().map_or(0, |i| i.version),
            })
            .collect();
        let mut journal =
            |notes: Vec<Note>| self.journal_locked(super::Journal::Keys, [0; 32], notes);
        if let Some(signer) = rotate(bounds, &mut journal)? {
            self.set_signer(signer);
        }
        Ok(())
    }

    /// The signer, if this node is the origin of `set`.
    pub(super) fn signer_for(&self, set: &SetState) -> Option<Arc<Signer>> {
        if set.upstream.is_some() {
            return None;
        }
        let signer = self.signer.read().unwrap_or_else(|p| p.into_inner());
        signer.as_ref().filter(|s| s.owns(set.id())).cloned()
    }

    /// The checkpoint at exactly `seq`, if there is one.
    pub fn checkpoint_at(&self, set: &SetId, seq: u64) -> Result<Option<Checkpoint>, StoreError> {
        let state = self
            .set(set)
            .ok_or_else(|| StoreError::UnknownSet(set.clone()))?;
        match self.tree.get(keys::checkpoint(state.no, seq))? {
            Some(bytes) => Ok(Some(decode_checkpoint(seq, &bytes)?)),
            None => Ok(None),
        }
    }

    /// A set's checkpoints after `after_seq`, in order.
    pub fn checkpoints(
        &self,
        set: &SetId,
        after_seq: u64,
    ) -> Result<impl Iterator<Item = Result<Checkpoint, StoreError>> + '_, StoreError> {
        let state = self
            .set(set)
            .ok_or_else(|| StoreError::UnknownSet(set.clone()))?;
        let start = keys::checkpoint(state.no, after_seq.saturating_add(1));
        let end = keys::prefix_end(&keys::checkpoint_prefix(state.no)).unwrap_or_default();
        Ok(self.tree.range(start.to_vec()..end).map(|kv| {
            let (k, v) = kv?;
            let seq = keys::seq_of(&k)
                .ok_or_else(|| StoreError::Corrupt("short checkpoint key".into()))?;
            decode_checkpoint(seq, &v)
        }))
    }

    /// Signs what this node's own sets lack: the configuration (again,
    /// with a higher version, when it changed) and checkpoints over logs
    /// written before the node had its signer (every
    /// [`CHECKPOINT_EVERY`] records and at the head). Returns the sets
    /// changed.
    pub(crate) fn sign_missing(&self) -> Result<Vec<SetId>, StoreError> {
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut changed = Vec::new();
        for mut state in self.sets() {
            let Some(signer) = self.signer_for(&state) else {
                continue;
            };
            let mut batch = sled::Batch::default();
            let mut dirty = self.sign_info(&signer, &mut state)?;
            if state.head_seq > 0
                && self
                    .tree
                    .get(keys::checkpoint(state.no, state.head_seq))?
                    .is_none()
            {
                let mut digest = genesis_digest(state.id());
                for item in self.log(state.id(), 0)? {
                    let (seq, bytes) = item?;
                    digest = chain_digest(&digest, &bytes);
                    if seq % CHECKPOINT_EVERY == 0 || seq == state.head_seq {
                        let key = keys::checkpoint(state.no, seq);
                        if self.tree.get(key)?.is_none() {
                            let cp = signer.checkpoint(state.id(), seq, digest);
                            batch.insert(&key[..], encode_checkpoint(&cp));
                        }
                    }
                }
                if digest != state.digest() {
                    return Err(StoreError::Corrupt(format!(
                        "set {}: the log's chain does not end at the stored head digest",
                        state.id()
                    )));
                }
                dirty = true;
            }
            if dirty {
                self.write_set(batch, &state)?;
                changed.push(state.id().clone());
            }
        }
        Ok(changed)
    }

    /// Signs `state.info` unless its current signature already covers it.
    pub(super) fn sign_info(
        &self,
        signer: &Signer,
        state: &mut SetState,
    ) -> Result<bool, StoreError> {
        let current = serde_json::to_string(&state.info)
            .map_err(|e| StoreError::Corrupt(format!("set info: {e}")))?;
        if state
            .signed_info
            .as_ref()
            .is_some_and(|s| s.json == current)
        {
            return Ok(false);
        }
        let version = state.signed_info.as_ref().map_or(1, |s| s.version + 1);
        state.signed_info = Some(
            signer
                .info(&state.info, version)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        );
        Ok(true)
    }

    /// Changes who may receive one of this node's own sets; the new policy
    /// is signed with the next version.
    pub(crate) fn set_policy(
        &self,
        set: &SetId,
        policy: SetPolicy,
        audit: impl FnOnce(&SetState) -> Vec<Note>,
    ) -> Result<SetState, StoreError> {
        self.change_info(set, |info, _| info.policy = policy, audit)
    }

    /// Changes the configuration of a set written on this node and signs
    /// it anew (for this node's own sets), so peers see the change; `audit`
    /// describes the new state, in the same batch.
    pub(super) fn change_info(
        &self,
        set: &SetId,
        change: impl FnOnce(&mut SetInfo, u64),
        audit: impl FnOnce(&SetState) -> Vec<Note>,
    ) -> Result<SetState, StoreError> {
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut state = self
            .set(set)
            .ok_or_else(|| StoreError::UnknownSet(set.clone()))?;
        state.writable()?;
        change(&mut state.info, state.head_seq);
        if let Some(signer) = self.signer_for(&state) {
            self.sign_info(&signer, &mut state)?;
        }
        let mut batch = sled::Batch::default();
        self.audit_into(&mut batch, super::wall_ms(), audit(&state))?;
        self.write_set(batch, &state)?;
        Ok(state)
    }

    /// Records a set received from `peer` (created on first sight), with
    /// the configuration its origin signed (already verified by the
    /// caller). An older or equal version than the one held changes
    /// nothing: a relay cannot roll a policy back. A change is audited
    /// (as the peer's) in its own batch.
    pub(crate) fn receive_set(
        &self,
        info: SetInfo,
        signed: SignedInfo,
        peer: &str,
        now_ms: u64,
    ) -> Result<SetState, StoreError> {
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut batch = sled::Batch::default();
        let mut notes = Vec::new();
        let state = match self.set(&info.id) {
            Some(existing) if existing.upstream.is_none() => {
                return Err(StoreError::SetExists(info.id));
            }
            Some(existing)
                if existing
                    .signed_info
                    .as_ref()
                    .is_some_and(|s| s.version >= signed.version) =>
            {
                return Ok(existing);
            }
            Some(existing) if existing.info.kind != info.kind => {
                return Err(StoreError::KindChanged {
                    set: info.id,
                    was: existing.info.kind,
                    now: info.kind,
                });
            }
            Some(mut existing) => {
                existing.info = info;
                let detail = format!("configuration version {} from the origin", signed.version);
                notes.push(Note::new(
                    format!("peer:{peer}"),
                    Action::PolicySigned,
                    existing.id().as_str(),
                    detail,
                ));
                existing.signed_info = Some(signed);
                existing
            }
            None => {
                let no = self.counter(keys::NEXT_SET)?;
                if no >= u64::from(u32::MAX) {
                    return Err(StoreError::Full("sets"));
                }
                batch.insert(keys::NEXT_SET, &(no + 1).to_be_bytes());
                tracing::info!(set = %info.id, peer, kind = %info.kind, "set received");
                let kind = match info.kind {
                    crate::model::SetKind::Block => "",
                    crate::model::SetKind::Allow => "an allowlist, ",
                };
                notes.push(Note::new(
                    format!("peer:{peer}"),
                    Action::SetReceived,
                    info.id.as_str(),
                    format!("{kind}configuration version {}", signed.version),
                ));
                SetState {
                    head_digest: crate::signal::exact::to_hex(&genesis_digest(&info.id)),
                    info,
                    no: no as u32,
                    head_seq: 0,
                    matchable: 0,
                    created_ms: now_ms,
                    signed_info: Some(signed),
                    upstream: Some(peer.to_owned()),
                    suppressed: false,
                }
            }
        };
        self.audit_into(&mut batch, now_ms, notes)?;
        self.write_set(batch, &state)?;
        Ok(state)
    }

    /// Appends records of a received set exactly as its origin wrote them,
    /// up to the last of `checkpoints` (in order, each verified by the
    /// caller with the origin's key). Refused as a whole (nothing written)
    /// unless the records continue the log at its head, contiguously, and
    /// the chain over them reaches every checkpoint's digest at its seq.
    /// Several checkpoints' worth of records may come in one call (one
    /// sled batch).
    pub(crate) fn apply_remote(
        &self,
        set: &SetId,
        records: &[Vec<u8>],
        checkpoints: &[Checkpoint],
        peer: &str,
        hold: bool,
    ) -> Result<Applied, StoreError> {
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut state = self
            .set(set)
            .ok_or_else(|| StoreError::UnknownSet(set.clone()))?;
        if state.upstream.is_none() {
            return Err(StoreError::Rejected(format!(
                "{set} is written on this node; it takes no records from peers"
            )));
        }
        let end = state.head_seq + records.len() as u64;
        let ordered = checkpoints.windows(2).all(|w| w[0].seq < w[1].seq);
        let within = checkpoints.first().is_some_and(|c| c.seq > state.head_seq);
        if !ordered || !within || checkpoints.last().map(|c| c.seq) != Some(end) {
            return Err(StoreError::Rejected(format!(
                "{} records after seq {} do not end at the last checkpoint",
                records.len(),
                state.head_seq,
            )));
        }
        let first = state.head_seq + 1;
        state.upstream = Some(peer.to_owned());
        // Entry times come from the records themselves.
        let mut p = Pending::new(self, state, 0)?;
        p.hold = hold;
        let mut next = checkpoints.iter().peekable();
        for (i, bytes) in records.iter().enumerate() {
            p.apply_verbatim(bytes)?;
            let seq = first + i as u64;
            if let Some(cp) = next.next_if(|c| c.seq == seq) {
                if p.digest() != cp.digest {
                    return Err(StoreError::Rejected(format!(
                        "the chain over records {first}..={seq} does not match the origin's signed \
                         checkpoint: records were altered, dropped, reordered or forged"
                    )));
                }
                p.put_checkpoint(cp);
            }
        }
        // What a peer's log says is in the log itself, signed by its
        // origin; the audit log keeps what operators and peers did.
        p.commit(unaudited)
    }
}

/// Feedback an origin received about one of its entries.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReceivedFeedback {
    /// The note as its reporter signed it.
    pub note: FeedbackNote,
    /// The peer it arrived from.
    pub via: String,
    /// Whether the reporter's signature was checked (its key is known).
    pub verified: bool,
    /// When it arrived, ms since the epoch.
    pub received_ms: u64,
}

/// The outbox key and value for `note`: `o` + time + a unique tail, so the
/// outbox drains in the order feedback was given.
pub(super) fn outbox_item(
    note: &FeedbackNote,
    unique: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), StoreError> {
    let mut key = Vec::with_capacity(9 + unique.len());
    key.push(keys::OUTBOX);
    key.extend_from_slice(&note.time_ms.to_be_bytes());
    key.extend_from_slice(unique);
    let value =
        serde_json::to_vec(note).map_err(|e| StoreError::Corrupt(format!("feedback: {e}")))?;
    Ok((key, value))
}

impl Store {
    /// The note to send toward the origin for feedback on `record`, if its
    /// set was received from a peer and this node can sign.
    pub(super) fn note_for_origin(
        &self,
        record: &super::matches::MatchRecord,
    ) -> Option<FeedbackNote> {
        let set = self.set(&record.set)?;
        set.upstream.as_ref()?;
        let feedback = record.feedback.as_ref()?;
        let signer = self
            .signer
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        Some(signer.feedback(FeedbackNote {
            set: record.set.clone(),
            entry: record.entry,
            verdict: feedback.verdict,
            reason: feedback.reason.clone(),
            time_ms: feedback.time_ms,
            reporter: String::new(),
            signature: String::new(),
        }))
    }

    /// Queues feedback that arrived from a downstream peer about a set this
    /// node received too: it goes on toward the origin.
    pub(crate) fn queue_feedback(&self, note: &FeedbackNote) -> Result<(), StoreError> {
        let mut unique = note.entry.0.to_vec();
        unique.extend_from_slice(note.reporter.as_bytes());
        let (key, value) = outbox_item(note, &unique)?;
        self.tree.insert(key, value)?;
        Ok(())
    }

    /// Up to `limit` queued notes, oldest first, with their keys.
    pub fn outbox(&self, limit: usize) -> Result<Vec<(Vec<u8>, FeedbackNote)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix([keys::OUTBOX]).take(limit) {
            let (k, v) = kv?;
            let note = serde_json::from_slice(&v)
                .map_err(|e| StoreError::Corrupt(format!("queued feedback: {e}")))?;
            out.push((k.to_vec(), note));
        }
        Ok(out)
    }

    /// Drops notes that reached the next node.
    pub(crate) fn remove_from_outbox(&self, keys_sent: &[Vec<u8>]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for k in keys_sent {
            if k.first() == Some(&keys::OUTBOX) {
                batch.remove(k.as_slice());
            }
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Keeps feedback about one of this node's entries: one per entry and
    /// reporter (a later note from the same reporter replaces the earlier),
    /// with the audit records `audit` makes in the same batch. `audit` is
    /// given the entry's dispute before and after this report, so that a
    /// report that raises the entry is audited with it.
    pub(crate) fn receive_feedback(
        &self,
        received: &ReceivedFeedback,
        audit: impl FnOnce(Option<&super::Dispute>, Option<&super::Dispute>) -> Vec<Note>,
    ) -> Result<(), StoreError> {
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let entry = received.note.entry;
        let before = self.entry_dispute(&entry, None)?;
        let after = self.entry_dispute(&entry, Some(received))?;
        let notes = audit(before.as_ref(), after.as_ref());
        let mut key = vec![keys::INBOX];
        key.extend_from_slice(&received.note.entry.0);
        key.extend_from_slice(received.note.reporter.as_bytes());
        let value = serde_json::to_vec(received)
            .map_err(|e| StoreError::Corrupt(format!("feedback: {e}")))?;
        let mut batch = sled::Batch::default();
        batch.insert(key, value);
        self.audit_into(&mut batch, received.received_ms, notes)?;
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Every piece of feedback received, by entry.
    pub fn received_feedback(&self) -> Result<Vec<ReceivedFeedback>, StoreError> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix([keys::INBOX]) {
            let (_, v) = kv?;
            out.push(
                serde_json::from_slice(&v)
                    .map_err(|e| StoreError::Corrupt(format!("received feedback: {e}")))?,
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::record::Record;
    use crate::model::{EntryData, Signal, SignalType};
    use crate::store::{Change, StoreOptions};

    fn add(i: u32) -> Change {
        Change::Add(EntryData {
            signal: Signal::from_bytes(
                SignalType::Md5,
                blake3::hash(&i.to_be_bytes()).as_bytes()[..16].to_vec(),
            )
            .unwrap(),
            labels: vec![],
            external_id: None,
            vetting: vec![],
        })
    }

    fn signer() -> Arc<Signer> {
        Arc::new(Signer::new(
            "o",
            "node",
            ed25519_dalek::SigningKey::from_bytes(&[5; 32]),
        ))
    }

    #[test]
    fn logs_pack_into_chunks_and_read_back_from_any_seq() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), &StoreOptions::default()).unwrap();
        store.set_signer(signer());
        let set: SetId = "o/s".parse().unwrap();
        store
            .create_set(SetInfo::new(set.clone()), 1, crate::model::audit::unaudited)
            .unwrap();
        // Single appends across chunk boundaries, then a batch spanning several.
        for i in 0..70 {
            store
                .append(&set, &[add(i)], 2, crate::model::audit::unaudited)
                .unwrap();
        }
        let batch: Vec<Change> = (70..300).map(add).collect();
        store
            .append(&set, &batch, 3, crate::model::audit::unaudited)
            .unwrap();
        assert_eq!(store.set(&set).unwrap().head_seq, 300);
        for after in [0, 1, 63, 64, 65, 127, 128, 200, 299, 300] {
            let seqs: Vec<u64> = store
                .log(&set, after)
                .unwrap()
                .map(|r| r.unwrap().0)
                .collect();
            assert_eq!(
                seqs,
                ((after + 1)..=300).collect::<Vec<_>>(),
                "after {after}"
            );
        }
        for item in store.log(&set, 0).unwrap() {
            let (seq, bytes) = item.unwrap();
            assert_eq!(Record::decode(&bytes).unwrap().seq, seq);
        }
        assert!(store.verify().unwrap().problems.is_empty());
        // Every write ended at a signed checkpoint.
        assert!(store.checkpoint_at(&set, 69).unwrap().is_some());
        assert!(store.checkpoint_at(&set, 300).unwrap().is_some());
    }

    #[test]
    fn a_new_configuration_that_changes_a_received_sets_kind_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let origin = Store::open(&tmp.path().join("a"), &StoreOptions::default()).unwrap();
        let signer = signer();
        origin.set_signer(signer.clone());
        let set: SetId = "o/list".parse().unwrap();
        let created = origin
            .create_set(SetInfo::new(set.clone()), 1, crate::model::audit::unaudited)
            .unwrap();
        let signed = created.signed_info.clone().unwrap();
        let receiver = Store::open(&tmp.path().join("b"), &StoreOptions::default()).unwrap();
        receiver
            .receive_set(created.info.clone(), signed.clone(), "a", 5)
            .unwrap();
        // The origin (or its stolen key) turns its block list into an
        // allowlist: it would silence every other list's hits here.
        let mut allow = created.info.clone();
        allow.kind = crate::model::SetKind::Allow;
        let newer = signer.info(&allow, signed.version + 1).unwrap();
        let err = receiver.receive_set(allow, newer, "a", 6).unwrap_err();
        assert!(matches!(err, StoreError::KindChanged { .. }), "{err}");
        assert!(err.to_string().contains("block list here"), "{err}");
        let kept = receiver.set(&set).unwrap();
        assert_eq!(kept.info.kind, crate::model::SetKind::Block);
        assert_eq!(kept.signed_info.unwrap().version, signed.version);
    }

    #[test]
    fn received_records_apply_only_up_to_matching_checkpoints() {
        let tmp = tempfile::tempdir().unwrap();
        let origin = Store::open(&tmp.path().join("a"), &StoreOptions::default()).unwrap();
        let signer = signer();
        origin.set_signer(signer.clone());
        let set: SetId = "o/s".parse().unwrap();
        let created = origin
            .create_set(SetInfo::new(set.clone()), 1, crate::model::audit::unaudited)
            .unwrap();
        for chunk in (0..100).collect::<Vec<_>>().chunks(30) {
            let changes: Vec<Change> = chunk.iter().map(|&i| add(i)).collect();
            origin
                .append(&set, &changes, 2, crate::model::audit::unaudited)
                .unwrap();
        }
        let records: Vec<Vec<u8>> = origin.log(&set, 0).unwrap().map(|r| r.unwrap().1).collect();
        let cps: Vec<Checkpoint> = origin
            .checkpoints(&set, 0)
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
        assert_eq!(
            cps.iter().map(|c| c.seq).collect::<Vec<_>>(),
            [30, 60, 90, 100]
        );

        let receiver = Store::open(&tmp.path().join("b"), &StoreOptions::default()).unwrap();
        let signed = created.signed_info.clone().unwrap();
        receiver
            .receive_set(created.info.clone(), signed, "a", 5)
            .unwrap();
        // A local set of the same id is never overwritten by a peer.
        assert!(matches!(
            origin.receive_set(
                created.info.clone(),
                created.signed_info.clone().unwrap(),
                "x",
                5
            ),
            Err(StoreError::SetExists(_))
        ));
        // Wrong digest: nothing written.
        let mut altered = records[..30].to_vec();
        altered[10][20] ^= 1;
        assert!(receiver
            .apply_remote(&set, &altered, &cps[..1], "a", false)
            .is_err());
        assert_eq!(receiver.set(&set).unwrap().head_seq, 0);
        // Two checkpoints in one call, then the rest.
        receiver
            .apply_remote(&set, &records[..60], &cps[..2], "a", false)
            .unwrap();
        // A gap: records after 70 where 61 is next.
        assert!(receiver
            .apply_remote(&set, &records[70..100], &cps[3..], "a", false)
            .is_err());
        receiver
            .apply_remote(&set, &records[60..100], &cps[2..], "a", false)
            .unwrap();
        let (a, b) = (origin.set(&set).unwrap(), receiver.set(&set).unwrap());
        assert_eq!((a.head_seq, &a.head_digest), (b.head_seq, &b.head_digest));
        assert_eq!(b.matchable, 100);
        assert!(receiver.verify().unwrap().problems.is_empty());
        // Only the origin writes: the receiver cannot append to it.
        assert!(matches!(
            receiver.append(&set, &[add(1000)], 9, crate::model::audit::unaudited),
            Err(StoreError::Received { .. })
        ));
        // The receiver holds the origin's checkpoints, to relay them.
        assert_eq!(
            receiver.checkpoint_at(&set, 60).unwrap(),
            Some(cps[1].clone())
        );
    }
}

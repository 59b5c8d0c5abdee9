//! What the store keeps per set and per entry, and its byte forms.

use serde::{Deserialize, Serialize};

use crate::model::record::{decode_entry, encode_entry, CodecError, Reader};
use crate::model::signed::SignedInfo;
use crate::model::{EntryData, EntryId, SetId, SetInfo};

/// No PDQ slot.
pub const NO_SLOT: u32 = u32::MAX;

const ENTRY_STATE_VERSION: u8 = 1;
const FLAG_RETRACTED: u8 = 1;
const FLAG_DISABLED: u8 = 2;
const FLAG_HELD: u8 = 4;

/// A set as stored: its configuration, its log head and its local number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetState {
    /// The origin's configuration.
    pub info: SetInfo,
    /// Local number, used in keys instead of the (long) id.
    pub no: u32,
    /// Sequence number of the last record (0: empty log).
    pub head_seq: u64,
    /// Chain digest after the last record, hex.
    pub head_digest: String,
    /// Entries that currently match (neither retracted nor disabled).
    #[serde(default)]
    pub matchable: u64,
    /// When this node created or first received the set, ms since the epoch.
    pub created_ms: u64,
    /// The configuration as its origin signed it: for this node's own sets
    /// signed here (once the node has its signer), for received sets as
    /// received. Peers are only ever shown signed configurations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_info: Option<SignedInfo>,
    /// The peer a received set is pulled from; `None` for sets written on
    /// this node. Received sets take records from their origin's log only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// Switched off on this node (a kill switch): none of its entries
    /// match, while its log keeps syncing. Local; peers are not told.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suppressed: bool,
}

impl SetState {
    /// The head digest as bytes.
    pub fn digest(&self) -> [u8; 32] {
        let mut out = [0; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = self
                .head_digest
                .get(2 * i..2 * i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .unwrap_or(0);
        }
        out
    }

    /// The set's id.
    pub fn id(&self) -> &SetId {
        &self.info.id
    }

    /// Refuses local changes to a received set: only its origin changes it.
    pub fn writable(&self) -> Result<(), super::StoreError> {
        match &self.upstream {
            Some(peer) => Err(super::StoreError::Received {
                set: self.id().clone(),
                peer: peer.clone(),
            }),
            None => Ok(()),
        }
    }
}

/// One entry as stored: its content and where it stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryState {
    /// The set's local number.
    pub set_no: u32,
    /// Withdrawn by its origin.
    pub retracted: bool,
    /// Switched off on this node only.
    pub disabled: bool,
    /// Received from a peer whose records this node reviews first: not
    /// matching until an operator releases it.
    pub held: bool,
    /// PDQ slot while matchable, else [`NO_SLOT`].
    pub slot: u32,
    /// Seq of the record that first added it.
    pub added_seq: u64,
    /// Seq of the latest record about it.
    pub last_seq: u64,
    /// Time of the latest record, ms since the epoch.
    pub time_ms: u64,
    /// Content from the latest add record.
    pub data: EntryData,
}

impl EntryState {
    /// Whether the entry should be in the match index.
    pub fn matchable(&self) -> bool {
        !self.retracted && !self.disabled && !self.held
    }

    /// Bytes for the `e` tree.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(96);
        w.push(ENTRY_STATE_VERSION);
        w.extend_from_slice(&self.set_no.to_be_bytes());
        let flags = u8::from(self.retracted) * FLAG_RETRACTED
            + u8::from(self.disabled) * FLAG_DISABLED
            + u8::from(self.held) * FLAG_HELD;
        w.push(flags);
        w.extend_from_slice(&self.slot.to_be_bytes());
        w.extend_from_slice(&self.added_seq.to_be_bytes());
        w.extend_from_slice(&self.last_seq.to_be_bytes());
        w.extend_from_slice(&self.time_ms.to_be_bytes());
        encode_entry(&mut w, &self.data);
        w
    }

    /// Reads [`EntryState::encode`]'s bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader(bytes);
        if r.u8()? != ENTRY_STATE_VERSION {
            return Err(CodecError::Malformed("unknown entry state version"));
        }
        let set_no = r.u32()?;
        let flags = r.u8()?;
        let state = EntryState {
            set_no,
            retracted: flags & FLAG_RETRACTED != 0,
            disabled: flags & FLAG_DISABLED != 0,
            held: flags & FLAG_HELD != 0,
            slot: r.u32()?,
            added_seq: r.u64()?,
            last_seq: r.u64()?,
            time_ms: r.u64()?,
            data: decode_entry(&mut r)?,
        };
        r.end()?;
        Ok(state)
    }
}

/// An entry as the store's readers see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEntry {
    /// Its id.
    pub id: EntryId,
    /// Its set.
    pub set: SetId,
    /// Withdrawn by its origin.
    pub retracted: bool,
    /// Switched off on this node only.
    pub disabled: bool,
    /// Waiting for an operator's release (received from a peer under
    /// review).
    pub held: bool,
    /// Seq of the record that first added it.
    pub added_seq: u64,
    /// Seq of the latest record about it.
    pub last_seq: u64,
    /// Time of the latest record, ms since the epoch.
    pub time_ms: u64,
    /// Content.
    pub data: EntryData,
}

//! The key layout of the store's one sled tree.
//!
//! Everything lives in a single tree, partitioned by a one-byte prefix,
//! because sled makes a batch atomic only within one tree: with one tree,
//! every change that spans log, entries and slots is a single
//! `apply_batch`, which a crash leaves wholly applied or wholly absent.
//! Integers are big-endian so that byte order is numeric order and prefix
//! scans walk logs in sequence.
//!
//! | prefix | key                                   | value                          |
//! |--------|---------------------------------------|--------------------------------|
//! | `s`    | set id (UTF-8)                        | set state (JSON)               |
//! | `l`    | set number u32, log chunk u64         | up to 64 records, each u32 length + bytes (see [`LOG_CHUNK`]) |
//! | `c`    | set number u32, seq u64               | checkpoint: digest (32), signature (64) |
//! | `e`    | entry chunk u32                       | up to 64 entry states (see `entries.rs`) |
//! | `p`    | PDQ slot chunk u32                    | slot chunk (see `slots.rs`) |
//! | `f`    | PDQ slot u32                          | empty (free slots)             |
//! | `x`    | set number u32, external id           | its entry ids, 16 bytes each   |
//! | `m`    | counter name                          | u64                            |
//! | `R`    | call key u64 (time ms << 16, counted up) | one call's match records (see [`super::matches`]) |
//! | `g`    | match id (16)                         | feedback on the match (JSON)   |
//! | `r`    | match id (16)                         | match record (JSON; stores before `R`, read only) |
//! | `o`    | outbox number u64                     | feedback to forward (JSON)     |
//! | `i`    | entry id (16), reporter node id       | feedback received (JSON)       |
//! | `q`    | entry id (16)                         | entry waiting for vetting (JSON, see `vetting.rs`) |
//! | `d`    | day u32, counter, set, type           | a daily count for the report (u64; see [`super::usage`]) |
//! | `z`    | entry id (16)                         | when its disputes were last reviewed (ms u64) |
//! | `a`    | audit seq u64                         | chain digest (32), audit record (JSON) |

/// Set states.
pub const SET: u8 = b's';
/// Log records.
pub const LOG: u8 = b'l';
/// Origin-signed checkpoints of set logs (see [`crate::model::signed`]).
pub const CHECKPOINT: u8 = b'c';
/// Feedback waiting to be forwarded toward a set's origin.
pub const OUTBOX: u8 = b'o';
/// Feedback received from peers about this node's own entries.
pub const INBOX: u8 = b'i';
/// Entry states, in chunks by entry number.
pub const ENTRY_CHUNK: u8 = b'e';
/// The PDQ slot table, in chunks.
pub const SLOT_CHUNK: u8 = b'p';
/// Free PDQ slots.
pub const FREE_SLOT: u8 = b'f';
/// Entries by the id of their source record.
pub const EXTERNAL: u8 = b'x';
/// Counters.
pub const META: u8 = b'm';
/// Daily counts (see [`super::usage`]).
pub const USAGE: u8 = b'd';
/// When an entry's disputes were last reviewed.
pub const REVIEWED: u8 = b'z';
/// Entries waiting for vetting.
pub const PENDING: u8 = b'q';
/// The audit log (see [`crate::model::audit`]).
pub const AUDIT: u8 = b'a';
/// An exchange's state (cursor, counts, last error) by exchange name:
/// written in the same batch as the records of the page it moved past.
pub const EXCHANGE: u8 = b'X';
/// Verdicts on exchange entries waiting to go back to their service:
/// set id, 0, match id (see `model::exchange::FeedbackOut`).
pub const EXCHANGE_OUTBOX: u8 = b'Y';
/// The audit log's head: seq u64, digest (32), the node's signature (64,
/// absent when the node had no signing key).
pub const AUDIT_HEAD: &[u8] = b"maudit_head";
/// The digest of the last peer registry change journalled with its audit
/// record (the federation finishes or drops an interrupted change with it
/// when the node opens).
pub const PEERS_JOURNAL: &[u8] = b"mpeers_journal";
/// Present while a key rotation or certificate renewal, staged beside the
/// node's files and audited, is being put in place: the node finishes it
/// when it opens (absent: drops what was staged).
pub const KEYS_JOURNAL: &[u8] = b"mkeys_journal";
/// Match records, packed per call (see [`super::matches`]).
pub const MATCHES: u8 = b'R';
/// Feedback on a match, by match id.
pub const MATCH_FEEDBACK: u8 = b'g';
/// Match records of the layout before [`MATCHES`]: one per random id.
pub const MATCH: u8 = b'r';

/// The layout version of the store (absent in stores of format 1, which
/// kept one `e` key per entry id and `v` keys by value; format 2 kept one
/// `x` key per entry, read by `migrate.rs`).
pub const FORMAT: &[u8] = b"mformat";
/// The layout [`FORMAT`] this code reads and writes.
pub const CURRENT_FORMAT: u64 = 3;
/// Counter: the next entry number.
pub const NEXT_ENTRY: &[u8] = b"mnext_entry";
/// Counter: the next never-used PDQ slot.
pub const NEXT_SLOT: &[u8] = b"mnext_slot";
/// Counter: the next set number.
pub const NEXT_SET: &[u8] = b"mnext_set";
/// Counter: the next outbox number.
pub const NEXT_OUTBOX: &[u8] = b"mnext_outbox";
/// Counter: write batches applied (see `snapshot.rs`).
pub const GENERATION: &[u8] = b"mgeneration";

/// `s` + set id.
pub fn set(id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + id.len());
    k.push(SET);
    k.extend_from_slice(id.as_bytes());
    k
}

/// `l` + set number (the prefix of one set's log).
pub fn log_prefix(set_no: u32) -> [u8; 5] {
    let mut k = [LOG; 5];
    k[1..].copy_from_slice(&set_no.to_be_bytes());
    k
}

/// Log records per `l` key. sled's cost is per key (about 7 µs for a
/// sequential insert here, 20+ µs for a random one), so records are
/// packed: an append rewrites only the set's last, partial chunk.
pub const LOG_CHUNK: u64 = 64;

/// The log chunk that holds `seq` (from 1), and its position in it.
pub fn log_chunk_of(seq: u64) -> (u64, usize) {
    let i = seq.saturating_sub(1);
    (i / LOG_CHUNK, (i % LOG_CHUNK) as usize)
}

/// `l` + set number + chunk number.
pub fn log_chunk(set_no: u32, chunk: u64) -> [u8; 13] {
    log(set_no, chunk)
}

/// `l` + set number + a u64 (a log chunk number; with the prefix byte
/// replaced, a checkpoint's seq).
fn log(set_no: u32, seq: u64) -> [u8; 13] {
    let mut k = [0; 13];
    k[..5].copy_from_slice(&log_prefix(set_no));
    k[5..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// `c` + set number (the prefix of one set's checkpoints).
pub fn checkpoint_prefix(set_no: u32) -> [u8; 5] {
    let mut k = log_prefix(set_no);
    k[0] = CHECKPOINT;
    k
}

/// `c` + set number + seq.
pub fn checkpoint(set_no: u32, seq: u64) -> [u8; 13] {
    let mut k = log(set_no, seq);
    k[0] = CHECKPOINT;
    k
}

/// `z` + entry id.
pub fn reviewed(id: &[u8; 16]) -> [u8; 17] {
    let mut k = [REVIEWED; 17];
    k[1..].copy_from_slice(id);
    k
}

/// `q` + entry id.
pub fn pending(id: &[u8; 16]) -> [u8; 17] {
    let mut k = [PENDING; 17];
    k[1..].copy_from_slice(id);
    k
}

/// `a` + audit seq.
pub fn audit(seq: u64) -> [u8; 9] {
    let mut k = [AUDIT; 9];
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// The seq in an `a` key.
pub fn audit_seq(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.get(1..9)?.try_into().ok()?))
}

/// `e` + entry chunk number.
pub fn entry_chunk(chunk: u32) -> [u8; 5] {
    let mut k = [ENTRY_CHUNK; 5];
    k[1..].copy_from_slice(&chunk.to_be_bytes());
    k
}

/// `p` + chunk number.
pub fn slot_chunk(chunk: u32) -> [u8; 5] {
    let mut k = [SLOT_CHUNK; 5];
    k[1..].copy_from_slice(&chunk.to_be_bytes());
    k
}

/// `f` + slot.
pub fn free_slot(slot: u32) -> [u8; 5] {
    let mut k = [FREE_SLOT; 5];
    k[1..].copy_from_slice(&slot.to_be_bytes());
    k
}

/// The key of exchange `name`'s state.
pub fn exchange(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(EXCHANGE);
    k.extend_from_slice(name.as_bytes());
    k
}

/// The key of a verdict for `set`'s service, given on match `match_id`.
pub fn exchange_outbox(set: &str, match_id: &[u8]) -> Vec<u8> {
    let mut k = exchange_outbox_prefix(set);
    k.extend_from_slice(match_id);
    k
}

/// The prefix of `set`'s verdicts waiting for its service.
pub fn exchange_outbox_prefix(set: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + set.len() + 16);
    k.push(EXCHANGE_OUTBOX);
    k.extend_from_slice(set.as_bytes());
    k.push(0);
    k
}

/// `x` + set number + length-prefixed external id: the entries that came
/// under that id of an exchange or a file, one key per id (not one per
/// entry: a page of 1,000 NCMEC records would otherwise insert 2,000 small
/// keys, and sled's cost per new key was most of an exchange's).
pub fn external(set_no: u32, external_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(7 + external_id.len());
    k.push(EXTERNAL);
    k.extend_from_slice(&set_no.to_be_bytes());
    k.extend_from_slice(&(external_id.len() as u16).to_be_bytes());
    k.extend_from_slice(external_id.as_bytes());
    k
}

/// An `x` value: the entry ids, 16 bytes each.
pub fn external_value(ids: &[crate::model::EntryId]) -> Vec<u8> {
    ids.iter().flat_map(|id| id.0).collect()
}

/// The entry ids of an `x` value; `None` if it is not whole ids.
pub fn external_ids(value: &[u8]) -> Option<Vec<crate::model::EntryId>> {
    if value.len() % 16 != 0 {
        return None;
    }
    value
        .chunks_exact(16)
        .map(|c| c.try_into().ok().map(crate::model::EntryId))
        .collect()
}

/// Where a key of the layout-2 `x` index (one key per entry: the id
/// after the external id) splits: its `x` key of today and its entry id.
/// `None` for a key that is not of that shape.
pub fn split_external_v2(key: &[u8]) -> Option<(&[u8], [u8; 16])> {
    let len = u16::from_be_bytes(key.get(5..7)?.try_into().ok()?) as usize;
    let end = 7 + len;
    if key.first() != Some(&EXTERNAL) || key.len() != end + 16 {
        return None;
    }
    Some((&key[..end], key[end..].try_into().ok()?))
}

/// The last 16 bytes of a key, as an entry id (for `q` keys).
pub fn trailing_id(key: &[u8]) -> Option<[u8; 16]> {
    let start = key.len().checked_sub(16)?;
    key[start..].try_into().ok()
}

/// The number in an `e` or `p` (chunk) or `f` (slot) key.
pub fn slot_of(key: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(key.get(1..5)?.try_into().ok()?))
}

/// The u64 in an `l` key (chunk number) or `c` key (seq).
pub fn seq_of(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.get(5..13)?.try_into().ok()?))
}

/// The key just after every key that starts with `prefix` (for ranges), or
/// `None` if there is none (all bytes 0xff).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

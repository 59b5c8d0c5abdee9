//! The PDQ slot table, stored in chunks of [`PER_CHUNK`] slots.
//!
//! Each matchable PDQ entry has a dense `u32` slot, the address of its code
//! in the in-memory index. The table maps slot → (entry id, code). It is
//! kept in chunks, one sled value per [`PER_CHUNK`] slots, rather than one
//! key per slot, because sled's cost is per key: an import that fills
//! consecutive slots rewrites a handful of chunks per batch instead of
//! inserting thousands of keys, and opening a 10M-entry store reads 40
//! thousand values instead of 10 million.
//!
//! Byte form: a presence bitmap (`PER_CHUNK` bits), then `PER_CHUNK`
//! records of entry id (16 bytes) and code (32 bytes); absent records are
//! zero.

use crate::model::EntryId;

/// Slots per chunk.
pub const PER_CHUNK: u32 = 256;
const BITMAP: usize = PER_CHUNK as usize / 8;
const RECORD: usize = 48;
/// Bytes of one chunk.
pub const CHUNK_BYTES: usize = BITMAP + PER_CHUNK as usize * RECORD;

/// The chunk holding `slot`, and the slot's place in it.
pub fn locate(slot: u32) -> (u32, usize) {
    (slot / PER_CHUNK, (slot % PER_CHUNK) as usize)
}

/// One chunk of the slot table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk(Vec<u8>);

impl Default for Chunk {
    fn default() -> Self {
        Chunk(vec![0; CHUNK_BYTES])
    }
}

impl Chunk {
    /// Reads a stored chunk; `None` if the length is wrong (corruption).
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        (bytes.len() == CHUNK_BYTES).then(|| Chunk(bytes.to_vec()))
    }

    /// The bytes to store.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Whether no slot is occupied.
    pub fn is_empty(&self) -> bool {
        self.0[..BITMAP].iter().all(|&b| b == 0)
    }

    /// Occupies position `i`.
    pub fn set(&mut self, i: usize, id: &EntryId, code: &[u8; 32]) {
        if i >= PER_CHUNK as usize {
            return;
        }
        self.0[i / 8] |= 1 << (i % 8);
        let at = BITMAP + i * RECORD;
        self.0[at..at + 16].copy_from_slice(&id.0);
        self.0[at + 16..at + RECORD].copy_from_slice(code);
    }

    /// Frees position `i`.
    pub fn clear(&mut self, i: usize) {
        if i >= PER_CHUNK as usize {
            return;
        }
        self.0[i / 8] &= !(1 << (i % 8));
        let at = BITMAP + i * RECORD;
        self.0[at..at + RECORD].fill(0);
    }
}

/// The entry and code at position `i` of stored chunk bytes (read without
/// copying the chunk), if occupied and well-formed.
pub fn get(bytes: &[u8], i: usize) -> Option<(EntryId, [u8; 32])> {
    if bytes.len() != CHUNK_BYTES || i >= PER_CHUNK as usize {
        return None;
    }
    if bytes[i / 8] >> (i % 8) & 1 == 0 {
        return None;
    }
    let at = BITMAP + i * RECORD;
    let id: [u8; 16] = bytes[at..at + 16].try_into().ok()?;
    let code: [u8; 32] = bytes[at + 16..at + RECORD].try_into().ok()?;
    Some((EntryId(id), code))
}

/// Every occupied position of stored chunk bytes.
pub fn occupied(bytes: &[u8]) -> impl Iterator<Item = (usize, EntryId, [u8; 32])> + '_ {
    (0..PER_CHUNK as usize).filter_map(move |i| get(bytes, i).map(|(id, code)| (i, id, code)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_clear() {
        let mut c = Chunk::default();
        assert!(c.is_empty());
        c.set(3, &EntryId([7; 16]), &[9; 32]);
        c.set(255, &EntryId([1; 16]), &[2; 32]);
        c.set(256, &EntryId([1; 16]), &[2; 32]); // out of range: ignored
        assert_eq!(get(c.as_bytes(), 3), Some((EntryId([7; 16]), [9; 32])));
        assert_eq!(get(c.as_bytes(), 4), None);
        let all: Vec<usize> = occupied(c.as_bytes()).map(|(i, _, _)| i).collect();
        assert_eq!(all, vec![3, 255]);
        c.clear(3);
        c.clear(255);
        assert!(c.is_empty());
        assert_eq!(Chunk::from_bytes(c.as_bytes()), Some(c));
        assert_eq!(Chunk::from_bytes(&[0; 5]), None);
        assert_eq!(locate(513), (2, 1));
    }
}

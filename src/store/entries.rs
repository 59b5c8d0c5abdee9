//! Entry states, packed by entry number, and the id → number map.
//!
//! Why numbers: an entry's id is a BLAKE3 digest, so keying states by id
//! scatters every bulk write over the whole tree, and sled's cost is per
//! key (about 20 µs for a random insert here, growing with the tree). Each
//! entry instead gets a dense `u32` number when first added (never reused:
//! entries are retracted, not deleted), and states are stored
//! [`PER_CHUNK`] to a sled value keyed by chunk number. An import or a sync
//! fills consecutive numbers, so it rewrites one value per [`PER_CHUNK`]
//! entries at the end of the tree instead of inserting one random key per
//! entry.
//!
//! Lookups by id go through [`IdMap`], kept in memory (about 24-48 bytes
//! per entry) and rebuilt from the chunks when the store opens. The map is
//! only ever a hint: a reader checks the id stored beside the state.
//!
//! Byte form of a chunk: per position, a u32 length (0: empty) and that
//! many bytes, the entry id (16) then the encoded
//! [`EntryState`](super::state::EntryState). Integers big-endian.

use std::collections::HashMap;

use crate::model::EntryId;

/// Entry states per chunk.
pub const PER_CHUNK: u32 = 64;

/// The chunk holding entry number `n`, and its position in it.
pub fn locate(n: u32) -> (u32, usize) {
    (n / PER_CHUNK, (n % PER_CHUNK) as usize)
}

/// Entry numbers by id.
#[derive(Default)]
pub struct IdMap(HashMap<EntryId, u32>);

impl IdMap {
    /// The number of `id`, if it has one.
    pub fn get(&self, id: &EntryId) -> Option<u32> {
        self.0.get(id).copied()
    }

    /// Records `id`'s number.
    pub fn insert(&mut self, id: EntryId, n: u32) {
        self.0.insert(id, n);
    }

    /// Entries known.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// An empty map with room for `n` entries.
    pub fn with_capacity(n: usize) -> Self {
        IdMap(HashMap::with_capacity(n))
    }

    /// Every id and number, in no order.
    pub fn iter(&self) -> impl Iterator<Item = (&EntryId, u32)> {
        self.0.iter().map(|(id, n)| (id, *n))
    }
}

/// One chunk of entry states, decoded far enough to change positions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chunk(Vec<Option<(EntryId, Vec<u8>)>>);

impl Chunk {
    /// Reads stored chunk bytes; `None` if malformed.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let mut items = Vec::with_capacity(PER_CHUNK as usize);
        let mut rest = bytes;
        while !rest.is_empty() {
            let (item, tail) = next_item(rest)?;
            items.push(item.map(|(id, state)| (id, state.to_vec())));
            rest = tail;
        }
        (items.len() <= PER_CHUNK as usize).then_some(Chunk(items))
    }

    /// Puts `state` (encoded) for `id` at position `i`.
    pub fn set(&mut self, i: usize, id: EntryId, state: Vec<u8>) {
        if i >= PER_CHUNK as usize {
            return;
        }
        if self.0.len() <= i {
            self.0.resize(i + 1, None);
        }
        self.0[i] = Some((id, state));
    }

    /// The bytes to store.
    pub fn to_bytes(&self) -> Vec<u8> {
        let size: usize = self
            .0
            .iter()
            .map(|item| 4 + item.as_ref().map_or(0, |(_, s)| 16 + s.len()))
            .sum();
        let mut out = Vec::with_capacity(size);
        for item in &self.0 {
            match item {
                Some((id, state)) => {
                    out.extend_from_slice(&((16 + state.len()) as u32).to_be_bytes());
                    out.extend_from_slice(&id.0);
                    out.extend_from_slice(state);
                }
                None => out.extend_from_slice(&0u32.to_be_bytes()),
            }
        }
        out
    }
}

/// The id and state bytes at position `i` of stored chunk bytes (read
/// without copying the chunk); `None` if empty, absent or malformed.
pub fn get(bytes: &[u8], i: usize) -> Option<(EntryId, &[u8])> {
    let mut rest = bytes;
    for _ in 0..i {
        rest = next_item(rest)?.1;
    }
    next_item(rest)?.0
}

/// An occupied position of a chunk: its index, the entry id, the state
/// bytes.
pub type Occupied<'a> = (usize, EntryId, &'a [u8]);

/// Every occupied position of stored chunk bytes, or `Err` at the first
/// malformed byte.
pub fn occupied(bytes: &[u8]) -> Result<Vec<Occupied<'_>>, ()> {
    let mut out = Vec::new();
    let mut rest = bytes;
    let mut i = 0;
    while !rest.is_empty() {
        let (item, tail) = next_item(rest).ok_or(())?;
        if let Some((id, state)) = item {
            out.push((i, id, state));
        }
        rest = tail;
        i += 1;
    }
    if i > PER_CHUNK as usize {
        return Err(());
    }
    Ok(out)
}

/// The first item of `bytes` and what follows it.
type Item<'a> = (Option<(EntryId, &'a [u8])>, &'a [u8]);

fn next_item(bytes: &[u8]) -> Option<Item<'_>> {
    let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let body = bytes.get(4..4usize.checked_add(len)?)?;
    let rest = &bytes[4 + len..];
    if len == 0 {
        return Some((None, rest));
    }
    let id: [u8; 16] = body.get(..16)?.try_into().ok()?;
    Some((Some((EntryId(id), &body[16..])), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_hold_states_by_position() {
        let mut c = Chunk::default();
        c.set(3, EntryId([3; 16]), vec![1, 2, 3]);
        c.set(0, EntryId([9; 16]), vec![]);
        c.set(64, EntryId([1; 16]), vec![1]); // out of range: ignored
        let bytes = c.to_bytes();
        assert_eq!(get(&bytes, 3), Some((EntryId([3; 16]), &[1, 2, 3][..])));
        assert_eq!(get(&bytes, 0), Some((EntryId([9; 16]), &[][..])));
        assert_eq!(get(&bytes, 1), None);
        assert_eq!(get(&bytes, 4), None);
        let all: Vec<usize> = occupied(&bytes).unwrap().iter().map(|o| o.0).collect();
        assert_eq!(all, vec![0, 3]);
        assert_eq!(Chunk::from_bytes(&bytes), Some(c.clone()));
        c.set(3, EntryId([4; 16]), vec![7]);
        assert_eq!(get(&c.to_bytes(), 3), Some((EntryId([4; 16]), &[7][..])));
        assert_eq!(locate(130), (2, 2));
    }

    #[test]
    fn malformed_chunks_are_refused() {
        let mut c = Chunk::default();
        c.set(1, EntryId([3; 16]), vec![1, 2, 3]);
        let bytes = c.to_bytes();
        // (Cut after the empty first position, what remains is a valid
        // one-position chunk.)
        for cut in (1..bytes.len()).filter(|&cut| cut != 4) {
            assert!(occupied(&bytes[..cut]).is_err(), "cut at {cut}");
            assert_eq!(Chunk::from_bytes(&bytes[..cut]), None, "cut at {cut}");
        }
        // A length below the id's 16 bytes.
        let short = [0, 0, 0, 5, 1, 2, 3, 4, 5];
        assert!(occupied(&short).is_err());
        assert_eq!(get(&short, 0), None);
        // More than PER_CHUNK positions.
        let many = vec![0u8; 4 * (PER_CHUNK as usize + 1)];
        assert!(occupied(&many).is_err());
        assert_eq!(Chunk::from_bytes(&many), None);
    }
}

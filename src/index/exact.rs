//! Exact-value lookup: a hash map from signal key to the entries that have
//! that value (several sets may hold the same hash).

use std::collections::HashMap;

use crate::model::EntryId;

/// Entries by exact value.
#[derive(Default)]
pub struct ExactIndex {
    map: HashMap<Box<[u8]>, Vec<EntryId>>,
    len: usize,
}

impl ExactIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `entry` has the value `key` (a [`crate::model::Signal::key`]).
    pub fn insert(&mut self, key: &[u8], entry: EntryId) {
        let ids = self.map.entry(key.into()).or_default();
        if !ids.contains(&entry) {
            ids.push(entry);
            self.len += 1;
        }
    }

    /// Forgets that `entry` has the value `key`; returns whether it was there.
    pub fn remove(&mut self, key: &[u8], entry: EntryId) -> bool {
        let Some(ids) = self.map.get_mut(key) else {
            return false;
        };
        let Some(pos) = ids.iter().position(|id| *id == entry) else {
            return false;
        };
        ids.swap_remove(pos);
        if ids.is_empty() {
            self.map.remove(key);
        }
        self.len -= 1;
        true
    }

    /// The entries with value `key`.
    pub fn get(&self, key: &[u8]) -> &[EntryId] {
        self.map.get(key).map_or(&[], Vec::as_slice)
    }

    /// Every (value key, entry) pair, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], EntryId)> + '_ {
        self.map
            .iter()
            .flat_map(|(k, ids)| ids.iter().map(move |id| (&k[..], *id)))
    }

    /// Number of (value, entry) pairs.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_remove() {
        let mut ix = ExactIndex::new();
        let (a, b) = (EntryId([1; 16]), EntryId([2; 16]));
        ix.insert(b"k", a);
        ix.insert(b"k", b);
        ix.insert(b"k", b);
        assert_eq!(ix.get(b"k"), &[a, b]);
        assert_eq!(ix.len(), 2);
        assert!(ix.remove(b"k", a));
        assert!(!ix.remove(b"k", a));
        assert_eq!(ix.get(b"k"), &[b]);
        assert!(ix.remove(b"k", b));
        assert!(ix.is_empty());
        assert!(ix.get(b"k").is_empty());
    }
}

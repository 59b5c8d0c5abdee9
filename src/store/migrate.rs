//! Bringing a store of an older layout to the current one, in place, when
//! it opens.
//!
//! Only layout 2 is read: it differs from layout 3 in the `x` index alone.
//! The rewrite is idempotent, so a crash part way through (SIGKILL, power)
//! leaves a store that the next open finishes: the layout number changes
//! in the last batch, and a group of old keys already folded into a new
//! key is folded again into the same list.

use super::{keys, StoreError};
use crate::model::EntryId;

/// Old keys folded per batch: bounds the memory the migration holds.
const PER_BATCH: usize = 10_000;

/// Layout 2 → 3: the `x` keys, one per (external id, entry), become one
/// key per external id whose value lists its entries.
pub(super) fn external_index(tree: &sled::Tree) -> Result<(), StoreError> {
    fold_external_index(tree, PER_BATCH)
}

fn fold_external_index(tree: &sled::Tree, per_batch: usize) -> Result<(), StoreError> {
    let mut folded = 0u64;
    // Where the next batch's scan starts: past the keys already folded
    // (the new keys between them are not walked again).
    let mut from = vec![keys::EXTERNAL];
    loop {
        let mut batch = sled::Batch::default();
        // (new key, its list) for the external ids this batch touches.
        let mut lists: Vec<(Vec<u8>, Vec<EntryId>)> = Vec::new();
        let mut n = 0;
        for kv in tree.range(from.clone()..) {
            let (key, _) = kv?;
            if key.first() != Some(&keys::EXTERNAL) {
                break;
            }
            let Some((new_key, id)) = keys::split_external_v2(&key) else {
                continue;
            };
            if lists.last().is_none_or(|(k, _)| k.as_slice() != new_key) {
                let listed = match tree.get(new_key)? {
                    Some(v) => keys::external_ids(&v).ok_or_else(|| {
                        StoreError::Corrupt("an external id's entry list has a partial id".into())
                    })?,
                    None => Vec::new(),
                };
                lists.push((new_key.to_vec(), listed));
            }
            if let Some((_, ids)) = lists.last_mut() {
                if !ids.contains(&EntryId(id)) {
                    ids.push(EntryId(id));
                }
            }
            batch.remove(&key[..]);
            from = key.to_vec();
            n += 1;
            if n == per_batch {
                break;
            }
        }
        for (key, ids) in &lists {
            batch.insert(&key[..], keys::external_value(ids));
        }
        if n < per_batch {
            batch.insert(keys::FORMAT, &keys::CURRENT_FORMAT.to_be_bytes());
            tree.apply_batch(batch)?;
            tree.flush()?;
            tracing::info!(folded = folded + n as u64, "store layout 2 brought to 3");
            return Ok(());
        }
        tree.apply_batch(batch)?;
        folded += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2_key(set_no: u32, external_id: &str, id: u8) -> Vec<u8> {
        let mut k = keys::external(set_no, external_id);
        k.extend_from_slice(&[id; 16]);
        k
    }

    #[test]
    fn layout_2_external_keys_fold_into_one_list_per_id() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("t").unwrap();
        for (set, ext, id) in [
            (1, "ncmec:7:1", 1),
            (1, "ncmec:7:1", 2),
            (1, "ncmec:7:2", 3),
            (2, "a", 4),
        ] {
            tree.insert(v2_key(set, ext, id), &[][..]).unwrap();
        }
        tree.insert(b"s1/x", &b"other"[..]).unwrap();
        // One old key per batch: every group is split across batches, as
        // after a crash part way through.
        fold_external_index(&tree, 1).unwrap();
        let list = |set, ext| {
            tree.get(keys::external(set, ext))
                .unwrap()
                .map(|v| keys::external_ids(&v).unwrap())
        };
        assert_eq!(
            list(1, "ncmec:7:1"),
            Some(vec![EntryId([1; 16]), EntryId([2; 16])])
        );
        assert_eq!(list(1, "ncmec:7:2"), Some(vec![EntryId([3; 16])]));
        assert_eq!(list(2, "a"), Some(vec![EntryId([4; 16])]));
        assert_eq!(
            tree.scan_prefix([keys::EXTERNAL]).count(),
            3,
            "old keys left"
        );
        assert_eq!(tree.get(b"s1/x").unwrap().as_deref(), Some(&b"other"[..]));
        let format = tree.get(keys::FORMAT).unwrap().unwrap();
        assert_eq!(format.as_ref(), keys::CURRENT_FORMAT.to_be_bytes());
        // Again (a crash before the layout mark landed): nothing changes.
        fold_external_index(&tree, 1).unwrap();
        assert_eq!(list(1, "ncmec:7:1").map(|l| l.len()), Some(2));
    }
}

//! Raw access to a stopped node's stored values, beneath every check: what
//! someone who can write the node's disk can do.
//!
//! Nothing in the node uses it. It exists for the tests of the checks that
//! catch such edits (`hashfed audit verify` names the first changed audit
//! record; the signed head catches a rewritten chain), so that they can
//! make the edit without reaching past this module into sled.

// Part of the store, the one module that touches sled.
#![allow(clippy::disallowed_types)]

use std::path::Path;

use super::{open_sled, StoreError, StoreOptions, TREE};

/// The store's one tree, opened without any of [`super::Store`]'s state.
pub struct RawStore {
    db: sled::Db,
    tree: sled::Tree,
}

impl RawStore {
    /// Opens the store in `dir` (a node's `DIR/store`); fails with
    /// [`StoreError::Locked`] while a node or command has it open.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = open_sled(dir, &StoreOptions::default())?;
        let tree = db.open_tree(TREE)?;
        Ok(RawStore { db, tree })
    }

    /// The value stored under `key` (see [`super::keys`]).
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree.get(key)?.map(|v| v.to_vec()))
    }

    /// Stores `value` under `key`, replacing what was there, unchecked.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.tree.insert(key, value)?;
        Ok(())
    }

    /// Writes every change to disk (call it before the next open).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}

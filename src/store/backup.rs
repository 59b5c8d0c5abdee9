//! Backups: a consistent copy of the whole store, taken while the node
//! serves, and a new store made from one.
//!
//! Consistent: the copy is read under the store's writer lock, so no set
//! write (records, entry states, heads, checkpoints, audit, counts) lands
//! half in it; queries keep being answered meanwhile, writes wait. A
//! restored node therefore holds every set at a head with its records and
//! cursor, and resumes syncing from there.
//!
//! Byte form: `HFBAK001`, then per key: key length u32, key, value length
//! u32, value; then `u32::MAX`, the number of keys u64 and a BLAKE3 digest
//! of everything before it. A restore checks the digest over the whole
//! file before writing anything.

// Part of the store, the one module that touches sled.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::io::{Read, Write};
use std::path::Path;

use super::{Store, StoreError, StoreOptions};

const MAGIC: &[u8; 8] = b"HFBAK001";
const END: u32 = u32::MAX;
/// Keys per batch when restoring.
const RESTORE_BATCH: usize = 10_000;

/// What a backup or a restore copied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackupSummary {
    /// Keys copied.
    pub keys: u64,
    /// Bytes of the backup.
    pub bytes: u64,
}

/// Hashes and counts what is written through it.
struct Hashing<W: Write> {
    inner: W,
    hasher: blake3::Hasher,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn io(what: &str) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |e| StoreError::Corrupt(format!("{what}: {e}"))
}

impl Store {
    /// Writes a consistent copy of the store to `out`.
    pub fn backup(&self, out: impl Write) -> Result<BackupSummary, StoreError> {
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut w = Hashing {
            inner: out,
            hasher: blake3::Hasher::new(),
            bytes: 0,
        };
        let write = io("writing the backup");
        w.write_all(MAGIC).map_err(io("writing the backup"))?;
        let mut keys = 0u64;
        for kv in self.tree.iter() {
            let (k, v) = kv?;
            for part in [&k[..], &v[..]] {
                w.write_all(&(part.len() as u32).to_be_bytes())
                    .and_then(|()| w.write_all(part))
                    .map_err(io("writing the backup"))?;
            }
            keys += 1;
        }
        w.write_all(&END.to_be_bytes())
            .and_then(|()| w.write_all(&keys.to_be_bytes()))
            .map_err(io("writing the backup"))?;
        let digest = w.hasher.finalize();
        w.inner
            .write_all(digest.as_bytes())
            .and_then(|()| w.inner.flush())
            .map_err(write)?;
        Ok(BackupSummary {
            keys,
            bytes: w.bytes + 32,
        })
    }

    /// Makes a new store in `dir` (which must hold none) from the backup at
    /// `file`: the file's digest is checked first, then every key is
    /// written and flushed.
    pub fn restore(
        dir: &Path,
        file: &Path,
        options: &StoreOptions,
    ) -> Result<BackupSummary, StoreError> {
        check_backup(file)?;
        if dir.join("sled").exists() {
            return Err(StoreError::Corrupt(format!(
                "{} already holds a store: restore into an empty place",
                dir.display()
            )));
        }
        let db = sled::Config::new()
            .path(dir.join("sled"))
            .cache_capacity(options.cache_bytes)
            .open()?;
        let tree = db.open_tree(super::TREE)?;
        let f = std::fs::File::open(file).map_err(io("opening the backup"))?;
        let mut r = std::io::BufReader::with_capacity(1 << 20, f);
        let read =
            |r: &mut std::io::BufReader<std::fs::File>, n: usize| -> Result<Vec<u8>, StoreError> {
                let mut buf = vec![0; n];
                r.read_exact(&mut buf).map_err(io("reading the backup"))?;
                Ok(buf)
            };
        let len = |r: &mut std::io::BufReader<std::fs::File>| -> Result<u32, StoreError> {
            let mut b = [0; 4];
            r.read_exact(&mut b).map_err(io("reading the backup"))?;
            Ok(u32::from_be_bytes(b))
        };
        read(&mut r, MAGIC.len())?;
        let mut keys = 0u64;
        let mut batch = sled::Batch::default();
        let mut in_batch = 0;
        loop {
            let klen = len(&mut r)?;
            if klen == END {
                break;
            }
            let k = read(&mut r, klen as usize)?;
            let vlen = len(&mut r)?;
            let v = read(&mut r, vlen as usize)?;
            batch.insert(k, v);
            keys += 1;
            in_batch += 1;
            if in_batch == RESTORE_BATCH {
                tree.apply_batch(std::mem::take(&mut batch))?;
                in_batch = 0;
            }
        }
        tree.apply_batch(batch)?;
        db.flush()?;
        let bytes = std::fs::metadata(file).map_or(0, |m| m.len());
        Ok(BackupSummary { keys, bytes })
    }
}

/// Checks a backup file whole: magic, well-formed keys, the count and the
/// digest over everything.
fn check_backup(file: &Path) -> Result<(), StoreError> {
    let bad = |why: &str| {
        StoreError::Corrupt(format!("{} is not a usable backup: {why}", file.display()))
    };
    let f = std::fs::File::open(file).map_err(io("opening the backup"))?;
    let total = f.metadata().map_err(io("reading the backup"))?.len();
    if total < (MAGIC.len() + 4 + 8 + 32) as u64 {
        return Err(bad("too short"));
    }
    let mut r = std::io::BufReader::with_capacity(1 << 20, f);
    let mut hasher = blake3::Hasher::new();
    let mut take = |n: usize| -> Result<Vec<u8>, StoreError> {
        let mut buf = vec![0; n];
        r.read_exact(&mut buf).map_err(|_| bad("truncated"))?;
        hasher.update(&buf);
        Ok(buf)
    };
    if take(MAGIC.len())? != MAGIC {
        return Err(bad("not a hashfed backup"));
    }
    let mut keys = 0u64;
    let mut consumed = MAGIC.len() as u64;
    loop {
        let klen = u32::from_be_bytes(take(4)?.try_into().map_err(|_| bad("truncated"))?);
        consumed += 4;
        if klen == END {
            break;
        }
        consumed += u64::from(klen) + 4;
        if consumed > total {
            return Err(bad("truncated"));
        }
        take(klen as usize)?;
        let vlen = u32::from_be_bytes(take(4)?.try_into().map_err(|_| bad("truncated"))?);
        consumed += u64::from(vlen);
        if consumed > total {
            return Err(bad("truncated"));
        }
        take(vlen as usize)?;
        keys += 1;
    }
    let count = u64::from_be_bytes(take(8)?.try_into().map_err(|_| bad("truncated"))?);
    let expected = hasher.finalize();
    let mut digest = [0; 32];
    r.read_exact(&mut digest).map_err(|_| bad("truncated"))?;
    let mut rest = [0; 1];
    if r.read(&mut rest).map_err(io("reading the backup"))? != 0 {
        return Err(bad("bytes after the digest"));
    }
    if count != keys || digest != *expected.as_bytes() {
        return Err(bad("its digest does not match: damaged or altered"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SetId, SetInfo};

    #[test]
    fn a_backup_restores_whole_and_a_damaged_one_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("a"), &StoreOptions::default()).unwrap();
        let set: SetId = "a/list".parse().unwrap();
        store
            .create_set(SetInfo::new(set.clone()), 1, crate::model::audit::unaudited)
            .unwrap();
        store
            .audit(
                1,
                crate::model::audit::Note::new(
                    "local-socket",
                    crate::model::audit::Action::SetCreated,
                    "a/list",
                    "",
                ),
            )
            .unwrap();
        let file = tmp.path().join("a.backup");
        let summary = store.backup(std::fs::File::create(&file).unwrap()).unwrap();
        assert!(summary.keys >= 4);
        let restored = tmp.path().join("b");
        Store::restore(&restored, &file, &StoreOptions::default()).unwrap();
        let b = Store::open(&restored, &StoreOptions::default()).unwrap();
        let original: Vec<_> = store.raw_scan().map(Result::unwrap).collect();
        let copy: Vec<_> = b.raw_scan().map(Result::unwrap).collect();
        assert_eq!(original, copy);
        // Not over an existing store.
        assert!(Store::restore(&restored, &file, &StoreOptions::default()).is_err());
        // One byte changed, or cut short: refused before anything is written.
        let bytes = std::fs::read(&file).unwrap();
        for damaged in [
            {
                let mut d = bytes.clone();
                d[20] ^= 1;
                d
            },
            bytes[..bytes.len() - 10].to_vec(),
        ] {
            std::fs::write(&file, &damaged).unwrap();
            let to = tmp.path().join("c");
            let err = Store::restore(&to, &file, &StoreOptions::default()).unwrap_err();
            assert!(err.to_string().contains("not a usable backup"), "{err}");
            assert!(!to.join("sled").exists());
        }
    }
}

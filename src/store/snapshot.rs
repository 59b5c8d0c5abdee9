//! A sequential copy of what the match index is built from, written when
//! the database closes cleanly, so that the next open reads one file
//! instead of tens of thousands of scattered sled pages.
//!
//! Why: sled spreads a large store over its log. Rebuilding a 10M-entry
//! index from it is fast when the OS has the file cached (a restart) but
//! takes over a minute of random reads after a reboot. The snapshot is
//! ~36 bytes per PDQ entry, read front to back.
//!
//! Safety: the snapshot names the store *generation* it reflects; every
//! write batch bumps the generation (in the same atomic batch), so a
//! snapshot is used only if nothing has been written since it was taken.
//! It ends with a BLAKE3 digest of everything before it, checked in a first
//! pass before anything is read from it; a torn or altered file is ignored
//! (and the index rebuilt from sled). Slots are also checked against the
//! store's slot counter. It is written to a temporary file, synced, and
//! renamed into place.
//!
//! Two files, written and checked the same way: `index.snapshot` (what
//! the match index holds) and `ids.snapshot` (the entry id → number map,
//! see [`super::entries`]; rebuilding it from sled reads every entry state,
//! 13 s at 10M entries here, against about 1 s from this file).
//!
//! Layout of `index.snapshot`: `HFIDX001`, generation u64, PDQ count u64,
//! then per PDQ entry slot u32 and code (32 bytes); exact count u64, then
//! per exact entry key length u16, key, entry id (16); then the digest
//! (32). Of `ids.snapshot`: `HFIDS001`, generation u64, count u64, then per
//! entry its id (16) and number u32; then the digest. Integers big-endian.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::sync::atomic::Ordering;

use super::entries::IdMap;
use super::{Matchable, Store, StoreError};
use crate::model::EntryId;

const MAGIC: &[u8; 8] = b"HFIDX001";
const INDEX_FILE: &str = "index.snapshot";
const IDS_MAGIC: &[u8; 8] = b"HFIDS001";
const IDS_FILE: &str = "ids.snapshot";

/// What [`Store::read_snapshot_file`] hands its reader.
type Reader = HashingReader<BufReader<File>>;

/// What a snapshot load found.
#[derive(Debug, PartialEq, Eq)]
pub enum SnapshotLoad {
    /// Loaded and verified: the sink saw exactly the index's contents.
    Loaded,
    /// No usable snapshot (absent, stale, or damaged: the reason is given);
    /// whatever the sink saw must be discarded.
    Unusable(String),
}

/// Hashes everything written through it.
struct Hashing<W: Write> {
    inner: W,
    hasher: blake3::Hasher,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Hashes everything read through it.
struct HashingReader<R: Read> {
    inner: R,
    hasher: blake3::Hasher,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

impl<R: Read> HashingReader<R> {
    fn array<const N: usize>(&mut self) -> std::io::Result<[u8; N]> {
        let mut out = [0; N];
        self.read_exact(&mut out)?;
        Ok(out)
    }
}

fn io_error(what: &str, e: std::io::Error) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

impl Store {
    /// Writes the index snapshot for the current generation, and the entry
    /// id map's beside it. The caller must hold off writers (the database
    /// does it on close) and pass the index's contents: PDQ `(slot, code
    /// bytes)` and exact `(key, entry)`.
    pub(crate) fn write_index_snapshot<'a>(
        &self,
        pdq: &[(u32, [u8; 32])],
        exact: impl Iterator<Item = (&'a [u8], EntryId)>,
    ) -> Result<(), StoreError> {
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let generation = self.generation.load(Ordering::SeqCst);
        self.write_snapshot_file(INDEX_FILE, MAGIC, generation, |w| {
            w.write_all(&(pdq.len() as u64).to_be_bytes())?;
            for (slot, code) in pdq {
                w.write_all(&slot.to_be_bytes())?;
                w.write_all(code)?;
            }
            let exact: Vec<_> = exact.collect();
            w.write_all(&(exact.len() as u64).to_be_bytes())?;
            for (key, id) in exact {
                w.write_all(&(key.len() as u16).to_be_bytes())?;
                w.write_all(key)?;
                w.write_all(&id.0)?;
            }
            Ok(())
        })?;
        let ids = self.ids.read().unwrap_or_else(|p| p.into_inner());
        self.write_snapshot_file(IDS_FILE, IDS_MAGIC, generation, |w| {
            w.write_all(&(ids.len() as u64).to_be_bytes())?;
            for (id, n) in ids.iter() {
                w.write_all(&id.0)?;
                w.write_all(&n.to_be_bytes())?;
            }
            Ok(())
        })?;
        tracing::info!(
            pdq = pdq.len(),
            entries = ids.len(),
            generation,
            "index snapshot written"
        );
        Ok(())
    }

    /// Writes `name`: magic, generation, what `body` writes, the digest;
    /// to a temporary file, synced, then renamed into place.
    fn write_snapshot_file(
        &self,
        name: &str,
        magic: &[u8; 8],
        generation: u64,
        body: impl FnOnce(&mut Hashing<BufWriter<File>>) -> std::io::Result<()>,
    ) -> Result<(), StoreError> {
        let tmp = self.path.join(format!("{name}.tmp"));
        let write = || -> std::io::Result<()> {
            let file = File::create(&tmp)?;
            let mut w = Hashing {
                inner: BufWriter::with_capacity(1 << 20, file),
                hasher: blake3::Hasher::new(),
            };
            w.write_all(magic)?;
            w.write_all(&generation.to_be_bytes())?;
            body(&mut w)?;
            let digest = w.hasher.finalize();
            let mut inner = w.inner;
            inner.write_all(digest.as_bytes())?;
            let file = inner.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            std::fs::rename(&tmp, self.path.join(name))?;
            File::open(&self.path)?.sync_all()
        };
        write().map_err(|e| io_error(&format!("writing {name}"), e))
    }

    /// Reads `name` with `body` if it is there, intact, has `magic` and is
    /// of the current generation; whatever `body` saw must be discarded
    /// unless this says [`SnapshotLoad::Loaded`].
    fn read_snapshot_file(
        &self,
        name: &str,
        magic: &[u8; 8],
        body: impl FnOnce(&mut Reader) -> std::io::Result<SnapshotLoad>,
    ) -> Result<SnapshotLoad, StoreError> {
        let path = self.path.join(name);
        match intact(&path) {
            Ok(true) => {}
            Ok(false) => return Ok(SnapshotLoad::Unusable("digest mismatch".into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(SnapshotLoad::Unusable("no snapshot".into()))
            }
            Err(e) => return Ok(SnapshotLoad::Unusable(format!("unreadable: {e}"))),
        }
        let file = File::open(&path).map_err(|e| io_error(&format!("opening {name}"), e))?;
        let mut r = HashingReader {
            inner: BufReader::with_capacity(1 << 20, file),
            hasher: blake3::Hasher::new(),
        };
        let current = self.generation.load(Ordering::SeqCst);
        let read = || -> std::io::Result<SnapshotLoad> {
            if &r.array::<8>()? != magic {
                return Ok(SnapshotLoad::Unusable("not a snapshot".into()));
            }
            let generation = u64::from_be_bytes(r.array()?);
            if generation != current {
                return Ok(SnapshotLoad::Unusable(format!(
                    "stale (generation {generation}, store at {current})"
                )));
            }
            if let unusable @ SnapshotLoad::Unusable(_) = body(&mut r)? {
                return Ok(unusable);
            }
            let expected = r.hasher.finalize();
            let mut digest = [0; 32];
            r.inner.read_exact(&mut digest)?;
            let mut trailing = [0; 1];
            if r.inner.read(&mut trailing)? != 0 {
                return Ok(SnapshotLoad::Unusable("bytes after the digest".into()));
            }
            Ok(if digest == *expected.as_bytes() {
                SnapshotLoad::Loaded
            } else {
                SnapshotLoad::Unusable("digest mismatch".into())
            })
        };
        Ok(match read() {
            Ok(outcome) => outcome,
            Err(e) => SnapshotLoad::Unusable(format!("unreadable: {e}")),
        })
    }

    /// The entry id map as the last clean close saw it, if nothing was
    /// written since.
    pub(super) fn load_ids_snapshot(&self) -> Result<Option<IdMap>, StoreError> {
        let bound = self.counter(super::keys::NEXT_ENTRY)?;
        let mut ids = IdMap::default();
        let outcome = self.read_snapshot_file(IDS_FILE, IDS_MAGIC, |r| {
            let count = u64::from_be_bytes(r.array()?);
            if count > bound {
                return Ok(SnapshotLoad::Unusable(format!(
                    "{count} entries, counter at {bound}"
                )));
            }
            ids = IdMap::with_capacity(count as usize);
            for _ in 0..count {
                let id = EntryId(r.array()?);
                let n = u32::from_be_bytes(r.array()?);
                if u64::from(n) >= bound {
                    return Ok(SnapshotLoad::Unusable(format!(
                        "entry number {n} out of range"
                    )));
                }
                ids.insert(id, n);
            }
            Ok(SnapshotLoad::Loaded)
        })?;
        Ok(match outcome {
            SnapshotLoad::Loaded => Some(ids),
            SnapshotLoad::Unusable(why) => {
                tracing::debug!(reason = %why, "entry id snapshot not used");
                None
            }
        })
    }

    /// Feeds the snapshot's contents to `sink` if the snapshot is there,
    /// intact and of the current generation.
    pub(crate) fn load_index_snapshot(
        &self,
        mut sink: impl FnMut(Matchable),
    ) -> Result<SnapshotLoad, StoreError> {
        let slot_bound = self.counter(super::keys::NEXT_SLOT)?;
        self.read_snapshot_file(INDEX_FILE, MAGIC, |r| {
            let pdq = u64::from_be_bytes(r.array()?);
            for _ in 0..pdq {
                let slot = u32::from_be_bytes(r.array()?);
                let code: [u8; 32] = r.array()?;
                if u64::from(slot) >= slot_bound {
                    return Ok(SnapshotLoad::Unusable(format!("slot {slot} out of range")));
                }
                sink(Matchable::Pdq {
                    slot,
                    code: crate::signal::pdq::PdqHash::from_bytes(code).to_words(),
                });
            }
            let exact = u64::from_be_bytes(r.array()?);
            for _ in 0..exact {
                let len = u16::from_be_bytes(r.array()?) as usize;
                let mut key = vec![0; len];
                r.read_exact(&mut key)?;
                let entry = EntryId(r.array()?);
                sink(Matchable::Exact { key, entry });
            }
            Ok(SnapshotLoad::Loaded)
        })
    }
}

/// Whether the file's last 32 bytes are the BLAKE3 digest of the rest.
fn intact(path: &std::path::Path) -> std::io::Result<bool> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    if len < 32 {
        return Ok(false);
    }
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut hasher = blake3::Hasher::new();
    std::io::copy(&mut (&mut r).take(len - 32), &mut hasher)?;
    let mut digest = [0; 32];
    r.read_exact(&mut digest)?;
    Ok(digest == *hasher.finalize().as_bytes())
}

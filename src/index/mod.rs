//! In-memory match indexes, rebuilt from the store at start and kept current
//! incrementally afterwards (never a periodic full rebuild).
//!
//! * [`pdq`]: radius search over 256-bit PDQ codes (multi-index hashing, with
//!   a linear scan where that is cheaper);
//! * [`exact`]: exact values (MD5, SHA-1, SHA-256, BLAKE3, opaque types).

pub mod exact;
mod huge;
pub mod pdq;

//! Signal types: how content becomes hashes.
//!
//! `pdq` holds the perceptual hash (all of its arithmetic), `exact` the
//! cryptographic digests, and `decode` turns untrusted image bytes into pixels
//! under limits.

pub mod pdq;

//! Signal types: how content becomes hashes.
//!
//! * [`pdq`]: the perceptual hash, all of its arithmetic and nothing else;
//! * [`exact`]: MD5, SHA-1, SHA-256 and BLAKE3 of raw bytes, in one pass;
//! * [`decode`]: untrusted image bytes to pixels, under limits;
//! * [`content`]: all of the above for one piece of content.

pub mod content;
pub mod decode;
pub mod exact;
pub mod pdq;

//! The gRPC services a node serves, over tonic.
//!
//! * [`matching`]: the match service for local services;
//! * [`admin`]: the admin service for operators and the CLI (its
//!   whole-database reads, export and verify, are in `admin_read.rs`);
//! * [`status`]: operations' errors as gRPC statuses;
//! * [`client`]: connecting to a node's Unix sockets.
//!
//! The generated types and the conversions to and from them are in
//! [`crate::wire`].
//!
//! Which service is reachable on which listener, and with which
//! certificates, is decided by the running node (`src/server/`).

pub mod admin;
mod admin_read;
pub mod client;
pub mod matching;
pub mod status;

pub use crate::wire::MAX_MESSAGE_BYTES;

/// Largest message the match service accepts: an image up to
/// [`matching::MAX_IMAGE_BYTES`] and its envelope.
pub const MAX_MATCH_MESSAGE_BYTES: usize = matching::MAX_IMAGE_BYTES + (64 << 10);

//! The gRPC services a node serves, over tonic.
//!
//! * [`proto`]: the generated types (from `proto/hashfed/v1/`);
//! * [`matching`]: the match service for local services;
//! * [`admin`]: the admin service for operators and the CLI (its
//!   whole-database reads, export and verify, are in `admin_read.rs`);
//! * [`wire`]: conversions between the wire types and the library's;
//! * [`client`]: connecting to a node's Unix sockets.
//!
//! Which service is reachable on which listener, and with which
//! certificates, is decided in [`crate::server`].

pub mod admin;
mod admin_read;
pub mod client;
pub mod matching;
pub mod wire;

/// Types generated from `proto/hashfed/v1/*.proto`.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("hashfed.v1");

    /// The compiled schema, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/hashfed_descriptors.bin"));
}

/// Largest message the admin and federation services accept (a batch of
/// 1024 PDQ queries with all variants is about 300 KiB; import chunks are
/// sent in pieces of 256 KiB).
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;

/// Largest message the match service accepts: an image up to
/// [`matching::MAX_IMAGE_BYTES`] and its envelope.
pub const MAX_MATCH_MESSAGE_BYTES: usize = matching::MAX_IMAGE_BYTES + (64 << 10);

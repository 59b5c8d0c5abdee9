//! hashfed: a hash-sharing federation node for child-safety work.
//!
//! The binary (`src/main.rs`) is a thin command line over this library; the
//! integration tests and benchmarks use the same library.
//!
//! Every public item says what it is for (`missing_docs`), and unsafe code
//! is refused except on the few items that allow it, each with a
//! `// SAFETY:` comment that proves it (CPU feature dispatch, a prefetch
//! hint, `madvise`). `clippy.toml` keeps sled in [`store`] and TLS in
//! [`identity`].

#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod config;
pub mod database;
pub mod error;
pub mod exchange;
pub mod export;
pub mod federation;
pub mod identity;
pub mod import;
pub mod index;
pub mod metrics;
pub mod model;
pub mod ops;
pub mod peers;
pub mod report;
pub mod server;
pub mod service;
pub mod signal;
pub mod store;
pub mod tasks;
pub mod wire;

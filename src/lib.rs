//! hashfed: a hash-sharing federation node for child-safety work.
//!
//! The binary (`src/main.rs`) is a thin command line over this library; the
//! integration tests and benchmarks use the same library.

pub mod database;
pub mod export;
pub mod federation;
pub mod identity;
pub mod import;
pub mod index;
pub mod metrics;
pub mod model;
pub mod peers;
pub mod report;
pub mod server;
pub mod service;
pub mod signal;
pub mod store;

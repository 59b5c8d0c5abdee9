//! The integration tests, as one binary: every file here links tonic,
//! rustls and sled, and linking them once instead of once per file keeps
//! the CI run's test build short. Each module is what a `tests/*.rs` file
//! would be; `cargo test --test it MODULE` runs one of them.

mod common;
mod nodes;

mod allowlists;
mod audit;
mod audit_crash;
mod cli_admin;
mod cli_hash;
mod crash_loop;
mod data_minimisation;
mod database;
mod demo;
mod dev_certs;
mod exchanges;
mod faults;
mod federation;
mod federation_crash;
mod governance;
mod identity;
mod import_export;
mod layers;
mod match_service;
mod pdq_vectors;
mod python_client;
mod security;

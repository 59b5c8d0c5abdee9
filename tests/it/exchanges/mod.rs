//! The live exchanges against local stand-ins of their services
//! (`standin.rs`): each client's paging, deletions, feedback and
//! misbehaviours (one file per service), and the fetcher that keeps a
//! set current from them.

mod crash;
mod http;
mod ncmec;
pub mod standin;
mod stopncii;
mod tcap;
mod threatexchange;

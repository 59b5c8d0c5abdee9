//! The live exchanges against local stand-ins of their services
//! (`standin.rs`): each client's paging, deletions, feedback and
//! misbehaviours (one file per service), and the fetcher that keeps a
//! set current from them: a real node per service (`node.rs`, shared).

mod crash;
mod http;
mod ncmec;
mod node;
pub mod standin;
mod stopncii;
mod tcap;
mod threatexchange;

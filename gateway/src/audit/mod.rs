//! The gateway's access log: every call that reaches the gateway with a
//! certificate from the partnership CA, allowed or denied, as a hash-chained,
//! append-only record, with periodically signed checkpoints.
//!
//! - [`log`]: the sled-backed log, its chain, and the checkpoint signer.
//! - [`service`]: `orex.audit.v1.AuditService` for auditors.
//! - [`verify`]: what `orex audit verify` runs on downloaded records.
//!
//! Why a hash chain rather than a Merkle tree: auditors verify the whole
//! log (or the range since their last verified checkpoint) by downloading it,
//! which a chain makes trivial to implement in any language; a member's
//! auditors, who may not read other members' records, receive those as
//! redacted links (index and hashes only) and still follow the chain across
//! them. A Merkle tree would add inclusion proofs for single records, which no
//! auditor workflow here needs yet.

pub mod log;
pub mod service;
pub mod verify;

pub use log::{AuditError, AuditLog};

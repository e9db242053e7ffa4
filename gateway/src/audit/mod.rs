//! The gateway's access log: every call that reaches the gateway with a
//! certificate from the partnership CA, allowed or denied, as a hash-chained,
//! append-only record, with periodically signed checkpoints.
//!
//! - [`log`]: the sled-backed log, its chain, and the checkpoint signer.
//! - [`service`]: `orex.audit.v1.AuditService` for auditors.
//! - [`page`]: the byte budget every answer of that service keeps.
//! - [`verify`]: the streaming verifier `orex audit verify` feeds page by
//!   page, in constant memory whatever the log's size.
//! - [`witness`]: checkpoints also kept outside the store, so a log that
//!   lost its tail is refused at start.
//!
//! Why a hash chain rather than a Merkle tree: auditors verify the whole
//! log by downloading it from index 0, which a chain makes trivial to implement in any language; a member's
//! auditors, who may not read other members' records, receive those as
//! redacted links (index and hashes only) and still follow the chain across
//! them. A Merkle tree would add inclusion proofs for single records, which no
//! auditor workflow here needs yet.

pub mod log;
pub mod page;
pub mod service;
pub mod verify;
pub mod witness;

pub use log::{AuditError, AuditLog};
pub use page::{CLIENT_DECODE_LIMIT, MAX_RANGE_RECORDS, PAGE_BYTES};

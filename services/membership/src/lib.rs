//! The partnership model that the gateway and every service share, so that the
//! rules for who may see what are written once.
//!
//! - [`policy`]: the policy file (members, blocs, issuers), parsed and checked.
//! - [`principal`]: an authenticated caller and its roles.
//! - [`visibility`]: the FIRST TLP 2.0 rules applied to every get, list and stream.

pub mod policy;
pub mod principal;
pub mod visibility;

pub use policy::{IssuerConfig, Member, MemberKind, Partnership, PolicyError, TokenAlgorithm};
pub use principal::{Principal, Role};
pub use visibility::Audience;

//! The partnership model that the gateway and every service share, so that the
//! rules for who may see what are written once.
//!
//! - [`policy`]: the policy file (members, blocs, issuers, rate limits, auditors), parsed and checked.
//! - [`permissions`]: which roles may call which RPCs.
//! - [`principal`]: an authenticated caller and its roles.
//! - [`visibility`]: the FIRST TLP 2.0 rules applied to every get, list and stream.

pub mod permissions;
pub mod policy;
pub mod principal;
pub mod visibility;

pub use orex_proto::common::v1::PrincipalRef;
pub use permissions::Permissions;
pub use policy::{
    IssuerConfig, Member, MemberKind, MethodClass, Partnership, PolicyError, Rate, RateLimits,
    TokenAlgorithm,
};
pub use principal::{Principal, Role};
pub use visibility::{Audience, partnership_wide};

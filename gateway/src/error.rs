//! Why the gateway refuses a call, and the one place that becomes a status.

use std::time::Duration;

use orex_kit::status::{self, Reason};
use tonic::{Code, Status};

/// A refusal by the gateway.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    /// The caller's certificate or token failed a check; the reason and
    /// the message say which.
    #[error("{1}")]
    Unauthenticated(Reason, String),
    /// The token lacks a required claim.
    #[error("token lacks the {0} claim")]
    MissingClaim(&'static str),
    /// The caller is known but may not do this; the message names the
    /// missing permission, never the protected data.
    #[error("{1}")]
    PermissionDenied(Reason, String),
    /// The member is over its rate limit for this class of call.
    #[error("rate limit of member {member} for {class} calls exceeded; retry in {} ms", retry_after.as_millis())]
    RateLimited {
        /// The member.
        member: String,
        /// read, write or stream.
        class: &'static str,
        /// When a retry can succeed.
        retry_after: Duration,
    },
    /// The member holds as many open streams as the policy allows.
    #[error("member {member} already has {cap} streams open; close one or wait for one to end")]
    TooManyStreams {
        /// The member.
        member: String,
        /// Its cap.
        cap: u32,
    },
    /// Too many calls are in flight (the gateway's or the member's bound).
    #[error("{}; retry in {} ms", match bound {
        crate::load::Bound::Total(n) => format!("the gateway is at its bound of {n} calls in flight"),
        crate::load::Bound::Member(n) => format!("your member is at its bound of {n} calls in flight"),
    }, crate::load::RETRY_AFTER.as_millis())]
    Overloaded {
        /// The bound that is full.
        bound: crate::load::Bound,
    },
    /// A request field is bad; the message starts with the field.
    #[error("{0}")]
    InvalidArgument(String),
    /// Nothing of that kind exists yet.
    #[error("{0}")]
    NotFound(String),
    /// A position past the end of the log.
    #[error("{0}")]
    OutOfRange(String),
    /// The access log could not be read.
    #[error("the access log cannot be read right now")]
    AuditRead,
    /// The access record could not be written, so the call was not made.
    #[error("the access log cannot be written; the call was not forwarded (retry later)")]
    AuditUnavailable,
}

impl From<GatewayError> for Status {
    fn from(e: GatewayError) -> Self {
        let message = e.to_string();
        match e {
            GatewayError::Unauthenticated(reason, _) => {
                status::error(Code::Unauthenticated, reason, message)
            }
            GatewayError::MissingClaim(claim) => status::error_with(
                Code::Unauthenticated,
                Reason::TokenClaimMissing,
                message,
                &[("claim", claim)],
            ),
            GatewayError::PermissionDenied(reason, _) => {
                status::error(Code::PermissionDenied, reason, message)
            }
            GatewayError::TooManyStreams { .. } => {
                status::error(Code::ResourceExhausted, Reason::TooManyStreams, message)
            }
            GatewayError::RateLimited { retry_after, .. } => status::retry_later(
                Code::ResourceExhausted,
                Reason::RateLimited,
                message,
                retry_after,
            ),
            GatewayError::Overloaded { .. } => status::retry_later(
                Code::ResourceExhausted,
                Reason::Overloaded,
                message,
                crate::load::RETRY_AFTER,
            ),
            // The message starts with the field: "page_size: must be …".
            GatewayError::InvalidArgument(m) => {
                let (field, description) = m.split_once(": ").unwrap_or(("", m.as_str()));
                let reason = if field == "page_token" {
                    Reason::PageTokenInvalid
                } else {
                    Reason::InvalidField
                };
                status::invalid_field_as(reason, field, description)
            }
            GatewayError::OutOfRange(_) => {
                status::error(Code::OutOfRange, Reason::OutOfRange, message)
            }
            GatewayError::NotFound(_) => status::error(Code::NotFound, Reason::NotFound, message),
            GatewayError::AuditRead | GatewayError::AuditUnavailable => status::retry_later(
                Code::Unavailable,
                Reason::AuditUnavailable,
                message,
                AUDIT_RETRY,
            ),
        }
    }
}

/// The retry hint when the access log cannot be written or read.
const AUDIT_RETRY: Duration = Duration::from_secs(1);

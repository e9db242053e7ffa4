//! Why the gateway refuses a call, and the one place that becomes a status.

use std::time::Duration;

use tonic::Status;
use tonic::metadata::MetadataMap;

/// A refusal by the gateway.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    /// The caller's certificate or token failed a check; the message says which.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is known but may not do this; the message names the
    /// missing permission, never the protected data.
    #[error("{0}")]
    PermissionDenied(String),
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
        match &e {
            GatewayError::Unauthenticated(m) => Status::unauthenticated(m.clone()),
            GatewayError::PermissionDenied(m) => Status::permission_denied(m.clone()),
            GatewayError::TooManyStreams { .. } => Status::resource_exhausted(e.to_string()),
            GatewayError::RateLimited { retry_after, .. } => retry_later(&e, *retry_after),
            GatewayError::Overloaded { .. } => retry_later(&e, crate::load::RETRY_AFTER),
            GatewayError::InvalidArgument(m) => Status::invalid_argument(m.clone()),
            GatewayError::OutOfRange(m) => Status::out_of_range(m.clone()),
            GatewayError::NotFound(m) => Status::not_found(m.clone()),
            GatewayError::AuditRead | GatewayError::AuditUnavailable => {
                Status::unavailable(e.to_string())
            }
        }
    }
}

/// RESOURCE_EXHAUSTED with the `retry-after-ms` metadata a client can wait on.
fn retry_later(e: &GatewayError, retry_after: Duration) -> Status {
    let mut md = MetadataMap::new();
    if let Ok(v) = retry_after.as_millis().to_string().parse() {
        md.insert("retry-after-ms", v);
    }
    Status::with_metadata(tonic::Code::ResourceExhausted, e.to_string(), md)
}

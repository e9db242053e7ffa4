//! Why the gateway refuses a call, and the one place that becomes a status.

use tonic::Status;

/// A refusal by the gateway.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    /// The caller's certificate or token failed a check; the message says which.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is known but may not do this.
    #[error("{0}")]
    PermissionDenied(String),
}

impl From<GatewayError> for Status {
    fn from(e: GatewayError) -> Self {
        match e {
            GatewayError::Unauthenticated(m) => Status::unauthenticated(m),
            GatewayError::PermissionDenied(m) => Status::permission_denied(m),
        }
    }
}

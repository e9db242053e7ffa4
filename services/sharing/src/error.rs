//! The sharing service's errors, and the one place they become gRPC statuses.

use orex_kit::KitError;
use tonic::Status;

/// Everything a sharing call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum SharingError {
    /// A field of the request is missing or out of range.
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// The field path, as in the .proto (`content.severity`).
        field: String,
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// The call carries no verified principal.
    #[error("{0}")]
    Unauthenticated(String),
    /// A stream start point beyond the end of the log.
    #[error("{0}")]
    OutOfRange(String),
    /// No report with this id that the caller may see.
    #[error("report {0} not found")]
    NotFound(String),
    /// The caller lacks a role or is not of the author's member.
    #[error("{0}")]
    PermissionDenied(String),
    /// The report's state does not allow the transition.
    #[error("{0}")]
    FailedPrecondition(String),
    /// Optimistic concurrency: the report changed since the caller read it.
    #[error("{0}")]
    Aborted(String),
    /// The store failed; details go to the log only.
    #[error("store: {0}")]
    Store(#[from] KitError),
    /// A sled error inside a transaction.
    #[error("store: {0}")]
    Sled(#[from] sled::Error),
}

impl SharingError {
    /// Shorthand for an INVALID_ARGUMENT naming `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<SharingError> for Status {
    fn from(e: SharingError) -> Self {
        match e {
            SharingError::InvalidArgument { .. } => Status::invalid_argument(e.to_string()),
            SharingError::Unauthenticated(m) => Status::unauthenticated(m),
            SharingError::OutOfRange(m) => Status::out_of_range(m),
            SharingError::NotFound(_) => Status::not_found(e.to_string()),
            SharingError::PermissionDenied(m) => Status::permission_denied(m),
            SharingError::FailedPrecondition(m) => Status::failed_precondition(m),
            SharingError::Aborted(m) => Status::aborted(m),
            SharingError::Store(KitError::Corrupt(_)) => {
                tracing::error!(error = %e, "sharing store is corrupt");
                Status::data_loss(
                    "stored report data is damaged; operators have been alerted in the log",
                )
            }
            SharingError::Store(_) | SharingError::Sled(_) => {
                tracing::error!(error = %e, "sharing store failure");
                Status::unavailable(
                    "the report store is unavailable; retry with the same request_id",
                )
            }
        }
    }
}

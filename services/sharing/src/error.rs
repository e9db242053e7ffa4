//! The sharing service's errors, and the one place they become gRPC statuses.

use orex_kit::KitError;
use orex_kit::status::{self, Reason};
use tonic::{Code, Status};

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
    /// The caller lacks a role, its member is suspended, or it is not of
    /// the author's member; the reason says which.
    #[error("{1}")]
    PermissionDenied(Reason, String),
    /// The report's state does not allow the transition.
    #[error("{message}")]
    FailedPrecondition {
        /// The report, as `report/<id>`.
        subject: String,
        /// What its state is and what the transition needs.
        message: String,
    },
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

impl SharingError {
    /// FAILED_PRECONDITION about report `id`.
    pub fn status_conflict(id: &str, message: impl Into<String>) -> Self {
        Self::FailedPrecondition {
            subject: format!("report/{id}"),
            message: message.into(),
        }
    }
}

impl From<orex_kit::fields::FieldError> for SharingError {
    fn from(e: orex_kit::fields::FieldError) -> Self {
        Self::InvalidArgument {
            field: e.field,
            reason: e.reason,
        }
    }
}

impl From<SharingError> for Status {
    fn from(e: SharingError) -> Self {
        match e {
            SharingError::InvalidArgument { field, reason } => {
                orex_kit::fields::FieldError { field, reason }.into()
            }
            SharingError::Unauthenticated(m) => {
                status::error(Code::Unauthenticated, Reason::PrincipalMissing, m)
            }
            SharingError::OutOfRange(m) => status::error(Code::OutOfRange, Reason::OutOfRange, m),
            SharingError::NotFound(_) => {
                status::error(Code::NotFound, Reason::NotFound, e.to_string())
            }
            SharingError::PermissionDenied(reason, m) => {
                status::error(Code::PermissionDenied, reason, m)
            }
            SharingError::FailedPrecondition { subject, message } => {
                status::precondition(Reason::ReportStatusConflict, &subject, message)
            }
            SharingError::Aborted(m) => status::error(Code::Aborted, Reason::VersionConflict, m),
            SharingError::Store(e) => status::store_failure("report", &e),
            SharingError::Sled(e) => status::store_failure("report", &KitError::Store(e)),
        }
    }
}

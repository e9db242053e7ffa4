//! The emergency service's errors, and the one place they become gRPC statuses.

use orex_kit::KitError;
use orex_kit::status::{self, Reason};
use tonic::{Code, Status};

/// Everything an emergency call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum EmergencyError {
    /// A field of the request is missing or out of range.
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// The field path, as in the .proto (`declaration.mineral`).
        field: String,
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// The call carries no verified principal.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller may not do this; the reason says why.
    #[error("{1}")]
    PermissionDenied(Reason, String),
    /// No case (or pledge) with this id.
    #[error("{0} not found")]
    NotFound(String),
    /// The case's status does not allow the call.
    #[error("{message}")]
    CaseStatus {
        /// The case, as `case/<id>`.
        subject: String,
        /// Its status and what the call needs.
        message: String,
    },
    /// Deliveries would exceed the pledge.
    #[error("{message}")]
    PledgeExceeded {
        /// The pledge, as `pledge/<id>`.
        subject: String,
        /// By how much.
        message: String,
    },
    /// The caller's voting member already voted.
    #[error("{0}")]
    AlreadyVoted(String),
    /// A stream start point beyond the end of the log.
    #[error("{0}")]
    OutOfRange(String),
    /// The store failed; details go to the log only.
    #[error("store: {0}")]
    Store(#[from] KitError),
    /// A sled error inside a transaction.
    #[error("store: {0}")]
    Sled(#[from] sled::Error),
    /// A bug: details go to the log only.
    #[error("internal: {0}")]
    Internal(String),
}

impl EmergencyError {
    /// Shorthand for an INVALID_ARGUMENT naming `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// FAILED_PRECONDITION about case `id`.
    pub fn case_status(id: &str, message: impl Into<String>) -> Self {
        Self::CaseStatus {
            subject: format!("case/{id}"),
            message: message.into(),
        }
    }
}

impl From<orex_kit::fields::FieldError> for EmergencyError {
    fn from(e: orex_kit::fields::FieldError) -> Self {
        Self::InvalidArgument {
            field: e.field,
            reason: e.reason,
        }
    }
}

impl From<EmergencyError> for Status {
    fn from(e: EmergencyError) -> Self {
        match e {
            EmergencyError::InvalidArgument { field, reason } => {
                orex_kit::fields::FieldError { field, reason }.into()
            }
            EmergencyError::Unauthenticated(m) => {
                status::error(Code::Unauthenticated, Reason::PrincipalMissing, m)
            }
            EmergencyError::PermissionDenied(reason, m) => {
                status::error(Code::PermissionDenied, reason, m)
            }
            EmergencyError::NotFound(_) => {
                status::error(Code::NotFound, Reason::NotFound, e.to_string())
            }
            EmergencyError::CaseStatus { subject, message } => {
                status::precondition(Reason::CaseStatusConflict, &subject, message)
            }
            EmergencyError::PledgeExceeded { subject, message } => {
                status::precondition(Reason::PledgeExceeded, &subject, message)
            }
            EmergencyError::AlreadyVoted(m) => {
                status::error(Code::AlreadyExists, Reason::AlreadyVoted, m)
            }
            EmergencyError::OutOfRange(m) => status::error(Code::OutOfRange, Reason::OutOfRange, m),
            EmergencyError::Store(e) => status::store_failure("emergency", &e),
            EmergencyError::Sled(e) => status::store_failure("emergency", &KitError::Store(e)),
            EmergencyError::Internal(m) => {
                tracing::error!(error = %m, "emergency service internal error");
                status::error(
                    Code::Internal,
                    Reason::Internal,
                    "internal error; operators have the details in their log",
                )
            }
        }
    }
}

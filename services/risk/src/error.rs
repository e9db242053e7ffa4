//! The risk service's errors, and the one place they become gRPC statuses.

use orex_kit::status::{self, Reason};
use tonic::{Code, Status};

use crate::assess::AssessError;

/// Everything a risk call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RiskError {
    /// A field of the request is missing or out of range.
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// The field path, as in the .proto (`scenario.cut_fraction`).
        field: String,
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// The caller lacks the role the call needs.
    #[error("this call needs the {0} role")]
    RoleMissing(&'static str),
    /// The reference data has no figures for what was asked.
    #[error("{0}")]
    NotFound(String),
    /// A stream start point beyond the end of the alert log.
    #[error("{0}")]
    OutOfRange(String),
    /// Figures that should enter the formula do not; details go to the log.
    #[error("{0}")]
    Internal(String),
}

impl RiskError {
    /// Shorthand for an INVALID_ARGUMENT naming `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<AssessError> for RiskError {
    fn from(e: AssessError) -> Self {
        match e {
            AssessError::NotFound(m) => Self::NotFound(m),
            AssessError::Formula(f) => Self::Internal(f.to_string()),
        }
    }
}

impl From<orex_kit::fields::FieldError> for RiskError {
    fn from(e: orex_kit::fields::FieldError) -> Self {
        Self::InvalidArgument {
            field: e.field,
            reason: e.reason,
        }
    }
}

impl From<RiskError> for Status {
    fn from(e: RiskError) -> Self {
        match e {
            RiskError::InvalidArgument { field, reason } => {
                orex_kit::fields::FieldError { field, reason }.into()
            }
            RiskError::RoleMissing(_) => {
                status::error(Code::PermissionDenied, Reason::RoleMissing, e.to_string())
            }
            RiskError::NotFound(m) => status::error(Code::NotFound, Reason::NotFound, m),
            RiskError::OutOfRange(m) => status::error(Code::OutOfRange, Reason::OutOfRange, m),
            RiskError::Internal(m) => {
                tracing::error!(error = %m, "risk computation failed");
                status::error(
                    Code::Internal,
                    Reason::Internal,
                    "the risk service failed; operators have the details in its log",
                )
            }
        }
    }
}

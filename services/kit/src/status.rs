//! The orex error model: every error a caller can act on carries, besides
//! its code and message, the standard `google.rpc` details (the
//! `grpc-status-details-bin` trailer, read by every gRPC library's "rich
//! error" support):
//!
//! - always an `ErrorInfo` with domain [`DOMAIN`] and a stable [`Reason`]
//!   a program can branch on (messages are for people and may change);
//! - `BadRequest` field violations for INVALID_ARGUMENT about a field;
//! - `RetryInfo` (and the `retry-after-ms` metadata older clients read) for
//!   RESOURCE_EXHAUSTED and UNAVAILABLE that a retry can cure;
//! - `PreconditionFailure` for FAILED_PRECONDITION.
//!
//! Services and the gateway build statuses only through this module, in
//! their one error-to-status mapping, so the table in
//! `gateway/SECURITY-MODEL.md` §3 is the whole vocabulary.

use std::time::Duration;

use tonic::metadata::MetadataMap;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo.domain` of every orex error.
pub const DOMAIN: &str = "orex";

macro_rules! reasons {
    ($( $(#[$doc:meta])* $variant:ident = $text:literal, )*) => {
        /// Why a call failed, as the `ErrorInfo.reason` clients branch on.
        /// The strings are a stable interface: add, never rename.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason {
            $( $(#[$doc])* $variant, )*
        }

        impl Reason {
            /// Every reason, in the documented order.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)*];

            /// The reason as it travels (`TOKEN_EXPIRED`).
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Reason::$variant => $text, )*
                }
            }
        }
    };
}

reasons! {
    /// No client certificate on the connection.
    CertificateMissing = "CERTIFICATE_MISSING",
    /// The certificate carries no single `spiffe://orex/` identity.
    CertificateNoIdentity = "CERTIFICATE_NO_IDENTITY",
    /// A workload's certificate where a member's is needed.
    CertificateNotMember = "CERTIFICATE_NOT_MEMBER",
    /// The certificate names a member the policy does not know.
    MemberUnknown = "MEMBER_UNKNOWN",
    /// No bearer token (or not `Bearer <token>`, or empty).
    TokenMissing = "TOKEN_MISSING",
    /// More than one `authorization` value.
    TokenAmbiguous = "TOKEN_AMBIGUOUS",
    /// The token does not parse, is unsigned or uses an unknown algorithm.
    TokenMalformed = "TOKEN_MALFORMED",
    /// `iss` is not the caller's member's issuer.
    TokenIssuerUntrusted = "TOKEN_ISSUER_UNTRUSTED",
    /// The header's algorithm is not allowed for the issuer.
    TokenAlgorithmNotAllowed = "TOKEN_ALGORITHM_NOT_ALLOWED",
    /// The signature does not verify.
    TokenSignatureInvalid = "TOKEN_SIGNATURE_INVALID",
    /// `exp` has passed (also: a stream reached its token's expiry).
    TokenExpired = "TOKEN_EXPIRED",
    /// `nbf` is in the future.
    TokenNotYetValid = "TOKEN_NOT_YET_VALID",
    /// `aud` is not the gateway's audience.
    TokenAudienceMismatch = "TOKEN_AUDIENCE_MISMATCH",
    /// A required claim is missing (`ErrorInfo.metadata["claim"]` names it).
    TokenClaimMissing = "TOKEN_CLAIM_MISSING",
    /// `iat` is in the future or `exp` − `iat` exceeds the issuer's maximum.
    TokenLifetimeTooLong = "TOKEN_LIFETIME_TOO_LONG",
    /// `sub` is not 1–256 visible ASCII characters.
    TokenSubjectInvalid = "TOKEN_SUBJECT_INVALID",
    /// The token carries no `cnf.x5t#S256` certificate binding.
    CnfMissing = "CNF_MISSING",
    /// The token is bound to another certificate.
    CnfMismatch = "CNF_MISMATCH",
    /// (At a service) the call carries no forwarded principal.
    PrincipalMissing = "PRINCIPAL_MISSING",
    /// The caller's member is suspended (or not an active member).
    MemberSuspended = "MEMBER_SUSPENDED",
    /// None of the caller's roles may call the method.
    RoleMissing = "ROLE_MISSING",
    /// Only principals of the report author's member may change it.
    NotAuthorMember = "NOT_AUTHOR_MEMBER",
    /// (At a service) the peer is not an allow-listed workload.
    WorkloadNotAllowed = "WORKLOAD_NOT_ALLOWED",
    /// The member's (or certificate's) rate limit for this class is spent.
    RateLimited = "RATE_LIMITED",
    /// The gateway's or the member's bound of calls in flight is full.
    Overloaded = "OVERLOADED",
    /// The member holds as many open streams as the policy allows.
    TooManyStreams = "TOO_MANY_STREAMS",
    /// The stream's client read too slowly; resume from the sequence named.
    SlowConsumer = "SLOW_CONSUMER",
    /// The request message is larger than the server accepts.
    RequestTooLarge = "REQUEST_TOO_LARGE",
    /// A request field is bad (`BadRequest` names it).
    InvalidField = "INVALID_FIELD",
    /// The request bytes are not a valid message of the method's type.
    MalformedRequest = "MALFORMED_REQUEST",
    /// A page token not issued to this caller for this query.
    PageTokenInvalid = "PAGE_TOKEN_INVALID",
    /// Nothing of that kind exists, or the caller may not see it.
    NotFound = "NOT_FOUND",
    /// A position past the end (a log index, a stream sequence).
    OutOfRange = "OUT_OF_RANGE",
    /// The report's status does not allow the change.
    ReportStatusConflict = "REPORT_STATUS_CONFLICT",
    /// The report changed since the caller read it.
    VersionConflict = "VERSION_CONFLICT",
    /// The shortage case's status does not allow the call
    /// (`PreconditionFailure` names the case and its status).
    CaseStatusConflict = "CASE_STATUS_CONFLICT",
    /// The caller's voting member (its bloc, for a bloc state) already voted
    /// on the case.
    AlreadyVoted = "ALREADY_VOTED",
    /// The caller's voting member is not entitled to vote on the case (it
    /// joined after the case was declared).
    NotEligibleToVote = "NOT_ELIGIBLE_TO_VOTE",
    /// The call concerns a pledge, stockpile or case of another member.
    NotOwnMember = "NOT_OWN_MEMBER",
    /// A delivery would exceed what was pledged.
    PledgeExceeded = "PLEDGE_EXCEEDED",
    /// The access record could not be written or read; nothing was done.
    AuditUnavailable = "AUDIT_UNAVAILABLE",
    /// A service or its store is unreachable or failing; retry.
    ServiceUnavailable = "SERVICE_UNAVAILABLE",
    /// The server is shutting down; retry elsewhere or later.
    ShuttingDown = "SHUTTING_DOWN",
    /// Stored data is damaged; operators have been alerted.
    DataDamaged = "DATA_DAMAGED",
    /// The method is not served by this server.
    MethodNotServed = "METHOD_NOT_SERVED",
    /// Anything else; operators have the details in their log.
    Internal = "INTERNAL",
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Reason {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        Reason::ALL
            .iter()
            .copied()
            .find(|r| r.as_str() == s)
            .ok_or(())
    }
}

/// A status with `ErrorInfo { reason, domain: "orex" }`.
pub fn error(code: Code, reason: Reason, message: impl Into<String>) -> Status {
    with_details(code, message, info(reason, &[]), MetadataMap::new())
}

/// [`error`] with `ErrorInfo.metadata` (short facts a program may use, like
/// the missing claim's name).
pub fn error_with(
    code: Code,
    reason: Reason,
    message: impl Into<String>,
    metadata: &[(&str, &str)],
) -> Status {
    with_details(code, message, info(reason, metadata), MetadataMap::new())
}

/// INVALID_ARGUMENT about `field` (the path as in the .proto,
/// `content.severity`): the message `"<field>: <description>"`, a
/// `BadRequest` field violation and `ErrorInfo` INVALID_FIELD.
pub fn invalid_field(field: &str, description: &str) -> Status {
    invalid_field_as(Reason::InvalidField, field, description)
}

/// [`invalid_field`] with a more specific reason (`PAGE_TOKEN_INVALID`).
pub fn invalid_field_as(reason: Reason, field: &str, description: &str) -> Status {
    let mut details = info(reason, &[]);
    details.add_bad_request_violation(field, description);
    with_details(
        Code::InvalidArgument,
        format!("{field}: {description}"),
        details,
        MetadataMap::new(),
    )
}

/// A service's store failing under a call, as its caller is told (the
/// details go to the log only): damaged data is DATA_LOSS `DATA_DAMAGED`;
/// anything else UNAVAILABLE `SERVICE_UNAVAILABLE` with a one-second retry
/// hint, since retrying with the same request id is always safe. `what`
/// names the store ("report", "emergency").
pub fn store_failure(what: &str, e: &crate::KitError) -> Status {
    if let crate::KitError::Corrupt(_) = e {
        tracing::error!(error = %e, store = what, "store is corrupt");
        return error(
            Code::DataLoss,
            Reason::DataDamaged,
            format!("stored {what} data is damaged; operators have been alerted in the log"),
        );
    }
    tracing::error!(error = %e, store = what, "store failure");
    retry_later(
        Code::Unavailable,
        Reason::ServiceUnavailable,
        format!("the {what} store is unavailable; retry with the same request_id"),
        std::time::Duration::from_secs(1),
    )
}

/// A failure a retry after `after` can cure: `RetryInfo`, and the same
/// delay in the `retry-after-ms` metadata for clients without rich errors.
pub fn retry_later(
    code: Code,
    reason: Reason,
    message: impl Into<String>,
    after: Duration,
) -> Status {
    let mut details = info(reason, &[]);
    details.set_retry_info(Some(after));
    let mut metadata = MetadataMap::new();
    if let Ok(v) = after.as_millis().to_string().parse() {
        metadata.insert("retry-after-ms", v);
    }
    with_details(code, message, details, metadata)
}

/// FAILED_PRECONDITION: `PreconditionFailure { type: reason, subject,
/// description: message }` and `ErrorInfo`.
pub fn precondition(reason: Reason, subject: &str, message: impl Into<String>) -> Status {
    let message = message.into();
    let mut details = info(reason, &[]);
    details.add_precondition_failure_violation(reason.as_str(), subject, message.clone());
    with_details(
        Code::FailedPrecondition,
        message,
        details,
        MetadataMap::new(),
    )
}

/// The `ErrorInfo.reason` of an orex status, if it has one.
pub fn reason_of(status: &Status) -> Option<Reason> {
    status
        .get_details_error_info()
        .filter(|i| i.domain == DOMAIN)
        .and_then(|i| i.reason.parse().ok())
}

fn info(reason: Reason, metadata: &[(&str, &str)]) -> ErrorDetails {
    ErrorDetails::with_error_info(
        reason.as_str(),
        DOMAIN,
        metadata
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<std::collections::HashMap<_, _>>(),
    )
}

fn with_details(
    code: Code,
    message: impl Into<String>,
    details: ErrorDetails,
    metadata: MetadataMap,
) -> Status {
    Status::with_error_details_and_metadata(code, message, details, metadata)
}

/// Most field or precondition violations a relayed status keeps.
const MAX_VIOLATIONS: usize = 16;
/// Longest text a relayed detail keeps, in bytes.
const MAX_DETAIL_TEXT: usize = 256;
/// Longest retry delay a relayed status keeps.
const MAX_RETRY: Duration = Duration::from_secs(3600);

/// The details of `upstream` that may pass on to a caller the status is
/// relayed to (the gateway relaying a service's error): an orex
/// `ErrorInfo` whose reason is known (its metadata dropped), bounded
/// `BadRequest` and `PreconditionFailure` violations with control
/// characters removed, and a bounded `RetryInfo`. Anything else — debug
/// info, foreign domains, unknown reasons — is dropped. Without a known
/// reason, `fallback` is used.
pub fn relayable_details(upstream: &Status, fallback: Reason) -> ErrorDetails {
    let from = upstream.get_error_details();
    let reason = reason_of(upstream).unwrap_or(fallback);
    let mut out = info(reason, &[]);
    if let Some(bad) = from.bad_request() {
        for v in bad.field_violations.iter().take(MAX_VIOLATIONS) {
            out.add_bad_request_violation(clean(&v.field), clean(&v.description));
        }
    }
    if let Some(pre) = from.precondition_failure() {
        for v in pre.violations.iter().take(MAX_VIOLATIONS) {
            out.add_precondition_failure_violation(
                clean(&v.r#type),
                clean(&v.subject),
                clean(&v.description),
            );
        }
    }
    if let Some(retry) = from.retry_info().and_then(|r| r.retry_delay) {
        out.set_retry_info(Some(retry.min(MAX_RETRY)));
    }
    out
}

/// A new status of `code` and `message` carrying `details` (for relaying).
pub fn rebuilt(code: Code, message: impl Into<String>, details: ErrorDetails) -> Status {
    let mut metadata = MetadataMap::new();
    if let Some(after) = details.retry_info().and_then(|r| r.retry_delay)
        && let Ok(v) = after.as_millis().to_string().parse()
    {
        metadata.insert("retry-after-ms", v);
    }
    with_details(code, message, details, metadata)
}

/// Text without control characters, cut to [`MAX_DETAIL_TEXT`] bytes on a
/// character boundary.
fn clean(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > MAX_DETAIL_TEXT {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_upper_snake_case_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            let s = r.as_str();
            assert!(
                s.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'),
                "{s}"
            );
            assert!(seen.insert(s), "{s} twice");
            assert_eq!(s.parse::<Reason>(), Ok(*r));
        }
    }

    #[test]
    fn an_invalid_field_names_the_field_three_ways() {
        let s = invalid_field("content.severity", "must be 1 to 5");
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(s.message(), "content.severity: must be 1 to 5");
        assert_eq!(reason_of(&s), Some(Reason::InvalidField));
        let bad = s.get_details_bad_request().unwrap();
        assert_eq!(bad.field_violations[0].field, "content.severity");
    }

    #[test]
    fn a_retry_carries_retry_info_and_metadata() {
        let s = retry_later(
            Code::ResourceExhausted,
            Reason::RateLimited,
            "slow down",
            Duration::from_millis(1500),
        );
        assert_eq!(
            s.get_details_retry_info().unwrap().retry_delay,
            Some(Duration::from_millis(1500))
        );
        assert_eq!(s.metadata().get("retry-after-ms").unwrap(), "1500");
    }

    #[test]
    fn relayed_details_keep_only_what_is_safe() {
        let mut details = ErrorDetails::with_error_info(
            "NOT_A_REASON",
            DOMAIN,
            [("secret".to_owned(), "x".to_owned())]
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        );
        details.set_debug_info(vec!["stack".into()], "internal detail");
        for i in 0..40 {
            details.add_bad_request_violation(format!("f{i}\u{7}"), "x".repeat(1000));
        }
        details.set_retry_info(Some(Duration::from_secs(100_000)));
        let upstream = Status::with_error_details(Code::InvalidArgument, "m", details);
        let kept = relayable_details(&upstream, Reason::InvalidField);
        assert_eq!(kept.error_info().unwrap().reason, "INVALID_FIELD");
        assert!(kept.error_info().unwrap().metadata.is_empty());
        assert!(kept.debug_info().is_none());
        let bad = kept.bad_request().unwrap();
        assert_eq!(bad.field_violations.len(), MAX_VIOLATIONS);
        assert_eq!(bad.field_violations[0].field, "f0");
        assert_eq!(bad.field_violations[0].description.len(), MAX_DETAIL_TEXT);
        assert_eq!(kept.retry_info().unwrap().retry_delay, Some(MAX_RETRY));
    }
}

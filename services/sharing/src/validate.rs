//! Checks every field a caller sends, before anything is stored. Each failure
//! names the field (as the .proto spells it) and what is accepted.

use std::collections::BTreeSet;

use orex_membership::Partnership;
use orex_proto::common::v1::{Marking, Mineral, Stage, TimeWindow};
use orex_proto::sharing::v1::{
    AmendReportRequest, Category, GetReportRequest, ListReportVersionsRequest, ListReportsRequest,
    PublishReportRequest, ReportContent, ResolveReportRequest, RetractReportRequest,
    SubscribeReportsRequest,
};
use prost_types::Timestamp;

use orex_kit::fields;

use crate::error::SharingError;

/// Longest summary, in characters.
pub const MAX_SUMMARY_CHARS: usize = 4000;
/// Longest note or reason, in characters.
pub const MAX_NOTE_CHARS: usize = 1000;
/// Most entries in a member or principal list.
pub const MAX_LIST: usize = 64;
/// Largest volume impact magnitude, t/month.
pub const MAX_VOLUME: f64 = 1e9;

/// Page size when a list asks for 0.
pub const DEFAULT_PAGE: usize = 50;
/// Largest page a list may ask for.
pub const MAX_PAGE: usize = 500;

type Result<T = ()> = std::result::Result<T, SharingError>;

// Per request: every check of its own fields, before anything is looked up.
// The handlers call these, and the fuzz target `requests`
// (tests/fuzz/fuzz_targets/requests.rs) runs them on arbitrary bytes.

/// `PublishReport`.
pub fn publish_request(r: &PublishReportRequest, partnership: &Partnership) -> Result {
    request_id(&r.request_id)?;
    content(r.content.as_ref(), partnership)
}

/// `AmendReport`.
pub fn amend_request(r: &AmendReportRequest, partnership: &Partnership) -> Result {
    request_id(&r.request_id)?;
    report_id(&r.report_id)?;
    content(r.content.as_ref(), partnership)?;
    note("note", &r.note, false)?;
    if r.expected_version == 0 {
        return Err(SharingError::invalid(
            "expected_version",
            "is required: the version you are amending",
        ));
    }
    Ok(())
}

/// `ResolveReport`.
pub fn resolve_request(r: &ResolveReportRequest) -> Result {
    request_id(&r.request_id)?;
    report_id(&r.report_id)?;
    note("note", &r.note, false)
}

/// `RetractReport`.
pub fn retract_request(r: &RetractReportRequest) -> Result {
    request_id(&r.request_id)?;
    report_id(&r.report_id)?;
    note("reason", &r.reason, true)
}

/// `GetReport`.
pub fn get_request(r: &GetReportRequest) -> Result {
    report_id(&r.report_id)
}

/// `ListReports`: the page size to use.
pub fn list_request(r: &ListReportsRequest) -> Result<usize> {
    let size = page_size(r.page_size)?;
    if let Some(f) = &r.filter {
        crate::filter::validate(f)?;
    }
    Ok(size)
}

/// `ListReportVersions`: the page size to use.
pub fn versions_request(r: &ListReportVersionsRequest) -> Result<usize> {
    report_id(&r.report_id)?;
    page_size(r.page_size)
}

/// `SubscribeReports`.
pub fn subscribe_request(r: &SubscribeReportsRequest) -> Result {
    match &r.filter {
        Some(f) => crate::filter::validate(f),
        None => Ok(()),
    }
}

/// A page size: 0 means [`DEFAULT_PAGE`]; at most [`MAX_PAGE`].
pub fn page_size(requested: u32) -> Result<usize> {
    Ok(fields::page_size(requested, DEFAULT_PAGE, MAX_PAGE)?)
}

/// A request id: 1–128 characters of `[A-Za-z0-9._:-]`.
pub fn request_id(id: &str) -> Result {
    Ok(fields::request_id(id)?)
}

/// A report id as the service issues them (a UUID).
pub fn report_id(id: &str) -> Result {
    Ok(fields::issued_id("report_id", id, "PublishReport")?)
}

/// A free-text note of at most [`MAX_NOTE_CHARS`]; `required` rejects empty.
pub fn note(field: &str, text: &str, required: bool) -> Result {
    Ok(fields::text(field, text, MAX_NOTE_CHARS, required)?)
}

/// Every field of a report's content.
pub fn content(c: Option<&ReportContent>, partnership: &Partnership) -> Result {
    let c = c.ok_or_else(|| SharingError::invalid("content", "is required"))?;
    enum_value::<Mineral>("content.mineral", c.mineral)?;
    enum_value::<Stage>("content.stage", c.stage)?;
    enum_value::<Category>("content.category", c.category)?;
    if !(1..=5).contains(&c.severity) {
        return Err(SharingError::invalid(
            "content.severity",
            format!("must be 1 to 5, got {}", c.severity),
        ));
    }
    if !orex_membership::policy::is_country_code(&c.origin_country) {
        return Err(SharingError::invalid(
            "content.origin_country",
            "must be an ISO 3166-1 alpha-2 code in capitals, like \"CN\"",
        ));
    }
    members("content.affected_members", &c.affected_members, partnership)?;
    if !c.volume_impact_tonnes_per_month.is_finite()
        || c.volume_impact_tonnes_per_month.abs() > MAX_VOLUME
    {
        return Err(SharingError::invalid(
            "content.volume_impact_tonnes_per_month",
            format!("must be a finite number of at most {MAX_VOLUME:e} in magnitude"),
        ));
    }
    if let Some(p) = &c.observed_price {
        if !p.usd_per_tonne.is_finite() || p.usd_per_tonne <= 0.0 {
            return Err(SharingError::invalid(
                "content.observed_price.usd_per_tonne",
                "must be a positive, finite number",
            ));
        }
        timestamp("content.observed_price.observed_at", p.observed_at.as_ref())?;
    }
    window("content.effective_window", c.effective_window.as_ref())?;
    let summary_len = c.summary.chars().count();
    if c.summary.trim().is_empty() || summary_len > MAX_SUMMARY_CHARS {
        return Err(SharingError::invalid(
            "content.summary",
            format!("must be 1 to {MAX_SUMMARY_CHARS} characters"),
        ));
    }
    fields::text("content.summary", &c.summary, MAX_SUMMARY_CHARS, true)?;
    let marking = enum_value::<Marking>("content.marking", c.marking)?;
    let wants_members = matches!(marking, Marking::Amber | Marking::AmberStrict);
    if wants_members {
        if c.recipient_members.is_empty() {
            return Err(SharingError::invalid(
                "content.recipient_members",
                "AMBER and AMBER+STRICT need at least one recipient member",
            ));
        }
        members(
            "content.recipient_members",
            &c.recipient_members,
            partnership,
        )?;
    } else if !c.recipient_members.is_empty() {
        return Err(SharingError::invalid(
            "content.recipient_members",
            "is only for AMBER and AMBER+STRICT",
        ));
    }
    if marking == Marking::Red {
        if c.recipient_principals.is_empty() {
            return Err(SharingError::invalid(
                "content.recipient_principals",
                "RED needs at least one recipient principal",
            ));
        }
        if c.recipient_principals.len() > MAX_LIST {
            return Err(SharingError::invalid(
                "content.recipient_principals",
                format!("at most {MAX_LIST} entries"),
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, p) in c.recipient_principals.iter().enumerate() {
            let field = format!("content.recipient_principals[{i}]");
            if partnership.member(&p.member).is_none() {
                return Err(SharingError::invalid(
                    field,
                    format!("unknown member {:?}", p.member),
                ));
            }
            if p.subject.is_empty()
                || p.subject.len() > 256
                || !p.subject.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(SharingError::invalid(
                    field,
                    "subject must be 1 to 256 visible ASCII characters",
                ));
            }
            if !seen.insert((&p.member, &p.subject)) {
                return Err(SharingError::invalid(field, "is listed twice"));
            }
        }
    } else if !c.recipient_principals.is_empty() {
        return Err(SharingError::invalid(
            "content.recipient_principals",
            "is only for RED",
        ));
    }
    Ok(())
}

/// A list filter of at most [`MAX_LIST`] entries.
pub fn list_len(field: &str, len: usize) -> Result {
    if len > MAX_LIST {
        return Err(SharingError::invalid(
            field,
            format!("at most {MAX_LIST} entries"),
        ));
    }
    Ok(())
}

/// A list of distinct, configured member codes.
fn members(field: &str, list: &[String], partnership: &Partnership) -> Result {
    Ok(fields::member_codes(field, list, MAX_LIST, partnership)?)
}

/// A known, non-zero enum value.
pub fn enum_value<E>(field: &str, raw: i32) -> Result<E>
where
    E: TryFrom<i32> + Default + PartialEq,
{
    Ok(fields::enum_value(field, raw)?)
}

/// A required timestamp within the range protobuf allows.
pub fn timestamp(field: &str, t: Option<&Timestamp>) -> Result<i128> {
    Ok(fields::timestamp(field, t)?)
}

/// A window with a required start and, if set, an end after it.
pub fn window(field: &str, w: Option<&TimeWindow>) -> Result {
    let w = w.ok_or_else(|| SharingError::invalid(field, "is required"))?;
    let start = timestamp(&format!("{field}.start"), w.start.as_ref())?;
    if let Some(end) = &w.end {
        let end = timestamp(&format!("{field}.end"), Some(end))?;
        if end <= start {
            return Err(SharingError::invalid(
                format!("{field}.end"),
                "must be after start",
            ));
        }
    }
    Ok(())
}

/// Nanoseconds since the epoch, for comparing timestamps.
pub fn nanos(t: &Timestamp) -> i128 {
    fields::nanos(t)
}

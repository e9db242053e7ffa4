//! Which reports a [`ReportFilter`] selects; the same test serves lists and
//! streams.

use orex_proto::common::v1::{Mineral, Stage};
use orex_proto::sharing::v1::{Category, Report, ReportFilter, ReportStatus};

use crate::error::SharingError;
use crate::validate;

/// Checks the filter's values (known enums, valid codes and times).
pub fn validate(f: &ReportFilter) -> Result<(), SharingError> {
    validate::list_len("filter.minerals", f.minerals.len())?;
    validate::list_len("filter.stages", f.stages.len())?;
    validate::list_len("filter.categories", f.categories.len())?;
    validate::list_len("filter.statuses", f.statuses.len())?;
    validate::list_len("filter.origin_countries", f.origin_countries.len())?;
    for (i, &m) in f.minerals.iter().enumerate() {
        validate::enum_value::<Mineral>(&format!("filter.minerals[{i}]"), m)?;
    }
    for (i, &s) in f.stages.iter().enumerate() {
        validate::enum_value::<Stage>(&format!("filter.stages[{i}]"), s)?;
    }
    for (i, &c) in f.categories.iter().enumerate() {
        validate::enum_value::<Category>(&format!("filter.categories[{i}]"), c)?;
    }
    for (i, &s) in f.statuses.iter().enumerate() {
        validate::enum_value::<ReportStatus>(&format!("filter.statuses[{i}]"), s)?;
    }
    if f.min_severity > 5 {
        return Err(SharingError::invalid(
            "filter.min_severity",
            "must be 0 (any) to 5",
        ));
    }
    for (i, c) in f.origin_countries.iter().enumerate() {
        if !orex_membership::policy::is_country_code(c) {
            return Err(SharingError::invalid(
                format!("filter.origin_countries[{i}]"),
                "must be an ISO 3166-1 alpha-2 code in capitals",
            ));
        }
    }
    if let Some(w) = &f.active_during {
        validate::window("filter.active_during", Some(w))?;
    }
    Ok(())
}

/// True when `r` passes every set criterion of `f`.
pub fn matches(f: &ReportFilter, r: &Report) -> bool {
    let Some(c) = &r.content else { return false };
    let any = |list: &[i32], v: i32| list.is_empty() || list.contains(&v);
    any(&f.minerals, c.mineral)
        && any(&f.stages, c.stage)
        && any(&f.categories, c.category)
        && any(&f.statuses, r.status)
        && c.severity >= f.min_severity
        && (f.origin_countries.is_empty() || f.origin_countries.contains(&c.origin_country))
        && f.active_during.as_ref().is_none_or(|w| overlaps(w, c))
}

/// Half-open windows [a0, a1) and [b0, b1) overlap when a0 < b1 and b0 < a1;
/// a missing end is +infinity.
fn overlaps(
    w: &orex_proto::common::v1::TimeWindow,
    c: &orex_proto::sharing::v1::ReportContent,
) -> bool {
    let Some(eff) = &c.effective_window else {
        return false;
    };
    let n = |t: &Option<prost_types::Timestamp>| t.as_ref().map(validate::nanos);
    let (Some(a0), a1) = (n(&w.start), n(&w.end)) else {
        return false;
    };
    let (Some(b0), b1) = (n(&eff.start), n(&eff.end)) else {
        return false;
    };
    a1.is_none_or(|a1| b0 < a1) && b1.is_none_or(|b1| a0 < b1)
}

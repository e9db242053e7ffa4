//! Which cases a list or stream returns (`CaseFilter`).

use orex_proto::emergency::v1::{CaseFilter, CaseStatus, ShortageCase};

/// True when `c` passes `f`: unset fields match everything, repeated
/// fields any of their values, and UNSPECIFIED among the statuses any
/// status.
pub fn matches(f: &CaseFilter, c: &ShortageCase) -> bool {
    let status_ok = f.statuses.is_empty()
        || f.statuses
            .iter()
            .any(|s| *s == CaseStatus::Unspecified as i32 || *s == c.status);
    let mineral = c.declaration.as_ref().map_or(0, |d| d.mineral);
    status_ok
        && (f.minerals.is_empty() || f.minerals.contains(&mineral))
        && (f.case_ids.is_empty() || f.case_ids.contains(&c.id))
}

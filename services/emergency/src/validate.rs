//! Checks every field a caller sends, before anything is looked up or
//! stored. Each failure names the field (as the .proto spells it) and what
//! is accepted. One function per request; the handlers call them.

use std::collections::BTreeSet;

use orex_kit::fields::{self, FieldError, invalid};
use orex_membership::Partnership;
use orex_proto::common::v1::{Marking, Mineral};
use orex_proto::emergency::v1::*;

/// Largest tonnage or yearly flow the contract accepts.
pub const MAX_TONNES: f64 = 1e9;
/// Page size when a list asks for 0.
pub const DEFAULT_PAGE: usize = 50;
/// Largest page a list may ask for.
pub const MAX_PAGE: usize = 500;
/// Most recipient members of a stockpile report.
pub const MAX_RECIPIENTS: usize = 50;
/// Most linked reports of a declaration.
pub const MAX_LINKED: usize = 50;
/// Most case ids in a filter.
pub const MAX_CASE_IDS: usize = 100;
/// Most members or minerals in a filter.
pub const MAX_FILTER: usize = 64;

type Result<T = ()> = std::result::Result<T, FieldError>;

/// `ReportStockpile`.
pub fn report_stockpile(r: &ReportStockpileRequest, partnership: &Partnership) -> Result<Mineral> {
    fields::request_id(&r.request_id)?;
    let c = r
        .content
        .as_ref()
        .ok_or_else(|| invalid("content", "is required"))?;
    let mineral = fields::enum_value::<Mineral>("content.mineral", c.mineral)?;
    let as_of = fields::timestamp("content.as_of", c.as_of.as_ref())?;
    if as_of > fields::now_nanos() {
        return Err(invalid("content.as_of", "must not be in the future"));
    }
    match &c.disclosure {
        Some(stockpile_content::Disclosure::Figures(f)) => {
            fields::quantity(
                "content.figures.stockpile_tonnes",
                f.stockpile_tonnes,
                0.0,
                false,
                MAX_TONNES,
            )?;
            fields::quantity(
                "content.figures.consumption_tonnes_per_year",
                f.consumption_tonnes_per_year,
                0.0,
                true,
                MAX_TONNES,
            )?;
            fields::quantity(
                "content.figures.net_imports_tonnes_per_year",
                f.net_imports_tonnes_per_year.abs(),
                0.0,
                false,
                MAX_TONNES,
            )
            .map_err(|_| {
                invalid(
                    "content.figures.net_imports_tonnes_per_year",
                    format!(
                        "must be a finite number of at most {MAX_TONNES:e} in magnitude, got {}",
                        f.net_imports_tonnes_per_year
                    ),
                )
            })?;
        }
        Some(stockpile_content::Disclosure::Refusal(refusal)) => {
            fields::text("content.refusal.reason", &refusal.reason, 2000, true)?;
            fields::text(
                "content.refusal.legal_basis",
                &refusal.legal_basis,
                500,
                false,
            )?;
        }
        None => {
            return Err(invalid(
                "content.disclosure",
                "set either figures or a refusal",
            ));
        }
    }
    let marking = fields::enum_value::<Marking>("content.marking", c.marking)?;
    match marking {
        Marking::Red => {
            return Err(invalid(
                "content.marking",
                "RED names persons; stockpile figures are shared with members (use AMBER or AMBER_STRICT with recipient_members)",
            ));
        }
        Marking::Amber | Marking::AmberStrict => {
            if c.recipient_members.is_empty() {
                return Err(invalid(
                    "content.recipient_members",
                    "AMBER and AMBER_STRICT need at least one recipient member",
                ));
            }
            members(
                "content.recipient_members",
                &c.recipient_members,
                MAX_RECIPIENTS,
                partnership,
            )?;
        }
        _ => {
            if !c.recipient_members.is_empty() {
                return Err(invalid(
                    "content.recipient_members",
                    "is only for AMBER and AMBER_STRICT",
                ));
            }
        }
    }
    Ok(mineral)
}

/// `ListStockpiles`: the page size.
pub fn list_stockpiles(r: &ListStockpilesRequest, partnership: &Partnership) -> Result<usize> {
    let size = fields::page_size(r.page_size, DEFAULT_PAGE, MAX_PAGE)?;
    if let Some(f) = &r.filter {
        minerals("filter.minerals", &f.minerals)?;
        members("filter.members", &f.members, MAX_FILTER, partnership)?;
    }
    Ok(size)
}

/// `DeclareShortage`: every field but whether the voting deadline is still
/// ahead ([`voting_deadline`], checked once the request is known not to be
/// a retry, which gets its first answer whenever it comes).
pub fn declare(r: &DeclareShortageRequest) -> Result<Mineral> {
    fields::request_id(&r.request_id)?;
    let d = r
        .declaration
        .as_ref()
        .ok_or_else(|| invalid("declaration", "is required"))?;
    let mineral = fields::enum_value::<Mineral>("declaration.mineral", d.mineral)?;
    fields::quantity(
        "declaration.shortfall_tonnes_per_month",
        d.shortfall_tonnes_per_month,
        0.0,
        true,
        MAX_TONNES,
    )?;
    fields::quantity(
        "declaration.total_release_tonnes",
        d.total_release_tonnes,
        0.0,
        true,
        MAX_TONNES,
    )?;
    fields::text("declaration.justification", &d.justification, 4000, true)?;
    if d.linked_report_ids.len() > MAX_LINKED {
        return Err(invalid(
            "declaration.linked_report_ids",
            format!("at most {MAX_LINKED} entries"),
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, id) in d.linked_report_ids.iter().enumerate() {
        let field = format!("declaration.linked_report_ids[{i}]");
        fields::issued_id(&field, id, "PublishReport")?;
        if !seen.insert(id) {
            return Err(invalid(field, "is listed twice"));
        }
    }
    let deadline = fields::timestamp("declaration.voting_deadline", d.voting_deadline.as_ref())?;
    if d.fulfilment_deadline.is_some() {
        let f = fields::timestamp(
            "declaration.fulfilment_deadline",
            d.fulfilment_deadline.as_ref(),
        )?;
        if f <= deadline {
            return Err(invalid(
                "declaration.fulfilment_deadline",
                "must be after the voting deadline",
            ));
        }
    }
    Ok(mineral)
}

/// The declaration's voting deadline at `now` (nanoseconds): in the future,
/// and at most `max_voting_hours` away.
pub fn voting_deadline(d: &ShortageDeclaration, now: i128, max_voting_hours: u32) -> Result {
    let deadline = fields::timestamp("declaration.voting_deadline", d.voting_deadline.as_ref())?;
    if deadline <= now {
        return Err(invalid(
            "declaration.voting_deadline",
            "must be in the future",
        ));
    }
    let latest = now + i128::from(max_voting_hours) * 3_600_000_000_000;
    if deadline > latest {
        return Err(invalid(
            "declaration.voting_deadline",
            format!(
                "must be at most {max_voting_hours} hours from now (the configured maximum voting period)"
            ),
        ));
    }
    Ok(())
}

/// `CastVote`.
pub fn cast_vote(r: &CastVoteRequest) -> Result<VoteChoice> {
    fields::request_id(&r.request_id)?;
    case_id(&r.case_id)?;
    let choice = fields::enum_value::<VoteChoice>("choice", r.choice)?;
    fields::text("comment", &r.comment, 2000, false)?;
    Ok(choice)
}

/// `GetCase`.
pub fn get_case(r: &GetCaseRequest) -> Result {
    case_id(&r.case_id)
}

/// `ListCases`: the page size.
pub fn list_cases(r: &ListCasesRequest) -> Result<usize> {
    let size = fields::page_size(r.page_size, DEFAULT_PAGE, MAX_PAGE)?;
    if let Some(f) = &r.filter {
        case_filter(f)?;
    }
    Ok(size)
}

/// `PledgeRelease`.
pub fn pledge(r: &PledgeReleaseRequest) -> Result {
    fields::request_id(&r.request_id)?;
    case_id(&r.case_id)?;
    fields::quantity("tonnes", r.tonnes, 0.0, true, MAX_TONNES)?;
    fields::text("note", &r.note, 1000, false)
}

/// `RecordFulfilment`.
pub fn fulfil(r: &RecordFulfilmentRequest) -> Result {
    fields::request_id(&r.request_id)?;
    case_id(&r.case_id)?;
    fields::issued_id("pledge_id", &r.pledge_id, "PledgeRelease")?;
    fields::quantity("tonnes", r.tonnes, 0.0, true, MAX_TONNES)?;
    if r.delivered_at.is_some() {
        let at = fields::timestamp("delivered_at", r.delivered_at.as_ref())?;
        if at > fields::now_nanos() {
            return Err(invalid("delivered_at", "must not be in the future"));
        }
    }
    fields::text("note", &r.note, 1000, false)
}

/// `CloseCase`.
pub fn close(r: &CloseCaseRequest) -> Result {
    fields::request_id(&r.request_id)?;
    case_id(&r.case_id)?;
    fields::text("reason", &r.reason, 2000, true)
}

/// `SubscribeCaseEvents`.
pub fn subscribe(r: &SubscribeCaseEventsRequest) -> Result {
    match &r.filter {
        Some(f) => case_filter(f),
        None => Ok(()),
    }
}

fn case_id(id: &str) -> Result {
    fields::issued_id("case_id", id, "DeclareShortage")
}

fn case_filter(f: &CaseFilter) -> Result {
    if f.statuses.len() > MAX_FILTER {
        return Err(invalid(
            "filter.statuses",
            format!("at most {MAX_FILTER} entries"),
        ));
    }
    for (i, s) in f.statuses.iter().enumerate() {
        // UNSPECIFIED in a filter means any status.
        if CaseStatus::try_from(*s).is_err() {
            return Err(invalid(
                format!("filter.statuses[{i}]"),
                format!("must be a known status (got {s})"),
            ));
        }
    }
    minerals("filter.minerals", &f.minerals)?;
    if f.case_ids.len() > MAX_CASE_IDS {
        return Err(invalid(
            "filter.case_ids",
            format!("at most {MAX_CASE_IDS} entries"),
        ));
    }
    for (i, id) in f.case_ids.iter().enumerate() {
        fields::issued_id(&format!("filter.case_ids[{i}]"), id, "DeclareShortage")?;
    }
    Ok(())
}

fn minerals(field: &str, list: &[i32]) -> Result {
    if list.len() > MAX_FILTER {
        return Err(invalid(field, format!("at most {MAX_FILTER} entries")));
    }
    for (i, m) in list.iter().enumerate() {
        fields::enum_value::<Mineral>(&format!("{field}[{i}]"), *m)?;
    }
    Ok(())
}

/// A list of distinct member codes the policy knows.
fn members(field: &str, list: &[String], max: usize, partnership: &Partnership) -> Result {
    fields::member_codes(field, list, max, partnership)
}

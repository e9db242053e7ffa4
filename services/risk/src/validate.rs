//! Every risk request checked before anything is computed: a field out of
//! range is INVALID_ARGUMENT naming it (`scenario.cut_fraction`), and the
//! handler gets typed values. One function per request, so the fuzz target
//! (`tests/fuzz`, `requests`) runs exactly what the service runs.

use orex_membership::Partnership;
use orex_proto::common::v1::{Mineral, Stage};
use orex_proto::risk::v1::*;

use crate::error::RiskError;
use crate::scenario::Cut;

/// Largest page of `ListSupplyRisks`.
pub const MAX_PAGE_SIZE: u32 = 500;
/// Page size when the request gives none.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// Longest scenario, in days.
pub const MAX_SCENARIO_DAYS: u32 = 3650;

/// A required mineral field.
pub fn mineral_field(field: &str, value: i32) -> Result<Mineral, RiskError> {
    match Mineral::try_from(value) {
        Ok(Mineral::Unspecified) => Err(RiskError::invalid(field, "is required")),
        Ok(m) => Ok(m),
        Err(_) => Err(RiskError::invalid(
            field,
            format!("{value} is not a mineral this service knows"),
        )),
    }
}

/// A stage field; `None` for STAGE_UNSPECIFIED.
pub fn stage_field(field: &str, value: i32) -> Result<Option<Stage>, RiskError> {
    match Stage::try_from(value) {
        Ok(Stage::Unspecified) => Ok(None),
        Ok(s) => Ok(Some(s)),
        Err(_) => Err(RiskError::invalid(
            field,
            format!("{value} is not a stage this service knows"),
        )),
    }
}

/// A stage field that must be set.
fn required_stage(field: &str, value: i32) -> Result<Stage, RiskError> {
    stage_field(field, value)?.ok_or_else(|| RiskError::invalid(field, "is required"))
}

/// A member code that must name a configured member.
pub fn member_field(p: &Partnership, field: &str, code: &str) -> Result<String, RiskError> {
    if p.member(code).is_some() {
        Ok(code.to_owned())
    } else {
        Err(RiskError::invalid(
            field,
            format!("{code:?} is not a member of the partnership"),
        ))
    }
}

fn members(p: &Partnership, field: &str, codes: &[String]) -> Result<Vec<String>, RiskError> {
    codes
        .iter()
        .enumerate()
        .map(|(i, m)| member_field(p, &format!("{field}[{i}]"), m))
        .collect()
}

/// A checked `GetSupplyRisk`.
#[derive(Debug, Clone, PartialEq)]
pub struct SupplyRiskQuery {
    /// The mineral.
    pub mineral: Mineral,
    /// The stage; `None`: the bottleneck.
    pub stage: Option<Stage>,
    /// The member; `None`: the caller's.
    pub member: Option<String>,
}

/// Checks a `GetSupplyRisk` request.
pub fn get_supply_risk_request(
    r: &GetSupplyRiskRequest,
    p: &Partnership,
) -> Result<SupplyRiskQuery, RiskError> {
    Ok(SupplyRiskQuery {
        mineral: mineral_field("mineral", r.mineral)?,
        stage: stage_field("stage", r.stage)?,
        member: if r.member.is_empty() {
            None
        } else {
            Some(member_field(p, "member", &r.member)?)
        },
    })
}

/// A checked `ListSupplyRisks` (its page token is opened by the handler).
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    /// Only these minerals (empty: all).
    pub minerals: Vec<Mineral>,
    /// Only these stages (empty: all).
    pub stages: Vec<Stage>,
    /// These members; `None`: the caller's.
    pub members: Option<Vec<String>>,
    /// Scores of at least this.
    pub min_supply_risk: f64,
    /// Only scores at or above their threshold.
    pub above_threshold_only: bool,
    /// Scores per page.
    pub page_size: u32,
}

/// Checks a `ListSupplyRisks` request.
pub fn list_supply_risks_request(
    r: &ListSupplyRisksRequest,
    p: &Partnership,
) -> Result<ListQuery, RiskError> {
    let f = r.filter.clone().unwrap_or_default();
    let minerals = f
        .minerals
        .iter()
        .enumerate()
        .map(|(i, m)| mineral_field(&format!("filter.minerals[{i}]"), *m))
        .collect::<Result<_, _>>()?;
    let stages = f
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| required_stage(&format!("filter.stages[{i}]"), *s))
        .collect::<Result<_, _>>()?;
    let members = if f.members.is_empty() {
        None
    } else {
        Some(members(p, "filter.members", &f.members)?)
    };
    if !(f.min_supply_risk.is_finite() && f.min_supply_risk >= 0.0) {
        return Err(RiskError::invalid(
            "filter.min_supply_risk",
            "must be a finite number, 0 or more",
        ));
    }
    let page_size = match r.page_size {
        0 => DEFAULT_PAGE_SIZE,
        n if n <= MAX_PAGE_SIZE => n,
        n => {
            return Err(RiskError::invalid(
                "page_size",
                format!("must be from 1 to {MAX_PAGE_SIZE} (0 means {DEFAULT_PAGE_SIZE}), got {n}"),
            ));
        }
    };
    Ok(ListQuery {
        minerals,
        stages,
        members,
        min_supply_risk: f.min_supply_risk,
        above_threshold_only: f.above_threshold_only,
        page_size,
    })
}

/// A checked `RunScenario`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioQuery {
    /// The cut.
    pub cut: Cut,
    /// These members; `None`: every active member.
    pub members: Option<Vec<String>>,
}

/// Checks a `RunScenario` request.
pub fn run_scenario_request(
    r: &RunScenarioRequest,
    p: &Partnership,
) -> Result<ScenarioQuery, RiskError> {
    let sc = r
        .scenario
        .as_ref()
        .ok_or_else(|| RiskError::invalid("scenario", "is required"))?;
    if !orex_membership::policy::is_country_code(&sc.origin_country) {
        return Err(RiskError::invalid(
            "scenario.origin_country",
            "must be an ISO 3166-1 alpha-2 code such as \"CN\"",
        ));
    }
    let mineral = mineral_field("scenario.mineral", sc.mineral)?;
    let stage = required_stage("scenario.stage", sc.stage)?;
    if !(sc.cut_fraction > 0.0 && sc.cut_fraction <= 1.0) {
        return Err(RiskError::invalid(
            "scenario.cut_fraction",
            format!("must be above 0 and at most 1, got {}", sc.cut_fraction),
        ));
    }
    if !(1..=MAX_SCENARIO_DAYS).contains(&sc.duration_days) {
        return Err(RiskError::invalid(
            "scenario.duration_days",
            format!(
                "must be from 1 to {MAX_SCENARIO_DAYS}, got {}",
                sc.duration_days
            ),
        ));
    }
    if let Some(t) = &sc.start_time
        && !(0..1_000_000_000).contains(&t.nanos)
    {
        return Err(RiskError::invalid(
            "scenario.start_time",
            "is not a valid timestamp",
        ));
    }
    Ok(ScenarioQuery {
        cut: Cut {
            origin_country: sc.origin_country.clone(),
            mineral,
            stage,
            cut_fraction: sc.cut_fraction,
            duration_days: sc.duration_days,
        },
        members: if r.members.is_empty() {
            None
        } else {
            Some(members(p, "members", &r.members)?)
        },
    })
}

/// Checks a `GetReferencePrice` request.
pub fn reference_price_request(r: &GetReferencePriceRequest) -> Result<Mineral, RiskError> {
    mineral_field("mineral", r.mineral)
}

/// A checked alert filter.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertFilter {
    kinds: Vec<i32>,
    minerals: Vec<i32>,
    stages: Vec<i32>,
    members: Vec<String>,
}

impl AlertFilter {
    /// True when `a` passes (price alerts have no stage or member, so those
    /// filters never exclude them).
    pub fn matches(&self, a: &RiskAlert) -> bool {
        let price = a.kind == RiskAlertKind::PriceDumping as i32;
        // UNSPECIFIED in the list means "any kind", as the contract says.
        let any_kind =
            self.kinds.is_empty() || self.kinds.contains(&(RiskAlertKind::Unspecified as i32));
        (any_kind || self.kinds.contains(&a.kind))
            && (self.minerals.is_empty() || self.minerals.contains(&a.mineral))
            && (price || self.stages.is_empty() || self.stages.contains(&a.stage))
            && (price || self.members.is_empty() || self.members.contains(&a.member))
    }
}

/// Checks a `SubscribeRiskAlerts` request's filter. Member codes are
/// checked for form only: alerts about a member that has left stay
/// readable.
pub fn subscribe_request(r: &SubscribeRiskAlertsRequest) -> Result<AlertFilter, RiskError> {
    let f = r.filter.clone().unwrap_or_default();
    for (i, k) in f.kinds.iter().enumerate() {
        if RiskAlertKind::try_from(*k).is_err() {
            return Err(RiskError::invalid(
                format!("filter.kinds[{i}]"),
                format!("{k} is not an alert kind"),
            ));
        }
    }
    for (i, m) in f.minerals.iter().enumerate() {
        mineral_field(&format!("filter.minerals[{i}]"), *m)?;
    }
    for (i, s) in f.stages.iter().enumerate() {
        required_stage(&format!("filter.stages[{i}]"), *s)?;
    }
    for (i, m) in f.members.iter().enumerate() {
        let form = (2..=8).contains(&m.len()) && m.bytes().all(|b| b.is_ascii_uppercase());
        if !form {
            return Err(RiskError::invalid(
                format!("filter.members[{i}]"),
                "is not a member code (2 to 8 capital letters)",
            ));
        }
    }
    Ok(AlertFilter {
        kinds: f.kinds,
        minerals: f.minerals,
        stages: f.stages,
        members: f.members,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(kind: RiskAlertKind, member: &str) -> RiskAlert {
        RiskAlert {
            kind: kind as i32,
            member: member.into(),
            mineral: Mineral::Gallium as i32,
            stage: Stage::Refining as i32,
            ..Default::default()
        }
    }

    fn filter(f: RiskAlertFilter) -> Result<AlertFilter, RiskError> {
        subscribe_request(&SubscribeRiskAlertsRequest {
            filter: Some(f),
            after_sequence: None,
        })
    }

    #[test]
    fn an_unspecified_kind_means_any_and_price_alerts_pass_member_filters() {
        let any = filter(RiskAlertFilter {
            kinds: vec![RiskAlertKind::Unspecified as i32],
            ..Default::default()
        })
        .unwrap();
        assert!(any.matches(&alert(RiskAlertKind::ThresholdCleared, "US")));
        let us = filter(RiskAlertFilter {
            kinds: vec![
                RiskAlertKind::ThresholdExceeded as i32,
                RiskAlertKind::PriceDumping as i32,
            ],
            members: vec!["US".into()],
            ..Default::default()
        })
        .unwrap();
        assert!(us.matches(&alert(RiskAlertKind::ThresholdExceeded, "US")));
        assert!(!us.matches(&alert(RiskAlertKind::ThresholdExceeded, "EU")));
        assert!(!us.matches(&alert(RiskAlertKind::ThresholdCleared, "US")));
        assert!(us.matches(&alert(RiskAlertKind::PriceDumping, "")));
    }

    #[test]
    fn bad_filters_are_refused_by_field() {
        for (f, field) in [
            (
                RiskAlertFilter {
                    kinds: vec![99],
                    ..Default::default()
                },
                "filter.kinds[0]",
            ),
            (
                RiskAlertFilter {
                    stages: vec![0],
                    ..Default::default()
                },
                "filter.stages[0]",
            ),
            (
                RiskAlertFilter {
                    members: vec!["US".into(), "u s".into()],
                    ..Default::default()
                },
                "filter.members[1]",
            ),
        ] {
            let err = filter(f).unwrap_err();
            assert!(err.to_string().starts_with(field), "{err}");
        }
    }
}

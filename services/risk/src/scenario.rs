//! What-if supply cuts ("country X cuts fraction f of mineral M at stage S
//! for d days"): the arithmetic the contract states, from the reference
//! data and the live disruptions in force. Read-only.
//!
//! Stockpiles come from the emergency service ([`crate::stockpiles`]):
//! figures every member may see cover the shortfall; a refusal or
//! restricted figures are WITHHELD, no report NOT_REPORTED, and a service
//! that could not be asked UNAVAILABLE — never guessed.

use orex_proto::common::v1::{Mineral, Stage};
use orex_proto::risk::v1 as pb;

use crate::assess::{AssessError, Assessor, Disruption, mineral_name, stage_name};
use crate::error::RiskError;
use crate::stockpiles::{Holding, Stockpiles};

/// A validated scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Cut {
    /// The cutting country.
    pub origin_country: String,
    /// The mineral.
    pub mineral: Mineral,
    /// The stage.
    pub stage: Stage,
    /// In (0, 1].
    pub cut_fraction: f64,
    /// 1 to 3650.
    pub duration_days: u32,
}

const DAYS_PER_YEAR: f64 = 365.0;

/// Evaluates `cut` for `members` (already checked to be configured), with
/// the supply risk before and after from `caller`'s point of view and the
/// stockpiles as read. The result's `scenario` is left for the caller to
/// fill (as evaluated).
pub fn run(
    a: &Assessor<'_>,
    cut: &Cut,
    members: &[String],
    caller: &str,
    stockpiles: &Stockpiles,
) -> Result<pb::ScenarioResult, RiskError> {
    let supply = a
        .data
        .supply
        .get(&(cut.mineral, cut.stage))
        .ok_or_else(|| {
            RiskError::NotFound(format!(
                "the reference data has no global supply of {} at the {} stage",
                mineral_name(cut.mineral),
                stage_name(cut.stage)
            ))
        })?;
    let world = supply.world_tonnes_per_year.ok_or_else(|| {
        RiskError::NotFound(format!(
            "the reference data has no world output of {} at the {} stage",
            mineral_name(cut.mineral),
            stage_name(cut.stage)
        ))
    })?;
    let cut_share = supply
        .shares
        .iter()
        .find(|s| s.country == cut.origin_country);
    let global_share = cut_share.map_or(0.0, |s| s.share);
    // Which of the figures used are estimates, said in the answer.
    let mut estimates = Vec::new();
    if supply.estimate {
        estimates.push(format!(
            "world output of {} at {}",
            mineral_name(cut.mineral),
            stage_name(cut.stage)
        ));
    }
    if cut_share.is_some_and(|s| s.estimate) {
        estimates.push(format!("share of {} in global supply", cut.origin_country));
    }
    let days = f64::from(cut.duration_days);
    let global_fraction = global_share * cut.cut_fraction;
    let global_tonnes = world * global_fraction * days / DAYS_PER_YEAR;

    let mut impacts: Vec<pb::ScenarioMemberImpact> = members
        .iter()
        .map(|member| {
            let exposure = match a.sourcing(member, cut.mineral, cut.stage) {
                Some(s) => {
                    let share = s.shares.iter().find(|x| x.country == cut.origin_country);
                    if share.is_some_and(|x| x.estimate) {
                        estimates.push(format!(
                            "share of {} in the sourcing of {}",
                            cut.origin_country, s.member
                        ));
                    }
                    share.map_or(0.0, |x| x.share)
                }
                None => global_share,
            };
            let consumption = a.data.consumption.get(&(member.clone(), cut.mineral));
            if consumption.is_some_and(|c| c.estimate) {
                estimates.push(format!("consumption of {member}"));
            }
            let consumption = consumption.map(|c| c.tonnes_per_year);
            let per_day = consumption.unwrap_or(0.0) / DAYS_PER_YEAR * exposure * cut.cut_fraction;
            let shortfall = per_day * days;
            let (availability, held) = match stockpiles {
                Stockpiles::Unavailable(_) => (pb::StockpileAvailability::Unavailable, None),
                Stockpiles::Read(by) => match by.get(member) {
                    Some(Holding::Figures { tonnes, .. }) => {
                        (pb::StockpileAvailability::Reported, Some(*tonnes))
                    }
                    Some(Holding::Withheld) => (pb::StockpileAvailability::Withheld, None),
                    None => (pb::StockpileAvailability::NotReported, None),
                },
            };
            pb::ScenarioMemberImpact {
                member: member.clone(),
                consumption_tonnes_per_year: consumption.unwrap_or(0.0),
                exposure_fraction: exposure,
                shortfall_tonnes_per_day: per_day,
                shortfall_tonnes: shortfall,
                stockpile_availability: availability as i32,
                stockpile_tonnes: held,
                days_of_cover: held.filter(|_| per_day > 0.0).map(|t| t / per_day),
                uncovered_shortfall_tonnes: held.map(|t| (shortfall - t).max(0.0)),
                consumption_known: consumption.is_some(),
            }
        })
        .collect();
    impacts.sort_by(|x, y| {
        y.shortfall_tonnes
            .total_cmp(&x.shortfall_tonnes)
            .then_with(|| x.member.cmp(&y.member))
    });

    let before_after = match a.assess(caller, cut.mineral, cut.stage) {
        Ok(before) => {
            let mut disruptions = a.disruptions.to_vec();
            disruptions.push(Disruption {
                report_id: String::new(),
                report_version: 0,
                mineral: cut.mineral,
                stage: Some(cut.stage),
                origin_country: cut.origin_country.clone(),
                volume_impact_tonnes_per_month: 0.0,
                export_restriction: false,
                severity: 0,
                cut_fraction: cut.cut_fraction,
            });
            let with_cut = Assessor {
                disruptions: &disruptions,
                ..*a
            };
            let after = with_cut.assess(caller, cut.mineral, cut.stage)?;
            Some((before.supply_risk, after.supply_risk))
        }
        Err(AssessError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    Ok(pb::ScenarioResult {
        scenario: None,
        global_shortfall_tonnes: global_tonnes,
        global_shortfall_fraction: global_fraction,
        member_impacts: impacts,
        supply_risk_before: before_after.map(|(b, _)| b),
        supply_risk_after: before_after.map(|(_, a)| a),
        reference_data_version: a.data.version.clone(),
        stockpiles_as_of: match stockpiles {
            Stockpiles::Read(by) => members
                .iter()
                .filter_map(|m| match by.get(m) {
                    Some(Holding::Figures { reported_at, .. }) => *reported_at,
                    _ => None,
                })
                .max_by_key(|t| (t.seconds, t.nanos)),
            Stockpiles::Unavailable(_) => None,
        },
        stockpiles_note: match stockpiles {
            Stockpiles::Read(_) => String::new(),
            Stockpiles::Unavailable(why) => why.clone(),
        },
        computed_at: Some(a.now),
        estimates: {
            estimates.sort();
            estimates.dedup();
            estimates
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assess::Settings;
    use crate::assess::tests::{fixtures, restriction};
    use prost_types::Timestamp;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-9, "{a} != {b}");
    }

    fn cut(fraction: f64, days: u32) -> Cut {
        Cut {
            origin_country: "AA".into(),
            mineral: Mineral::Gallium,
            stage: Stage::Refining,
            cut_fraction: fraction,
            duration_days: days,
        }
    }

    #[test]
    fn scenario_arithmetic_by_hand() {
        let (data, p) = fixtures();
        let a = Assessor {
            data: &data,
            partnership: &p,
            disruptions: &[],
            settings: Settings::default(),
            now: Timestamp::default(),
        };
        let members = ["US".to_owned(), "EU".to_owned(), "FR".to_owned()];
        let none = Stockpiles::Read(Default::default());
        let r = run(&a, &cut(0.5, 73), &members, "US", &none).unwrap();
        // AA holds 0.8 of 1000 t/year; half of it for 73 days (a fifth of a year).
        close(r.global_shortfall_fraction, 0.4);
        close(r.global_shortfall_tonnes, 1000.0 * 0.4 * 0.2);
        let by: Vec<&str> = r.member_impacts.iter().map(|m| m.member.as_str()).collect();
        assert_eq!(by, ["EU", "US", "FR"], "largest shortfall first");
        let eu = &r.member_impacts[0];
        // EU: 200 t/year × 0.7 from AA × 0.5 cut.
        close(eu.exposure_fraction, 0.7);
        close(eu.shortfall_tonnes_per_day, 200.0 / 365.0 * 0.7 * 0.5);
        close(eu.shortfall_tonnes, 200.0 * 0.7 * 0.5 * 0.2);
        let us = &r.member_impacts[1];
        close(us.shortfall_tonnes, 100.0 * 0.5 * 0.5 * 0.2);
        let fr = &r.member_impacts[2];
        assert!(
            !fr.consumption_known,
            "no consumption figure for FR: no tonnes guessed"
        );
        close(fr.exposure_fraction, 0.7);
        close(fr.shortfall_tonnes, 0.0);
        for m in &r.member_impacts {
            assert_eq!(
                m.stockpile_availability,
                pb::StockpileAvailability::NotReported as i32
            );
            assert!(m.stockpile_tonnes.is_none() && m.days_of_cover.is_none());
        }
        assert!(r.stockpiles_as_of.is_none());
        close(r.supply_risk_before.unwrap(), 2.0655);
        // After: AA keeps half its output; global 0.4/0.1/0.1 → 2/3, 1/6, 1/6;
        // US 0.25/0.3/0.2 → 0.25/0.75 …
        let g = (2.0f64 / 3.0).powi(2) * 6.0 + (1.0f64 / 6.0).powi(2) * 3.0;
        let us_mix = (0.25f64 / 0.75).powi(2) * 6.0
            + (0.3f64 / 0.75).powi(2)
            + (0.2f64 / 0.75).powi(2) * 2.0;
        close(
            r.supply_risk_after.unwrap(),
            (g * 0.4 + us_mix * 0.6) * 0.81,
        );
    }

    #[test]
    fn stockpiles_cover_what_they_can_and_nothing_is_guessed() {
        let (data, p) = fixtures();
        let a = Assessor {
            data: &data,
            partnership: &p,
            disruptions: &[],
            settings: Settings::default(),
            now: Timestamp::default(),
        };
        let reported_at = Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        };
        let read = Stockpiles::Read(
            [
                (
                    "EU".to_owned(),
                    Holding::Figures {
                        tonnes: 5.0,
                        reported_at: Some(reported_at),
                    },
                ),
                ("US".to_owned(), Holding::Withheld),
            ]
            .into(),
        );
        let members = ["US".to_owned(), "EU".to_owned(), "FR".to_owned()];
        let r = run(&a, &cut(0.5, 73), &members, "US", &read).unwrap();
        let by = |m: &str| r.member_impacts.iter().find(|i| i.member == m).unwrap();
        // EU loses 200 × 0.7 × 0.5 / 365 t a day, 14 t over 73 days: 5 t
        // cover 5 / (70 / 365) days and leave 9 t uncovered.
        let eu = by("EU");
        assert_eq!(
            eu.stockpile_availability,
            pb::StockpileAvailability::Reported as i32
        );
        close(eu.days_of_cover.unwrap(), 5.0 / (70.0 / 365.0));
        close(eu.uncovered_shortfall_tonnes.unwrap(), 14.0 - 5.0);
        let us = by("US");
        assert_eq!(
            us.stockpile_availability,
            pb::StockpileAvailability::Withheld as i32
        );
        assert!(us.stockpile_tonnes.is_none() && us.uncovered_shortfall_tonnes.is_none());
        assert_eq!(
            by("FR").stockpile_availability,
            pb::StockpileAvailability::NotReported as i32
        );
        assert_eq!(r.stockpiles_as_of, Some(reported_at));
        assert!(r.stockpiles_note.is_empty());

        let away = Stockpiles::Unavailable("the emergency service did not answer".into());
        let r = run(&a, &cut(0.5, 73), &members, "US", &away).unwrap();
        assert!(r.member_impacts.iter().all(|m| m.stockpile_availability
            == pb::StockpileAvailability::Unavailable as i32
            && m.stockpile_tonnes.is_none()));
        assert_eq!(r.stockpiles_note, "the emergency service did not answer");
        assert!(r.stockpiles_as_of.is_none());
    }

    #[test]
    fn a_cut_on_top_of_a_live_restriction_keeps_it() {
        let (data, p) = fixtures();
        let live = [restriction(5, 0.0)];
        let a = Assessor {
            data: &data,
            partnership: &p,
            disruptions: &live,
            settings: Settings::default(),
            now: Timestamp::default(),
        };
        let none = Stockpiles::Read(Default::default());
        let r = run(&a, &cut(1.0, 1), &["US".to_owned()], "US", &none).unwrap();
        let before = a.assess("US", Mineral::Gallium, Stage::Refining).unwrap();
        close(r.supply_risk_before.unwrap(), before.supply_risk);
        assert!(before.supply_risk > before.baseline_supply_risk);
    }

    #[test]
    fn no_world_output_or_supply_is_not_found() {
        let (data, p) = fixtures();
        let a = Assessor {
            data: &data,
            partnership: &p,
            disruptions: &[],
            settings: Settings::default(),
            now: Timestamp::default(),
        };
        let mut c = cut(0.5, 10);
        c.stage = Stage::Mining;
        assert!(matches!(
            run(&a, &c, &[], "US", &Stockpiles::Read(Default::default())),
            Err(RiskError::NotFound(_))
        ));
    }
}

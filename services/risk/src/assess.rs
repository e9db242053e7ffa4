//! Scores one mineral at one stage from one member's point of view: the
//! reference data's mixes, the live disruptions applied to them, the
//! formula, and every component in the answer (`SupplyRisk`).
//!
//! Live disruptions change a mix in two ways, as the contract states: an
//! export restriction raises the origin country's trade factor t, and a
//! negative volume impact removes tonnes from the country's output at the
//! stage; every mix the country supplies then loses the same fraction of the
//! country's share, and the shares are scaled back to 1.

use std::collections::BTreeMap;

use orex_membership::Partnership;
use orex_proto::common::v1::{Mineral, Stage};
use orex_proto::risk::v1 as pb;
use prost_types::Timestamp;

use crate::formula::{self, Factors, MAX_TRADE_FACTOR};
use crate::reference::{ReferenceData, Share, Sourcing};

/// The configured thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// SR at or above this is high supply risk (1.0 in the EU method).
    pub threshold: f64,
    /// Dependence on one third country above this is flagged (0.65, CRMA).
    pub dependence_ceiling: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            threshold: 1.0,
            dependence_ceiling: 0.65,
        }
    }
}

/// A live disruption in force: an active CLEAR or GREEN export restriction
/// or production outage (the follower decides which reports qualify).
#[derive(Debug, Clone, PartialEq)]
pub struct Disruption {
    /// The sharing report's id.
    pub report_id: String,
    /// The report version applied.
    pub report_version: u32,
    /// The mineral.
    pub mineral: Mineral,
    /// The stage, or every stage when `None`.
    pub stage: Option<Stage>,
    /// Where the disruption originates.
    pub origin_country: String,
    /// Change in the country's output, tonnes per month (negative: less).
    pub volume_impact_tonnes_per_month: f64,
    /// An export restriction (raises t).
    pub export_restriction: bool,
    /// 1 to 5.
    pub severity: u32,
    /// A fraction of the country's output removed outright (a scenario's
    /// cut); 0 for reports, which give tonnes.
    pub cut_fraction: f64,
}

impl Disruption {
    fn applies(&self, mineral: Mineral, stage: Stage) -> bool {
        self.mineral == mineral && self.stage.is_none_or(|s| s == stage)
    }

    /// The trade factor an export restriction of this severity stands for.
    fn trade_factor(&self) -> f64 {
        (1.0 + f64::from(self.severity.clamp(1, 5)) / 5.0).min(MAX_TRADE_FACTOR)
    }
}

/// Why a score cannot be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AssessError {
    /// No reference figures for what was asked; the message says which.
    #[error("{0}")]
    NotFound(String),
    /// The figures do not enter the formula (a bug or a live change gone
    /// wrong; reference data is validated before use).
    #[error("{0}")]
    Formula(#[from] formula::FormulaError),
}

/// What live disruptions do to one country at one mineral and stage.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Effect {
    /// Output remaining, as a fraction of the reference output (≥ 0).
    remaining: f64,
    /// The trade factor a restriction imposes, if any.
    trade_factor: Option<f64>,
}

/// Computes scores from one reference data set, one policy and the live
/// disruptions in force.
#[derive(Debug)]
pub struct Assessor<'a> {
    /// The reference data.
    pub data: &'a ReferenceData,
    /// The partnership (who is a partner).
    pub partnership: &'a Partnership,
    /// Live disruptions in force.
    pub disruptions: &'a [Disruption],
    /// Thresholds.
    pub settings: Settings,
    /// When the scores are computed.
    pub now: Timestamp,
}

impl Assessor<'_> {
    /// A partnership member state, or a state of a bloc that is a member.
    pub fn partner(&self, country: &str) -> bool {
        self.partnership.is_partner_country(country)
            || self
                .data
                .countries
                .get(country)
                .and_then(|c| c.bloc.as_deref())
                .is_some_and(|bloc| self.partnership.is_active_member(bloc))
    }

    /// The stages of `mineral` with global supply figures.
    pub fn stages(&self, mineral: Mineral) -> Vec<Stage> {
        self.data
            .supply
            .keys()
            .filter(|(m, _)| *m == mineral)
            .map(|(_, s)| *s)
            .collect()
    }

    /// The sourcing figures for `member`, or its bloc's when it has none.
    pub fn sourcing(&self, member: &str, mineral: Mineral, stage: Stage) -> Option<&Sourcing> {
        let own = self.data.sourcing.get(&(member.to_owned(), mineral, stage));
        own.or_else(|| {
            let bloc = self.partnership.bloc_of(member)?;
            self.data.sourcing.get(&(bloc.to_owned(), mineral, stage))
        })
    }

    fn effects(&self, mineral: Mineral, stage: Stage) -> BTreeMap<&str, Effect> {
        let supply = self.data.supply.get(&(mineral, stage));
        let mut effects: BTreeMap<&str, Effect> = BTreeMap::new();
        for d in self
            .disruptions
            .iter()
            .filter(|d| d.applies(mineral, stage))
        {
            let e = effects.entry(d.origin_country.as_str()).or_insert(Effect {
                remaining: 1.0,
                trade_factor: None,
            });
            if d.export_restriction {
                e.trade_factor = Some(e.trade_factor.unwrap_or(1.0).max(d.trade_factor()));
            }
            // A change in tonnes moves the country's share only where the
            // reference data says how much the country produces.
            let output = supply.and_then(|s| {
                let world = s.world_tonnes_per_year?;
                let share = s.shares.iter().find(|x| x.country == d.origin_country)?;
                Some(world * share.share)
            });
            if let Some(output) = output.filter(|o| *o > 0.0) {
                let change = d.volume_impact_tonnes_per_month * 12.0 / output;
                e.remaining = (e.remaining + change).max(0.0);
            }
            // A scenario's cut takes its fraction of what is left.
            e.remaining *= 1.0 - d.cut_fraction;
        }
        effects
    }

    /// The mix before and after live effects, as the formula takes it.
    fn mixes(
        &self,
        shares: &[Share],
        effects: &BTreeMap<&str, Effect>,
    ) -> (Vec<formula::Supplier>, Vec<formula::Supplier>) {
        let baseline: Vec<formula::Supplier> = shares
            .iter()
            .map(|s| formula::Supplier {
                country: s.country.clone(),
                share: s.share,
                governance_score: self.data.countries[&s.country].governance_score,
                trade_restriction_factor: s.trade_restriction_factor,
                partner: self.partner(&s.country),
            })
            .collect();
        let mut live = baseline.clone();
        for s in &mut live {
            if let Some(e) = effects.get(s.country.as_str()) {
                s.share *= e.remaining;
                if let Some(t) = e.trade_factor {
                    s.trade_restriction_factor = s.trade_restriction_factor.max(t);
                }
            }
        }
        let total: f64 = live.iter().map(|s| s.share).sum();
        let published: f64 = baseline.iter().map(|s| s.share).sum();
        if total > 0.0 {
            // Scale back to the published total (which sums to 1 within rounding).
            for s in &mut live {
                s.share *= published / total;
            }
        } else {
            // Every supplier cut entirely: no mix to renormalise; the shares
            // stay (a single remaining supplier is still a single supplier).
            for (s, b) in live.iter_mut().zip(&baseline) {
                s.share = b.share;
            }
        }
        (baseline, live)
    }

    /// The score of `mineral` at `stage` for `member`.
    pub fn assess(
        &self,
        member: &str,
        mineral: Mineral,
        stage: Stage,
    ) -> Result<pb::SupplyRisk, AssessError> {
        let supply = self.data.supply.get(&(mineral, stage)).ok_or_else(|| {
            AssessError::NotFound(format!(
                "the reference data has no global supply of {} at the {} stage",
                mineral_name(mineral),
                stage_name(stage)
            ))
        })?;
        let sourcing = self.sourcing(member, mineral, stage).ok_or_else(|| {
            AssessError::NotFound(format!(
                "the reference data has no sourcing of {} at the {} stage for {member}{}",
                mineral_name(mineral),
                stage_name(stage),
                self.partnership
                    .bloc_of(member)
                    .map(|b| format!(" nor for its bloc {b}"))
                    .unwrap_or_default()
            ))
        })?;
        let effects = self.effects(mineral, stage);
        let (global_base, global_live) = self.mixes(&supply.shares, &effects);
        let (sourcing_base, sourcing_live) = self.mixes(&sourcing.shares, &effects);
        let factors = Factors {
            import_reliance: sourcing.import_reliance,
            end_of_life_recycling_input_rate: supply.end_of_life_recycling_input_rate,
            substitution_index: supply.substitution_index,
        };
        let gb = formula::concentration(&global_base)?;
        let sb = formula::concentration(&sourcing_base)?;
        let gl = formula::concentration(&global_live)?;
        let sl = formula::concentration(&sourcing_live)?;
        let baseline = formula::supply_risk(&gb, &sb, factors)?;
        let live = formula::supply_risk(&gl, &sl, factors)?;
        let ceiling = self.settings.dependence_ceiling;
        let largest = formula::largest_outside_supplier(&sl, ceiling).map_or_else(
            || pb::SupplierDependence {
                country: String::new(),
                share: 0.0,
                ceiling,
                exceeds_ceiling: false,
            },
            |(s, exceeds)| pb::SupplierDependence {
                country: s.country.clone(),
                share: s.share,
                ceiling,
                exceeds_ceiling: exceeds,
            },
        );
        let mut estimates = Vec::new();
        if sourcing.estimate {
            estimates.push(format!("import_reliance of {}", sourcing.member));
        }
        if supply.estimate {
            estimates.push(
                "substitution_index, end_of_life_recycling_input_rate and world output".into(),
            );
        }
        for (what, shares) in [
            ("global supply", &supply.shares),
            ("the sourcing of ", &sourcing.shares),
        ] {
            let whose = if what.ends_with(' ') {
                format!("{what}{}", sourcing.member)
            } else {
                what.to_owned()
            };
            for s in shares.iter().filter(|s| s.estimate) {
                estimates.push(format!("share of {} in {whose}", s.country));
            }
        }
        let mut governance: Vec<&str> = supply
            .shares
            .iter()
            .chain(&sourcing.shares)
            .map(|s| s.country.as_str())
            .filter(|c| self.data.countries[*c].estimate)
            .collect();
        governance.sort_unstable();
        governance.dedup();
        estimates.extend(
            governance
                .iter()
                .map(|c| format!("governance_score of {c}")),
        );
        let applied = self
            .disruptions
            .iter()
            .filter(|d| d.applies(mineral, stage) && d.cut_fraction == 0.0)
            .map(|d| pb::AppliedDisruption {
                report_id: d.report_id.clone(),
                report_version: d.report_version,
                origin_country: d.origin_country.clone(),
                volume_impact_tonnes_per_month: d.volume_impact_tonnes_per_month,
                export_restriction: d.export_restriction,
                severity: d.severity,
            })
            .collect();
        let mut formula = live.formula.clone();
        if sourcing.member != member {
            formula.push_str(&format!(
                " (import reliance and sourcing of {}, {member}'s bloc)",
                sourcing.member
            ));
        }
        Ok(pb::SupplyRisk {
            mineral: mineral as i32,
            stage: stage as i32,
            member: member.to_owned(),
            supply_risk: live.supply_risk,
            baseline_supply_risk: baseline.supply_risk,
            threshold: self.settings.threshold,
            above_threshold: live.supply_risk >= self.settings.threshold,
            global_supply: Some(self.concentration_pb(&gl, &global_base, &supply.shares)),
            member_sourcing: Some(self.concentration_pb(&sl, &sourcing_base, &sourcing.shares)),
            import_reliance: sourcing.import_reliance,
            substitution_index: supply.substitution_index,
            end_of_life_recycling_input_rate: supply.end_of_life_recycling_input_rate,
            largest_supplier: Some(largest),
            applied_disruptions: applied,
            source_ids: dedup(vec![sourcing.source.clone(), supply.source.clone()]),
            reference_data_version: self.data.version.clone(),
            formula,
            computed_at: Some(self.now),
            estimates,
            sourcing_member: sourcing.member.clone(),
        })
    }

    /// The stage of `mineral` with the highest score for `member` (the EU
    /// method's bottleneck), among stages with figures for the member.
    pub fn bottleneck(
        &self,
        member: &str,
        mineral: Mineral,
    ) -> Result<pb::SupplyRisk, AssessError> {
        let mut best: Option<pb::SupplyRisk> = None;
        let mut last_err = None;
        for stage in self.stages(mineral) {
            match self.assess(member, mineral, stage) {
                Ok(s) if best.as_ref().is_none_or(|b| s.supply_risk > b.supply_risk) => {
                    best = Some(s);
                }
                Ok(_) => {}
                Err(e @ AssessError::NotFound(_)) => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        best.ok_or_else(|| {
            last_err.unwrap_or_else(|| {
                AssessError::NotFound(format!(
                    "the reference data has no figures for {}",
                    mineral_name(mineral)
                ))
            })
        })
    }

    fn concentration_pb(
        &self,
        live: &formula::Concentration,
        baseline: &[formula::Supplier],
        shares: &[Share],
    ) -> pb::Concentration {
        pb::Concentration {
            countries: live
                .terms
                .iter()
                .map(|t| {
                    let c = &t.supplier.country;
                    let share = shares.iter().find(|s| &s.country == c);
                    pb::CountryShare {
                        country: c.clone(),
                        share: t.supplier.share,
                        baseline_share: baseline
                            .iter()
                            .find(|b| &b.country == c)
                            .map_or(0.0, |b| b.share),
                        governance_score: t.supplier.governance_score,
                        trade_restriction_factor: t.supplier.trade_restriction_factor,
                        hhi_wgi_contribution: t.hhi_wgi_contribution,
                        partner_member: t.supplier.partner,
                        source_ids: dedup(
                            share
                                .map(|s| s.source.clone())
                                .into_iter()
                                .chain(self.data.countries.get(c).map(|x| x.source.clone()))
                                .collect(),
                        ),
                    }
                })
                .collect(),
            hhi: live.hhi,
            hhi_wgi: live.hhi_wgi,
        }
    }
}

fn dedup(mut ids: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    ids.retain(|id| seen.insert(id.clone()));
    ids
}

/// `gallium`, as the reference data writes it.
pub fn mineral_name(m: Mineral) -> String {
    orex_proto::names::mineral(m)
}

/// `refining`, as the reference data writes it.
pub fn stage_name(s: Stage) -> String {
    orex_proto::names::stage(s)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Test figures only (countries AA and BB), not reference data. DE is
    /// not a member in the policy below, but the data says it is in the EU
    /// bloc, which is.
    pub(crate) const DATA: &str = r#"
version = "test.1"
published_at = "2026-11-26T00:00:00Z"
[[sources]]
id = "s1"
title = "A test source"
publisher = "Nobody"
[[countries]]
code = "AA"
governance_score = 6.0
source = "s1"
[[countries]]
code = "BB"
governance_score = 2.0
source = "s1"
estimate = true
[[countries]]
code = "US"
governance_score = 1.0
source = "s1"
[[countries]]
code = "DE"
governance_score = 1.0
source = "s1"
bloc = "EU"
[[supply]]
mineral = "gallium"
stage = "refining"
substitution_index = 0.9
end_of_life_recycling_input_rate = 0.1
source = "s1"
world_tonnes_per_year = 1000.0
volume_source = "s1"
shares = [{ country = "AA", share = 0.8, source = "s1" }, { country = "BB", share = 0.1, source = "s1" }, { country = "DE", share = 0.1, source = "s1" }]
[[sourcing]]
member = "US"
mineral = "gallium"
stage = "refining"
import_reliance = 0.8
source = "s1"
shares = [{ country = "AA", share = 0.5, source = "s1" }, { country = "US", share = 0.3, source = "s1" }, { country = "BB", share = 0.2, source = "s1" }]
[[sourcing]]
member = "EU"
mineral = "gallium"
stage = "refining"
import_reliance = 0.5
source = "s1"
shares = [{ country = "AA", share = 0.7, source = "s1" }, { country = "DE", share = 0.3, source = "s1" }]
[[consumption]]
member = "US"
mineral = "gallium"
tonnes_per_year = 100.0
source = "s1"
[[consumption]]
member = "EU"
mineral = "gallium"
tonnes_per_year = 200.0
source = "s1"
"#;

    pub(crate) const POLICY: &str = r#"
[[members]]
code = "US"
name = "United States"
kind = "state"
founding = true
[[members]]
code = "EU"
name = "European Union"
kind = "bloc"
founding = true
[[members]]
code = "FR"
name = "France"
kind = "state"
bloc = "EU"
founding = false
"#;

    pub(crate) fn fixtures() -> (ReferenceData, Partnership) {
        (
            ReferenceData::parse(DATA.as_bytes()).unwrap(),
            Partnership::parse(POLICY, std::path::Path::new(".")).unwrap(),
        )
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-9, "{a} != {b}");
    }

    fn assessor<'a>(
        data: &'a ReferenceData,
        partnership: &'a Partnership,
        disruptions: &'a [Disruption],
    ) -> Assessor<'a> {
        Assessor {
            data,
            partnership,
            disruptions,
            settings: Settings::default(),
            now: Timestamp::default(),
        }
    }

    pub(crate) fn restriction(severity: u32, tonnes_per_month: f64) -> Disruption {
        Disruption {
            report_id: "r1".into(),
            report_version: 1,
            mineral: Mineral::Gallium,
            stage: Some(Stage::Refining),
            origin_country: "AA".into(),
            volume_impact_tonnes_per_month: tonnes_per_month,
            export_restriction: true,
            severity,
            cut_fraction: 0.0,
        }
    }

    #[test]
    fn a_members_score_by_hand() {
        let (data, p) = fixtures();
        let a = assessor(&data, &p, &[]);
        let s = a.assess("US", Mineral::Gallium, Stage::Refining).unwrap();
        // GS: 0.8²×6 + 0.1²×2 + 0.1²×1 = 3.87; US: 0.5²×6 + 0.3²×1 + 0.2²×2 = 1.67
        close(s.global_supply.as_ref().unwrap().hhi_wgi, 3.87);
        close(s.member_sourcing.as_ref().unwrap().hhi_wgi, 1.67);
        // (3.87 × 0.4 + 1.67 × 0.6) × 0.9 × 0.9 = 2.55 × 0.81
        close(s.supply_risk, 2.0655);
        close(s.baseline_supply_risk, 2.0655);
        assert!(s.above_threshold);
        let largest = s.largest_supplier.unwrap();
        assert_eq!(
            (largest.country.as_str(), largest.exceeds_ceiling),
            ("AA", false)
        );
        assert_eq!(s.estimates, ["governance_score of BB"], "the data marks it");
        assert_eq!(s.sourcing_member, "US");
        let us = &s.member_sourcing.unwrap().countries;
        assert!(
            us.iter()
                .find(|c| c.country == "US")
                .unwrap()
                .partner_member
        );
    }

    #[test]
    fn a_bloc_state_counts_as_partner_and_borrows_its_blocs_figures() {
        let (data, p) = fixtures();
        let a = assessor(&data, &p, &[]);
        let eu = a.assess("EU", Mineral::Gallium, Stage::Refining).unwrap();
        // EU: 0.7²×6 + 0.3²×1 = 3.03; (3.87 × 0.25 + 3.03 × 0.75) × 0.81 = 3.24 × 0.81
        close(eu.supply_risk, 2.6244);
        let largest = eu.largest_supplier.clone().unwrap();
        assert_eq!(
            (largest.country.as_str(), largest.exceeds_ceiling),
            ("AA", true)
        );
        let de = eu
            .member_sourcing
            .as_ref()
            .unwrap()
            .countries
            .iter()
            .find(|c| c.country == "DE")
            .unwrap()
            .clone();
        assert!(de.partner_member, "DE is in the EU bloc per the data");
        let fr = a.assess("FR", Mineral::Gallium, Stage::Refining).unwrap();
        assert_eq!(fr.sourcing_member, "EU");
        close(fr.supply_risk, eu.supply_risk);
        assert!(fr.formula.contains("FR's bloc"), "{}", fr.formula);
    }

    #[test]
    fn an_export_restriction_raises_t_and_an_outage_moves_shares() {
        let (data, p) = fixtures();
        // Severity 5: t = 2. 20 t/month = 240 t/year of AA's 800: 70% stays.
        let d = [restriction(5, -20.0)];
        let a = assessor(&data, &p, &d);
        let s = a.assess("US", Mineral::Gallium, Stage::Refining).unwrap();
        let g = s.global_supply.as_ref().unwrap();
        let aa = (0.8 * 0.7) / (0.8 * 0.7 + 0.2);
        let other = 0.1 / (0.8 * 0.7 + 0.2);
        let aa_row = &g.countries[0];
        assert_eq!(aa_row.country, "AA");
        close(aa_row.share, aa);
        close(aa_row.baseline_share, 0.8);
        close(aa_row.trade_restriction_factor, 2.0);
        close(
            g.hhi_wgi,
            aa * aa * 6.0 * 2.0 + other * other * 2.0 + other * other * 1.0,
        );
        let us_aa = 0.5 * 0.7 / (0.5 * 0.7 + 0.5);
        let us_other = |x: f64| x / (0.5 * 0.7 + 0.5);
        let sourcing = us_aa * us_aa * 12.0 + us_other(0.3).powi(2) + us_other(0.2).powi(2) * 2.0;
        close(s.member_sourcing.as_ref().unwrap().hhi_wgi, sourcing);
        close(s.supply_risk, (g.hhi_wgi * 0.4 + sourcing * 0.6) * 0.81);
        close(s.baseline_supply_risk, 2.0655);
        assert!(s.supply_risk > s.baseline_supply_risk);
        assert_eq!(s.applied_disruptions.len(), 1);
        // Another stage or mineral is untouched.
        let mut other_stage = restriction(5, -20.0);
        other_stage.stage = Some(Stage::Mining);
        let d = [other_stage];
        let a = assessor(&data, &p, &d);
        let s = a.assess("US", Mineral::Gallium, Stage::Refining).unwrap();
        close(s.supply_risk, 2.0655);
        assert!(s.applied_disruptions.is_empty());
    }

    #[test]
    fn the_bottleneck_is_the_highest_stage_and_missing_figures_are_not_found() {
        let (data, p) = fixtures();
        let a = assessor(&data, &p, &[]);
        let s = a.bottleneck("US", Mineral::Gallium).unwrap();
        assert_eq!(s.stage, Stage::Refining as i32);
        assert!(matches!(
            a.assess("US", Mineral::Gallium, Stage::Mining),
            Err(AssessError::NotFound(_))
        ));
        assert!(matches!(
            a.bottleneck("US", Mineral::Cobalt),
            Err(AssessError::NotFound(_))
        ));
    }
}

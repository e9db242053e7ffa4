//! The supply-risk formula of the EU criticality assessment, exactly as the
//! contract (`proto/orex/risk/v1/risk.proto`, `SupplyRisk`) states it:
//!
//! ```text
//! SR = (HHI_WGI(GS) × IR/2 + HHI_WGI(sourcing) × (1 − IR/2)) × (1 − EoL_RIR) × SI_SR
//! HHI_WGI(mix) = Σ share² × governance_score × trade_restriction_factor
//! ```
//!
//! GS is global supply at the stage, "sourcing" the member's own supply mix
//! (domestic production plus imports by origin), IR the member's import
//! reliance, EoL_RIR the end-of-life recycling input rate, SI_SR the
//! substitution index. Every intermediate value is returned, not only the
//! score: the answer must let an analyst redo the arithmetic.

/// One supplier country in a supply mix.
#[derive(Debug, Clone, PartialEq)]
pub struct Supplier {
    /// ISO 3166-1 alpha-2 code.
    pub country: String,
    /// Share of the mix, 0 to 1.
    pub share: f64,
    /// Scaled governance score, 0 (best) to 10 (worst).
    pub governance_score: f64,
    /// The EU method's trade factor t: 1 by default, up to 2 for export
    /// restrictions, 0.8 for a country with a trade agreement in force
    /// (the published EU data gives EU member states 0.8).
    pub trade_restriction_factor: f64,
    /// A partnership member (or a state of a member bloc).
    pub partner: bool,
}

/// One supplier's term of the concentration.
#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    /// The supplier.
    pub supplier: Supplier,
    /// share² × governance_score × trade_restriction_factor.
    pub hhi_wgi_contribution: f64,
}

/// The concentration of a supply mix, largest share first.
#[derive(Debug, Clone, PartialEq)]
pub struct Concentration {
    /// Every supplier with its term.
    pub terms: Vec<Term>,
    /// Σ share².
    pub hhi: f64,
    /// Σ share² × governance_score × trade_restriction_factor.
    pub hhi_wgi: f64,
}

/// Why figures cannot enter the formula.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FormulaError {
    /// A figure is outside its range; the message names it.
    #[error("{0}")]
    OutOfRange(String),
}

pub use orex_reference::{MAX_TRADE_FACTOR, MIN_TRADE_FACTOR, SHARE_SUM_TOLERANCE};

fn fraction(what: &str, v: f64) -> Result<(), FormulaError> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(FormulaError::OutOfRange(format!(
            "{what} must be from 0 to 1, got {v}"
        )))
    }
}

/// The concentration of `mix`. Shares must be fractions summing to 1 (within
/// [`SHARE_SUM_TOLERANCE`]); governance scores 0–10; trade factors 0.8–2.
pub fn concentration(mix: &[Supplier]) -> Result<Concentration, FormulaError> {
    let mut sum = 0.0;
    for s in mix {
        fraction(&format!("share of {}", s.country), s.share)?;
        if !(0.0..=10.0).contains(&s.governance_score) {
            return Err(FormulaError::OutOfRange(format!(
                "governance score of {} must be from 0 to 10, got {}",
                s.country, s.governance_score
            )));
        }
        if !(MIN_TRADE_FACTOR..=MAX_TRADE_FACTOR).contains(&s.trade_restriction_factor) {
            return Err(FormulaError::OutOfRange(format!(
                "trade-restriction factor of {} must be from 0.8 to 2, got {}",
                s.country, s.trade_restriction_factor
            )));
        }
        sum += s.share;
    }
    if mix.is_empty() || (sum - 1.0).abs() > SHARE_SUM_TOLERANCE {
        return Err(FormulaError::OutOfRange(format!(
            "shares of a supply mix must sum to 1, got {sum}"
        )));
    }
    let mut terms: Vec<Term> = mix
        .iter()
        .map(|s| Term {
            hhi_wgi_contribution: s.share
                * s.share
                * s.governance_score
                * s.trade_restriction_factor,
            supplier: s.clone(),
        })
        .collect();
    terms.sort_by(|a, b| b.supplier.share.total_cmp(&a.supplier.share));
    Ok(Concentration {
        hhi: terms
            .iter()
            .map(|t| t.supplier.share * t.supplier.share)
            .sum(),
        hhi_wgi: terms.iter().map(|t| t.hhi_wgi_contribution).sum(),
        terms,
    })
}

/// The inputs of a score besides the two mixes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Factors {
    /// Import reliance IR, 0 to 1.
    pub import_reliance: f64,
    /// End-of-life recycling input rate, 0 to 1.
    pub end_of_life_recycling_input_rate: f64,
    /// Substitution index SI_SR, 0 to 1.
    pub substitution_index: f64,
}

/// A score with what it was computed from.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// SR.
    pub supply_risk: f64,
    /// HHI_WGI(GS) × IR/2 + HHI_WGI(sourcing) × (1 − IR/2).
    pub weighted_concentration: f64,
    /// The formula with its numbers, for display.
    pub formula: String,
}

/// SR from the concentrations of global supply and of the member's sourcing.
pub fn supply_risk(
    global: &Concentration,
    sourcing: &Concentration,
    f: Factors,
) -> Result<Score, FormulaError> {
    fraction("import reliance", f.import_reliance)?;
    fraction(
        "end-of-life recycling input rate",
        f.end_of_life_recycling_input_rate,
    )?;
    fraction("substitution index", f.substitution_index)?;
    let half = f.import_reliance / 2.0;
    let weighted = global.hhi_wgi * half + sourcing.hhi_wgi * (1.0 - half);
    let supply_risk = weighted * (1.0 - f.end_of_life_recycling_input_rate) * f.substitution_index;
    let formula = format!(
        "SR = ({:.4} × {:.4}/2 + {:.4} × (1 − {:.4}/2)) × (1 − {:.4}) × {:.4} = {:.4}",
        global.hhi_wgi,
        f.import_reliance,
        sourcing.hhi_wgi,
        f.import_reliance,
        f.end_of_life_recycling_input_rate,
        f.substitution_index,
        supply_risk
    );
    Ok(Score {
        supply_risk,
        weighted_concentration: weighted,
        formula,
    })
}

/// The code the reference data gives an unattributed remainder ("other
/// countries"): many suppliers, so never a single supplier.
pub const REST_OF_WORLD: &str = "ZZ";

/// The largest supplier of `sourcing` that is not a partner (nor the rest of
/// the world), and whether its share exceeds `ceiling` (the EU Critical Raw
/// Materials Act's 0.65).
pub fn largest_outside_supplier(
    sourcing: &Concentration,
    ceiling: f64,
) -> Option<(&Supplier, bool)> {
    sourcing
        .terms
        .iter()
        .map(|t| &t.supplier)
        .filter(|s| !s.partner && s.country != REST_OF_WORLD)
        .max_by(|a, b| a.share.total_cmp(&b.share))
        .map(|s| (s, s.share > ceiling))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn supplier(country: &str, share: f64, governance: f64, partner: bool) -> Supplier {
        Supplier {
            country: country.into(),
            share,
            governance_score: governance,
            trade_restriction_factor: 1.0,
            partner,
        }
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn concentration_by_hand() {
        // 0.6² × 6 + 0.3² × 3 + 0.1² × 1 = 2.16 + 0.27 + 0.01 = 2.44
        let c = concentration(&[
            supplier("AA", 0.3, 3.0, false),
            supplier("BB", 0.6, 6.0, false),
            supplier("CC", 0.1, 1.0, true),
        ])
        .unwrap();
        close(c.hhi, 0.36 + 0.09 + 0.01);
        close(c.hhi_wgi, 2.44);
        assert_eq!(c.terms[0].supplier.country, "BB", "largest share first");
        close(c.terms[0].hhi_wgi_contribution, 2.16);
    }

    #[test]
    fn an_export_restriction_raises_its_countrys_term() {
        let mut restricted = supplier("BB", 0.6, 6.0, false);
        restricted.trade_restriction_factor = 1.5;
        let c = concentration(&[supplier("AA", 0.4, 3.0, false), restricted]).unwrap();
        // 0.36 × 6 × 1.5 + 0.16 × 3 = 3.24 + 0.48
        close(c.hhi_wgi, 3.72);
    }

    #[test]
    fn supply_risk_by_hand() {
        let global = concentration(&[supplier("BB", 1.0, 6.0, false)]).unwrap(); // 6
        let sourcing = concentration(&[
            supplier("BB", 0.5, 6.0, false),
            supplier("CC", 0.5, 2.0, true),
        ])
        .unwrap(); // 0.25 × 6 + 0.25 × 2 = 2
        let s = supply_risk(
            &global,
            &sourcing,
            Factors {
                import_reliance: 0.8,
                end_of_life_recycling_input_rate: 0.1,
                substitution_index: 0.9,
            },
        )
        .unwrap();
        // (6 × 0.4 + 2 × 0.6) × 0.9 × 0.9 = 3.6 × 0.81 = 2.916
        close(s.weighted_concentration, 3.6);
        close(s.supply_risk, 2.916);
        assert!(s.formula.ends_with("= 2.9160"), "{}", s.formula);
    }

    /// A concentration given as its published aggregate.
    fn published(hhi_wgi: f64) -> Concentration {
        Concentration {
            terms: vec![],
            hhi: 0.0,
            hhi_wgi,
        }
    }

    /// Recomputes published EU supply-risk figures from their published
    /// inputs: European Commission, "Study on the review of the list of
    /// Critical Raw Materials — Criticality Assessments" (2017), Table 3
    /// (SR, IR, EoL-RIR; pp. 33–35) and Table 18 (SI_SR and the
    /// (HHI_WGI-t) of global supply and EU sourcing; pp. 79–80). SR and
    /// the concentrations are published rounded to one decimal, so the
    /// recomputed score must be within 0.1 of the published one (tungsten
    /// 1.817 for 1.8). (Sources and the full table:
    /// services/reference/data/RESEARCH.md §2.3.)
    #[test]
    fn published_eu_figures_are_recomputed() {
        // (material, GS, EU28, IR, EoL-RIR, SI_SR, published SR)
        for (material, gs, eu, ir, eol, si, sr) in [
            ("tungsten", 7.5, 1.9, 0.44, 0.42, 1.0, 1.8),
            ("germanium", 2.9, 1.5, 0.64, 0.02, 1.0, 1.9),
            ("natural graphite", 3.2, 2.9, 0.99, 0.03, 1.0, 2.9),
        ] {
            let s = supply_risk(
                &published(gs),
                &published(eu),
                Factors {
                    import_reliance: ir,
                    end_of_life_recycling_input_rate: eol,
                    substitution_index: si,
                },
            )
            .unwrap();
            assert!(
                (s.supply_risk - sr).abs() < 0.1,
                "{material}: published {sr}, {}",
                s.formula
            );
        }
    }

    #[test]
    fn the_ceiling_ignores_partners() {
        let sourcing = concentration(&[
            supplier("US", 0.7, 2.0, true),
            supplier("BB", 0.3, 6.0, false),
        ])
        .unwrap();
        let (s, exceeds) = largest_outside_supplier(&sourcing, 0.65).unwrap();
        assert_eq!((s.country.as_str(), exceeds), ("BB", false));
        let sourcing = concentration(&[
            supplier("BB", 0.7, 6.0, false),
            supplier("US", 0.3, 2.0, true),
        ])
        .unwrap();
        assert!(largest_outside_supplier(&sourcing, 0.65).unwrap().1);
        // "Other countries" are many suppliers, not one.
        let sourcing = concentration(&[
            supplier("ZZ", 0.7, 5.0, false),
            supplier("BB", 0.3, 6.0, false),
        ])
        .unwrap();
        let (s, exceeds) = largest_outside_supplier(&sourcing, 0.65).unwrap();
        assert_eq!((s.country.as_str(), exceeds), ("BB", false));
    }

    #[test]
    fn figures_out_of_range_are_refused_by_name() {
        for (mix, says) in [
            (vec![supplier("AA", 1.2, 1.0, false)], "share of AA"),
            (
                vec![supplier("AA", 1.0, 11.0, false)],
                "governance score of AA",
            ),
            (vec![supplier("AA", 0.5, 1.0, false)], "sum to 1"),
            (vec![], "sum to 1"),
        ] {
            let err = concentration(&mix).unwrap_err();
            assert!(err.to_string().contains(says), "{err}");
        }
        let c = concentration(&[supplier("AA", 1.0, 1.0, false)]).unwrap();
        let err = supply_risk(
            &c,
            &c,
            Factors {
                import_reliance: 1.5,
                end_of_life_recycling_input_rate: 0.0,
                substitution_index: 1.0,
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("import reliance"), "{err}");
    }
}

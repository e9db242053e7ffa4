//! Stockpile reports: their coverage measures, what each viewer may see of
//! them, and the partnership aggregate every member sees.

use std::collections::BTreeMap;

use orex_membership::{Audience, Partnership, Principal};
use orex_proto::common::v1::Marking;
use orex_proto::emergency::v1::{
    Stockpile, StockpileAggregate, StockpileFigures, stockpile_content,
};

const DAYS_PER_YEAR: f64 = 365.0;

/// Who reads stockpiles.
#[derive(Debug, Clone)]
pub enum Viewer {
    /// A member principal, forwarded by the gateway.
    Member(Principal),
    /// A workload reading as itself (the risk service's scenarios): it sees
    /// figures only of CLEAR and GREEN reports, so nothing it computes can
    /// reveal figures a member restricted.
    Workload(String),
}

/// The report's figures, if it discloses them.
pub fn figures(s: &Stockpile) -> Option<&StockpileFigures> {
    match s.content.as_ref()?.disclosure.as_ref()? {
        stockpile_content::Disclosure::Figures(f) => Some(f),
        stockpile_content::Disclosure::Refusal(_) => None,
    }
}

/// `v` if it is a finite number: a tiny flow (which validation allows)
/// must not put an infinity or NaN into an answer.
fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// Days a stock covers a yearly flow; none for a flow that is not positive.
fn days_of(stock: f64, per_year: f64) -> Option<f64> {
    (per_year > 0.0)
        .then(|| stock * DAYS_PER_YEAR / per_year)
        .and_then(finite)
}

/// Fills in the coverage measures the contract defines from the figures.
pub fn with_coverage(mut s: Stockpile) -> Stockpile {
    let (days, imports, share) = match figures(&s) {
        Some(f) => (
            days_of(f.stockpile_tonnes, f.consumption_tonnes_per_year),
            days_of(f.stockpile_tonnes, f.net_imports_tonnes_per_year),
            finite(f.stockpile_tonnes / f.consumption_tonnes_per_year),
        ),
        None => (None, None, None),
    };
    s.days_of_cover = days;
    s.days_of_net_imports = imports;
    s.share_of_annual_consumption = share;
    s
}

/// True when `viewer` may see the figures of `s` (the reporting member's
/// principals always may).
pub fn may_see_figures(viewer: &Viewer, s: &Stockpile, partnership: &Partnership) -> bool {
    let Some(c) = &s.content else {
        return false;
    };
    match viewer {
        Viewer::Workload(_) => orex_membership::partnership_wide(c.marking()),
        Viewer::Member(who) => {
            let author = s.reported_by.clone().unwrap_or_default();
            partnership.can_see(
                who,
                &Audience {
                    marking: c.marking(),
                    author: &author,
                    recipient_members: &c.recipient_members,
                    recipient_principals: &[],
                },
            )
        }
    }
}

/// `s` as `viewer` may see it: figures and coverage removed, and
/// `figures_restricted` set, when the marking does not include the viewer.
pub fn screened(viewer: &Viewer, mut s: Stockpile, partnership: &Partnership) -> Stockpile {
    if figures(&s).is_some() && !may_see_figures(viewer, &s, partnership) {
        if let Some(c) = s.content.as_mut() {
            c.disclosure = None;
            if c.marking() == Marking::AmberStrict || c.marking() == Marking::Amber {
                // Who else may see them is the reporter's business.
                c.recipient_members.clear();
            }
        }
        s.days_of_cover = None;
        s.days_of_net_imports = None;
        s.share_of_annual_consumption = None;
        s.figures_restricted = true;
    }
    s
}

/// The partnership aggregate of each mineral in `reports` (every member's
/// latest report). Only CLEAR and GREEN figures are summed: a sum every
/// member sees would give restricted figures away (one restricted report
/// among visible ones is the difference); restricted ones are counted.
pub fn aggregates<'a>(reports: impl IntoIterator<Item = &'a Stockpile>) -> Vec<StockpileAggregate> {
    let mut by: BTreeMap<i32, StockpileAggregate> = BTreeMap::new();
    for s in reports {
        let Some(c) = &s.content else { continue };
        let a = by.entry(c.mineral).or_insert_with(|| StockpileAggregate {
            mineral: c.mineral,
            ..Default::default()
        });
        let partnership_wide = orex_membership::partnership_wide(c.marking());
        match figures(s) {
            Some(_) if !partnership_wide => a.members_restricted += 1,
            Some(f) => {
                a.members_with_figures += 1;
                a.stockpile_tonnes += f.stockpile_tonnes;
                a.consumption_tonnes_per_year += f.consumption_tonnes_per_year;
                a.net_imports_tonnes_per_year += f.net_imports_tonnes_per_year;
            }
            None => a.members_refusing += 1,
        }
    }
    by.into_values()
        .map(|mut a| {
            a.days_of_cover = days_of(a.stockpile_tonnes, a.consumption_tonnes_per_year);
            a.days_of_net_imports = days_of(a.stockpile_tonnes, a.net_imports_tonnes_per_year);
            a
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use orex_proto::common::v1::Mineral;
    use orex_proto::emergency::v1::{DisclosureRefusal, StockpileContent};

    fn report(member: &str, figures: Option<(f64, f64, f64)>) -> Stockpile {
        Stockpile {
            member: member.into(),
            content: Some(StockpileContent {
                mineral: Mineral::Gallium as i32,
                disclosure: Some(match figures {
                    Some((s, c, n)) => stockpile_content::Disclosure::Figures(StockpileFigures {
                        stockpile_tonnes: s,
                        consumption_tonnes_per_year: c,
                        net_imports_tonnes_per_year: n,
                    }),
                    None => stockpile_content::Disclosure::Refusal(DisclosureRefusal {
                        reason: "national security".into(),
                        legal_basis: String::new(),
                    }),
                }),
                marking: Marking::Green as i32,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn coverage_by_hand() {
        // 73 t against 365 t/y consumption: 73 days, a fifth of a year;
        // against 146 t/y net imports: 182.5 days.
        let s = with_coverage(report("US", Some((73.0, 365.0, 146.0))));
        assert_eq!(s.days_of_cover, Some(73.0));
        assert_eq!(s.share_of_annual_consumption, Some(0.2));
        assert_eq!(s.days_of_net_imports, Some(182.5));
        // A net exporter has no import cover; a refusal has no measures.
        let exporter = with_coverage(report("AU", Some((10.0, 100.0, -50.0))));
        assert_eq!(exporter.days_of_net_imports, None);
        // A flow so small it underflows gives no measure, never infinity.
        let tiny = with_coverage(report("CA", Some((1.0, 1e-320, 1e-320))));
        assert_eq!((tiny.days_of_cover, tiny.days_of_net_imports), (None, None));
        let refused = with_coverage(report("EU", None));
        assert_eq!(
            (refused.days_of_cover, refused.share_of_annual_consumption),
            (None, None)
        );
    }

    #[test]
    fn the_aggregate_sums_figures_and_counts_refusals() {
        let mut restricted = report("KR", Some((500.0, 1.0, 1.0)));
        restricted.content.as_mut().unwrap().marking = Marking::Amber as i32;
        let reports = [
            report("US", Some((100.0, 365.0, 365.0))),
            report("JP", Some((46.0, 365.0, -146.0))),
            report("EU", None),
            restricted,
        ];
        let a = aggregates(&reports);
        assert_eq!(a.len(), 1);
        let a = &a[0];
        assert_eq!(
            (
                a.members_with_figures,
                a.members_refusing,
                a.members_restricted
            ),
            (2, 1, 1)
        );
        assert_eq!(a.stockpile_tonnes, 146.0);
        // 146 t against 730 t/y: 73 days; against 219 t/y net: 243.33 days.
        assert_eq!(a.days_of_cover, Some(73.0));
        assert!((a.days_of_net_imports.unwrap() - 146.0 / (219.0 / 365.0)).abs() < 1e-9);
    }
}

//! The reference data shipped in the repository (`services/reference/data/
//! reference.toml`): it validates as a whole, covers the minerals the
//! partnership follows, and every figure cites a listed source (the parser
//! refuses a file where one does not).

use orex_proto::common::v1::{Mineral, Stage};
use orex_reference::ReferenceData;

/// The minerals the issue names (rare earths as the EU's two groups).
const FOLLOWED: [Mineral; 11] = [
    Mineral::LightRareEarths,
    Mineral::HeavyRareEarths,
    Mineral::Gallium,
    Mineral::Germanium,
    Mineral::Graphite,
    Mineral::Lithium,
    Mineral::Cobalt,
    Mineral::Nickel,
    Mineral::Tungsten,
    Mineral::Antimony,
    Mineral::Magnesium,
];

fn shipped() -> ReferenceData {
    ReferenceData::parse(orex_reference::SHIPPED.as_bytes())
        .unwrap_or_else(|e| panic!("data/reference.toml: {e}"))
}

#[test]
fn the_shipped_file_validates() {
    let r = shipped();
    assert!(!r.version.is_empty());
    assert!(!r.sources.is_empty());
}

#[test]
fn every_followed_mineral_has_supply_a_price_and_partner_sourcing() {
    let r = shipped();
    for m in FOLLOWED {
        let stages: Vec<Stage> = r
            .supply
            .keys()
            .filter(|(mineral, _)| *mineral == m)
            .map(|(_, s)| *s)
            .collect();
        assert!(!stages.is_empty(), "{m:?}: no [[supply]] entry");
        assert!(r.prices.contains_key(&m), "{m:?}: no reference price");
        for member in ["US", "EU"] {
            assert!(
                r.sourcing
                    .keys()
                    .any(|(who, mineral, _)| who == member && *mineral == m),
                "{m:?}: no [[sourcing]] for {member}"
            );
        }
    }
}

#[test]
fn every_source_says_its_year() {
    let r = shipped();
    for s in r.sources.values() {
        assert!(s.year > 0, "source {} has no year", s.id);
    }
}

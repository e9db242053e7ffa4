//! The partnership's reference data: a versioned TOML file in which every
//! figure cites a published source, validated as a whole before it is used
//! (a file that fails is refused; a service keeps the version in force).
//! The risk service computes scores from it, the emergency service splits
//! releases by its consumption figures when a member withholds its own. Its
//! version goes out with every answer, its SHA-256 with
//! `GetReferenceDataVersion`. The shipped file is `data/reference.toml`
//! ([`SHIPPED`]); its sources and method are in `data/RESEARCH.md`.
//!
//! ```toml
//! version = "2026.1"
//! published_at = "2026-11-26T00:00:00Z"
//!
//! [[sources]]                     # every source the figures cite
//! id = "usgs-mcs-2024"
//! title = "Mineral Commodity Summaries 2024"
//! publisher = "U.S. Geological Survey"
//! url = "https://…"
//! year = 2024
//!
//! [[countries]]                   # scaled governance, 0 (best) to 10 (worst)
//! code = "…"
//! name = "…"
//! governance_score = …
//! source = "…"                    # a listed source id
//! bloc = "EU"                     # optional: the bloc the state belongs to
//!
//! [[supply]]                      # global supply of a mineral at a stage
//! mineral = "gallium"             # the proto's Mineral names, lower case
//! stage = "refining"              # the proto's Stage names, lower case
//! substitution_index = …          # SI_SR, 0 to 1
//! end_of_life_recycling_input_rate = …
//! source = "…"
//! world_tonnes_per_year = …       # optional; scenarios need it
//! volume_source = "…"             # required with world_tonnes_per_year
//! shares = [{ country = "…", share = …, source = "…" }, …]
//!                                 # a share may carry trade_restriction_factor (t, 0.8–2)
//!
//! [[sourcing]]                    # a member's own supply mix at a stage
//! member = "EU"
//! mineral = "gallium"
//! stage = "refining"
//! import_reliance = …
//! source = "…"
//! shares = […]
//!
//! [[consumption]]                 # a member's consumption (scenarios, emergency allocation)
//! member = "US"
//! mineral = "gallium"
//! tonnes_per_year = …
//! source = "…"
//!
//! [[prices]]                      # one reference price per mineral
//! mineral = "gallium"
//! product_form = "…"
//! usd_per_tonne = …
//! dumping_margin = 0.2            # "more than 20% below" is dumping
//! effective_from = "2025-01-31T00:00:00Z"
//! basis = "…"
//! source = "…"
//! ```
//!
//! (The shape only; figures and their sources: `services/reference/data/`.)
//!
//! The country code `ZZ` (user-assigned in ISO 3166-1) stands for the
//! unattributed remainder of a mix ("other countries"): it enters the
//! concentration like a country, but is never the single supplier of the
//! dependence check.
//!
//! Any figure may carry `estimate = true`: the file then says it is an
//! estimate, and so does every answer built on it (`estimates` in scores
//! and scenario results, "(an estimate)" in a price's basis). On a
//! `[[supply]]` entry it covers SI_SR, EoL_RIR and the world output.

use std::collections::{BTreeMap, BTreeSet};

use orex_proto::common::v1::{Mineral, Stage};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The reference data file shipped with orex (`orex up` copies it).
pub const SHIPPED: &str = include_str!("../data/reference.toml");

/// The lowest trade factor t (a trade agreement in force).
pub const MIN_TRADE_FACTOR: f64 = 0.8;
/// The highest trade factor t (the strictest export restriction).
pub const MAX_TRADE_FACTOR: f64 = 2.0;

/// Shares of a mix may sum to 1 within this much (published shares are rounded).
pub const SHARE_SUM_TOLERANCE: f64 = 0.02;

/// Why a reference data file was refused; the message names the entry.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("reference data: {0}")]
pub struct ReferenceError(pub String);

fn refuse<T>(message: impl Into<String>) -> Result<T, ReferenceError> {
    Err(ReferenceError(message.into()))
}

/// A published source.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// Short id the figures cite.
    pub id: String,
    /// Title of the publication or data set.
    pub title: String,
    /// Who publishes it.
    pub publisher: String,
    /// Where to read it (https), if public.
    #[serde(default)]
    pub url: String,
    /// Year of publication or of the data.
    #[serde(default)]
    pub year: u32,
    /// Licence of the data, if known.
    #[serde(default)]
    pub license: String,
    /// What it provides and any transformation applied.
    #[serde(default)]
    pub notes: String,
}

/// A country's scaled governance score.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Country {
    /// ISO 3166-1 alpha-2.
    pub code: String,
    /// The country's name, for people.
    #[serde(default)]
    pub name: String,
    /// The bloc the state belongs to (`EU`), a fact of the world: a state of
    /// a bloc that is a partnership member counts as a partner even when the
    /// policy does not list it as a member of its own.
    #[serde(default)]
    pub bloc: Option<String>,
    /// 0 (best) to 10 (worst).
    pub governance_score: f64,
    /// The source cited.
    pub source: String,
    /// An estimate rather than a published figure.
    #[serde(default)]
    pub estimate: bool,
}

/// One country's share of a mix.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Share {
    /// ISO 3166-1 alpha-2.
    pub country: String,
    /// 0 to 1.
    pub share: f64,
    /// The source cited.
    pub source: String,
    /// An estimate rather than a published figure.
    #[serde(default)]
    pub estimate: bool,
    /// The trade-restriction factor t the source gives this country (0.8
    /// to 2; 1 when absent). Live export restrictions raise it further.
    #[serde(default = "one")]
    pub trade_restriction_factor: f64,
}

fn one() -> f64 {
    1.0
}

/// Global supply of a mineral at a stage, with its substitution and recycling.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Supply {
    /// `gallium`, `light_rare_earths`, … (the proto's `Mineral` names).
    pub mineral: String,
    /// `mining`, `refining`, … (the proto's `Stage` names).
    pub stage: String,
    /// SI_SR, 0 to 1.
    pub substitution_index: f64,
    /// EoL_RIR, 0 to 1.
    pub end_of_life_recycling_input_rate: f64,
    /// The source of the two figures above.
    pub source: String,
    /// An estimate rather than a published figure.
    #[serde(default)]
    pub estimate: bool,
    /// World output at this stage, tonnes per year (scenarios need it).
    #[serde(default)]
    pub world_tonnes_per_year: Option<f64>,
    /// The source of `world_tonnes_per_year`.
    #[serde(default)]
    pub volume_source: Option<String>,
    /// The producing countries.
    pub shares: Vec<Share>,
}

/// A member's own supply mix of a mineral at a stage.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sourcing {
    /// Member code (`US`, `EU`).
    pub member: String,
    /// The mineral.
    pub mineral: String,
    /// The stage.
    pub stage: String,
    /// IR, 0 to 1.
    pub import_reliance: f64,
    /// The source of the import reliance.
    pub source: String,
    /// An estimate rather than a published figure.
    #[serde(default)]
    pub estimate: bool,
    /// Where the member's supply comes from.
    pub shares: Vec<Share>,
}

/// A member's consumption of a mineral.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consumption {
    /// Member code.
    pub member: String,
    /// The mineral.
    pub mineral: String,
    /// Tonnes per year, positive.
    pub tonnes_per_year: f64,
    /// The source cited.
    pub source: String,
    /// An estimate rather than a published figure.
    #[serde(default)]
    pub estimate: bool,
}

/// The partnership reference price of a mineral.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// The mineral.
    pub mineral: String,
    /// Product form and trade terms.
    pub product_form: String,
    /// US dollars per tonne, positive.
    pub usd_per_tonne: f64,
    /// Fraction below the price that counts as dumping, in (0, 1).
    pub dumping_margin: f64,
    /// When the price took effect (RFC 3339).
    pub effective_from: String,
    /// How the price is set.
    pub basis: String,
    /// The source cited.
    pub source: String,
    /// An estimate rather than a published figure.
    #[serde(default)]
    pub estimate: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: String,
    published_at: String,
    sources: Vec<Source>,
    #[serde(default)]
    countries: Vec<Country>,
    #[serde(default)]
    supply: Vec<Supply>,
    #[serde(default)]
    sourcing: Vec<Sourcing>,
    #[serde(default)]
    consumption: Vec<Consumption>,
    #[serde(default)]
    prices: Vec<Price>,
}

/// A validated reference data set.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceData {
    /// The version label.
    pub version: String,
    /// When the partnership published this version (RFC 3339).
    pub published_at: String,
    /// SHA-256 (lower-case hex) of the file's bytes.
    pub content_sha256: String,
    /// Every source, by id.
    pub sources: BTreeMap<String, Source>,
    /// Governance scores by country code.
    pub countries: BTreeMap<String, Country>,
    /// Global supply by (mineral, stage).
    pub supply: BTreeMap<(Mineral, Stage), Supply>,
    /// Member sourcing by (member, mineral, stage).
    pub sourcing: BTreeMap<(String, Mineral, Stage), Sourcing>,
    /// Member consumption by (member, mineral).
    pub consumption: BTreeMap<(String, Mineral), Consumption>,
    /// Reference prices by mineral.
    pub prices: BTreeMap<Mineral, Price>,
}

/// The proto enum value named `name` (`gallium` → `MINERAL_GALLIUM`).
pub fn mineral(name: &str) -> Option<Mineral> {
    orex_proto::names::parse_mineral(name)
}

/// The proto enum value named `name` (`refining` → `STAGE_REFINING`).
pub fn stage(name: &str) -> Option<Stage> {
    orex_proto::names::parse_stage(name)
}

fn country_code(code: &str) -> bool {
    code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase())
}

/// A member code as the policy writes them: 2 to 8 capital letters.
fn member_code(code: &str) -> bool {
    (2..=8).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_uppercase())
}

fn positive(what: &str, v: f64) -> Result<(), ReferenceError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        refuse(format!("{what} must be a positive number, got {v}"))
    }
}

/// An RFC 3339 instant.
fn instant(what: &str, text: &str) -> Result<prost_types::Timestamp, ReferenceError> {
    text.parse()
        .map_err(|_| ReferenceError(format!("{what}: {text:?} is not an RFC 3339 instant")))
}

/// Whether a newly read file should replace the data in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replacement {
    /// The same bytes: nothing changes.
    Same,
    /// New figures under a new version, or the same figures with other
    /// comments or layout.
    Replace,
}

impl ReferenceData {
    /// Judges `new` against the data in force: the same bytes change
    /// nothing, and a file whose figures changed must carry a new version —
    /// every answer names the version, so one version must mean one set of
    /// figures.
    pub fn replacement(&self, new: &ReferenceData) -> Result<Replacement, ReferenceError> {
        if self.content_sha256 == new.content_sha256 {
            return Ok(Replacement::Same);
        }
        if self.version == new.version && !self.same_figures(new) {
            return refuse(format!(
                "version {:?} is in force with other figures; a file whose figures change must carry a new version",
                self.version
            ));
        }
        Ok(Replacement::Replace)
    }

    /// True when `other` carries the same version, publication date, sources
    /// and figures — whatever its comments and layout.
    pub fn same_figures(&self, other: &ReferenceData) -> bool {
        ReferenceData {
            content_sha256: String::new(),
            ..self.clone()
        } == ReferenceData {
            content_sha256: String::new(),
            ..other.clone()
        }
    }

    /// Parses and validates the bytes of a reference data file.
    pub fn parse(bytes: &[u8]) -> Result<ReferenceData, ReferenceError> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| ReferenceError("the file is not UTF-8".into()))?;
        let file: File = toml::from_str(text).map_err(|e| ReferenceError(e.to_string()))?;
        if file.version.trim().is_empty() {
            return refuse("version is empty");
        }
        instant("published_at", &file.published_at)?;
        let mut sources = BTreeMap::new();
        for s in file.sources {
            if s.id.is_empty() || s.title.is_empty() || s.publisher.is_empty() {
                return refuse(format!(
                    "source {:?}: id, title and publisher are required",
                    s.id
                ));
            }
            if !s.url.is_empty() && !s.url.starts_with("https://") {
                return refuse(format!("source {}: url must be https", s.id));
            }
            let id = s.id.clone();
            if sources.insert(id.clone(), s).is_some() {
                return refuse(format!("source {id} is listed twice"));
            }
        }
        let cited = |what: &str, id: &str| -> Result<(), ReferenceError> {
            if sources.contains_key(id) {
                Ok(())
            } else {
                refuse(format!("{what} cites source {id:?}, which is not listed"))
            }
        };
        let fraction = |what: &str, v: f64| -> Result<(), ReferenceError> {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                refuse(format!("{what} must be from 0 to 1, got {v}"))
            }
        };
        let mut countries = BTreeMap::new();
        for c in file.countries {
            if !country_code(&c.code) {
                return refuse(format!(
                    "country {:?} is not an ISO 3166-1 alpha-2 code",
                    c.code
                ));
            }
            if !(0.0..=10.0).contains(&c.governance_score) {
                return refuse(format!(
                    "country {}: governance_score must be from 0 to 10, got {}",
                    c.code, c.governance_score
                ));
            }
            cited(&format!("country {}", c.code), &c.source)?;
            if let Some(bloc) = &c.bloc
                && !member_code(bloc)
            {
                return refuse(format!(
                    "country {}: bloc {bloc:?} is not a member code",
                    c.code
                ));
            }
            let code = c.code.clone();
            if countries.insert(code.clone(), c).is_some() {
                return refuse(format!("country {code} is listed twice"));
            }
        }
        let mix = |what: &str, shares: &[Share]| -> Result<(), ReferenceError> {
            let mut seen = BTreeSet::new();
            let mut sum = 0.0;
            for s in shares {
                if !countries.contains_key(&s.country) {
                    return refuse(format!(
                        "{what}: country {} has no governance score in [[countries]]",
                        s.country
                    ));
                }
                if !seen.insert(s.country.as_str()) {
                    return refuse(format!("{what}: country {} is listed twice", s.country));
                }
                fraction(&format!("{what}: share of {}", s.country), s.share)?;
                if !(MIN_TRADE_FACTOR..=MAX_TRADE_FACTOR).contains(&s.trade_restriction_factor) {
                    return refuse(format!(
                        "{what}: trade_restriction_factor of {} must be from {MIN_TRADE_FACTOR} to {MAX_TRADE_FACTOR}, got {}",
                        s.country, s.trade_restriction_factor
                    ));
                }
                cited(&format!("{what}: share of {}", s.country), &s.source)?;
                sum += s.share;
            }
            if (sum - 1.0).abs() > SHARE_SUM_TOLERANCE {
                return refuse(format!("{what}: shares sum to {sum}, not 1"));
            }
            Ok(())
        };
        let key = |what: &str, m: &str, s: &str| -> Result<(Mineral, Stage), ReferenceError> {
            match (mineral(m), stage(s)) {
                (Some(m), Some(s)) => Ok((m, s)),
                (None, _) => refuse(format!("{what}: unknown mineral {m:?}")),
                (_, None) => refuse(format!("{what}: unknown stage {s:?}")),
            }
        };
        let mut supply = BTreeMap::new();
        for s in file.supply {
            let what = format!("supply of {} at {}", s.mineral, s.stage);
            let k = key(&what, &s.mineral, &s.stage)?;
            fraction(&format!("{what}: substitution_index"), s.substitution_index)?;
            fraction(
                &format!("{what}: end_of_life_recycling_input_rate"),
                s.end_of_life_recycling_input_rate,
            )?;
            cited(&what, &s.source)?;
            match (s.world_tonnes_per_year, &s.volume_source) {
                (None, None) => {}
                (Some(t), Some(source)) => {
                    positive(&format!("{what}: world_tonnes_per_year"), t)?;
                    cited(&format!("{what}: world_tonnes_per_year"), source)?;
                }
                _ => {
                    return refuse(format!(
                        "{what}: world_tonnes_per_year and volume_source go together"
                    ));
                }
            }
            mix(&what, &s.shares)?;
            if supply.insert(k, s).is_some() {
                return refuse(format!("{what} is listed twice"));
            }
        }
        let mut sourcing = BTreeMap::new();
        for s in file.sourcing {
            let what = format!("sourcing of {} for {} at {}", s.member, s.mineral, s.stage);
            if !member_code(&s.member) {
                return refuse(format!(
                    "{what}: member {:?} is not a member code",
                    s.member
                ));
            }
            let (m, st) = key(&what, &s.mineral, &s.stage)?;
            if !supply.contains_key(&(m, st)) {
                return refuse(format!(
                    "{what}: no [[supply]] entry for that mineral and stage"
                ));
            }
            fraction(&format!("{what}: import_reliance"), s.import_reliance)?;
            cited(&what, &s.source)?;
            mix(&what, &s.shares)?;
            if sourcing.insert((s.member.clone(), m, st), s).is_some() {
                return refuse(format!("{what} is listed twice"));
            }
        }
        let mut consumption = BTreeMap::new();
        for c in file.consumption {
            let what = format!("consumption of {} by {}", c.mineral, c.member);
            if !member_code(&c.member) {
                return refuse(format!(
                    "{what}: member {:?} is not a member code",
                    c.member
                ));
            }
            let Some(m) = mineral(&c.mineral) else {
                return refuse(format!("{what}: unknown mineral {:?}", c.mineral));
            };
            positive(&format!("{what}: tonnes_per_year"), c.tonnes_per_year)?;
            cited(&what, &c.source)?;
            if consumption.insert((c.member.clone(), m), c).is_some() {
                return refuse(format!("{what} is listed twice"));
            }
        }
        let mut prices = BTreeMap::new();
        for p in file.prices {
            let what = format!("price of {}", p.mineral);
            let Some(m) = mineral(&p.mineral) else {
                return refuse(format!("{what}: unknown mineral {:?}", p.mineral));
            };
            positive(&format!("{what}: usd_per_tonne"), p.usd_per_tonne)?;
            if !(p.dumping_margin > 0.0 && p.dumping_margin < 1.0) {
                return refuse(format!(
                    "{what}: dumping_margin must be above 0 and below 1, got {}",
                    p.dumping_margin
                ));
            }
            instant(&format!("{what}: effective_from"), &p.effective_from)?;
            if p.product_form.trim().is_empty() || p.basis.trim().is_empty() {
                return refuse(format!("{what}: product_form and basis are required"));
            }
            cited(&what, &p.source)?;
            if prices.insert(m, p).is_some() {
                return refuse(format!("{what} is listed twice"));
            }
        }
        Ok(ReferenceData {
            version: file.version,
            published_at: file.published_at,
            content_sha256: hex::encode(Sha256::digest(bytes)),
            sources,
            countries,
            supply,
            sourcing,
            consumption,
            prices,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test figures only (countries AA/BB/CC), not reference data.
    const SAMPLE: &str = r#"
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

[[supply]]
mineral = "gallium"
stage = "refining"
substitution_index = 0.9
end_of_life_recycling_input_rate = 0.1
source = "s1"
shares = [{ country = "AA", share = 0.9, source = "s1" }, { country = "BB", share = 0.1, source = "s1" }]

[[sourcing]]
member = "EU"
mineral = "gallium"
stage = "refining"
import_reliance = 0.8
source = "s1"
estimate = true
shares = [{ country = "AA", share = 0.5, source = "s1" }, { country = "BB", share = 0.5, source = "s1", trade_restriction_factor = 0.8 }]

[[consumption]]
member = "EU"
mineral = "gallium"
tonnes_per_year = 40.0
source = "s1"

[[prices]]
mineral = "gallium"
product_form = "Gallium metal"
usd_per_tonne = 500000.0
dumping_margin = 0.2
effective_from = "2025-01-31T00:00:00Z"
basis = "a test price"
source = "s1"
"#;

    #[test]
    fn a_valid_file_is_read_with_its_digest() {
        let r = ReferenceData::parse(SAMPLE.as_bytes()).unwrap();
        assert_eq!(r.version, "test.1");
        assert_eq!(r.content_sha256.len(), 64);
        let s = &r.supply[&(Mineral::Gallium, Stage::Refining)];
        assert_eq!(s.shares.len(), 2);
        let eu = &r.sourcing[&("EU".to_owned(), Mineral::Gallium, Stage::Refining)];
        assert!(eu.estimate);
        assert_eq!(
            eu.shares[0].trade_restriction_factor, 1.0,
            "t defaults to 1"
        );
        assert_eq!(eu.shares[1].trade_restriction_factor, 0.8);
        assert_eq!(
            r.consumption[&("EU".to_owned(), Mineral::Gallium)].tonnes_per_year,
            40.0
        );
        assert_eq!(r.prices[&Mineral::Gallium].dumping_margin, 0.2);
    }

    #[test]
    fn every_flaw_is_refused_by_name() {
        for (from, to, says) in [
            (
                "source = \"s1\"\n[[countries]]",
                "source = \"s9\"\n[[countries]]",
                "not listed",
            ),
            ("share = 0.9", "share = 0.7", "sum to"),
            (
                "mineral = \"gallium\"\nstage = \"refining\"\nsubstitution",
                "mineral = \"unobtainium\"\nstage = \"refining\"\nsubstitution",
                "unknown mineral",
            ),
            (
                "import_reliance = 0.8",
                "import_reliance = 1.8",
                "import_reliance must be from 0 to 1",
            ),
            (
                "governance_score = 2.0",
                "governance_score = 12.0",
                "governance_score must be from 0 to 10",
            ),
            ("code = \"BB\"", "code = \"Bb\"", "ISO 3166-1"),
            ("version = \"test.1\"", "version = \"\"", "version is empty"),
            (
                "published_at = \"2026-11-26T00:00:00Z\"",
                "published_at = \"yesterday\"",
                "RFC 3339",
            ),
            (
                "trade_restriction_factor = 0.8",
                "trade_restriction_factor = 2.5",
                "trade_restriction_factor of BB",
            ),
            (
                "tonnes_per_year = 40.0",
                "tonnes_per_year = -1.0",
                "positive",
            ),
            (
                "dumping_margin = 0.2",
                "dumping_margin = 1.0",
                "dumping_margin",
            ),
            (
                "usd_per_tonne = 500000.0",
                "usd_per_tonne = nan",
                "usd_per_tonne must be a positive",
            ),
            (
                "substitution_index = 0.9",
                "substitution_index = 0.9\nworld_tonnes_per_year = 10.0",
                "go together",
            ),
            (
                "publisher = \"Nobody\"",
                "publisher = \"Nobody\"\ncolour = \"red\"",
                "colour",
            ),
        ] {
            assert!(SAMPLE.contains(from), "{from}");
            let err = ReferenceData::parse(SAMPLE.replacen(from, to, 1).as_bytes()).unwrap_err();
            assert!(err.to_string().contains(says), "{from:?}: {err}");
        }
    }

    #[test]
    fn enum_names_are_the_protos() {
        assert_eq!(mineral("light_rare_earths"), Some(Mineral::LightRareEarths));
        assert_eq!(stage("MINING"), Some(Stage::Mining));
        assert_eq!(mineral("unspecified"), None);
    }
}

//! The emergency service's configuration file (`emergency.toml`), with
//! `OREX_EMERGENCY__*` environment overrides.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use orex_kit::KitError;
use orex_kit::tls::TlsFiles;
use serde::Deserialize;

use crate::voting::{Rule, Threshold};

/// Configuration of one emergency service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmergencyConfig {
    /// Address to listen on for mutual-TLS gRPC (`0.0.0.0:7103` in a cluster).
    pub listen: SocketAddr,
    /// Folder of the sled store (stockpiles, cases, their event log); created if missing.
    pub data_dir: PathBuf,
    /// The partnership policy file (members, blocs, founding parties).
    pub policy: PathBuf,
    /// The partnership's reference data (consumption figures for members
    /// that withhold their own), mounted like the policy and reloaded when
    /// it changes.
    pub reference_data: PathBuf,
    /// This service's certificate, key and the partnership CA.
    pub tls: TlsFiles,
    /// Workloads that forward member principals (the gateway). Default: the gateway.
    #[serde(default = "default_allowed")]
    pub allowed_workloads: Vec<String>,
    /// Workloads that read stockpiles as themselves (the risk service's
    /// scenarios): they may call only `ListStockpiles`, and see figures only
    /// of reports marked CLEAR or GREEN. Default: none.
    #[serde(default)]
    pub reader_workloads: Vec<String>,
    /// How votes are decided.
    #[serde(default)]
    pub voting: VotingConfig,
    /// How case event streams treat slow clients.
    #[serde(default)]
    pub streams: orex_kit::stream::StreamConfig,
    /// The sled store's memory (`cache_mib`).
    #[serde(default)]
    pub store: orex_kit::store::StoreConfig,
    /// The plain-text port for health probes and Prometheus (`[ops] listen`);
    /// off by default. See `orex_kit::ops`.
    #[serde(default)]
    pub ops: orex_kit::ops::OpsConfig,
}

/// `[voting]`: the activation rule and how long a vote may stay open.
///
/// ```toml
/// [voting]
/// founding = "all"        # all | majority | none | "2/3"
/// others = "majority"     # the same choices, for the other voting parties
/// max_voting_hours = 168  # the latest deadline a declaration may set
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VotingConfig {
    /// How many founding parties must approve.
    pub founding: String,
    /// How many of the other voting parties must approve.
    pub others: String,
    /// The latest voting deadline a declaration may set, in hours after it.
    pub max_voting_hours: u32,
}

impl Default for VotingConfig {
    fn default() -> Self {
        Self {
            founding: "all".into(),
            others: "majority".into(),
            max_voting_hours: 168,
        }
    }
}

impl VotingConfig {
    /// The rule these settings describe, or why they describe none.
    pub fn rule(&self) -> Result<Rule, KitError> {
        let rule = Rule {
            founding: threshold("voting.founding", &self.founding)?,
            others: threshold("voting.others", &self.others)?,
        };
        rule.validate()
            .map_err(|e| KitError::Config(format!("voting: {e}")))?;
        Ok(rule)
    }
}

fn threshold(key: &str, text: &str) -> Result<Threshold, KitError> {
    Threshold::parse(text).ok_or_else(|| {
        KitError::Config(format!(
            "{key} = {text:?}: write \"all\", \"majority\", \"none\" or a fraction such as \"2/3\""
        ))
    })
}

fn default_allowed() -> Vec<String> {
    vec!["gateway".into()]
}

impl EmergencyConfig {
    /// Loads `path` with environment overrides and resolves relative paths
    /// against the file's folder.
    pub fn load(path: &Path) -> Result<Self, KitError> {
        let mut c: Self = orex_kit::config::load(path, "emergency")?;
        let base = path.parent().unwrap_or(Path::new("."));
        c.data_dir = orex_kit::config::resolve(base, &c.data_dir);
        c.policy = orex_kit::config::resolve(base, &c.policy);
        c.reference_data = orex_kit::config::resolve(base, &c.reference_data);
        c.tls = c.tls.resolved(base);
        c.store.validate("store")?;
        c.streams.validate("streams")?;
        c.voting.rule()?;
        if !(1..=24 * 90).contains(&c.voting.max_voting_hours) {
            return Err(KitError::Config(format!(
                "voting.max_voting_hours must be from 1 to 2160 (90 days), got {}",
                c.voting.max_voting_hours
            )));
        }
        orex_kit::config::check_workloads(&c.allowed_workloads, &c.reader_workloads, &c.ops)?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_words_or_fractions() {
        let v = |f: &str, o: &str| VotingConfig {
            founding: f.into(),
            others: o.into(),
            max_voting_hours: 1,
        };
        assert_eq!(v("all", "majority").rule().unwrap(), Rule::default());
        assert_eq!(
            v("all", "2/3").rule().unwrap().others,
            Threshold::Fraction {
                numerator: 2,
                denominator: 3
            }
        );
        for bad in ["most", "2/0", "3/2", "/3"] {
            assert!(v("all", bad).rule().is_err(), "{bad}");
        }
        assert!(
            v("none", "none").rule().is_err(),
            "a rule that requires nothing"
        );
    }
}

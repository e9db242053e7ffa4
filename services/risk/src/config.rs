//! The risk service's configuration file (`risk.toml`), with
//! `OREX_RISK__*` environment overrides.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use orex_kit::tls::TlsFiles;
use serde::Deserialize;

/// Configuration of one risk service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskConfig {
    /// Address to listen on for mutual-TLS gRPC.
    pub listen: SocketAddr,
    /// Folder of the sled store (processed report sequences, alerts); created if missing.
    pub data_dir: PathBuf,
    /// The partnership policy file (members and blocs).
    pub policy: PathBuf,
    /// The reference data file (`reference`), mounted like the policy and
    /// reloaded when it changes; a file that does not validate is refused
    /// and the version in force stays.
    pub reference_data: PathBuf,
    /// This service's certificate, key and the partnership CA.
    pub tls: TlsFiles,
    /// Workload names allowed to call, on every route. Default: the gateway.
    #[serde(default = "default_allowed")]
    pub allowed_workloads: Vec<String>,
    /// The sled store's memory (`cache_mib`).
    #[serde(default)]
    pub store: orex_kit::store::StoreConfig,
    /// Thresholds of the assessment.
    #[serde(default)]
    pub assessment: AssessmentConfig,
    /// The sharing service whose report stream moves scores, followed as
    /// this service's own workload (`risk`, which the sharing service must
    /// list in its `reader_workloads`). Without it scores come from the
    /// reference data alone (disruptions kept in the store are set aside
    /// until it is configured again) and only reference data changes raise
    /// alerts; the service says so in its log at start.
    #[serde(default)]
    pub sharing: Option<SharingSource>,
    /// The emergency service scenarios read stockpiles from, as this
    /// service's own workload (which the emergency service must list in its
    /// `reader_workloads`). Without it every member's stockpile in a
    /// scenario is UNAVAILABLE, and the answer says why.
    #[serde(default)]
    pub emergency: Option<EmergencySource>,
    /// How alert streams treat slow clients (`buffer_events`,
    /// `slow_consumer_seconds`).
    #[serde(default)]
    pub streams: orex_kit::stream::StreamConfig,
    /// The plain-text port for health probes and Prometheus (`[ops] listen`);
    /// off by default. See `orex_kit::ops`.
    #[serde(default)]
    pub ops: orex_kit::ops::OpsConfig,
}

/// `[sharing]`: where the report stream comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharingSource {
    /// `https://host:port` (every hop is mutual TLS).
    pub address: String,
    /// The DNS name in the sharing service's certificate.
    #[serde(default = "default_sharing_name")]
    pub server_name: String,
    /// How often, in seconds, the reports in force are re-read: one that is
    /// no longer partnership-wide (narrowed below GREEN) stops moving scores
    /// within this time. Default 60; 1 to 86400.
    #[serde(default = "default_recheck")]
    pub recheck_seconds: u64,
}

/// `[emergency]`: where scenarios read stockpiles.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmergencySource {
    /// `https://host:port` (every hop is mutual TLS).
    pub address: String,
    /// The DNS name in the emergency service's certificate.
    #[serde(default = "default_emergency_name")]
    pub server_name: String,
    /// How long a scenario waits for stockpiles, in milliseconds (100 to
    /// 30000; default 2000); then they are UNAVAILABLE in its answer.
    #[serde(default = "default_emergency_timeout")]
    pub timeout_ms: u64,
}

fn default_emergency_name() -> String {
    "emergency".into()
}

fn default_emergency_timeout() -> u64 {
    2000
}

fn default_recheck() -> u64 {
    60
}

fn default_sharing_name() -> String {
    "sharing".into()
}

/// `[assessment]`: when a score or a dependence counts as high.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AssessmentConfig {
    /// SR at or above this is high supply risk (1.0, the EU method's line).
    pub threshold: f64,
    /// Share of one supplier outside the partnership above which a member's
    /// dependence is flagged (0.65, the EU Critical Raw Materials Act
    /// benchmark).
    pub dependence_ceiling: f64,
}

impl Default for AssessmentConfig {
    fn default() -> Self {
        let d = crate::assess::Settings::default();
        Self {
            threshold: d.threshold,
            dependence_ceiling: d.dependence_ceiling,
        }
    }
}

impl AssessmentConfig {
    /// The settings the assessor takes.
    pub fn settings(&self) -> crate::assess::Settings {
        crate::assess::Settings {
            threshold: self.threshold,
            dependence_ceiling: self.dependence_ceiling,
        }
    }
}

fn default_allowed() -> Vec<String> {
    vec!["gateway".into()]
}

impl RiskConfig {
    /// Loads `path` with environment overrides and resolves relative paths
    /// against the file's folder.
    pub fn load(path: &Path) -> Result<Self, orex_kit::KitError> {
        let mut c: Self = orex_kit::config::load(path, "risk")?;
        let base = path.parent().unwrap_or(Path::new("."));
        c.data_dir = orex_kit::config::resolve(base, &c.data_dir);
        c.policy = orex_kit::config::resolve(base, &c.policy);
        c.reference_data = orex_kit::config::resolve(base, &c.reference_data);
        c.tls = c.tls.resolved(base);
        c.store.validate("store")?;
        c.streams.validate("streams")?;
        if let Some(s) = &c.sharing {
            if !s.address.starts_with("https://") {
                return Err(orex_kit::KitError::Config(
                    "sharing.address must be an https:// address (every hop is mutual TLS)".into(),
                ));
            }
            if !(1..=86_400).contains(&s.recheck_seconds) {
                return Err(orex_kit::KitError::Config(format!(
                    "sharing.recheck_seconds must be from 1 to 86400, got {}",
                    s.recheck_seconds
                )));
            }
        }
        if !(c.assessment.threshold.is_finite() && c.assessment.threshold > 0.0) {
            return Err(orex_kit::KitError::Config(format!(
                "assessment.threshold must be a positive number, got {}",
                c.assessment.threshold
            )));
        }
        if !(c.assessment.dependence_ceiling > 0.0 && c.assessment.dependence_ceiling <= 1.0) {
            return Err(orex_kit::KitError::Config(format!(
                "assessment.dependence_ceiling must be above 0 and at most 1, got {}",
                c.assessment.dependence_ceiling
            )));
        }
        if let Some(e) = &c.emergency {
            if !e.address.starts_with("https://") {
                return Err(orex_kit::KitError::Config(
                    "emergency.address must be an https:// address (every hop is mutual TLS)"
                        .into(),
                ));
            }
            if !(100..=30_000).contains(&e.timeout_ms) {
                return Err(orex_kit::KitError::Config(format!(
                    "emergency.timeout_ms must be from 100 to 30000, got {}",
                    e.timeout_ms
                )));
            }
        }
        orex_kit::config::check_workloads(&c.allowed_workloads, &[], &c.ops)?;
        Ok(c)
    }
}

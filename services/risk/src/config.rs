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
        if c.allowed_workloads.is_empty() {
            return Err(orex_kit::KitError::Config(
                "allowed_workloads: at least one workload must be allowed".into(),
            ));
        }
        Ok(c)
    }
}

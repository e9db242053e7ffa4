//! The sharing service's configuration file (`sharing.toml`), with
//! `OREX_SHARING__*` environment overrides.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use orex_kit::tls::TlsFiles;
use serde::Deserialize;

/// Configuration of one sharing service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharingConfig {
    /// Address to listen on for mutual-TLS gRPC (`0.0.0.0:7101` in a cluster).
    pub listen: SocketAddr,
    /// Folder of the sled store; created if missing.
    pub data_dir: PathBuf,
    /// The partnership policy file (members and blocs).
    pub policy: PathBuf,
    /// This service's certificate, key and the partnership CA.
    pub tls: TlsFiles,
    /// Workload names allowed to call, on every route: a peer whose
    /// certificate names `spiffe://orex/workload/<name>` for a listed name.
    /// Default: only the gateway.
    #[serde(default = "default_allowed")]
    pub allowed_workloads: Vec<String>,
    /// Workloads that follow the report stream as themselves (the risk
    /// service): they may call only `SubscribeReports` and `GetReport`, and
    /// see only CLEAR and GREEN reports — what every member may see.
    /// Default: none.
    #[serde(default)]
    pub reader_workloads: Vec<String>,
    /// How report streams treat slow clients (`buffer_events`,
    /// `slow_consumer_seconds`).
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

fn default_allowed() -> Vec<String> {
    vec!["gateway".into()]
}

impl SharingConfig {
    /// Loads `path` with environment overrides and resolves relative paths
    /// against the file's folder.
    pub fn load(path: &Path) -> Result<Self, orex_kit::KitError> {
        let mut c: Self = orex_kit::config::load(path, "sharing")?;
        let base = path.parent().unwrap_or(Path::new("."));
        c.data_dir = orex_kit::config::resolve(base, &c.data_dir);
        c.policy = orex_kit::config::resolve(base, &c.policy);
        c.tls = c.tls.resolved(base);
        c.streams.validate("streams")?;
        c.store.validate("store")?;
        orex_kit::config::check_workloads(&c.allowed_workloads, &c.reader_workloads, &c.ops)?;
        Ok(c)
    }
}

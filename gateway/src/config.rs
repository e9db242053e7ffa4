//! The gateway's configuration file (`gateway.toml`), with `OREX_GATEWAY__*`
//! environment overrides.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use orex_kit::KitError;
use orex_kit::tls::TlsFiles;
use serde::Deserialize;

/// Configuration of the gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address members connect to (mutual TLS gRPC).
    pub listen: SocketAddr,
    /// The partnership policy file: members, blocs and their token issuers.
    pub policy: PathBuf,
    /// The gateway's workload certificate (`spiffe://orex/workload/gateway`),
    /// its key and the partnership CA. Served to members and presented to
    /// the services.
    pub tls: TlsFiles,
    /// What member tokens must carry and how strictly they are checked.
    pub tokens: TokenConfig,
    /// Where the services are.
    pub backends: Backends,
    /// The access log.
    pub audit: AuditConfig,
    /// How member streams treat slow clients (`buffer_events`,
    /// `slow_consumer_seconds`).
    #[serde(default)]
    pub streams: orex_kit::stream::StreamConfig,
    /// The plain-text port for health probes and Prometheus (`[ops] listen`);
    /// off by default. See `orex_kit::ops`.
    #[serde(default)]
    pub ops: orex_kit::ops::OpsConfig,
    /// Bounds on calls in flight; above them calls are refused at once with
    /// RESOURCE_EXHAUSTED instead of queueing.
    #[serde(default)]
    pub load: LoadConfig,
}

/// Load shedding: how many calls may be in flight at once.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadConfig {
    /// Calls in flight at once over all members (default 512). Open streams
    /// do not count: they are bounded by the policy's `open_streams`. Size it
    /// as peak calls/s × acceptable latency: a queue longer than that only
    /// adds waiting, and the excess is better refused at once.
    #[serde(default = "default_in_flight")]
    pub max_in_flight: u32,
    /// Calls in flight at once for one member (default 256).
    #[serde(default = "default_in_flight_per_member")]
    pub max_in_flight_per_member: u32,
}

fn default_in_flight() -> u32 {
    512
}

fn default_in_flight_per_member() -> u32 {
    256
}

impl Default for LoadConfig {
    fn default() -> Self {
        Self {
            max_in_flight: default_in_flight(),
            max_in_flight_per_member: default_in_flight_per_member(),
        }
    }
}

/// The gateway's tamper-evident access log.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Folder of the gateway's sled store, which holds the access log.
    pub data_dir: PathBuf,
    /// The witness file: every signed checkpoint, appended outside the
    /// store, so a log that lost its tail is noticed at start
    /// (`audit::witness`). Default: `<data_dir>.witness` beside the folder.
    /// Keep it out of the store's backups' way: restoring the store must not
    /// restore an older witness.
    #[serde(default)]
    pub witness: Option<PathBuf>,
    /// Ed25519 private key (PKCS#8 PEM) that signs checkpoints; not
    /// world-readable. Auditors hold its public half.
    pub signing_key: PathBuf,
    /// Identifier of the signing key, published with its public half.
    pub key_id: String,
    /// Name of this log in checkpoints (`orex-gateway/prod`).
    pub log_id: String,
    /// Sign a checkpoint once this many records are unsigned (default 1000).
    #[serde(default = "default_checkpoint_records")]
    pub checkpoint_every_records: u64,
    /// ...or once the oldest unsigned record is this many seconds old (default 60).
    #[serde(default = "default_checkpoint_seconds")]
    pub checkpoint_interval_seconds: u64,
    /// Memory for the store's page cache, in MiB (default 16): the gateway's
    /// memory is bounded by this, not by the length of the log. The log is
    /// written once and read back rarely (audits), so a small cache serves.
    #[serde(default = "default_cache_mib")]
    pub cache_mib: u64,
}

fn default_cache_mib() -> u64 {
    16
}

impl AuditConfig {
    /// Where the witness file is: `witness`, or `<data_dir>.witness`.
    pub fn witness_path(&self) -> PathBuf {
        self.witness.clone().unwrap_or_else(|| {
            let mut name = self.data_dir.clone().into_os_string();
            name.push(".witness");
            PathBuf::from(name)
        })
    }
}

fn default_checkpoint_records() -> u64 {
    1000
}

fn default_checkpoint_seconds() -> u64 {
    60
}

/// Token checks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The `aud` every member token must name (this partnership's gateway).
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds (default 30, at most 300).
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
}

fn default_leeway() -> u64 {
    30
}

/// The services the gateway forwards to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backends {
    /// The sharing service.
    pub sharing: Backend,
    /// The risk service; without it the gateway does not serve the risk API.
    #[serde(default)]
    pub risk: Option<Backend>,
    /// The emergency service; without it the gateway does not serve the
    /// emergency API.
    #[serde(default)]
    pub emergency: Option<Backend>,
}

/// One backend service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    /// Its address, `https://host:port`.
    pub address: String,
    /// The DNS name in its certificate that the gateway checks (`sharing`).
    pub server_name: String,
}

impl GatewayConfig {
    /// Loads `path` with environment overrides, resolving relative paths
    /// against the file's folder, and checks the values.
    pub fn load(path: &Path) -> Result<Self, KitError> {
        let mut c: Self = orex_kit::config::load(path, "gateway")?;
        let base = path.parent().unwrap_or(Path::new("."));
        c.policy = orex_kit::config::resolve(base, &c.policy);
        c.tls = c.tls.resolved(base);
        c.audit.data_dir = orex_kit::config::resolve(base, &c.audit.data_dir);
        c.audit.signing_key = orex_kit::config::resolve(base, &c.audit.signing_key);
        c.audit.witness = c
            .audit
            .witness
            .as_ref()
            .map(|w| orex_kit::config::resolve(base, w));
        c.validate()?;
        Ok(c)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), KitError> {
        if self.tokens.audience.trim().is_empty() {
            return Err(KitError::Config("tokens.audience must not be empty".into()));
        }
        if self.tokens.leeway_seconds > 300 {
            return Err(KitError::Config(
                "tokens.leeway_seconds must be at most 300".into(),
            ));
        }
        if self.audit.checkpoint_every_records == 0 || self.audit.checkpoint_interval_seconds == 0 {
            return Err(KitError::Config(
                "audit.checkpoint_every_records and audit.checkpoint_interval_seconds must be at least 1"
                    .into(),
            ));
        }
        self.streams.validate("streams")?;
        // The services' workload names call the gateway's peers, never
        // the gateway; members are not workloads.
        self.ops.validate(&[])?;
        orex_kit::store::StoreConfig {
            cache_mib: self.audit.cache_mib,
        }
        .validate("audit")?;
        if self.load.max_in_flight == 0 || self.load.max_in_flight_per_member == 0 {
            return Err(KitError::Config(
                "load.max_in_flight and load.max_in_flight_per_member must be at least 1".into(),
            ));
        }
        if self.audit.log_id.trim().is_empty() || self.audit.key_id.trim().is_empty() {
            return Err(KitError::Config(
                "audit.log_id and audit.key_id must not be empty".into(),
            ));
        }
        for (name, b) in [
            ("sharing", Some(&self.backends.sharing)),
            ("risk", self.backends.risk.as_ref()),
            ("emergency", self.backends.emergency.as_ref()),
        ] {
            if let Some(b) = b
                && !b.address.starts_with("https://")
            {
                return Err(KitError::Config(format!(
                    "backends.{name}.address must be an https:// address (every hop is mutual TLS)"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_resolve_against_the_config_folder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        std::fs::write(
            &path,
            r#"
listen = "127.0.0.1:7100"
policy = "policy.toml"
[tls]
ca = "ca.pem"
cert = "cert.pem"
key = "key.pem"
[tokens]
audience = "orex"
[backends.sharing]
address = "https://127.0.0.1:7101"
server_name = "sharing"
[audit]
data_dir = "data/gateway"
witness = "witness/gateway.witness"
signing_key = "audit.pem"
key_id = "k1"
log_id = "orex-gateway/test"
"#,
        )
        .unwrap();
        let c = GatewayConfig::load(&path).unwrap();
        assert_eq!(c.audit.data_dir, dir.path().join("data/gateway"));
        assert_eq!(
            c.audit.witness.as_deref(),
            Some(dir.path().join("witness/gateway.witness").as_path())
        );
        assert_eq!(c.audit.signing_key, dir.path().join("audit.pem"));
    }
}

//! The orex risk-assessment service (issue 8), built in slices:
//!
//! - [`formula`]: the EU criticality-assessment supply-risk formula with
//!   every component kept, so an analyst can recompute a score by hand.
//! - [`reference`]: the versioned reference data file, every figure citing
//!   its source, validated as a whole.
//! - [`service`]: the gRPC handlers (`orex.risk.v1.RiskService`); so far
//!   `GetReferenceDataVersion`.
//! - [`config`]: the `risk.toml` file.
//!
//! [`prepare`] checks everything (policy, reference data, TLS files, store)
//! before a port is bound; [`Prepared::serve`] runs the service and reloads
//! the reference data file when it changes (a file that does not validate
//! is refused; the version in force stays).
//!
//! Next: the data file itself (`services/risk/data/RESEARCH.md` holds the
//! sources found so far), `GetSupplyRisk` from it, the gateway's risk face
//! and `orex up`, live disruptions from the sharing stream, scenarios and
//! alerts.

pub mod assess;
pub mod config;
pub mod error;
pub mod formula;
pub mod reference;
pub mod scenario;
pub mod service;

use std::sync::Arc;

use orex_kit::forwarded::{WorkloadGuard, with_principal};
use orex_kit::page_token::PageTokens;
use orex_kit::reload::LiveFile;
use orex_kit::server::Callers;
use orex_kit::store::Store;
use orex_kit::{KitError, Shutdown};
use orex_membership::Partnership;
use orex_proto::risk::v1::risk_service_server::RiskServiceServer;
use prost_types::Timestamp;
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::transport::ServerTlsConfig;

pub use config::RiskConfig;

/// The fully-qualified gRPC service name, as health checks know it.
pub const SERVICE_NAME: &str = "orex.risk.v1.RiskService";

/// A risk service whose configuration, policy, reference data, TLS material
/// and store have all been checked and opened, ready to serve.
#[derive(Debug)]
pub struct Prepared {
    config: RiskConfig,
    policy: LiveFile<Partnership>,
    reference: ReferenceReloader,
    hangups: [orex_kit::reload::HangupSignal; 2],
    tls: ServerTlsConfig,
    store: Store,
    tokens: Arc<PageTokens>,
}

/// The reference data file, reloaded when it changes (or on demand with
/// `reload()`): a file that does not validate is refused with the reason,
/// and the version in force stays.
pub type ReferenceReloader = LiveFile<service::Loaded>;

/// Reads and validates the reference data file's bytes.
fn load_reference(bytes: &[u8]) -> Result<service::Loaded, KitError> {
    Ok(service::Loaded {
        data: reference::ReferenceData::parse(bytes)
            .map_err(|e| KitError::Config(e.to_string()))?,
        loaded_at: Timestamp::from(std::time::SystemTime::now()),
    })
}

/// Loads the policy and the reference data, checks the TLS files and opens
/// the store. Must run inside a Tokio runtime (the store starts its flusher).
pub fn prepare(config: RiskConfig) -> Result<Prepared, KitError> {
    let policy = LiveFile::policy(config.policy.clone())?;
    let reference = LiveFile::load(
        "reference_data",
        config.reference_data.clone(),
        load_reference,
    )?;
    let hangups = [
        orex_kit::reload::HangupSignal::register()?,
        orex_kit::reload::HangupSignal::register()?,
    ];
    let tls = config.tls.load()?.server();
    let store = Store::open(&config.data_dir, &config.store)
        .map_err(|e| KitError::Config(format!("data_dir {}: {e}", config.data_dir.display())))?;
    let tokens =
        Arc::new(PageTokens::open_or_create(&store).map_err(|e| {
            KitError::Config(format!("data_dir {}: {e}", config.data_dir.display()))
        })?);
    Ok(Prepared {
        config,
        policy,
        reference,
        hangups,
        tls,
        store,
        tokens,
    })
}

impl Prepared {
    /// The reference data in force (tests and `orex up` read it).
    pub fn reference(&self) -> service::SharedReference {
        self.reference.shared()
    }

    /// A handle that reloads the reference data file on demand.
    pub fn reloader(&self) -> ReferenceReloader {
        self.reference.clone()
    }

    /// Serves on `listener` until `shutdown` fires, then flushes the store.
    pub async fn serve(self, listener: TcpListener, shutdown: Shutdown) -> Result<(), KitError> {
        let [policy_hangups, reference_hangups] = self.hangups;
        self.policy.watch(policy_hangups, &shutdown);
        self.reference.watch(reference_hangups, &shutdown);
        let risk = service::Risk::new(
            self.reference.shared(),
            self.policy.shared(),
            self.config.assessment.settings(),
            self.tokens,
        );
        let svc = RiskServiceServer::with_interceptor(risk, with_principal);
        let callers = Callers::Workloads(WorkloadGuard::new(self.config.allowed_workloads.clone()));
        tracing::info!(addr = %listener.local_addr().map_err(|e| KitError::Server(e.to_string()))?, "risk service listening");
        let result = orex_kit::server::serve(
            listener,
            self.tls,
            callers,
            Routes::new(svc),
            &[SERVICE_NAME],
            shutdown.clone(),
        )
        .await;
        shutdown.drained().await;
        self.store.flush_now()?;
        tracing::info!("risk service stopped; store flushed");
        result
    }
}

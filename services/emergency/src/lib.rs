//! The orex emergency-coordination service: members report stockpiles, a
//! coordinator declares a shortage, voting parties vote (a bloc once for
//! its states), and an activated case gets a coordinated release split
//! among members, pledged, delivered and closed (rules and configuration:
//! `services/emergency/README.md`).
//!
//! - [`service`]: the gRPC handlers (`orex.emergency.v1.EmergencyService`);
//!   [`validate`] checks every request first, [`error`] maps failures to
//!   statuses in one place.
//! - [`cases`]: the case state machine; [`voting`] decides a vote,
//!   [`allocation`] splits a release.
//! - [`stockpile`]: coverage, what each viewer sees, the aggregate.
//! - [`store`]: stockpiles, cases as events, idempotency, in sled.
//! - [`expiry`]: expires cases whose voting deadline passed, also one that
//!   passed while the service was down.
//! - [`config`] reads `emergency.toml`.

pub mod allocation;
pub mod cases;
pub mod config;
pub mod error;
pub mod expiry;
pub mod filter;
pub mod service;
pub mod stockpile;
pub mod store;
pub mod validate;
pub mod voting;

use std::sync::Arc;

use orex_kit::forwarded::WorkloadGuard;
use orex_kit::page_token::PageTokens;
use orex_kit::reload::{LiveFile, Successor};
use orex_kit::server::{Callers, Serving};
use orex_kit::store::Store;
use orex_kit::tls::LoadedTls;
use orex_kit::{KitError, Shutdown};
use orex_membership::Partnership;
use orex_proto::emergency::v1::emergency_service_server::EmergencyServiceServer;
use orex_reference::{ReferenceData, Replacement};
use tokio::net::TcpListener;
use tonic::service::Routes;

pub use config::EmergencyConfig;

/// The fully-qualified gRPC service name, as health checks know it.
pub const SERVICE_NAME: &str = "orex.emergency.v1.EmergencyService";

/// An emergency service whose configuration, policy, reference data, TLS
/// material and store have all been checked and opened, ready to serve.
#[derive(Debug)]
pub struct Prepared {
    config: EmergencyConfig,
    rule: voting::Rule,
    policy: LiveFile<Partnership>,
    reference: LiveFile<ReferenceData>,
    hangups: [orex_kit::reload::HangupSignal; 2],
    tls: LoadedTls,
    store: store::EmergencyStore,
    /// The sled store under `store` (backups).
    sled: Store,
    tokens: Arc<PageTokens>,
}

/// Loads the policy and the reference data, checks the TLS files and opens
/// the store. Must run inside a Tokio runtime (the store starts its flusher).
pub fn prepare(config: EmergencyConfig) -> Result<Prepared, KitError> {
    let rule = config.voting.rule()?;
    let policy = LiveFile::policy(config.policy.clone())?;
    let reference = LiveFile::load("reference_data", config.reference_data.clone(), |bytes| {
        ReferenceData::parse(bytes).map_err(|e| KitError::Config(e.to_string()))
    })?
    .with_successor_check(|in_force, new| match in_force.replacement(new) {
        Ok(Replacement::Same) => Ok(Successor::Keep),
        Ok(Replacement::Replace) => Ok(Successor::Replace),
        Err(e) => Err(KitError::Config(e.to_string())),
    });
    let hangups = [
        orex_kit::reload::HangupSignal::register()?,
        orex_kit::reload::HangupSignal::register()?,
    ];
    let tls = config.tls.load()?;
    let in_data_dir =
        |e: KitError| KitError::Config(format!("data_dir {}: {e}", config.data_dir.display()));
    let sled = Store::open(&config.data_dir, &config.store).map_err(in_data_dir)?;
    let tokens = Arc::new(PageTokens::open_or_create(&sled).map_err(in_data_dir)?);
    let store = store::EmergencyStore::open(&sled).map_err(in_data_dir)?;
    Ok(Prepared {
        config,
        rule,
        policy,
        reference,
        hangups,
        tls,
        store,
        sled,
        tokens,
    })
}

impl Prepared {
    /// Serves on `listener` until `shutdown` fires, then flushes the store.
    pub async fn serve(self, listener: TcpListener, shutdown: Shutdown) -> Result<(), KitError> {
        let [policy_hangups, reference_hangups] = self.hangups;
        self.policy.watch(policy_hangups, &shutdown);
        self.reference.watch(reference_hangups, &shutdown);
        let deadlines = Arc::new(tokio::sync::Notify::new());
        let emergency = service::Emergency::new(service::Parts {
            store: self.store.clone(),
            partnership: self.policy.shared(),
            reference: self.reference.shared(),
            rule: self.rule,
            max_voting_hours: self.config.voting.max_voting_hours,
            tokens: self.tokens,
            streams: self.config.streams,
            shutdown: shutdown.clone(),
            deadlines: deadlines.clone(),
        });
        shutdown.spawn(expiry::run(
            emergency.clone(),
            self.store.clone(),
            deadlines,
            shutdown.clone(),
        ));
        let guard = WorkloadGuard::new(self.config.allowed_workloads.clone())
            .acting_as_themselves(self.config.reader_workloads.clone());
        let svc = EmergencyServiceServer::with_interceptor(emergency, guard.principals());
        tracing::info!(addr = %listener.local_addr().map_err(|e| KitError::Server(e.to_string()))?, rule = %self.rule.describe(), "emergency service listening");
        let result = orex_kit::server::serve(
            listener,
            Serving {
                tls: self.tls.clone(),
                callers: Callers::Workloads(guard),
                routes: Routes::new(svc),
                service_names: &[SERVICE_NAME],
                ops: self.config.ops.clone(),
                store: Some(self.sled.clone()),
                refused: None,
                admin_audit: None,
            },
            shutdown.clone(),
        )
        .await;
        shutdown.drained().await;
        self.store.flush_now()?;
        tracing::info!("emergency service stopped; store flushed");
        result
    }
}

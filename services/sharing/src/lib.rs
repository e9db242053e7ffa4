//! The orex sharing service: the partnership's real-time exchange of supply
//! problems.
//!
//! - [`service`]: the gRPC handlers (`orex.sharing.v1.SharingService`).
//! - [`store`]: reports, versions, idempotency keys and the event log in sled.
//! - [`validate`] and [`filter`]: field checks and report filters.
//! - [`config`]: the `sharing.toml` file.
//!
//! [`prepare`] checks everything (policy, TLS files, store) before a port is
//! bound; [`Prepared::serve`] runs the service. `main.rs`, `orex up` and the
//! end-to-end tests all go through them.

pub mod config;
pub mod error;
pub mod filter;
pub mod service;
pub mod store;
pub mod validate;

use std::sync::Arc;

use orex_kit::forwarded::WorkloadGuard;
use orex_kit::page_token::PageTokens;
use orex_kit::server::{Callers, Serving};
use orex_kit::tls::LoadedTls;
use orex_kit::{KitError, Shutdown};
use orex_membership::Partnership;
use orex_proto::sharing::v1::sharing_service_server::SharingServiceServer;
use tokio::net::TcpListener;
use tonic::service::Routes;

pub use config::SharingConfig;
pub use error::SharingError;

/// The fully-qualified gRPC service name, as health checks know it.
pub const SERVICE_NAME: &str = "orex.sharing.v1.SharingService";

/// A sharing service whose configuration, policy, TLS material and store
/// have all been checked and opened, ready to serve.
#[derive(Debug)]
pub struct Prepared {
    config: SharingConfig,
    policy: orex_kit::reload::LiveFile<Partnership>,
    hangups: orex_kit::reload::HangupSignal,
    tls: LoadedTls,
    store: store::ReportStore,
    tokens: Arc<PageTokens>,
}

/// Loads the policy, checks the TLS files and opens the store. Must run
/// inside a Tokio runtime (the store starts its flusher).
pub fn prepare(config: SharingConfig) -> Result<Prepared, KitError> {
    let policy = orex_kit::reload::LiveFile::policy(config.policy.clone())?;
    let hangups = orex_kit::reload::HangupSignal::register()?;
    let tls = config.tls.load()?;
    let store = store::ReportStore::open(&config.data_dir, &config.store)
        .map_err(|e| KitError::Config(format!("data_dir {}: {e}", config.data_dir.display())))?;
    let tokens =
        Arc::new(store.page_tokens().map_err(|e| {
            KitError::Config(format!("data_dir {}: {e}", config.data_dir.display()))
        })?);
    Ok(Prepared {
        config,
        policy,
        hangups,
        tls,
        store,
        tokens,
    })
}

impl Prepared {
    /// Serves on `listener` until `shutdown` fires, then ends streams with a
    /// resumable status and flushes the store.
    pub async fn serve(self, listener: TcpListener, shutdown: Shutdown) -> Result<(), KitError> {
        // The policy file is shared with the gateway: members, blocs and
        // suspensions apply here too without a restart.
        self.policy.watch(self.hangups, &shutdown);
        let sharing = service::Sharing::new(
            self.store.clone(),
            self.policy.shared(),
            self.tokens,
            self.config.streams,
            shutdown.clone(),
        );
        let guard = WorkloadGuard::new(self.config.allowed_workloads.clone())
            .acting_as_themselves(self.config.reader_workloads.clone());
        let svc = SharingServiceServer::with_interceptor(sharing, guard.principals());
        let callers = Callers::Workloads(guard);
        tracing::info!(addr = %listener.local_addr().map_err(|e| KitError::Server(e.to_string()))?, "sharing service listening");
        let result = orex_kit::server::serve(
            listener,
            Serving {
                tls: self.tls,
                callers,
                routes: Routes::new(svc),
                service_names: &[SERVICE_NAME],
                ops: self.config.ops.clone(),
                store: Some(self.store.kit_store()),
                refused: None,
                admin_audit: None,
            },
            shutdown.clone(),
        )
        .await;
        // Streams end with a resumable UNAVAILABLE; wait for them so that no
        // handle on the store outlives this call.
        shutdown.drained().await;
        self.store
            .flush()
            .map_err(|e| KitError::Flush(e.to_string()))?;
        tracing::info!("sharing service stopped; store flushed");
        result
    }
}

/// [`prepare`] then [`Prepared::serve`].
pub async fn serve(
    config: SharingConfig,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), KitError> {
    prepare(config)?.serve(listener, shutdown).await
}

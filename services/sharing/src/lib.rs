//! The orex sharing service: the partnership's real-time exchange of supply
//! problems.
//!
//! - [`service`]: the gRPC handlers (`orex.sharing.v1.SharingService`).
//! - [`store`]: reports, versions, idempotency keys and the event log in sled.
//! - [`validate`] and [`filter`]: field checks and report filters.
//! - [`config`]: the `sharing.toml` file.
//!
//! [`serve`] runs the whole service on a listener; `main.rs`, `orex up` and
//! the end-to-end tests all call it.

pub mod config;
pub mod error;
pub mod filter;
pub mod service;
pub mod store;
pub mod validate;

use std::sync::Arc;

use orex_kit::forwarded::WorkloadGuard;
use orex_kit::{KitError, Shutdown};
use orex_membership::Partnership;
use orex_proto::sharing::v1::sharing_service_server::SharingServiceServer;
use tokio::net::TcpListener;
use tonic::service::Routes;

pub use config::SharingConfig;
pub use error::SharingError;

/// The fully-qualified gRPC service name, as health checks know it.
pub const SERVICE_NAME: &str = "orex.sharing.v1.SharingService";

/// Runs the sharing service on `listener` until `shutdown` fires, then
/// drains streams and flushes the store. Everything is checked (policy, TLS
/// files, store) before the first call is accepted.
pub async fn serve(
    config: SharingConfig,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), KitError> {
    let partnership =
        Arc::new(Partnership::load(&config.policy).map_err(|e| KitError::Config(e.to_string()))?);
    let tls = config.tls.load()?.server();
    let store = store::ReportStore::open(&config.data_dir)
        .map_err(|e| KitError::Config(format!("data_dir {}: {e}", config.data_dir.display())))?;
    let sharing = service::Sharing::new(store.clone(), partnership, shutdown.clone());
    let guard = WorkloadGuard::new(config.allowed_workloads.clone());
    let svc = SharingServiceServer::with_interceptor(sharing, move |req| guard.check(req));
    tracing::info!(addr = %listener.local_addr().map_err(|e| KitError::Server(e.to_string()))?, "sharing service listening");
    let result = orex_kit::server::serve(
        listener,
        tls,
        Routes::new(svc),
        &[SERVICE_NAME],
        shutdown.clone(),
    )
    .await;
    // Streams end with a resumable UNAVAILABLE; wait for them so that no
    // handle on the store outlives this call.
    shutdown.drained().await;
    store.flush().map_err(|e| KitError::Flush(e.to_string()))?;
    tracing::info!("sharing service stopped; store flushed");
    result
}

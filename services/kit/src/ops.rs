//! The ops port: a plain-text listener, separate from the mutual-TLS service
//! port, for what a cluster's machinery reads without a partnership
//! certificate — `grpc.health.v1` (kubelet's gRPC probes cannot present a
//! client certificate) and `GET /metrics` (Prometheus).
//!
//! It serves nothing else: no orex API, no reflection, no member data. Limit
//! who reaches it with a NetworkPolicy (the manifests under `k8s/` do).
//! Off unless `[ops] listen` is set.

use std::net::SocketAddr;

use serde::Deserialize;
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};

use crate::KitError;

/// The `[ops]` section every server's config accepts.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsConfig {
    /// Where to serve health and metrics in plain text (`0.0.0.0:9090` in a
    /// cluster). Default: not served.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Workloads that may call the admin service on the mutual-TLS port
    /// (backups: `["backup"]`), and only it. Default: none — closed.
    #[serde(default)]
    pub admin_workloads: Vec<String>,
}

impl OpsConfig {
    /// Checks `admin_workloads`: workload names, none of which is one of
    /// the server's other callers (`others`: its allowed and reader
    /// workloads) — an admin workload may call the admin service only, so
    /// listing, say, `risk` would cut it off from everything else.
    pub fn validate(&self, others: &[&String]) -> Result<(), KitError> {
        for w in &self.admin_workloads {
            let uri = format!("{}workload/{w}", crate::identity::SPIFFE_PREFIX);
            if crate::identity::parse_identity(&uri).is_none() {
                return Err(KitError::Config(format!(
                    "ops.admin_workloads: {w:?} is not a workload name (write \"backup\", not a URI)"
                )));
            }
            if others.contains(&w) {
                return Err(KitError::Config(format!(
                    "ops.admin_workloads: {w:?} also calls this server's API; an admin workload may call only the admin service — give backups their own workload (\"backup\")"
                )));
            }
        }
        Ok(())
    }
}

/// Binds the ops port if configured. Bound before the service port is
/// served, so a bad address fails the start like any other config error.
pub async fn bind(config: &OpsConfig) -> Result<Option<TcpListener>, KitError> {
    let Some(addr) = config.listen else {
        return Ok(None);
    };
    TcpListener::bind(addr)
        .await
        .map(Some)
        .map_err(|e| KitError::Server(format!("bind ops port {addr}: {e}")))
}

/// Serves health (the statuses `reporter` holds, the same the service port
/// reports) and `/metrics` on `listener` until `stop` resolves: after the
/// service port has drained, so probes read NOT_SERVING meanwhile.
pub async fn serve(
    listener: TcpListener,
    reporter: HealthReporter,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), KitError> {
    let health = HealthServer::new(HealthService::from_health_reporter(reporter));
    let mut routes = Routes::new(health);
    let router = std::mem::take(routes.axum_router_mut());
    *routes.axum_router_mut() = router.route(
        "/metrics",
        axum::routing::get(|| async {
            (
                [(
                    axum::http::header::CONTENT_TYPE,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )],
                crate::metrics::global().render(),
            )
        }),
    );
    let local = listener.local_addr().ok();
    tracing::info!(?local, "ops port: health and metrics");
    tonic::transport::Server::builder()
        .accept_http1(true)
        .add_routes(routes)
        .serve_with_incoming_shutdown(crate::transport::incoming(listener), stop)
        .await
        .map_err(|e| KitError::Server(format!("ops port: {e}")))
}

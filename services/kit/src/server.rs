//! The one way an orex process serves gRPC: mutual TLS, grpc.health.v1,
//! server reflection (v1 and v1alpha: Python's grpcio-reflection speaks only
//! v1alpha) and graceful shutdown.

use std::time::Duration;

use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic_health::ServingStatus;

use crate::admin::{Admin, AdminAudit, AdminCaller, AdminGate};
use crate::forwarded::WorkloadGuard;
use crate::metrics::MetricsLayer;
use crate::ops::OpsConfig;
use crate::request_errors::{Observer, RequestErrorsLayer};
use crate::store::Store;
use crate::tls::LoadedTls;
use crate::{KitError, Shutdown};
use orex_proto::admin::v1::admin_service_server::AdminServiceServer;

/// Who may call a server at all (beyond holding a certificate from the CA).
#[derive(Debug, Clone)]
pub enum Callers {
    /// Any certificate from the partnership CA (the gateway; it
    /// authenticates members itself).
    AnyCertified,
    /// Only these workloads, on every route (services).
    Workloads(WorkloadGuard),
}

/// What one server serves and to whom; see [`serve`].
pub struct Serving<'a> {
    /// The server's certificate, key and the CA its callers must chain to.
    pub tls: LoadedTls,
    /// Who may call at all.
    pub callers: Callers,
    /// The orex services served.
    pub routes: Routes,
    /// Reported SERVING to health checks until shutdown starts.
    pub service_names: &'a [&'a str],
    /// The plain-text health and metrics port (`ops`), if configured, and
    /// the workloads admitted to the admin service.
    pub ops: OpsConfig,
    /// The store the admin service backs up (none: no backups).
    pub store: Option<Store>,
    /// Told of every request refused before a handler ran (the gateway
    /// records them in its access log).
    pub refused: Option<Observer>,
    /// Told of every admin call, admitted or refused (the gateway records
    /// them in its access log).
    pub admin_audit: Option<AdminAudit>,
}

impl std::fmt::Debug for Serving<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serving")
            .field("service_names", &self.service_names)
            .field("ops", &self.ops)
            .finish_non_exhaustive()
    }
}

/// Serves `serving.routes` on `listener` until `shutdown` fires, then lets
/// in-flight calls finish. Health checks (on this port and on the ops port)
/// say SERVING for the overall server and every service name, and
/// NOT_SERVING from the moment shutdown starts. Requests that cannot be
/// decoded are answered as the client's fault (`request_errors`); every call
/// is counted (`metrics`).
pub async fn serve(
    listener: TcpListener,
    serving: Serving<'_>,
    shutdown: Shutdown,
) -> Result<(), KitError> {
    let Serving {
        tls,
        callers,
        routes,
        service_names,
        ops,
        store,
        refused,
        admin_audit,
    } = serving;
    let ops_listener = crate::ops::bind(&ops).await?;
    let (reporter, health) = tonic_health::server::health_reporter();
    for name in service_names {
        reporter
            .set_service_status(*name, ServingStatus::Serving)
            .await;
    }
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(orex_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| KitError::Server(e.to_string()))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(orex_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| KitError::Server(e.to_string()))?;
    let mut routes = routes;
    if let Some(store) = store {
        let label = format!("{} {}", service_names.join(","), env!("CARGO_PKG_VERSION"));
        routes = routes.add_service(AdminServiceServer::new(Admin::new(store, label)));
    }
    let routes = routes
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);

    // The overall status ("") too: kubelet's probes ask for it.
    let mut names: Vec<String> = service_names.iter().map(|s| s.to_string()).collect();
    names.push(String::new());
    // The ops port outlives the service port's drain, so probes see
    // NOT_SERVING (not a refused connection) until the process exits.
    let served = tokio_util::sync::CancellationToken::new();
    if let Some(listener) = ops_listener {
        let stop = served.clone();
        let reporter = reporter.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::ops::serve(listener, reporter, stop.cancelled_owned()).await {
                tracing::error!(error = %e, "ops port stopped");
            }
        });
    }
    let _stop_ops = served.drop_guard();
    let signal = shutdown.clone();
    let on_shutdown = async move {
        signal.wait().await;
        for name in names {
            reporter
                .set_service_status(name, ServingStatus::NotServing)
                .await;
        }
    };
    tls.watch(&shutdown);
    // Outermost first: every call, refused or not, gets its trace id and is
    // counted; then the admin gate and the workload guard decide.
    let server = crate::transport::server()
        .layer(crate::trace::TraceLayer)
        .layer(MetricsLayer)
        .layer(AdminGate::new(ops.admin_workloads.clone(), admin_audit))
        .layer(tonic::service::InterceptorLayer::new(
            move |req: tonic::Request<()>| match &callers {
                // Admitted by the admin gate, to the admin service only.
                _ if req.extensions().get::<AdminCaller>().is_some() => Ok(req),
                Callers::AnyCertified => Ok(req),
                Callers::Workloads(guard) => guard.admit(req),
            },
        ))
        .layer(RequestErrorsLayer::new(refused))
        .add_routes(routes)
        .serve_with_incoming_shutdown(crate::transport::tls_incoming(listener, tls), on_shutdown);
    // Graceful shutdown waits for open calls; a client that never reads its
    // stream would hold the process forever, so the drain has a deadline.
    let deadline = async {
        shutdown.wait().await;
        tokio::time::sleep(DRAIN_DEADLINE).await;
    };
    tokio::select! {
        result = server => result.map_err(|e| KitError::Server(e.to_string())),
        _ = deadline => {
            tracing::warn!("connections still open {DRAIN_DEADLINE:?} after shutdown; closing them");
            Ok(())
        }
    }
}

/// How long open calls may take to finish after shutdown starts.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

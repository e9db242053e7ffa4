//! The one way an orex process serves gRPC: mutual TLS, grpc.health.v1,
//! server reflection (v1 and v1alpha: Python's grpcio-reflection speaks only
//! v1alpha) and graceful shutdown.

use std::time::Duration;

use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::transport::ServerTlsConfig;
use tonic_health::ServingStatus;

use crate::forwarded::WorkloadGuard;
use crate::request_errors::{Observer, RequestErrorsLayer};
use crate::{KitError, Shutdown};

/// Who may call a server at all (beyond holding a certificate from the CA).
#[derive(Debug, Clone)]
pub enum Callers {
    /// Any certificate from the partnership CA (the gateway; it
    /// authenticates members itself).
    AnyCertified,
    /// Only these workloads, on every route (services).
    Workloads(WorkloadGuard),
}

/// Serves `routes` on `listener` until `shutdown` fires, then lets in-flight
/// calls finish. `service_names` are reported SERVING to health checks (and
/// NOT_SERVING once shutdown starts). Requests that cannot be decoded are
/// answered as the client's fault (`request_errors`).
pub async fn serve(
    listener: TcpListener,
    tls: ServerTlsConfig,
    callers: Callers,
    routes: Routes,
    service_names: &[&str],
    shutdown: Shutdown,
) -> Result<(), KitError> {
    serve_observed(
        listener,
        tls,
        callers,
        routes,
        service_names,
        shutdown,
        None,
    )
    .await
}

/// [`serve`], telling `refused` of every request refused before a handler
/// ran (the gateway records them in its access log).
pub async fn serve_observed(
    listener: TcpListener,
    tls: ServerTlsConfig,
    callers: Callers,
    routes: Routes,
    service_names: &[&str],
    shutdown: Shutdown,
    refused: Option<Observer>,
) -> Result<(), KitError> {
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
    let routes = routes
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);

    let names: Vec<String> = service_names.iter().map(|s| s.to_string()).collect();
    let signal = shutdown.clone();
    let on_shutdown = async move {
        signal.wait().await;
        for name in names {
            reporter
                .set_service_status(name, ServingStatus::NotServing)
                .await;
        }
    };
    let server = crate::transport::server()
        .tls_config(tls)
        .map_err(|e| KitError::Tls(e.to_string()))?
        .layer(tonic::service::InterceptorLayer::new(
            move |req: tonic::Request<()>| match &callers {
                Callers::AnyCertified => Ok(req),
                Callers::Workloads(guard) => guard.admit(req),
            },
        ))
        .layer(RequestErrorsLayer::new(refused))
        .add_routes(routes)
        .serve_with_incoming_shutdown(crate::transport::incoming(listener), on_shutdown);
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

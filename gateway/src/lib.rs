//! The orex gateway: the only door for members.
//!
//! Every call is authenticated ([`authn`]: client certificate from the
//! partnership CA naming the member, plus a JWT from an issuer trusted for
//! that member only, bound to the certificate — [`tokens`]) and then
//! forwarded ([`forward`]) to the service over the gateway's own mutual-TLS
//! connection, with the verified principal attached.
//!
//! [`serve`] runs the gateway on a listener; `main.rs`, `orex up` and the
//! end-to-end tests all call it.

pub mod authn;
pub mod config;
pub mod error;
pub mod forward;
pub mod sharing;
pub mod tokens;

use std::sync::Arc;

use orex_kit::{KitError, Shutdown};
use orex_membership::Partnership;
use orex_proto::sharing::v1::sharing_service_server::SharingServiceServer;
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::transport::Endpoint;

pub use config::GatewayConfig;

/// Runs the gateway on `listener` until `shutdown` fires. Policy, keys and TLS
/// files are all checked before the first call is accepted; backends are
/// connected lazily, so the gateway starts even while a service restarts.
pub async fn serve(
    config: GatewayConfig,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), KitError> {
    let partnership =
        Arc::new(Partnership::load(&config.policy).map_err(|e| KitError::Config(e.to_string()))?);
    let tokens = tokens::TokenVerifier::new(
        &partnership,
        &config.tokens.audience,
        config.tokens.leeway_seconds,
    )?;
    let auth = Arc::new(authn::Authenticator::new(partnership, tokens));
    let tls = config.tls.load()?;

    let backend = &config.backends.sharing;
    let sharing_channel = Endpoint::from_shared(backend.address.clone())
        .map_err(|e| KitError::Config(format!("backends.sharing.address: {e}")))?
        .tls_config(tls.client(&backend.server_name))
        .map_err(|e| KitError::Tls(e.to_string()))?
        .connect_timeout(std::time::Duration::from_secs(5))
        .connect_lazy();
    let sharing = sharing::SharingGateway::new(auth, sharing_channel, shutdown.clone());

    tracing::info!(addr = %listener.local_addr().map_err(|e| KitError::Server(e.to_string()))?, "gateway listening");
    orex_kit::server::serve(
        listener,
        tls.server(),
        Routes::new(SharingServiceServer::new(sharing)),
        &[orex_sharing_name()],
        shutdown,
    )
    .await
}

fn orex_sharing_name() -> &'static str {
    "orex.sharing.v1.SharingService"
}

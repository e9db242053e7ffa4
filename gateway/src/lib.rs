//! The orex gateway: the only door for members.
//!
//! Every call is authenticated ([`authn`]: client certificate from the
//! partnership CA naming the member, plus a JWT from an issuer trusted for
//! that member only, bound to the certificate — [`tokens`]) and then
//! forwarded ([`forward`]) to the service over the gateway's own mutual-TLS
//! connection, with the verified principal attached.
//!
//! [`prepare`] checks policy, keys and TLS files before a port is bound;
//! [`Prepared::serve`] runs the gateway. `main.rs`, `orex up` and the
//! end-to-end tests all go through them.

pub mod authn;
pub mod config;
pub mod error;
pub mod forward;
pub mod sharing;
pub mod tokens;

use std::sync::Arc;
use std::time::Duration;

use orex_kit::server::Callers;
use orex_kit::tls::LoadedTls;
use orex_kit::{KitError, Shutdown};
use orex_membership::Partnership;
use orex_proto::sharing::v1::sharing_service_server::SharingServiceServer;
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::transport::{Channel, Endpoint};

pub use config::GatewayConfig;

/// The longest a forwarded unary call may wait for its backend's answer.
pub const BACKEND_TIMEOUT: Duration = Duration::from_secs(30);

/// A gateway whose policy, issuer keys and TLS material have been checked.
#[derive(Debug)]
pub struct Prepared {
    auth: Arc<authn::Authenticator>,
    tls: LoadedTls,
    sharing: Channel,
}

/// Loads and checks everything the gateway needs. Backends are connected
/// lazily, so the gateway starts even while a service restarts.
pub fn prepare(config: GatewayConfig) -> Result<Prepared, KitError> {
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
    let sharing = Endpoint::from_shared(backend.address.clone())
        .map_err(|e| KitError::Config(format!("backends.sharing.address: {e}")))?
        .tls_config(tls.client(&backend.server_name))
        .map_err(|e| KitError::Tls(e.to_string()))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(BACKEND_TIMEOUT)
        .connect_lazy();
    Ok(Prepared { auth, tls, sharing })
}

impl Prepared {
    /// Serves members on `listener` until `shutdown` fires.
    pub async fn serve(self, listener: TcpListener, shutdown: Shutdown) -> Result<(), KitError> {
        let sharing = sharing::SharingGateway::new(self.auth, self.sharing, shutdown.clone());
        tracing::info!(addr = %listener.local_addr().map_err(|e| KitError::Server(e.to_string()))?, "gateway listening");
        orex_kit::server::serve(
            listener,
            self.tls.server(),
            // Members are authenticated per call by the handlers.
            Callers::AnyCertified,
            Routes::new(SharingServiceServer::new(sharing)),
            &[orex_sharing_api::NAME],
            shutdown,
        )
        .await
    }
}

/// [`prepare`] then [`Prepared::serve`].
pub async fn serve(
    config: GatewayConfig,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), KitError> {
    prepare(config)?.serve(listener, shutdown).await
}

mod orex_sharing_api {
    /// The sharing API's gRPC service name, as health checks know it.
    pub(crate) const NAME: &str = "orex.sharing.v1.SharingService";
}

//! The gateway's connections to one backend service, the same for every
//! service face: mutual TLS with the gateway's workload certificate, the
//! backend's name checked, connected lazily so the gateway starts (and
//! answers UNAVAILABLE) while a service restarts.

use orex_kit::KitError;
use orex_kit::tls::LoadedTls;
use tonic::transport::{Channel, Endpoint};

/// The connections to one backend service.
#[derive(Debug, Clone)]
pub struct Backend {
    /// For unary calls.
    pub unary: Channel,
    /// For streams, kept apart so open streams never delay a unary call.
    pub streams: Channel,
}

impl Backend {
    /// Connects (lazily) to the backend `name` (`sharing`, `risk`) as
    /// `config` says.
    pub fn connect(
        name: &str,
        config: &crate::config::Backend,
        tls: &LoadedTls,
    ) -> Result<Self, KitError> {
        let endpoint = orex_kit::transport::dial(
            Endpoint::from_shared(config.address.clone())
                .map_err(|e| KitError::Config(format!("backends.{name}.address: {e}")))?,
        )
        .tls_config(tls.client(&config.server_name))
        .map_err(|e| KitError::Tls(e.to_string()))?;
        // Two connections per backend: streams on one, unary calls on the
        // other, so no number of open (or stalled) streams can queue a unary
        // call behind them.
        Ok(Self {
            unary: endpoint
                .clone()
                .timeout(crate::BACKEND_TIMEOUT)
                .connect_lazy(),
            streams: endpoint.connect_lazy(),
        })
    }
}

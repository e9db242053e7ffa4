//! The gateway's connections to one backend service, the same for every
//! service face: mutual TLS with the gateway's workload certificate, the
//! backend's name checked, connected lazily so the gateway starts (and
//! answers UNAVAILABLE) while a service restarts.

use orex_kit::KitError;
use orex_kit::tls::LoadedTls;
use orex_kit::transport::Dialer;
use tonic::transport::Channel;

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
        let dialer = Dialer::new(&config.address, &config.server_name, tls)
            .map_err(|e| KitError::Config(format!("backends.{name}: {e}")))?;
        // Two connections per backend: streams on one, unary calls on the
        // other, so no number of open (or stalled) streams can queue a unary
        // call behind them.
        Ok(Self {
            unary: dialer
                .clone()
                .map(|e| e.timeout(crate::BACKEND_TIMEOUT))
                .connect_lazy(),
            streams: dialer.connect_lazy(),
        })
    }
}

//! The `main` every orex server binary shares: install the crypto provider
//! and telemetry, check everything before binding the port, serve until
//! SIGTERM or Ctrl-C, and turn any failure into one line and an exit status:
//! 1, or 3 when stored data failed an integrity check (restore from backup;
//! a restart will not help).

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;

use tokio::net::TcpListener;

use crate::{KitError, Shutdown};

/// Runs a server binary named `name`. `prepare` loads and checks the
/// configuration and returns the address to bind with what `serve` needs;
/// nothing is bound until it has succeeded.
pub async fn run<P, Fut>(
    name: &str,
    prepare: impl FnOnce() -> Result<(SocketAddr, P), KitError>,
    serve: impl FnOnce(P, TcpListener, Shutdown) -> Fut,
) -> ExitCode
where
    Fut: Future<Output = Result<(), KitError>>,
{
    crate::install_crypto_provider();
    crate::telemetry::init();
    let result = async {
        let (listen, prepared) = prepare()?;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| KitError::Server(format!("bind {listen}: {e}")))?;
        let shutdown = Shutdown::new();
        shutdown.trigger_on_signals();
        serve(prepared, listener, shutdown).await
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("{name}: {e}");
            ExitCode::from(e.exit_status())
        }
    }
}

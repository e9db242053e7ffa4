//! `orex-gateway --config gateway.toml`: runs the gateway.

use std::path::PathBuf;

use clap::Parser;

/// The orex gateway.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Path of the gateway's TOML config (env overrides: OREX_GATEWAY__<FIELD>).
    #[arg(long, env = "OREX_GATEWAY_CONFIG", default_value = "gateway.toml")]
    config: PathBuf,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    orex_kit::install_crypto_provider();
    orex_kit::telemetry::init();
    let args = Args::parse();
    let result = async {
        let config = orex_gateway::GatewayConfig::load(&args.config)?;
        let listen = config.listen;
        // Everything is checked before the port is bound.
        let prepared = orex_gateway::prepare(config)?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| orex_kit::KitError::Server(format!("bind {listen}: {e}")))?;
        let shutdown = orex_kit::Shutdown::new();
        shutdown.trigger_on_signals();
        prepared.serve(listener, shutdown).await
    }
    .await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("orex-gateway: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

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
    let args = Args::parse();
    orex_kit::binary::run(
        "orex-gateway",
        || {
            let config = orex_gateway::GatewayConfig::load(&args.config)?;
            Ok((config.listen, orex_gateway::prepare(config)?))
        },
        |prepared, listener, shutdown| prepared.serve(listener, shutdown),
    )
    .await
}

//! `orex-risk --config risk.toml`: runs one risk-assessment service.

use std::path::PathBuf;

use clap::Parser;

/// The orex risk-assessment service.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Path of the service's TOML config (env overrides: OREX_RISK__<FIELD>).
    #[arg(long, env = "OREX_RISK_CONFIG", default_value = "risk.toml")]
    config: PathBuf,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    orex_kit::binary::run(
        "orex-risk",
        || {
            let config = orex_risk::RiskConfig::load(&args.config)?;
            Ok((config.listen, orex_risk::prepare(config)?))
        },
        |prepared, listener, shutdown| prepared.serve(listener, shutdown),
    )
    .await
}

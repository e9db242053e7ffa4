//! `orex-emergency --config emergency.toml`: runs one emergency-coordination service.

use std::path::PathBuf;

use clap::Parser;

/// The orex emergency-coordination service.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Path of the service's TOML config (env overrides: OREX_EMERGENCY__<FIELD>).
    #[arg(long, env = "OREX_EMERGENCY_CONFIG", default_value = "emergency.toml")]
    config: PathBuf,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    orex_kit::binary::run(
        "orex-emergency",
        || {
            let config = orex_emergency::EmergencyConfig::load(&args.config)?;
            Ok((config.listen, orex_emergency::prepare(config)?))
        },
        |prepared, listener, shutdown| prepared.serve(listener, shutdown),
    )
    .await
}

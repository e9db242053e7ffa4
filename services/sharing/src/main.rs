//! `orex-sharing --config sharing.toml`: runs one sharing service.

use std::path::PathBuf;

use clap::Parser;

/// The orex sharing service.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Path of the service's TOML config (env overrides: OREX_SHARING__<FIELD>).
    #[arg(long, env = "OREX_SHARING_CONFIG", default_value = "sharing.toml")]
    config: PathBuf,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    orex_kit::binary::run(
        "orex-sharing",
        || {
            let config = orex_sharing::SharingConfig::load(&args.config)?;
            Ok((config.listen, orex_sharing::prepare(config)?))
        },
        |prepared, listener, shutdown| prepared.serve(listener, shutdown),
    )
    .await
}

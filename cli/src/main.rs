//! `orex`: run the dev stack, mint dev tokens, and use the member API.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use orex_cli::commands::{
    self, admin::AdminCommand, audit::AuditCommand, emergency::EmergencyCommand,
    report::ReportCommand, risk::RiskCommand, stockpile::StockpileCommand,
};
use orex_cli::devstack::{DevLayout, Ports};

/// orex — the critical-minerals partnership's supply-problem exchange.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
// Parsed once per run; the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Run the whole system locally: generate a dev PKI, issuer keys and client
    /// bundles (once), start every service and the gateway.
    Up {
        /// Folder for PKI, bundles, configs and data.
        #[arg(long, default_value = ".orex-dev")]
        dir: PathBuf,
        /// Gateway port.
        #[arg(long, default_value_t = 7100)]
        gateway_port: u16,
        /// Sharing service port.
        #[arg(long, default_value_t = 7101)]
        sharing_port: u16,
        /// Risk service port.
        #[arg(long, default_value_t = 7102)]
        risk_port: u16,
        /// Emergency service port.
        #[arg(long, default_value_t = 7103)]
        emergency_port: u16,
    },
    /// Supply reports, through the gateway.
    Report {
        /// Client bundle folder (ca.pem, cert.pem, key.pem, token.jwt, bundle.toml).
        #[arg(long, env = "OREX_BUNDLE", global = true)]
        bundle: Option<PathBuf>,
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// Supply-risk scores, scenarios, reference prices and alerts, for
    /// analysts, through the gateway.
    Risk {
        /// An analyst's client bundle folder.
        #[arg(long, env = "OREX_BUNDLE", global = true)]
        bundle: Option<PathBuf>,
        #[command(subcommand)]
        command: RiskCommand,
    },
    /// Members' stockpiles of critical minerals and the partnership
    /// aggregate, through the gateway: report with a coordinator's bundle,
    /// list with an analyst's too.
    Stockpile {
        /// A coordinator's (or, to list, an analyst's) client bundle folder.
        #[arg(long, env = "OREX_BUNDLE", global = true)]
        bundle: Option<PathBuf>,
        #[command(subcommand)]
        command: StockpileCommand,
    },
    /// Shortage cases — declare, vote, pledge, deliver, close — through the
    /// gateway with a coordinator's bundle; list, show and watch with an
    /// analyst's too.
    Emergency {
        /// A coordinator's (or, to read, an analyst's) client bundle folder.
        #[arg(long, env = "OREX_BUNDLE", global = true)]
        bundle: Option<PathBuf>,
        #[command(subcommand)]
        command: EmergencyCommand,
    },
    /// The access log, for auditors, through the gateway — or, with
    /// --replicas, every gateway replica's own log.
    Audit {
        /// An auditor's client bundle folder.
        #[arg(long, env = "OREX_BUNDLE", global = true)]
        bundle: Option<PathBuf>,
        /// Read every gateway replica's own access log at its own address
        /// instead of the bundle's gateway: HOST:PORT, repeatable; a name
        /// stands for every address it resolves to (in Kubernetes the
        /// headless Service, gateway-replicas.<namespace>.svc:7100). Every
        /// replica's certificate is checked for the bundle's server_name.
        /// query merges the logs by time, export writes one log after the
        /// other, verify checks each log on its own; lines and rows name
        /// their log id and replica.
        #[arg(long = "replicas", value_name = "HOST:PORT", global = true)]
        replicas: Vec<String>,
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Operators' actions on a server: backups of its store.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Development tooling.
    Dev {
        #[command(subcommand)]
        command: DevCommand,
    },
}

#[derive(Debug, Subcommand)]
enum DevCommand {
    /// Issue a fresh certificate-bound token for a bundle (written to its token.jwt).
    Token {
        /// Client bundle folder.
        #[arg(long, env = "OREX_BUNDLE")]
        bundle: PathBuf,
        /// The dev folder holding the issuer keys (default: the bundle's dev folder).
        #[arg(long)]
        dev_dir: Option<PathBuf>,
        /// Token lifetime in minutes (the gateway refuses tokens living longer
        /// than the issuer's `max_token_lifetime_seconds`, default 24 h).
        #[arg(long, default_value_t = 480)]
        ttl_minutes: u64,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    orex_kit::install_crypto_provider();
    orex_kit::telemetry::init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up {
            dir,
            gateway_port,
            sharing_port,
            risk_port,
            emergency_port,
        } => {
            commands::up::run(
                &DevLayout::new(dir),
                Ports {
                    gateway: gateway_port,
                    sharing: sharing_port,
                    risk: risk_port,
                    emergency: emergency_port,
                },
            )
            .await
        }
        Command::Report { bundle, command } => match bundle {
            Some(bundle) => commands::report::run(&bundle, command).await,
            None => Err(orex_cli::CliError::Invalid(
                "--bundle (or OREX_BUNDLE) is required: the folder of your client bundle".into(),
            )),
        },
        Command::Risk { bundle, command } => match bundle {
            Some(bundle) => commands::risk::run(&bundle, command).await,
            None => Err(orex_cli::CliError::Invalid(
                "--bundle (or OREX_BUNDLE) is required: the folder of your analyst bundle".into(),
            )),
        },
        Command::Stockpile { bundle, command } => match bundle {
            Some(bundle) => commands::stockpile::run(&bundle, command).await,
            None => Err(orex_cli::CliError::Invalid(
                "--bundle (or OREX_BUNDLE) is required: the folder of your coordinator (or analyst) bundle"
                    .into(),
            )),
        },
        Command::Emergency { bundle, command } => match bundle {
            Some(bundle) => commands::emergency::run(&bundle, command).await,
            None => Err(orex_cli::CliError::Invalid(
                "--bundle (or OREX_BUNDLE) is required: the folder of your coordinator (or analyst) bundle"
                    .into(),
            )),
        },
        Command::Admin { command } => commands::admin::run(command).await,
        Command::Audit {
            bundle,
            replicas,
            command,
        } => match bundle {
            Some(bundle) => commands::audit::run_on(&bundle, &replicas, command).await,
            None => Err(orex_cli::CliError::Invalid(
                "--bundle (or OREX_BUNDLE) is required: the folder of your auditor bundle".into(),
            )),
        },
        Command::Dev {
            command:
                DevCommand::Token {
                    bundle,
                    dev_dir,
                    ttl_minutes,
                },
        } => commands::dev::token(
            &bundle,
            dev_dir.as_deref(),
            std::time::Duration::from_secs(ttl_minutes * 60),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("orex: {e}");
            ExitCode::FAILURE
        }
    }
}

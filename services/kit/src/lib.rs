//! The kit every orex server is built from, so that TLS, identities,
//! telemetry, shutdown and durable storage are written once.
//!
//! - [`admin`]: the operators' service on every server (backups), closed by default.
//! - [`backup`]: the backup file, consistent snapshots and offline restore.
//! - [`binary`]: the shared `main` of every server binary.
//! - [`config`]: typed config from a TOML file plus `OREX_<BINARY>__` env overrides.
//! - [`tls`]: mutual-TLS server and client setup from PEM files.
//! - [`identity`]: who is on the other end of a connection, from its certificate.
//! - [`page_token`]: opaque, tamper-proof list page tokens.
//! - [`fields`]: checks of request fields every service shares.
//! - [`forwarded`]: the verified principal passed from the gateway to a service.
//! - [`request_errors`]: undecodable requests answered as the client's fault, and observed.
//! - [`reload`]: applying a changed config file on SIGHUP or file change.
//! - [`server`]: run a gRPC server with health, reflection, metrics and graceful shutdown.
//! - [`ops`]: the plain-text port for health probes and `/metrics`.
//! - [`metrics`]: Prometheus metrics of every call, stream and store.
//! - [`store`]: the sled store with group commit and a sequence-numbered event log.
//! - [`group_commit`]: the writes of concurrent callers applied, flushed and published together.
//! - [`stream`]: server streams that replay the event log, then follow it live.
//! - [`telemetry`]: tracing, JSON in clusters and readable in a terminal.
//! - [`trace`]: one trace id per call, in its logs and carried to the services.
//! - [`shutdown`]: one signal that stops servers and ends streams.
//! - [`status`]: the error model: stable reasons and `google.rpc` details on every status.
//! - [`transport`]: TCP and HTTP/2 settings of every accepted and dialled connection.

pub mod admin;
pub mod backup;
pub mod binary;
pub mod config;
pub mod error;
pub mod fields;
pub mod forwarded;
pub mod group_commit;
pub mod identity;
pub mod metrics;
pub mod ops;
pub mod page_token;
pub mod reload;
pub mod request_errors;
pub mod server;
pub mod shutdown;
pub mod status;
pub mod store;
pub mod stream;
pub mod telemetry;
pub mod tls;
pub mod trace;
pub mod transport;

pub use error::KitError;
pub use shutdown::Shutdown;

/// Installs the one rustls crypto provider orex uses (aws-lc-rs). Call it first
/// thing in every binary and test helper; calling it again is harmless.
pub fn install_crypto_provider() {
    // Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

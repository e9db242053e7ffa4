//! The `orex` command as a library, so the end-to-end tests build the stack
//! exactly as `orex up` does.
//!
//! - [`devpki`]: a development CA, workload and member certificates, issuer keys.
//! - [`tokens`]: certificate-bound member tokens (RFC 8705 `cnf.x5t#S256`).
//! - [`devstack`]: the dev folder layout, its config files, and running every
//!   service and the gateway in one process.
//! - [`bundle`]: a member principal's client bundle and a gateway connection from it.
//! - [`commands`]: what the `orex` subcommands do.
//! - [`json`]: `--json` output in the proto3 JSON mapping.
//! - [`output`]: printing that stops quietly when the reader of stdout has gone.

// Printing goes through `output` (a closed pipe must not panic).
#![deny(clippy::print_stdout)]

pub mod bundle;
pub mod commands;
pub mod devpki;
pub mod devstack;
pub mod error;
pub mod json;
pub mod output;
pub mod tokens;

pub use error::CliError;

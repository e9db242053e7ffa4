//! Errors of the kit. They surface at start (config, TLS files, store) and are
//! reported to the operator, never to a gRPC caller.

use std::path::PathBuf;

/// Why a server could not start or a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KitError {
    /// The configuration is missing a field, has an unknown one, or a bad value.
    #[error("configuration: {0}")]
    Config(String),
    /// A TLS file is missing, unreadable, malformed or unsafe.
    #[error("{path}: {message}")]
    TlsFile {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// TLS could not be set up with the given material.
    #[error("TLS setup: {0}")]
    Tls(String),
    /// The gRPC server failed.
    #[error("server: {0}")]
    Server(String),
    /// The sled store failed.
    #[error("store: {0}")]
    Store(#[from] sled::Error),
    /// Flushing the store to disk failed: the write is not durable.
    #[error("store flush failed: {0}")]
    Flush(String),
    /// A backup could not be taken, or a backup file is damaged or does
    /// not fit where it is restored.
    #[error("backup: {0}")]
    Backup(String),
    /// A stored value does not decode: the store is damaged.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Stored data contradicts what the process knows it wrote (a log
    /// shorter than its newest checkpoint): it must not serve until an
    /// operator restores from backup. Exit status 3.
    #[error("integrity check failed: {0}")]
    Integrity(String),
}

impl KitError {
    /// The exit status of a server that stops on this error: 3 for
    /// [`KitError::Integrity`] (restore from backup; restarting will not
    /// help), 1 otherwise.
    pub fn exit_status(&self) -> u8 {
        match self {
            KitError::Integrity(_) => 3,
            _ => 1,
        }
    }
}

impl KitError {
    /// The same failure for another caller of a batch that failed as a
    /// whole (sled's own errors cannot be cloned; they keep their text).
    pub fn for_each_caller(&self) -> KitError {
        match self {
            KitError::Corrupt(m) => KitError::Corrupt(m.clone()),
            other => KitError::Flush(other.to_string()),
        }
    }
}

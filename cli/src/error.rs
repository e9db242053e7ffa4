//! Errors of the `orex` command, printed to the user as one line.

/// Why an `orex` command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Pki(#[from] rcgen::Error),
    /// Token minting failed.
    #[error("token: {0}")]
    Token(#[from] jsonwebtoken::errors::Error),
    /// A bundle or dev folder is incomplete or malformed.
    #[error("{0}")]
    Invalid(String),
    /// A service could not start or stopped with an error.
    #[error(transparent)]
    Kit(#[from] orex_kit::KitError),
    /// Connecting to the gateway failed.
    #[error("cannot connect to the gateway: {0}")]
    Connect(#[from] tonic::transport::Error),
    /// The gateway answered with an error status.
    #[error("{:?}: {}", .0.code(), .0.message())]
    Rpc(#[from] tonic::Status),
}

/// Reads a file, naming it on failure.
pub fn read(path: &std::path::Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|source| CliError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Writes a file (creating its folder), naming it on failure. `private` files
/// are created with mode 0600.
pub fn write(path: &std::path::Path, bytes: &[u8], private: bool) -> Result<(), CliError> {
    let io = |source| CliError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    use std::io::Write as _;
    let mut f = options.open(path).map_err(io)?;
    // `mode` applies only when the file is created; tighten an existing one too.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(if private {
            0o600
        } else {
            0o644
        }))
        .map_err(io)?;
    }
    f.write_all(bytes).map_err(io)
}

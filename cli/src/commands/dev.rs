//! `orex dev …`: development PKI and token tooling.

use std::path::Path;
use std::time::Duration;

use crate::CliError;
use crate::devstack::{self, DevLayout};

/// Mints a fresh token for the bundle in `bundle` with the dev issuer key of
/// its member and prints it.
pub fn token(bundle: &Path, dev_dir: Option<&Path>, ttl: Duration) -> Result<(), CliError> {
    // Bundles made by `orex up` live in <dev dir>/bundles/<name>.
    let root = match dev_dir {
        Some(d) => d.to_owned(),
        None => bundle
            .canonicalize()
            .ok()
            .and_then(|b| b.parent().and_then(Path::parent).map(Path::to_owned))
            .ok_or_else(|| {
                CliError::Invalid("cannot find the dev folder; pass --dev-dir".into())
            })?,
    };
    let token = devstack::refresh_token(&DevLayout::new(root), bundle, ttl)?;
    crate::outln!("{token}");
    Ok(())
}

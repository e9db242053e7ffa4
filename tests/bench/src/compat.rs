//! The few places where the tool touches APIs that are changing while the
//! fixes of issue 6 land, kept in one file so the tool builds against the
//! commit it measures (BENCHMARKS.md names the commit of each result).

use std::path::Path;
use std::time::Duration;

use orex_cli::devstack::DevLayout;
use orex_kit::store::{Store, StoreConfig};

/// Opens a kit store (sled plus the group-commit flusher) with the default
/// settings the services use.
pub(crate) fn open_store(dir: &Path) -> Store {
    Store::open(dir, &StoreConfig::default()).expect("open a kit store")
}

/// How long a stream may leave a full buffer unread before the server
/// drops it: the largest `[streams] slow_consumer_seconds` of the sharing
/// and gateway configs, or the historical constant of 30 s.
pub(crate) fn slow_consumer_timeout(layout: &DevLayout) -> Duration {
    let read = |file: &str| -> Option<u64> {
        let text = std::fs::read_to_string(layout.config(file)).ok()?;
        let table: toml::Table = text.parse().ok()?;
        table
            .get("streams")?
            .get("slow_consumer_seconds")?
            .as_integer()
            .and_then(|s| u64::try_from(s).ok())
    };
    let secs = [read("sharing.toml"), read("gateway.toml")]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(30);
    Duration::from_secs(secs)
}

/// Access records `[start, end)` as stored in the gateway's log.
pub(crate) fn read_records(
    log: &orex_gateway::audit::AuditLog,
    start: u64,
    end: u64,
) -> Result<Vec<orex_proto::audit::v1::AccessRecord>, String> {
    log.range(start, end).map_err(|e| e.to_string())
}

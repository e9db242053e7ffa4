//! The durable store every service wraps: one sled database, group commit,
//! versioned values and a sequence-numbered event log.
//!
//! sled acknowledges writes before they reach disk (it fsyncs in the
//! background). orex tells a caller "done" only after [`Store::durable`]
//! returns, which waits for a flush that started after the caller's write.
//! Concurrent callers share one flush (group commit), so durability costs one
//! fsync per batch rather than per call.

use std::path::Path;
use std::sync::{Arc, Mutex};

use prost::Message;
use tokio::sync::{mpsc, oneshot, watch};

use crate::KitError;

/// Format byte in front of every stored value, so the encoding can change later.
const VALUE_FORMAT_V1: u8 = 1;

type FlushWaiter = oneshot::Sender<Result<(), String>>;

/// A flush request carries its own handle on the database, so the flusher
/// holds none while idle and a dropped [`Store`] really closes (sled locks
/// its folder; a restart in the same process must be able to reopen it).
type FlushRequest = (sled::Db, FlushWaiter);

/// The store's settings (`[store]` in a server's config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// sled's page cache in MiB (default 64). sled's own default is 1 GiB,
    /// which an append-only log fills as it grows: memory then tracks the
    /// data's size instead of the configuration.
    #[serde(default = "default_cache_mib")]
    pub cache_mib: u64,
}

fn default_cache_mib() -> u64 {
    64
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            cache_mib: default_cache_mib(),
        }
    }
}

impl StoreConfig {
    /// Checks the values (`field` names the config table in messages).
    pub fn validate(&self, field: &str) -> Result<(), KitError> {
        if !(4..=65_536).contains(&self.cache_mib) {
            return Err(KitError::Config(format!(
                "{field}.cache_mib must be 4 to 65536, got {}",
                self.cache_mib
            )));
        }
        Ok(())
    }
}

/// Bytes of every file under `dir` (sled keeps a few files and a `blobs`
/// folder); unreadable entries count as empty.
fn folder_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => folder_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// How long [`Store::open`] waits for a folder another database holds.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A service's sled database plus its group-commit flusher. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    db: sled::Db,
    flush_requests: mpsc::Sender<FlushRequest>,
    /// Dropped with the last clone: the size gauge then forgets this store.
    _alive: Arc<()>,
    /// Held shared by every group commit while it applies a batch, and
    /// exclusively by a backup while it reads (`backup`).
    gate: Arc<tokio::sync::RwLock<()>>,
    path: Arc<std::path::PathBuf>,
    /// Trees holding an [`EventLog`]: append-only, so a backup copies them
    /// after releasing the gate, up to the end it noted under it.
    logs: Arc<Mutex<Vec<String>>>,
}

impl Store {
    /// Opens (or creates) the database in `dir`. Must be called inside a Tokio
    /// runtime: it starts the flusher task.
    ///
    /// sled locks the folder, and a dropped database lets go of the lock
    /// only at its background thread's next tick: a service restarted in
    /// the same process (the test harness, `orex up`) or a replacement
    /// started as the old one exits waits for it, up to [`LOCK_WAIT`], and
    /// then says who is likely to hold it.
    pub fn open(dir: &Path, config: &StoreConfig) -> Result<Self, KitError> {
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let db = loop {
            match sled::Config::new()
                .path(dir)
                .cache_capacity(config.cache_mib * 1024 * 1024)
                .open()
            {
                Ok(db) => break db,
                Err(e) if e.to_string().contains("could not acquire lock") => {
                    if std::time::Instant::now() >= deadline {
                        return Err(KitError::Config(format!(
                            "{} is locked by another process for {LOCK_WAIT:?}: is another instance running on this data_dir? ({e})",
                            dir.display()
                        )));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(e.into()),
            }
        };
        let (flush_requests, mut rx) = mpsc::channel::<FlushRequest>(4096);
        tokio::spawn(async move {
            while let Some((db, first)) = rx.recv().await {
                let mut waiters = vec![first];
                while let Ok((_, more)) = rx.try_recv() {
                    waiters.push(more);
                }
                let result = match tokio::task::spawn_blocking(move || db.flush()).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                for w in waiters {
                    let _ = w.send(result.clone());
                }
            }
        });
        let alive = Arc::new(());
        let weak = Arc::downgrade(&alive);
        let folder = dir.to_owned();
        crate::metrics::global().gauge_fn(
            "orex_store_size_bytes",
            "Bytes the store's files take on disk",
            vec![("path", dir.display().to_string())],
            move || match weak.upgrade() {
                Some(_) => crate::metrics::Sample::Value(folder_size(&folder) as f64),
                None => crate::metrics::Sample::Gone,
            },
        );
        Ok(Self {
            db,
            flush_requests,
            _alive: alive,
            gate: Arc::new(tokio::sync::RwLock::new(())),
            path: Arc::new(dir.to_owned()),
            logs: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// The write gate: writers hold it shared while applying, a backup
    /// exclusively while reading.
    pub fn gate(&self) -> &Arc<tokio::sync::RwLock<()>> {
        &self.gate
    }

    /// The database, for whole-store reads (backups).
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// The store's folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether tree `name` holds an [`EventLog`] (append-only).
    pub fn is_event_log(&self, name: &[u8]) -> bool {
        let logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        logs.iter().any(|l| l.as_bytes() == name)
    }

    /// Opens a named tree (a keyspace) of this database.
    pub fn tree(&self, name: &str) -> Result<sled::Tree, KitError> {
        Ok(self.db.open_tree(name)?)
    }

    /// Resolves once every write made before this call is on disk.
    pub async fn durable(&self) -> Result<(), KitError> {
        let (tx, rx) = oneshot::channel();
        self.flush_requests
            .send((self.db.clone(), tx))
            .await
            .map_err(|_| KitError::Flush("flusher stopped".into()))?;
        rx.await
            .map_err(|_| KitError::Flush("flusher stopped".into()))?
            .map_err(KitError::Flush)
    }

    /// Flushes synchronously; used at shutdown.
    pub fn flush_now(&self) -> Result<(), KitError> {
        self.db.flush()?;
        Ok(())
    }
}

/// Encodes a protobuf value with the format byte in front.
pub fn encode_value<M: Message>(value: &M) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.encoded_len() + 1);
    out.push(VALUE_FORMAT_V1);
    value
        .encode(&mut out)
        .expect("a Vec grows as needed, so encoding cannot run out of space");
    out
}

/// Decodes a value written by [`encode_value`].
pub fn decode_value<M: Message + Default>(bytes: &[u8]) -> Result<M, KitError> {
    match bytes.split_first() {
        Some((&VALUE_FORMAT_V1, rest)) => {
            M::decode(rest).map_err(|e| KitError::Corrupt(e.to_string()))
        }
        _ => Err(KitError::Corrupt(
            "stored value has an unknown format".into(),
        )),
    }
}

/// What one operation of a group-commit `apply` did (see
/// [`crate::group_commit`], the one way to write an [`EventLog`]).
#[derive(Debug)]
pub enum Write<R> {
    /// It wrote the event with the sequence it was given.
    Appended(R),
    /// It wrote nothing (an idempotent replay, say); the sequence is unused.
    Unchanged(R),
}

/// A durable, gap-free-in-order log of events, numbered from 1.
///
/// Writers are serialised so sequence numbers are assigned in commit order,
/// and readers see an event only once it is durable: a subscriber can never
/// receive an event that a crash could take back.
#[derive(Debug)]
pub struct EventLog {
    tree: sled::Tree,
    last_assigned: Mutex<u64>,
    published: watch::Sender<u64>,
}

impl EventLog {
    /// Opens the log kept in tree `name`; what is on disk counts as durable.
    pub fn open(store: &Store, name: &str) -> Result<Arc<Self>, KitError> {
        let tree = store.tree(name)?;
        {
            let mut logs = store.logs.lock().unwrap_or_else(|e| e.into_inner());
            if !logs.iter().any(|l| l == name) {
                logs.push(name.to_owned());
            }
        }
        let last = match tree.last()? {
            Some((k, _)) => seq_from_key(&k),
            None => 0,
        };
        Ok(Arc::new(Self {
            tree,
            last_assigned: Mutex::new(last),
            published: watch::channel(last).0,
        }))
    }

    /// The tree holding the events (key: big-endian sequence), written by a
    /// [`GroupCommit`](crate::group_commit::GroupCommit)'s `apply`.
    pub fn tree(&self) -> &sled::Tree {
        &self.tree
    }

    /// The last assigned sequence, locked: whoever holds it is the only
    /// writer of the log until it is dropped.
    pub(crate) fn lock_assigned(&self) -> std::sync::MutexGuard<'_, u64> {
        self.last_assigned.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lets readers see every event up to `seq` (which must be durable).
    pub(crate) fn publish(&self, seq: u64) {
        self.published.send_if_modified(|p| {
            let newer = seq > *p;
            if newer {
                *p = seq;
            }
            newer
        });
    }

    /// The highest sequence readers may see.
    pub fn published(&self) -> u64 {
        *self.published.borrow()
    }

    /// A receiver that changes whenever [`published`](Self::published) grows.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.published.subscribe()
    }

    /// Up to `limit` durable events with a sequence greater than `after`.
    pub fn read_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, sled::IVec)>, KitError> {
        let upto = self.published();
        if after >= upto {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for item in self.tree.range(seq_key(after + 1)..=seq_key(upto)) {
            let (k, v) = item?;
            out.push((seq_from_key(&k), v));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}

/// The big-endian key of a sequence number, so ranges scan in order.
pub fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

fn seq_from_key(k: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = k.len().min(8);
    b[..n].copy_from_slice(&k[..n]);
    u64::from_be_bytes(b)
}

#[cfg(test)]
mod reopen_tests {
    use super::*;

    /// A store reopened while the previous handle on its folder is still
    /// letting go waits for the lock instead of failing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_reopened_while_the_old_one_closes_waits_for_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        first.tree("t").unwrap().insert("k", "v").unwrap();
        first.durable().await.unwrap();
        let path = dir.path().to_owned();
        let second =
            tokio::task::spawn_blocking(move || Store::open(&path, &StoreConfig::default()));
        drop(first);
        let second = second
            .await
            .unwrap()
            .expect("opened once the lock was free");
        assert_eq!(
            second.tree("t").unwrap().get("k").unwrap().as_deref(),
            Some(&b"v"[..])
        );
    }
}

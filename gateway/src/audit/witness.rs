//! The witness: every signed checkpoint, also appended to a small file
//! outside the log's sled store, so the gateway notices at start when the
//! log has lost its tail.
//!
//! sled recovers the longest intact prefix of its own log. A record damaged
//! on disk therefore silently takes every later record — and every later
//! checkpoint — with it, and a gateway that trusted its store alone would
//! reuse the lost indexes for new records and sign a fresh, self-consistent
//! history over them. The witness is a separate file, append-only, one line
//! per checkpoint: `<base64 of the Checkpoint protobuf> <SHA-256 hex of that
//! base64>`. At start the newest line must be a checkpoint this gateway's key
//! signed, and the log must still hold it: at least `log_size` records, the
//! record at `log_size - 1` with its `head_hash`, and that checkpoint in the
//! store. Otherwise the gateway refuses to serve (exit status 3, see
//! `orex_kit::binary`) until an operator restores the store from a backup —
//! or, knowing records are lost, moves the witness aside (keep it for the
//! auditors) to start a new one at the current head.
//!
//! A torn last line (a crash while appending) is ignored with a warning;
//! any other damaged line makes the witness itself untrustworthy and the
//! gateway refuses to start.
//!
//! A witness vouches for one log. With several gateway replicas each keeps
//! its own (the default path sits beside each replica's own `data_dir`); a
//! gateway holds an exclusive advisory lock (`flock`) on its witness while it
//! runs, so a second gateway configured with the same file — two replicas
//! sharing a volume, say — refuses to start instead of interleaving two
//! logs' checkpoints in one file.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use orex_kit::KitError;
use orex_proto::audit::v1::Checkpoint;
use prost::Message;
use sha2::{Digest, Sha256};

/// How long a starting gateway waits for another process to let go of the
/// witness (a gateway being replaced on the same volume) before refusing.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// The append-only checkpoint file, locked for this gateway while it is
/// open. Appends are serialised and synced.
#[derive(Debug)]
pub struct Witness {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

/// What the witness file held when it was opened.
#[derive(Debug)]
pub struct Witnessed {
    /// The newest checkpoint it names, if any.
    pub newest: Option<Checkpoint>,
    /// Whether the file existed (a first start creates it).
    pub existed: bool,
}

impl Witness {
    /// Opens (or creates) the witness at `path` and reads its newest
    /// checkpoint. A damaged line other than a torn last one is an error.
    /// Another process holding the file's lock is waited for (up to ten
    /// seconds), then refused: a witness serves one gateway at a time.
    pub fn open(path: &Path) -> Result<(Witness, Witnessed), KitError> {
        let existed = path.exists();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| KitError::Config(format!("audit witness {}: {e}", path.display())))?;
        lock(&file, path, LOCK_WAIT)?;
        // Read under the lock: nobody else appends meanwhile.
        let newest = if existed { read_newest(path)? } else { None };
        Ok((
            Witness {
                path: path.to_owned(),
                file: Mutex::new(file),
            },
            Witnessed { newest, existed },
        ))
    }

    /// Appends `checkpoint` and syncs the file.
    pub fn append(&self, checkpoint: &Checkpoint) -> Result<(), KitError> {
        let line = line_of(checkpoint);
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.write_all(line.as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|e| KitError::Flush(format!("audit witness {}: {e}", self.path.display())))
    }

    /// Where the witness is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Takes the exclusive lock on the witness, waiting up to `wait` for
/// another holder to let go. A filesystem without locks is accepted with a
/// warning (the lock guards against a misconfiguration, not an attacker).
fn lock(file: &std::fs::File, path: &Path, wait: Duration) -> Result<(), KitError> {
    let deadline = Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(KitError::Config(format!(
                    "audit.witness {} is locked by another running gateway: a witness \
                     vouches for one log, so every gateway replica needs its own \
                     (the default, <data_dir>.witness, is per replica when each \
                     replica has its own data_dir)",
                    path.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                tracing::warn!(
                    path = %path.display(),
                    error = %e,
                    "cannot lock the audit witness; make sure no other gateway uses it"
                );
                return Ok(());
            }
        }
    }
}

fn line_of(checkpoint: &Checkpoint) -> String {
    let body = STANDARD.encode(checkpoint.encode_to_vec());
    let sum = hex::encode(Sha256::digest(body.as_bytes()));
    format!("{body} {sum}\n")
}

fn parse_line(line: &str) -> Option<Checkpoint> {
    let (body, sum) = line.trim_end().split_once(' ')?;
    if hex::encode(Sha256::digest(body.as_bytes())) != sum {
        return None;
    }
    Checkpoint::decode(STANDARD.decode(body).ok()?.as_slice()).ok()
}

fn read_newest(path: &Path) -> Result<Option<Checkpoint>, KitError> {
    let damaged = |why: String| {
        KitError::Integrity(format!(
            "audit witness {} is damaged ({why}); it cannot vouch for the access log. \
             Restore it (and the log) from backup",
            path.display()
        ))
    };
    let file = std::fs::File::open(path)
        .map_err(|e| KitError::Config(format!("audit witness {}: {e}", path.display())))?;
    let lines: Vec<String> = BufReader::new(file)
        .lines()
        .collect::<Result<_, _>>()
        .map_err(|e| damaged(e.to_string()))?;
    let mut newest: Option<Checkpoint> = None;
    for (n, line) in lines.iter().enumerate() {
        match parse_line(line) {
            Some(cp) => {
                if newest
                    .as_ref()
                    .is_some_and(|prev| cp.log_size < prev.log_size)
                {
                    return Err(damaged(format!("line {} goes backwards", n + 1)));
                }
                newest = Some(cp);
            }
            // A crash while appending leaves a torn last line: it named a
            // checkpoint the store already holds, so nothing is lost.
            None if n + 1 == lines.len() => {
                tracing::warn!(path = %path.display(), line = n + 1, "ignoring a torn last line of the audit witness");
            }
            None => return Err(damaged(format!("line {} fails its checksum", n + 1))),
        }
    }
    Ok(newest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(size: u64) -> Checkpoint {
        Checkpoint {
            log_id: "orex-gateway/test".into(),
            log_size: size,
            head_hash: format!("{size:064x}"),
            ..Default::default()
        }
    }

    #[test]
    fn the_newest_checkpoint_survives_a_reopen_and_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w");
        let (w, seen) = Witness::open(&path).unwrap();
        assert!(!seen.existed && seen.newest.is_none());
        w.append(&checkpoint(10)).unwrap();
        w.append(&checkpoint(20)).unwrap();
        drop(w);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("Q2hlY2twb2ludA"); // a crash mid-append
        std::fs::write(&path, &text).unwrap();
        let (_, seen) = Witness::open(&path).unwrap();
        assert!(seen.existed);
        assert_eq!(seen.newest.unwrap().log_size, 20);
    }

    #[test]
    fn a_witness_in_use_by_another_gateway_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w");
        let (first, _) = Witness::open(&path).unwrap();
        let other = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        let err = lock(&other, &path, Duration::from_millis(50)).unwrap_err();
        assert!(matches!(err, KitError::Config(_)), "{err}");
        assert!(
            err.to_string()
                .contains("locked by another running gateway")
        );
        // Let go (the gateway stopped): the next one takes it.
        drop(first);
        lock(&other, &path, Duration::ZERO).unwrap();
    }

    #[test]
    fn a_damaged_line_before_the_last_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w");
        let (w, _) = Witness::open(&path).unwrap();
        w.append(&checkpoint(10)).unwrap();
        w.append(&checkpoint(20)).unwrap();
        drop(w);
        let mut text = std::fs::read_to_string(&path).unwrap().into_bytes();
        text[3] = if text[3] == b'x' { b'y' } else { b'x' }; // in the first line
        std::fs::write(&path, text).unwrap();
        let err = Witness::open(&path).unwrap_err();
        assert!(matches!(err, KitError::Integrity(_)), "{err}");
    }
}

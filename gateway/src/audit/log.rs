//! The access log in the gateway's own sled store.
//!
//! Records live in the kit's [`EventLog`] (tree `audit_records`, key: big-endian
//! sequence = index + 1), so they are numbered without gaps and acknowledged
//! only once flushed. The records of concurrent calls are group-committed:
//! chained in order, written with one sled batch and flushed once, so the
//! door's durable record costs one fsync per batch of calls, not per call. Each record carries the hash of the one
//! before it; signed checkpoints (tree `audit_checkpoints`, key: big-endian
//! log size) commit to the head of the chain.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use orex_kit::group_commit::{Applied, ApplyFn, GroupCommit, Staged};
use orex_kit::store::{EventLog, Store, decode_value, encode_value, seq_key};
use orex_kit::{KitError, Shutdown};
use orex_proto::audit::v1::{AccessRecord, Checkpoint};
use prost::Message;
use prost_types::Timestamp;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use sha2::{Digest, Sha256};

use crate::audit::witness::Witness;
use crate::config::AuditConfig;

/// The `prev_hash` of the first record, and the head of an empty log.
pub const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Why the access log could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The store failed; the call must not proceed.
    #[error("access log store: {0}")]
    Store(#[from] KitError),
    /// A sled error.
    #[error("access log store: {0}")]
    Sled(#[from] sled::Error),
    /// Writes were switched off by [`AuditLog::inject_write_failure`].
    #[error("access log writes are failing (injected)")]
    Injected,
}

/// Checks the log still holds `newest`, the witness's newest checkpoint or
/// (for a new witness) the store's own (see [`crate::audit::witness`]);
/// the error says what is missing or different.
fn check_against_witness(
    log: &EventLog,
    checkpoints: &sled::Tree,
    public_key: &[u8],
    log_id: &str,
    newest: &Checkpoint,
) -> Result<(), String> {
    let payload = checkpoint_payload(
        &newest.log_id,
        newest.log_size,
        &newest.head_hash,
        &newest.signed_at.as_ref().map(rfc3339).unwrap_or_default(),
    );
    let key =
        aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, public_key);
    if payload != newest.signed_payload || key.verify(&payload, &newest.signature).is_err() {
        return Err("the witness's newest checkpoint is not signed by this gateway's key".into());
    }
    if newest.log_id != log_id {
        return Err(format!(
            "the witness is of log {:?}, this gateway writes {log_id:?}",
            newest.log_id
        ));
    }
    if newest.log_size == 0 {
        return Ok(());
    }
    let size = log.published();
    if size < newest.log_size {
        return Err(format!(
            "the access log holds {size} records but its checkpoint of {} records was signed: records {size}..{} are lost",
            newest.log_size, newest.log_size
        ));
    }
    let unreadable = |e: String| format!("record {} cannot be read: {e}", newest.log_size - 1);
    let head = log
        .read_after(newest.log_size - 1, 1)
        .map_err(|e| unreadable(e.to_string()))?;
    let head = match head.first() {
        Some((_, v)) => decode_value::<AccessRecord>(v).map_err(|e| unreadable(e.to_string()))?,
        None => return Err(unreadable("missing".into())),
    };
    if head.hash != newest.head_hash {
        return Err(format!(
            "record {} differs from the one the checkpoint signed (hash {} instead of {})",
            newest.log_size - 1,
            head.hash,
            newest.head_hash
        ));
    }
    match checkpoints.get(newest.log_size.to_be_bytes()) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(format!(
            "the store lost the signed checkpoint of {} records",
            newest.log_size
        )),
        Err(e) => Err(format!("checkpoints cannot be read: {e}")),
    }
}

/// The refusal to open `what`, which holds log `theirs`, as log `ours`.
fn another_log(what: &str, theirs: &str, ours: &str) -> KitError {
    KitError::Config(format!(
        "audit.log_id: {what} holds the log {theirs:?}, but this gateway is configured to write \
         {ours:?}. A log keeps its id for life (auditors follow each log by its id): set \
         audit.log_id (OREX_GATEWAY__AUDIT__LOG_ID) back to {theirs:?}, or, if that log is \
         another gateway replica's, give this gateway its own data_dir and witness"
    ))
}

/// SHA-256 (lower-case hex) of a record's contents: its protobuf encoding
/// with the chain fields (`prev_hash`, `hash`, `content_hash`) empty and
/// `redacted` false.
pub fn content_hash(record: &AccessRecord) -> String {
    let canonical = AccessRecord {
        prev_hash: String::new(),
        hash: String::new(),
        content_hash: String::new(),
        redacted: false,
        ..record.clone()
    };
    hex::encode(Sha256::digest(canonical.encode_to_vec()))
}

/// The chain hash: SHA-256 over the raw bytes of `prev_hash` then
/// `content_hash` (both given in hex). Two levels let an auditor recompute
/// the chain across records it may only see redacted. `None` if either is
/// not 64 hex characters.
pub fn link_hash(prev_hash: &str, content_hash: &str) -> Option<String> {
    let prev = hex::decode(prev_hash).ok().filter(|b| b.len() == 32)?;
    let content = hex::decode(content_hash).ok().filter(|b| b.len() == 32)?;
    let mut h = Sha256::new();
    h.update(prev);
    h.update(content);
    Some(hex::encode(h.finalize()))
}

/// The copy of a record served outside an auditor's scope: its index and
/// the three hashes, nothing else, so the chain can be recomputed across it.
pub fn redacted(r: &AccessRecord) -> AccessRecord {
    AccessRecord {
        index: r.index,
        prev_hash: r.prev_hash.clone(),
        hash: r.hash.clone(),
        content_hash: r.content_hash.clone(),
        redacted: true,
        ..Default::default()
    }
}

/// Fills in `content_hash` and `hash` of a record whose `prev_hash` is set.
pub fn seal_record(record: &mut AccessRecord) {
    record.redacted = false;
    record.content_hash = content_hash(record);
    record.hash = link_hash(&record.prev_hash, &record.content_hash)
        .expect("prev_hash is a stored hash and content_hash was just computed");
}

/// The exact bytes a checkpoint signs.
pub fn checkpoint_payload(
    log_id: &str,
    log_size: u64,
    head_hash: &str,
    signed_at: &str,
) -> Vec<u8> {
    format!("orex-audit-checkpoint v1\n{log_id}\n{log_size}\n{head_hash}\n{signed_at}\n")
        .into_bytes()
}

/// RFC 3339 UTC with whole seconds, as checkpoints carry it.
pub fn rfc3339(t: &Timestamp) -> String {
    let whole = Timestamp {
        seconds: t.seconds,
        nanos: 0,
    };
    // prost's Display prints RFC 3339 with "Z".
    whole.to_string()
}

/// The batch writer of the chain: numbers, links and seals the records of
/// a batch in order and writes them with one sled batch. `head` (the hash of
/// the newest record) moves only when a batch is written.
fn chain_writer(log: &Arc<EventLog>, head: String) -> Arc<ApplyFn<AccessRecord, AccessRecord>> {
    let tree = log.tree().clone();
    let head = std::sync::Mutex::new(head);
    Arc::new(move |first: u64, records: &[AccessRecord]| {
        let mut head = head.lock().unwrap_or_else(|e| e.into_inner());
        let mut prev = head.clone();
        let mut sealed = Vec::with_capacity(records.len());
        for (seq, record) in (first..).zip(records) {
            let mut record = record.clone();
            record.index = seq - 1;
            record.prev_hash = std::mem::take(&mut prev);
            seal_record(&mut record);
            prev.clone_from(&record.hash);
            // Plain inserts, in order: sled recovers a prefix of its log, so
            // a crash can only lose a tail of records nobody was told were
            // durable. (`apply_batch` would seal an I/O buffer per batch: an
            // extra write per batch for an atomicity a chain does not need.)
            if let Err(e) = tree.insert(seq_key(seq), encode_value(&record)) {
                // The batch fails as a whole: the head stays where it was and
                // the next batch reuses these sequences; take back what went in.
                for done in first..seq {
                    let _ = tree.remove(seq_key(done));
                }
                return Err(e.into());
            }
            sealed.push(Applied {
                out: record,
                appended: 1,
            });
        }
        *head = prev;
        Ok(sealed)
    })
}

/// The access log. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    log: Arc<EventLog>,
    checkpoints: sled::Tree,
    /// Every checkpoint also goes here, outside the store.
    witness: Witness,
    signer: Ed25519KeyPair,
    log_id: String,
    key_id: String,
    every_records: u64,
    interval: Duration,
    failing: AtomicBool,
    /// Log size covered by the newest checkpoint (cached: read on every append).
    signed: AtomicU64,
    /// Appends of concurrent calls, chained, written and flushed together.
    writer: GroupCommit<AccessRecord, AccessRecord>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("log_id", &self.log_id)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens the log and loads the signing key (refused if world-readable).
    pub fn open(config: &AuditConfig) -> Result<Self, KitError> {
        orex_kit::tls::check_key_permissions(&config.signing_key)?;
        let pem = std::fs::read(&config.signing_key).map_err(|e| {
            KitError::Config(format!(
                "audit.signing_key {}: {e}",
                config.signing_key.display()
            ))
        })?;
        let der = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
            KitError::Config(format!(
                "audit.signing_key {}: not a PEM private key: {e}",
                config.signing_key.display()
            ))
        })?;
        let signer = Ed25519KeyPair::from_pkcs8(der.secret_der())
            .or_else(|_| Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.secret_der()))
            .map_err(|_| {
                KitError::Config(format!(
                    "audit.signing_key {}: not an Ed25519 PKCS#8 key",
                    config.signing_key.display()
                ))
            })?;
        let store = Store::open(
            &config.data_dir,
            &orex_kit::store::StoreConfig {
                cache_mib: config.cache_mib,
            },
        )?;
        let checkpoints = store.tree("audit_checkpoints")?;
        let store_newest = match checkpoints.last()? {
            Some((_, v)) => Some(decode_value::<Checkpoint>(&v)?),
            None => None,
        };
        let signed = store_newest.as_ref().map_or(0, |c| c.log_size);
        // A log keeps its name for life. With several gateway replicas a
        // store or witness naming another log is a configuration mistake
        // (a changed log id, another replica's volume), not damage: say so
        // before any integrity check would send the operator to a backup.
        if let Some(cp) = &store_newest
            && cp.log_id != config.log_id
        {
            return Err(another_log(
                &format!("the access log in {}", config.data_dir.display()),
                &cp.log_id,
                &config.log_id,
            ));
        }
        let log = EventLog::open(&store, "audit_records")?;
        let head = match log.tree().last()? {
            Some((_, v)) => decode_value::<AccessRecord>(&v)?.hash,
            None => ZERO_HASH.to_owned(),
        };
        // Before anything is appended: does the log still hold what the
        // witness says was signed? Fail closed if not.
        let witness_path = config.witness_path();
        let (witness, seen) = Witness::open(&witness_path)?;
        if let Some(newest) = &seen.newest
            && newest.log_id != config.log_id
        {
            return Err(another_log(
                &format!("the witness {}", witness_path.display()),
                &newest.log_id,
                &config.log_id,
            ));
        }
        let public_key = signer.public_key().as_ref().to_vec();
        match &seen.newest {
            Some(newest) => check_against_witness(
                &log,
                &checkpoints,
                &public_key,
                &config.log_id,
                newest,
            )
            .map_err(|why| {
                KitError::Integrity(format!(
                    "the access log in {} does not hold its newest signed checkpoint ({why}). \
                     Refusing to serve: restore the store from a backup, or — accepting that \
                     records are lost — move {} aside (keep it for the auditors) and start again",
                    config.data_dir.display(),
                    witness_path.display()
                ))
            })?,
            None => {
                // A new witness (first start, or an operator moved the old
                // one aside): it starts at the store's newest checkpoint.
                // The log must hold that one too.
                if let Some(cp) = store_newest {
                    check_against_witness(&log, &checkpoints, &public_key, &config.log_id, &cp)
                        .map_err(|why| {
                            KitError::Integrity(format!(
                                "the access log in {} does not hold the newest checkpoint in its own store ({why}). \
                                 Refusing to serve: restore the store from a backup",
                                config.data_dir.display()
                            ))
                        })?;
                    witness.append(&cp)?;
                    if seen.existed || signed > 0 {
                        tracing::warn!(
                            witness = %witness_path.display(),
                            log_size = cp.log_size,
                            "audit witness started at the store's newest checkpoint"
                        );
                    }
                }
            }
        }
        let writer = GroupCommit::new(store.clone(), log.clone(), chain_writer(&log, head));
        Ok(Self {
            inner: Arc::new(Inner {
                log,
                writer,
                checkpoints,
                witness,
                signed: AtomicU64::new(signed),
                store,
                signer,
                log_id: config.log_id.clone(),
                key_id: config.key_id.clone(),
                every_records: config.checkpoint_every_records,
                interval: Duration::from_secs(config.checkpoint_interval_seconds),
                failing: AtomicBool::new(false),
            }),
        })
    }

    /// The public half of the signing key (raw 32 bytes), for auditors.
    pub fn public_key(&self) -> Vec<u8> {
        self.inner.signer.public_key().as_ref().to_vec()
    }

    /// The store holding the log (for backups: `orex_kit::admin`).
    pub fn store(&self) -> Store {
        self.inner.store.clone()
    }

    /// Makes every later append fail (or work again), to prove that the
    /// gateway refuses calls it cannot record. A failure-injection switch for
    /// tests and drills; nothing in the gateway's API can reach it.
    pub fn inject_write_failure(&self, failing: bool) {
        self.inner.failing.store(failing, Ordering::SeqCst);
    }

    /// Appends a record (its index and hashes are filled in here) and
    /// returns once it is on disk.
    pub async fn append(&self, record: AccessRecord) -> Result<AccessRecord, AuditError> {
        let staged = self.append_staged(record).await?;
        staged.durable.await?;
        Ok(staged.out)
    }

    /// Appends a record and returns once it is in the store, with a
    /// [`Durable`](orex_kit::group_commit::Durable) that resolves once it is
    /// on disk: for callers that overlap work with the flush but release
    /// nothing before it.
    pub async fn append_staged(
        &self,
        record: AccessRecord,
    ) -> Result<Staged<AccessRecord>, AuditError> {
        self.stage(record, true).await
    }

    /// Like [`append_staged`](Self::append_staged), but asks for no flush:
    /// the record becomes durable with the next append that does (a read's
    /// outcome), or a few milliseconds later.
    pub async fn append_deferred(
        &self,
        record: AccessRecord,
    ) -> Result<Staged<AccessRecord>, AuditError> {
        self.stage(record, false).await
    }

    async fn stage(
        &self,
        mut record: AccessRecord,
        flush: bool,
    ) -> Result<Staged<AccessRecord>, AuditError> {
        if self.inner.failing.load(Ordering::SeqCst) {
            return Err(AuditError::Injected);
        }
        // Filled in by the writer, in chain order.
        record.index = 0;
        record.prev_hash.clear();
        let writer = &self.inner.writer;
        Ok(if flush {
            writer.stage(record).await?
        } else {
            writer.stage_deferred(record).await?
        })
    }

    /// Number of durable records.
    pub fn size(&self) -> u64 {
        self.inner.log.published()
    }

    /// Durable records with index in `[start, end)`, as stored.
    pub fn range(&self, start: u64, end: u64) -> Result<Vec<AccessRecord>, AuditError> {
        if end <= start {
            return Ok(Vec::new());
        }
        let limit = usize::try_from(end - start).unwrap_or(usize::MAX);
        self.inner
            .log
            .read_after(start, limit)?
            .into_iter()
            .map(|(_, v)| Ok(decode_value(&v)?))
            .collect()
    }

    /// Size covered by the newest checkpoint (0 if none).
    pub fn signed_size(&self) -> u64 {
        self.inner.signed.load(Ordering::SeqCst)
    }

    /// The newest checkpoint.
    pub fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, AuditError> {
        match self.inner.checkpoints.last()? {
            Some((_, v)) => Ok(Some(decode_value(&v)?)),
            None => Ok(None),
        }
    }

    /// Checkpoints covering more than `after` records, oldest first.
    pub fn checkpoints_after(
        &self,
        after: u64,
    ) -> impl Iterator<Item = Result<Checkpoint, AuditError>> + use<> {
        self.inner
            .checkpoints
            .range((after.saturating_add(1)).to_be_bytes()..)
            .map(|r| Ok(decode_value(&r?.1)?))
    }

    /// Every checkpoint, oldest first.
    pub fn checkpoints(&self) -> impl Iterator<Item = Result<Checkpoint, AuditError>> + use<> {
        self.checkpoints_after(0)
    }

    /// Signs and stores a checkpoint of the current head, unless the newest
    /// checkpoint already covers it.
    pub async fn checkpoint(&self) -> Result<Option<Checkpoint>, AuditError> {
        let size = self.size();
        if size == 0 || size == self.signed_size() {
            return Ok(None);
        }
        let head = self.range(size - 1, size)?;
        let head_hash = head
            .first()
            .map(|r| r.hash.clone())
            .unwrap_or_else(|| ZERO_HASH.to_owned());
        let now = SystemTime::now();
        let signed_at = Timestamp {
            seconds: Timestamp::from(now).seconds,
            nanos: 0,
        };
        let payload =
            checkpoint_payload(&self.inner.log_id, size, &head_hash, &rfc3339(&signed_at));
        let signature = self.inner.signer.sign(&payload).as_ref().to_vec();
        let checkpoint = Checkpoint {
            log_id: self.inner.log_id.clone(),
            log_size: size,
            head_hash,
            signed_at: Some(signed_at),
            key_id: self.inner.key_id.clone(),
            signed_payload: payload,
            signature,
        };
        self.inner
            .checkpoints
            .insert(size.to_be_bytes(), encode_value(&checkpoint))?;
        self.inner.store.durable().await?;
        // After the store: a crash between the two leaves the witness one
        // checkpoint behind, which the store still holds.
        let witness_checkpoint = checkpoint.clone();
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.witness.append(&witness_checkpoint))
            .await
            .map_err(|e| KitError::Flush(format!("audit witness: {e}")))??;
        self.inner.signed.fetch_max(size, Ordering::SeqCst);
        tracing::debug!(size, "access log checkpoint signed");
        Ok(Some(checkpoint))
    }

    /// Signs checkpoints every N records or T seconds until shutdown, then
    /// signs a last one.
    pub async fn run_checkpoints(self, shutdown: Shutdown) {
        // Woken by every batch that becomes durable; signs once enough are.
        let mut durable = self.inner.log.watch();
        let mut due = tokio::time::Instant::now() + self.inner.interval;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {}
                changed = durable.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    if self.size().saturating_sub(self.signed_size()) < self.inner.every_records {
                        continue;
                    }
                }
                _ = shutdown.wait() => break,
            }
            due = tokio::time::Instant::now() + self.inner.interval;
            if let Err(e) = self.checkpoint().await {
                tracing::error!(error = %e, "could not sign an access log checkpoint");
            }
        }
        if let Err(e) = self.checkpoint().await {
            tracing::error!(error = %e, "could not sign the final access log checkpoint");
        }
    }

    /// Page-token sealer keyed from this store.
    pub fn page_tokens(&self) -> Result<orex_kit::page_token::PageTokens, KitError> {
        orex_kit::page_token::PageTokens::open_or_create(&self.inner.store)
    }

    /// Flushes to disk (at shutdown).
    pub fn flush(&self) -> Result<(), KitError> {
        self.inner.store.flush_now()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use orex_proto::audit::v1::AccessDecision;

    use super::*;
    use crate::audit::verify::verify;

    fn open(dir: &std::path::Path, every_records: u64) -> AuditLog {
        AuditLog::open(&config(dir, "data", "orex-gateway/test", every_records)).unwrap()
    }

    /// A log in `dir/data_dir` signed with `dir`'s key (made on first use).
    fn config(
        dir: &std::path::Path,
        data_dir: &str,
        log_id: &str,
        every_records: u64,
    ) -> AuditConfig {
        let key_path = dir.join("signing.key.pem");
        if !key_path.exists() {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
            std::fs::write(&key_path, key.serialize_pem()).unwrap();
            std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        AuditConfig {
            data_dir: dir.join(data_dir),
            signing_key: key_path,
            key_id: "test-1".into(),
            log_id: log_id.into(),
            checkpoint_every_records: every_records,
            checkpoint_interval_seconds: 3600,
            cache_mib: 16,
            witness: None,
        }
    }

    fn record(subject: &str) -> AccessRecord {
        AccessRecord {
            member: "US".into(),
            subject: subject.into(),
            method: "/orex.sharing.v1.SharingService/GetReport".into(),
            decision: AccessDecision::Allow as i32,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_checkpoint_is_signed_once_enough_records_are_unsigned() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), 3);
        let shutdown = Shutdown::new();
        let signer = tokio::spawn(log.clone().run_checkpoints(shutdown.clone()));
        for i in 0..3 {
            log.append(record(&format!("p{i}"))).await.unwrap();
        }
        // Hang guard only: the signer reacts to the third record.
        tokio::time::timeout(Duration::from_secs(10), async {
            while log.signed_size() < 3 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("a checkpoint after three records");
        shutdown.trigger();
        signer.await.unwrap();

        let records = log.range(0, log.size()).unwrap();
        let checkpoints: Vec<Checkpoint> = log.checkpoints().map(Result::unwrap).collect();
        let v = verify(&records, &checkpoints, &log.public_key());
        assert_eq!(v.problem, None);
        assert_eq!(v.checkpoints, 1);
        assert_eq!(records[0].prev_hash, ZERO_HASH);
        assert_eq!(records[1].prev_hash, records[0].hash);
        assert_eq!(
            Some(records[1].hash.clone()),
            link_hash(&records[1].prev_hash, &content_hash(&records[1]))
        );
    }

    #[tokio::test]
    async fn a_checkpoint_signed_with_another_key_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), 1000);
        log.append(record("a")).await.unwrap();
        log.checkpoint().await.unwrap().unwrap();
        let other = tempfile::tempdir().unwrap();
        let stranger = open(other.path(), 1000);
        let records = log.range(0, log.size()).unwrap();
        let checkpoints: Vec<Checkpoint> = log.checkpoints().map(Result::unwrap).collect();
        let v = verify(&records, &checkpoints, &stranger.public_key());
        assert!(matches!(
            v.problem,
            Some(crate::audit::verify::Problem::Signature { log_size: 1 })
        ));
    }

    #[tokio::test]
    async fn a_log_reopened_under_another_id_is_refused_as_a_configuration_mistake() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = open(dir.path(), 1000);
            log.append(record("a")).await.unwrap();
            log.checkpoint().await.unwrap().unwrap();
            log.flush().unwrap();
        }
        let renamed = config(dir.path(), "data", "orex-gateway/gateway-0", 1000);
        let err = AuditLog::open(&renamed).unwrap_err();
        assert!(matches!(err, KitError::Config(_)), "{err}");
        let err = err.to_string();
        assert!(err.contains("audit.log_id"), "{err}");
        assert!(err.contains("\"orex-gateway/test\""), "{err}");
        // The witness says the same when the store has no checkpoint to go
        // by: a new store in the same place as another log's witness.
        let beside = AuditConfig {
            data_dir: dir.path().join("elsewhere"),
            witness: Some(dir.path().join("data.witness")),
            ..renamed
        };
        let err = AuditLog::open(&beside).unwrap_err().to_string();
        assert!(err.contains("the witness"), "{err}");
        assert!(err.contains("\"orex-gateway/test\""), "{err}");
    }
}

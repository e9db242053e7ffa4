//! The sharing service's sled store: reports, their versions, idempotency
//! keys and the report event log, written together in one transaction.
//!
//! Trees (keys are bytes that sort in the order we scan):
//! - `reports`:  report id (UUIDv7 text, so time-ordered) → latest [`Report`]
//! - `versions`: report id ‖ version (u32 big-endian) → that [`Report`] version
//! - `requests`: member ‖ 0 ‖ subject ‖ 0 ‖ request id → format, method,
//!   version, SHA-256 of the request, report id
//! - `events`:   sequence (u64 big-endian) → [`SubscribeReportsResponse`]
//!
//! Concurrent mutations are group-committed (`orex_kit::group_commit`): one
//! transaction over the four trees for the whole batch, one flush, then the
//! answers. Writes land in the trees before they are flushed; every read here hides a
//! version whose event is not yet durable (its `sequence` is above the log's
//! published mark), so no reader ever sees a report a crash could take back.

use std::path::Path;
use std::sync::Arc;

use orex_kit::KitError;
use orex_kit::group_commit::{Applied, GroupCommit};
use orex_kit::store::{EventLog, Store, StoreConfig, Write, decode_value, encode_value, seq_key};
use orex_membership::Principal;
use orex_proto::sharing::v1::{Report, ReportEventKind, ReportStatus, SubscribeReportsResponse};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::error::SharingError;

/// Which call an idempotency key was first used with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// PublishReport.
    Publish = 1,
    /// AmendReport.
    Amend = 2,
    /// ResolveReport.
    Resolve = 3,
    /// RetractReport.
    Retract = 4,
}

impl Method {
    fn name(byte: u8) -> &'static str {
        match byte {
            1 => "PublishReport",
            2 => "AmendReport",
            3 => "ResolveReport",
            4 => "RetractReport",
            _ => "another call",
        }
    }
}

/// Who is asking, with which idempotency key, for what: the fingerprint is
/// a SHA-256 of the whole request, so a reused key with other arguments is
/// refused instead of silently answered with another call's result.
#[derive(Debug, Clone, Copy)]
pub struct RequestKey<'a> {
    /// The caller.
    pub who: &'a Principal,
    /// The caller's idempotency key.
    pub request_id: &'a str,
    /// SHA-256 of the encoded request.
    pub fingerprint: [u8; 32],
}

/// The outcome of a mutation.
#[derive(Debug)]
pub struct Outcome {
    /// The version the call produced (or produced the first time).
    pub report: Report,
    /// True when this was a retry of an earlier call with the same request id.
    pub replayed: bool,
}

/// A change to the store, queued for the group writer.
struct Mutation {
    req_key: Vec<u8>,
    method: Method,
    fingerprint: [u8; 32],
    /// The report changed, or `None` for a publish.
    id: Option<String>,
    /// The next version from the current one; may run more than once.
    next: Box<dyn Fn(Option<Report>) -> Result<Report, SharingError> + Send>,
}

type Answer = Result<Outcome, SharingError>;

/// Typed access to the sharing service's store.
#[derive(Debug, Clone)]
pub struct ReportStore {
    store: Store,
    reports: sled::Tree,
    versions: sled::Tree,
    log: Arc<EventLog>,
    writer: GroupCommit<Mutation, Answer>,
}

impl ReportStore {
    /// The underlying store (for backups: `orex_kit::admin`).
    pub fn kit_store(&self) -> Store {
        self.store.clone()
    }

    /// Opens the store in `dir`.
    pub fn open(dir: &Path, config: &StoreConfig) -> Result<Self, SharingError> {
        let store = Store::open(dir, config)?;
        let reports = store.tree("reports")?;
        let versions = store.tree("versions")?;
        let requests = store.tree("requests")?;
        let log = EventLog::open(&store, "events")?;
        let trees = (
            reports.clone(),
            versions.clone(),
            requests.clone(),
            log.tree().clone(),
        );
        // Concurrent mutations are written in one transaction, flushed once.
        let writer = GroupCommit::new(
            store.clone(),
            log.clone(),
            Arc::new(move |first, ops: &[Mutation]| apply_batch(&trees, first, ops)),
        );
        Ok(Self {
            reports,
            versions,
            log,
            store,
            writer,
        })
    }

    /// The service's page-token sealer, keyed from this store.
    pub fn page_tokens(&self) -> Result<orex_kit::page_token::PageTokens, SharingError> {
        Ok(orex_kit::page_token::PageTokens::open_or_create(
            &self.store,
        )?)
    }

    /// The report event log, for subscriptions.
    pub fn log(&self) -> Arc<EventLog> {
        self.log.clone()
    }

    /// Flushes everything to disk (at shutdown).
    pub fn flush(&self) -> Result<(), SharingError> {
        Ok(self.store.flush_now()?)
    }

    /// The latest durable version of a report.
    pub fn get(&self, id: &str) -> Result<Option<Report>, SharingError> {
        match self.reports.get(id.as_bytes())? {
            Some(v) => self.durable(decode_value(&v)?),
            None => Ok(None),
        }
    }

    /// One durable version of a report.
    pub fn version(&self, id: &str, version: u32) -> Result<Option<Report>, SharingError> {
        let published = self.log.published();
        Ok(self
            .raw_version(id, version)?
            .filter(|r| r.sequence <= published))
    }

    fn raw_version(&self, id: &str, version: u32) -> Result<Option<Report>, SharingError> {
        self.versions
            .get(version_key(id, version))?
            .map(|v| decode_value(&v).map_err(Into::into))
            .transpose()
    }

    /// `r` if durable, else its newest durable earlier version, else `None`.
    fn durable(&self, mut r: Report) -> Result<Option<Report>, SharingError> {
        let published = self.log.published();
        while r.sequence > published {
            if r.version <= 1 {
                return Ok(None);
            }
            match self.raw_version(&r.id, r.version - 1)? {
                Some(earlier) => r = earlier,
                None => return Ok(None),
            }
        }
        Ok(Some(r))
    }

    /// Durable versions of a report after `after`, oldest first.
    pub fn versions_after(
        &self,
        id: &str,
        after: u32,
    ) -> impl Iterator<Item = Result<Report, SharingError>> + use<> {
        let published = self.log.published();
        let start = version_key(id, after.saturating_add(1));
        let end = version_key(id, u32::MAX);
        self.versions
            .range(start..=end)
            .map(|r| Ok(decode_value::<Report>(&r?.1)?))
            .filter(move |r| r.as_ref().map_or(true, |r| r.sequence <= published))
    }

    /// Latest durable versions of reports, newest first, starting below `before`.
    pub fn newest_first(
        &self,
        before: Option<&str>,
    ) -> impl Iterator<Item = Result<Report, SharingError>> + '_ {
        let iter = match before {
            Some(b) => self.reports.range(..b.as_bytes().to_vec()),
            None => self.reports.iter(),
        };
        iter.rev()
            .map(|r| self.durable(decode_value(&r?.1)?))
            .filter_map(Result::transpose)
    }

    /// Stores a new report built by `build` (given its new id), unless the
    /// caller already published with this request id.
    pub async fn publish(
        &self,
        request: RequestKey<'_>,
        build: impl Fn(&str) -> Report + Send + 'static,
    ) -> Result<Outcome, SharingError> {
        let id = uuid::Uuid::now_v7().hyphenated().to_string();
        self.mutate(request, Method::Publish, None, move |_| Ok(build(&id)))
            .await
    }

    /// Applies `transition` to the latest version of `id` and stores the
    /// result as a new version, unless this request id was already used.
    /// `transition` may run more than once (sled retries transactions) and
    /// must have no side effects.
    pub async fn update(
        &self,
        request: RequestKey<'_>,
        method: Method,
        id: &str,
        transition: impl Fn(Report) -> Result<Report, SharingError> + Send + 'static,
    ) -> Result<Outcome, SharingError> {
        let missing = id.to_owned();
        self.mutate(request, method, Some(id), move |current| {
            transition(current.ok_or_else(|| SharingError::NotFound(missing.clone()))?)
        })
        .await
    }

    async fn mutate(
        &self,
        request: RequestKey<'_>,
        method: Method,
        id: Option<&str>,
        next: impl Fn(Option<Report>) -> Result<Report, SharingError> + Send + 'static,
    ) -> Result<Outcome, SharingError> {
        self.writer
            .submit(Mutation {
                req_key: request_key(request.who, request.request_id),
                method,
                fingerprint: request.fingerprint,
                id: id.map(str::to_owned),
                next: Box::new(next),
            })
            .await?
    }
}

/// Writes a batch of mutations in one transaction over the four trees. A
/// mutation that is refused (bad request id reuse, a failed transition)
/// writes nothing and does not use a sequence; the others go ahead.
fn apply_batch(
    trees: &(sled::Tree, sled::Tree, sled::Tree, sled::Tree),
    first: u64,
    ops: &[Mutation],
) -> Result<Vec<Applied<Answer>>, KitError> {
    let refs = (&trees.0, &trees.1, &trees.2, &trees.3);
    let result = refs.transaction(|(reports, versions, requests, events)| {
        let mut answers = Vec::with_capacity(ops.len());
        let mut seq = first;
        for op in ops {
            let applied = match apply_one(op, seq, reports, versions, requests, events)? {
                Ok(Write::Appended(o)) => {
                    seq += 1;
                    Applied {
                        out: Ok(o),
                        appended: 1,
                    }
                }
                Ok(Write::Unchanged(o)) => Applied {
                    out: Ok(o),
                    appended: 0,
                },
                Err(e) => Applied {
                    out: Err(e),
                    appended: 0,
                },
            };
            answers.push(applied);
        }
        Ok(answers)
    });
    match result {
        Ok(answers) => Ok(answers),
        Err(TransactionError::Abort(e)) => Err(e),
        Err(TransactionError::Storage(e)) => Err(KitError::Store(e)),
    }
}

type Tx = sled::transaction::TransactionalTree;
type TxResult<T> = Result<T, ConflictableTransactionError<KitError>>;

/// One mutation inside the batch's transaction (which sees the writes of
/// the mutations before it). The outer `Result` is a storage failure that
/// fails the whole batch; the inner one is this caller's answer.
fn apply_one(
    op: &Mutation,
    seq: u64,
    reports: &Tx,
    versions: &Tx,
    requests: &Tx,
    events: &Tx,
) -> TxResult<Result<Write<Outcome>, SharingError>> {
    // A record that does not decode fails this operation only (DATA_LOSS
    // for its caller), not the batch of unrelated callers around it.
    if let Some(done) = requests.get(&op.req_key)? {
        let done = match decode_request(&done) {
            Ok(d) => d,
            Err(e) => return Ok(Err(e.into())),
        };
        if done.method != op.method as u8 {
            return Ok(Err(SharingError::invalid(
                "request_id",
                format!(
                    "was already used for {}; use a new request_id for a new call",
                    Method::name(done.method)
                ),
            )));
        }
        if done.fingerprint != op.fingerprint {
            return Ok(Err(SharingError::invalid(
                "request_id",
                "was already used with different arguments; use a new request_id for a new call",
            )));
        }
        let (version, rid) = (done.version, done.report_id);
        let Some(bytes) = versions.get(version_key(&rid, version))? else {
            return Ok(Err(SharingError::NotFound(rid)));
        };
        let report = match decode_value(&bytes) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e.into())),
        };
        return Ok(Ok(Write::Unchanged(Outcome {
            report,
            replayed: true,
        })));
    }
    let current = match &op.id {
        Some(id) => match reports.get(id.as_bytes())? {
            Some(b) => match decode_value(&b) {
                Ok(r) => Some(r),
                Err(e) => return Ok(Err(e.into())),
            },
            None => None,
        },
        None => None,
    };
    let mut report = match (op.next)(current) {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };
    report.sequence = seq;
    let value = encode_value(&report);
    reports.insert(report.id.as_bytes(), value.clone())?;
    versions.insert(version_key(&report.id, report.version), value)?;
    requests.insert(
        op.req_key.clone(),
        encode_request(op.method, report.version, &op.fingerprint, &report.id),
    )?;
    let event = SubscribeReportsResponse {
        sequence: seq,
        kind: event_kind(&report) as i32,
        report: Some(report.clone()),
    };
    events.insert(&seq_key(seq), encode_value(&event))?;
    Ok(Ok(Write::Appended(Outcome {
        report,
        replayed: false,
    })))
}

fn event_kind(r: &Report) -> ReportEventKind {
    match r.status() {
        ReportStatus::Resolved => ReportEventKind::Resolved,
        ReportStatus::Retracted => ReportEventKind::Retracted,
        _ if r.version == 1 => ReportEventKind::Published,
        _ => ReportEventKind::Amended,
    }
}

fn version_key(id: &str, version: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(id.len() + 4);
    k.extend_from_slice(id.as_bytes());
    k.extend_from_slice(&version.to_be_bytes());
    k
}

fn request_key(who: &Principal, request_id: &str) -> Vec<u8> {
    let mut k = Vec::new();
    for part in [&who.member, &who.subject] {
        k.extend_from_slice(part.as_bytes());
        k.push(0);
    }
    k.extend_from_slice(request_id.as_bytes());
    k
}

const REQUEST_FORMAT_V1: u8 = 1;

fn encode_request(method: Method, version: u32, fingerprint: &[u8; 32], id: &str) -> Vec<u8> {
    let mut v = vec![REQUEST_FORMAT_V1, method as u8];
    v.extend_from_slice(&version.to_be_bytes());
    v.extend_from_slice(fingerprint);
    v.extend_from_slice(id.as_bytes());
    v
}

/// A stored idempotency record.
struct DoneRequest {
    method: u8,
    version: u32,
    fingerprint: [u8; 32],
    report_id: String,
}

fn decode_request(v: &[u8]) -> Result<DoneRequest, KitError> {
    let corrupt = || KitError::Corrupt("idempotency record".into());
    if v.len() < 38 || v[0] != REQUEST_FORMAT_V1 {
        return Err(corrupt());
    }
    let version = u32::from_be_bytes(v[2..6].try_into().map_err(|_| corrupt())?);
    let fingerprint = v[6..38].try_into().map_err(|_| corrupt())?;
    let report_id = String::from_utf8(v[38..].to_vec()).map_err(|_| corrupt())?;
    Ok(DoneRequest {
        method: v[1],
        version,
        fingerprint,
        report_id,
    })
}

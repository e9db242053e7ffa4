//! The emergency service's sled store: stockpile reports, shortage cases and
//! their event log, and idempotency records, written together in one
//! transaction per batch (`orex_kit::group_commit`).
//!
//! Trees (keys sort in the order we scan):
//! - `stockpiles`: mineral (i32 big-endian) ‖ member → latest [`Stockpile`]
//! - `cases`: case id (UUIDv7 text, time-ordered) → sequence of its latest event
//! - `case_versions`: case id ‖ version (u32 big-endian) → sequence of that event
//! - `requests`: member ‖ 0 ‖ subject ‖ 0 ‖ request id → method, SHA-256 of
//!   the request, the encoded answer (a retry gets exactly that answer)
//! - `events`: sequence → [`SubscribeCaseEventsResponse`] (the case as of
//!   the event: the log is the only copy of a case)
//!
//! A case is read from the log at the sequence its latest event has, or —
//! while that event is not yet durable — at its newest durable version, so
//! no reader sees a transition a crash could take back. A stockpile report
//! is visible from the moment it is written, a few milliseconds before its
//! caller's answer (which waits for the flush); a crash in that window loses
//! a report nobody was told was stored.

use std::sync::Arc;

use orex_kit::KitError;
use orex_kit::group_commit::{Applied, GroupCommit};
use orex_kit::store::{EventLog, Store, Write, decode_value, encode_value, seq_key};
use orex_membership::Principal;
use orex_proto::common::v1::{Mineral, PrincipalRef};
use orex_proto::emergency::v1::{
    CaseEventKind, ShortageCase, Stockpile, SubscribeCaseEventsResponse,
};
use prost_types::Timestamp;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

use crate::error::EmergencyError;

/// Which call an idempotency key was first used with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// ReportStockpile.
    ReportStockpile = 1,
    /// DeclareShortage.
    Declare = 2,
    /// CastVote.
    Vote = 3,
    /// PledgeRelease.
    Pledge = 4,
    /// RecordFulfilment.
    Fulfil = 5,
    /// CloseCase.
    Close = 6,
}

impl Method {
    fn name(byte: u8) -> &'static str {
        match byte {
            1 => "ReportStockpile",
            2 => "DeclareShortage",
            3 => "CastVote",
            4 => "PledgeRelease",
            5 => "RecordFulfilment",
            6 => "CloseCase",
            _ => "another call",
        }
    }
}

/// Who is asking, with which idempotency key, for what (see the sharing
/// service's store: a reused key with other arguments is refused).
#[derive(Debug, Clone)]
pub struct RequestKey {
    /// The caller.
    pub who: Principal,
    /// The caller's idempotency key.
    pub request_id: String,
    /// Which call.
    pub method: Method,
    /// SHA-256 of the encoded request.
    pub fingerprint: [u8; 32],
}

/// An answer, encoded, and whether it replays an earlier call's.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The encoded response message.
    pub reply: Vec<u8>,
    /// True when a retry with the same request id got the stored answer.
    pub replayed: bool,
}

/// Reads a member's latest stockpile report of the case's mineral inside
/// the transaction (so an activation splits by what is stored, not by what
/// a moment before held).
pub type StockpileOf<'a> = dyn Fn(&str) -> Result<Option<Stockpile>, EmergencyError> + 'a;

/// What a case mutation did: the events it appends (each with the case as
/// of that event), and the answer its caller gets.
#[derive(Debug)]
pub struct Transition {
    /// Events in order; the case's `version` must grow by one per event.
    pub events: Vec<(CaseEventKind, ShortageCase)>,
    /// The encoded response.
    pub reply: Vec<u8>,
}

type CaseNext =
    dyn Fn(Option<ShortageCase>, &StockpileOf<'_>) -> Result<Transition, EmergencyError> + Send;
type StockpileNext = dyn Fn(Option<Stockpile>) -> Result<Stockpile, EmergencyError> + Send;
type Reply = dyn Fn(&Stockpile) -> Vec<u8> + Send;

/// A change, queued for the group writer.
enum Op {
    Stockpile {
        key: RequestKey,
        mineral: Mineral,
        member: String,
        next: Box<StockpileNext>,
        /// Encodes the answer from the stored report.
        reply: Box<Reply>,
    },
    Case {
        /// None for a transition the service makes itself (expiry).
        key: Option<RequestKey>,
        case_id: String,
        mineral: Mineral,
        actor: Option<PrincipalRef>,
        at: Timestamp,
        next: Box<CaseNext>,
    },
}

type Out = Result<Answer, EmergencyError>;

/// Typed access to the emergency store.
#[derive(Debug, Clone)]
pub struct EmergencyStore {
    store: Store,
    stockpiles: sled::Tree,
    cases: sled::Tree,
    case_versions: sled::Tree,
    log: Arc<EventLog>,
    writer: GroupCommit<Op, Out>,
}

struct Trees {
    stockpiles: sled::Tree,
    cases: sled::Tree,
    case_versions: sled::Tree,
    requests: sled::Tree,
    events: sled::Tree,
}

impl EmergencyStore {
    /// Opens the store's trees in `store`.
    pub fn open(store: &Store) -> Result<Self, KitError> {
        let stockpiles = store.tree("stockpiles")?;
        let cases = store.tree("cases")?;
        let case_versions = store.tree("case_versions")?;
        let requests = store.tree("requests")?;
        let log = EventLog::open(store, "events")?;
        let trees = Trees {
            stockpiles: stockpiles.clone(),
            cases: cases.clone(),
            case_versions: case_versions.clone(),
            requests,
            events: log.tree().clone(),
        };
        let writer = GroupCommit::new(
            store.clone(),
            log.clone(),
            Arc::new(move |first, ops: &[Op]| apply_batch(&trees, first, ops)),
        );
        Ok(Self {
            store: store.clone(),
            stockpiles,
            cases,
            case_versions,
            log,
            writer,
        })
    }

    /// The case event log, for subscriptions.
    pub fn log(&self) -> Arc<EventLog> {
        self.log.clone()
    }

    /// Flushes everything to disk (at shutdown).
    pub fn flush_now(&self) -> Result<(), KitError> {
        self.store.flush_now()
    }

    /// Latest stockpile reports in (mineral, member) order, starting after
    /// the key `after` (from [`stockpile_key`]).
    pub fn stockpiles_after(
        &self,
        after: Option<Vec<u8>>,
    ) -> impl Iterator<Item = Result<(Vec<u8>, Stockpile), EmergencyError>> + use<> {
        let iter = match after {
            Some(k) => self
                .stockpiles
                .range((std::ops::Bound::Excluded(k), std::ops::Bound::Unbounded)),
            None => self.stockpiles.iter(),
        };
        iter.map(|item| {
            let (k, v) = item?;
            Ok((k.to_vec(), decode_value(&v)?))
        })
    }

    /// The latest durable state of case `id`.
    pub fn case(&self, id: &str) -> Result<Option<ShortageCase>, EmergencyError> {
        let Some(seq) = self.cases.get(id.as_bytes())? else {
            return Ok(None);
        };
        let published = self.log.published();
        let seq = read_u64(&seq)?;
        if seq <= published {
            return self.case_at(seq).map(Some);
        }
        // Not yet durable: its newest durable version, if any.
        let latest = self
            .case_versions
            .scan_prefix(id.as_bytes())
            .rev()
            .map(|item| -> Result<u64, EmergencyError> { Ok(read_u64(&item?.1)?) });
        for s in latest {
            let s = s?;
            if s <= published {
                return self.case_at(s).map(Some);
            }
        }
        Ok(None)
    }

    fn case_at(&self, seq: u64) -> Result<ShortageCase, EmergencyError> {
        let bytes = self
            .log
            .tree()
            .get(seq_key(seq))?
            .ok_or_else(|| KitError::Corrupt(format!("case event {seq} is missing")))?;
        let event: SubscribeCaseEventsResponse = decode_value(&bytes)?;
        event
            .shortage_case
            .ok_or_else(|| KitError::Corrupt(format!("case event {seq} carries no case")).into())
    }

    /// Case ids, newest declaration first, starting below `before`.
    pub fn case_ids_newest_first(
        &self,
        before: Option<String>,
    ) -> impl Iterator<Item = Result<String, EmergencyError>> + use<> {
        let iter = match before {
            Some(b) => self.cases.range(..b.into_bytes()),
            None => self.cases.iter(),
        };
        iter.rev()
            .map(|item| Ok(String::from_utf8_lossy(&item?.0).into_owned()))
    }

    /// Stores a member's stockpile report built by `next` from its previous
    /// one, unless this request id was already used.
    pub async fn report_stockpile(
        &self,
        key: RequestKey,
        mineral: Mineral,
        member: String,
        next: impl Fn(Option<Stockpile>) -> Result<Stockpile, EmergencyError> + Send + 'static,
        reply: impl Fn(&Stockpile) -> Vec<u8> + Send + 'static,
    ) -> Result<Answer, EmergencyError> {
        self.writer
            .submit(Op::Stockpile {
                key,
                mineral,
                member,
                next: Box::new(next),
                reply: Box::new(reply),
            })
            .await?
    }

    /// Applies `next` to case `case_id` (None: it does not exist yet) and
    /// appends the events it returns, unless this request id was already
    /// used. `next` may run more than once (sled retries transactions) and
    /// must have no side effects.
    pub async fn change_case(
        &self,
        key: Option<RequestKey>,
        case_id: String,
        mineral: Mineral,
        actor: Option<PrincipalRef>,
        next: impl Fn(Option<ShortageCase>, &StockpileOf<'_>) -> Result<Transition, EmergencyError>
        + Send
        + 'static,
    ) -> Result<Answer, EmergencyError> {
        self.writer
            .submit(Op::Case {
                key,
                case_id,
                mineral,
                actor,
                at: Timestamp::from(std::time::SystemTime::now()),
                next: Box::new(next),
            })
            .await?
    }
}

/// The `stockpiles` key of a member's report of a mineral.
fn stockpile_key(mineral: Mineral, member: &str) -> Vec<u8> {
    let mut k = (mineral as i32).to_be_bytes().to_vec();
    k.extend_from_slice(member.as_bytes());
    k
}

fn version_key(id: &str, version: u32) -> Vec<u8> {
    let mut k = id.as_bytes().to_vec();
    k.extend_from_slice(&version.to_be_bytes());
    k
}

fn read_u64(v: &[u8]) -> Result<u64, KitError> {
    v.try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| KitError::Corrupt("a stored case sequence is damaged".into()))
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

fn encode_request(method: Method, fingerprint: &[u8; 32], reply: &[u8]) -> Vec<u8> {
    let mut v = vec![REQUEST_FORMAT_V1, method as u8];
    v.extend_from_slice(fingerprint);
    v.extend_from_slice(reply);
    v
}

type TxResult<T> = Result<T, ConflictableTransactionError<KitError>>;

/// A stored answer for `key`, or why the key cannot be reused; `None` when
/// the key is new.
fn replay(requests: &TransactionalTree, key: &RequestKey) -> TxResult<Option<Out>> {
    let Some(done) = requests.get(request_key(&key.who, &key.request_id))? else {
        return Ok(None);
    };
    if done.len() < 34 || done[0] != REQUEST_FORMAT_V1 {
        return Ok(Some(Err(
            KitError::Corrupt("idempotency record".into()).into()
        )));
    }
    if done[1] != key.method as u8 {
        return Ok(Some(Err(EmergencyError::invalid(
            "request_id",
            format!(
                "was already used for {}; use a new request_id for a new call",
                Method::name(done[1])
            ),
        ))));
    }
    if done[2..34] != key.fingerprint {
        return Ok(Some(Err(EmergencyError::invalid(
            "request_id",
            "was already used with different arguments; use a new request_id for a new call",
        ))));
    }
    Ok(Some(Ok(Answer {
        reply: done[34..].to_vec(),
        replayed: true,
    })))
}

/// Writes a batch in one transaction. A refused operation writes nothing
/// and uses no sequence; the others go ahead.
fn apply_batch(trees: &Trees, first: u64, ops: &[Op]) -> Result<Vec<Applied<Out>>, KitError> {
    let refs = (
        &trees.stockpiles,
        &trees.cases,
        &trees.case_versions,
        &trees.requests,
        &trees.events,
    );
    let result = refs.transaction(|(stockpiles, cases, versions, requests, events)| {
        let mut seq = first;
        let mut answers = Vec::with_capacity(ops.len());
        for op in ops {
            let written = match op {
                Op::Stockpile {
                    key,
                    mineral,
                    member,
                    next,
                    reply,
                } => stockpile(stockpiles, requests, key, *mineral, member, next, reply)?,
                Op::Case {
                    key,
                    case_id,
                    mineral,
                    actor,
                    at,
                    next,
                } => {
                    let tx = CaseTx {
                        stockpiles,
                        cases,
                        versions,
                        requests,
                        events,
                    };
                    tx.apply(seq, key.as_ref(), case_id, *mineral, actor, at, next)?
                }
            };
            answers.push(match written {
                Ok((Write::Appended(a), n)) => {
                    seq += n;
                    Applied {
                        out: Ok(a),
                        appended: n,
                    }
                }
                Ok((Write::Unchanged(a), _)) => Applied {
                    out: Ok(a),
                    appended: 0,
                },
                Err(e) => Applied {
                    out: Err(e),
                    appended: 0,
                },
            });
        }
        Ok(answers)
    });
    match result {
        Ok(answers) => Ok(answers),
        Err(TransactionError::Abort(e)) => Err(e),
        Err(TransactionError::Storage(e)) => Err(KitError::Store(e)),
    }
}

type Written = Result<(Write<Answer>, u64), EmergencyError>;

fn stockpile(
    stockpiles: &TransactionalTree,
    requests: &TransactionalTree,
    key: &RequestKey,
    mineral: Mineral,
    member: &str,
    next: &StockpileNext,
    reply: &Reply,
) -> TxResult<Written> {
    if let Some(done) = replay(requests, key)? {
        return Ok(done.map(|a| (Write::Unchanged(a), 0)));
    }
    let k = stockpile_key(mineral, member);
    let previous = match stockpiles.get(&k)? {
        Some(v) => match decode_value(&v) {
            Ok(s) => Some(s),
            Err(e) => return Ok(Err(e.into())),
        },
        None => None,
    };
    let stored = match next(previous) {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    stockpiles.insert(k, encode_value(&stored))?;
    let bytes = reply(&stored);
    requests.insert(
        request_key(&key.who, &key.request_id),
        encode_request(key.method, &key.fingerprint, &bytes),
    )?;
    // No event: stockpiles are not case events. Appended(…, 0) so the
    // writer counts no sequence.
    Ok(Ok((
        Write::Appended(Answer {
            reply: bytes,
            replayed: false,
        }),
        0,
    )))
}

struct CaseTx<'a> {
    stockpiles: &'a TransactionalTree,
    cases: &'a TransactionalTree,
    versions: &'a TransactionalTree,
    requests: &'a TransactionalTree,
    events: &'a TransactionalTree,
}

impl CaseTx<'_> {
    fn current(&self, case_id: &str) -> TxResult<Result<Option<ShortageCase>, EmergencyError>> {
        let Some(seq) = self.cases.get(case_id.as_bytes())? else {
            return Ok(Ok(None));
        };
        let seq = match read_u64(&seq) {
            Ok(s) => s,
            Err(e) => return Ok(Err(e.into())),
        };
        let Some(bytes) = self.events.get(seq_key(seq))? else {
            return Ok(Err(KitError::Corrupt(format!(
                "case event {seq} is missing"
            ))
            .into()));
        };
        Ok(decode_value::<SubscribeCaseEventsResponse>(&bytes)
            .map_err(Into::into)
            .map(|e| e.shortage_case))
    }

    #[allow(clippy::too_many_arguments)]
    fn apply(
        &self,
        first: u64,
        key: Option<&RequestKey>,
        case_id: &str,
        mineral: Mineral,
        actor: &Option<PrincipalRef>,
        at: &Timestamp,
        next: &CaseNext,
    ) -> TxResult<Written> {
        if let Some(key) = key
            && let Some(done) = replay(self.requests, key)?
        {
            return Ok(done.map(|a| (Write::Unchanged(a), 0)));
        }
        let current = match self.current(case_id)? {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        // A read conflict must retry the whole transaction, not fail this
        // call: kept aside and raised once `next` returns.
        let conflict = std::cell::RefCell::new(None);
        let stockpile_of = |member: &str| -> Result<Option<Stockpile>, EmergencyError> {
            match self.stockpiles.get(stockpile_key(mineral, member)) {
                Ok(Some(v)) => Ok(Some(decode_value(&v)?)),
                Ok(None) => Ok(None),
                Err(e) => {
                    conflict.replace(Some(e));
                    Err(EmergencyError::Internal("stockpile read retried".into()))
                }
            }
        };
        let transition = next(current, &stockpile_of);
        if let Some(e) = conflict.take() {
            return Err(e.into());
        }
        let transition = match transition {
            Ok(t) => t,
            Err(e) => return Ok(Err(e)),
        };
        let mut seq = first;
        for (kind, case) in &transition.events {
            let event = SubscribeCaseEventsResponse {
                sequence: seq,
                kind: *kind as i32,
                shortage_case: Some(case.clone()),
                actor: actor.clone(),
                occurred_at: Some(*at),
            };
            self.events.insert(&seq_key(seq), encode_value(&event))?;
            self.versions
                .insert(version_key(case_id, case.version), &seq.to_be_bytes())?;
            self.cases.insert(case_id.as_bytes(), &seq.to_be_bytes())?;
            seq += 1;
        }
        if let Some(key) = key {
            self.requests.insert(
                request_key(&key.who, &key.request_id),
                encode_request(key.method, &key.fingerprint, &transition.reply),
            )?;
        }
        let appended = seq - first;
        Ok(Ok((
            Write::Appended(Answer {
                reply: transition.reply,
                replayed: false,
            }),
            appended,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orex_kit::store::StoreConfig;
    use orex_proto::emergency::v1::CaseStatus;

    fn key(request_id: &str, method: Method, fingerprint: u8) -> RequestKey {
        RequestKey {
            who: Principal {
                member: "US".into(),
                subject: "cole".into(),
                roles: vec![],
            },
            request_id: request_id.into(),
            method,
            fingerprint: [fingerprint; 32],
        }
    }

    fn open_case(
        version: u32,
    ) -> impl Fn(Option<ShortageCase>, &StockpileOf<'_>) -> Result<Transition, EmergencyError>
    + Send
    + 'static {
        move |current, _| {
            let mut c = current.unwrap_or_else(|| ShortageCase {
                id: "c1".into(),
                status: CaseStatus::Voting as i32,
                ..Default::default()
            });
            let mut events = Vec::new();
            for _ in 0..version {
                c.version += 1;
                events.push((CaseEventKind::VoteCast, c.clone()));
            }
            Ok(Transition {
                reply: c.version.to_be_bytes().to_vec(),
                events,
            })
        }
    }

    #[tokio::test]
    async fn a_retry_gets_the_stored_answer_and_a_reused_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        let s = EmergencyStore::open(&store).unwrap();
        let first = s
            .change_case(
                Some(key("r1", Method::Declare, 1)),
                "c1".into(),
                Mineral::Gallium,
                None,
                open_case(2),
            )
            .await
            .unwrap();
        assert!(!first.replayed);
        assert_eq!(s.log().published(), 2, "two events, two sequences");
        // The same call again: the same answer, nothing appended.
        let again = s
            .change_case(
                Some(key("r1", Method::Declare, 1)),
                "c1".into(),
                Mineral::Gallium,
                None,
                open_case(2),
            )
            .await
            .unwrap();
        assert!(again.replayed);
        assert_eq!(again.reply, first.reply);
        assert_eq!(s.log().published(), 2);
        // The key with other arguments, or for another call: refused.
        for k in [key("r1", Method::Declare, 9), key("r1", Method::Vote, 1)] {
            let e = s
                .change_case(Some(k), "c1".into(), Mineral::Gallium, None, open_case(1))
                .await
                .unwrap_err();
            assert!(matches!(e, EmergencyError::InvalidArgument { .. }), "{e:?}");
        }
        assert_eq!(s.case("c1").unwrap().unwrap().version, 2);
        // A transition that appends nothing (an expiry not yet due) uses no sequence.
        s.change_case(None, "c1".into(), Mineral::Gallium, None, open_case(0))
            .await
            .unwrap();
        assert_eq!(s.log().published(), 2);
        let ids: Vec<String> = s.case_ids_newest_first(None).map(Result::unwrap).collect();
        assert_eq!(ids, ["c1"]);
    }
}

//! The risk service's sled store: the live disruptions in force (the
//! sharing reports that move scores), the last report-stream sequence
//! processed, and the alert log — all three written in one transaction per
//! processed event, so a restart resumes exactly where the store stands:
//! nothing applied twice, nothing lost.

use std::collections::BTreeMap;
use std::sync::Arc;

use orex_kit::KitError;
use orex_kit::group_commit::{Applied, GroupCommit};
use orex_kit::store::{EventLog, Store, decode_value, encode_value, seq_key};
use orex_proto::common::v1::{Mineral, Stage};
use orex_proto::risk::v1::RiskAlert;
use orex_proto::sharing::v1::Report;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

/// Key of the last processed sharing sequence in the `meta` tree.
const CURSOR: &[u8] = b"report_stream_after_sequence";

/// Which score a judgement is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ScoreKey {
    /// Member code.
    pub member: String,
    /// The mineral.
    pub mineral: Mineral,
    /// The stage.
    pub stage: Stage,
}

impl ScoreKey {
    fn encode(&self) -> Vec<u8> {
        let mut k = self.member.as_bytes().to_vec();
        k.push(0);
        k.extend_from_slice(&(self.mineral as i32).to_be_bytes());
        k.extend_from_slice(&(self.stage as i32).to_be_bytes());
        k
    }

    fn decode(k: &[u8]) -> Result<Self, KitError> {
        let damaged = || KitError::Corrupt("a stored score judgement key is damaged".into());
        let split = k.len().checked_sub(9).ok_or_else(damaged)?;
        let (member, rest) = k.split_at(split);
        let int = |b: &[u8]| i32::from_be_bytes(b.try_into().unwrap_or_default());
        if rest[0] != 0 {
            return Err(damaged());
        }
        Ok(Self {
            member: String::from_utf8(member.to_vec()).map_err(|_| damaged())?,
            mineral: Mineral::try_from(int(&rest[1..5])).map_err(|_| damaged())?,
            stage: Stage::try_from(int(&rest[5..9])).map_err(|_| damaged())?,
        })
    }
}

/// What alerts last said about one score: each change is judged against
/// this, not against the moment before it, so a crossing is announced once
/// whichever change (a report, a withdrawal, new reference data, a new
/// policy, or a change made while the service was down) brought it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judged {
    /// The supply risk when last judged.
    pub supply_risk: f64,
    /// Whether it was above the threshold.
    pub above_threshold: bool,
    /// Whether its largest non-partner supplier was over the ceiling.
    pub over_ceiling: bool,
}

impl Judged {
    fn encode(&self) -> [u8; 10] {
        let mut v = [0; 10];
        v[..8].copy_from_slice(&self.supply_risk.to_bits().to_be_bytes());
        v[8] = self.above_threshold.into();
        v[9] = self.over_ceiling.into();
        v
    }

    fn decode(v: &[u8]) -> Result<Self, KitError> {
        let v: [u8; 10] = v
            .try_into()
            .map_err(|_| KitError::Corrupt("a stored score judgement is damaged".into()))?;
        Ok(Self {
            supply_risk: f64::from_bits(u64::from_be_bytes(v[..8].try_into().unwrap_or_default())),
            above_threshold: v[8] != 0,
            over_ceiling: v[9] != 0,
        })
    }
}

/// The judgements in force, by score.
pub type Judgements = BTreeMap<ScoreKey, Judged>;

/// What changed scores.
#[derive(Debug, Clone)]
pub enum Change {
    /// An event of the sharing report stream.
    Report {
        /// Its sequence in the sharing service's report log.
        sequence: u64,
        /// The report it concerns.
        report_id: String,
        /// The report's version that now moves scores, or `None` when the
        /// report no longer does (resolved, retracted, not a disruption).
        in_force: Option<Box<Report>>,
        /// The price it reports (USD per tonne), remembered so a price
        /// alert is raised once per price, not per amendment.
        observed_price: Option<f64>,
    },
    /// A report in force stopped being partnership-wide (the sharing
    /// service answers NOT_FOUND for it): it stops moving scores.
    Withdrawn {
        /// The report.
        report_id: String,
    },
    /// No disruption changed, but scores may have: new reference data, a
    /// new policy, or a start (what changed while the service was down).
    Rejudged,
}

/// A change, with the alerts it raised (appended to the alert log in order).
#[derive(Debug, Clone)]
pub struct Processed {
    /// What changed.
    pub change: Change,
    /// The alerts it raised.
    pub alerts: Vec<RiskAlert>,
    /// The scores it judged anew, recorded with the alerts.
    pub judged: Vec<(ScoreKey, Judged)>,
}

/// Typed access to the risk store.
#[derive(Debug, Clone)]
pub struct RiskStore {
    store: Store,
    active: sled::Tree,
    meta: sled::Tree,
    prices: sled::Tree,
    judged: sled::Tree,
    alerts: Arc<EventLog>,
    writer: GroupCommit<Processed, bool>,
}

impl RiskStore {
    /// Opens the store's trees in `store`.
    pub fn open(store: &Store) -> Result<Self, KitError> {
        let active = store.tree("disruptions")?;
        let meta = store.tree("meta")?;
        let prices = store.tree("prices")?;
        let judged = store.tree("judged")?;
        let alerts = EventLog::open(store, "alerts")?;
        let trees = Trees {
            active: active.clone(),
            meta: meta.clone(),
            log: alerts.tree().clone(),
            prices: prices.clone(),
            judged: judged.clone(),
        };
        let writer = GroupCommit::new(
            store.clone(),
            alerts.clone(),
            Arc::new(move |first, ops: &[Processed]| apply(&trees, first, ops)),
        );
        Ok(Self {
            store: store.clone(),
            active,
            meta,
            prices,
            judged,
            alerts,
            writer,
        })
    }

    /// What alerts last said about every score judged so far.
    pub fn judgements(&self) -> Result<Judgements, KitError> {
        let mut out = BTreeMap::new();
        for item in self.judged.iter() {
            let (k, v) = item?;
            out.insert(ScoreKey::decode(&k)?, Judged::decode(&v)?);
        }
        Ok(out)
    }

    /// The last price (USD per tonne) report `id` carried, if any.
    pub fn last_price(&self, id: &str) -> Result<Option<f64>, KitError> {
        self.prices
            .get(id.as_bytes())?
            .map(|v| read_u64(&v).map(f64::from_bits))
            .transpose()
    }

    /// The last report-stream sequence processed (0: none yet).
    pub fn cursor(&self) -> Result<u64, KitError> {
        Ok(self
            .meta
            .get(CURSOR)?
            .map(|v| read_u64(&v))
            .transpose()?
            .unwrap_or(0))
    }

    /// The reports in force, by id.
    pub fn in_force(&self) -> Result<BTreeMap<String, Report>, KitError> {
        let mut out = BTreeMap::new();
        for item in self.active.iter() {
            let (k, v) = item?;
            out.insert(String::from_utf8_lossy(&k).into_owned(), decode_value(&v)?);
        }
        Ok(out)
    }

    /// The alert log, for subscriptions.
    pub fn alerts(&self) -> Arc<EventLog> {
        self.alerts.clone()
    }

    /// Records `p` durably (with its alerts); false when it is a report
    /// event whose sequence was already processed (a replay after a
    /// restart), in which case nothing is written.
    pub async fn record(&self, p: Processed) -> Result<bool, KitError> {
        self.writer.submit(p).await
    }

    /// Flushes everything to disk (at shutdown).
    pub fn flush_now(&self) -> Result<(), KitError> {
        self.store.flush_now()
    }
}

fn read_u64(v: &[u8]) -> Result<u64, KitError> {
    let bytes: [u8; 8] = v
        .try_into()
        .map_err(|_| KitError::Corrupt("the stored report-stream cursor is damaged".into()))?;
    Ok(u64::from_be_bytes(bytes))
}

/// The trees one processed change writes.
struct Trees {
    active: sled::Tree,
    meta: sled::Tree,
    log: sled::Tree,
    prices: sled::Tree,
    judged: sled::Tree,
}

/// Writes a batch of processed events in one transaction: each one's
/// disruption change, its alerts, its judgements and the cursor, or — for a
/// sequence at or below the cursor — nothing.
fn apply(trees: &Trees, first: u64, ops: &[Processed]) -> Result<Vec<Applied<bool>>, KitError> {
    let refs = (
        &trees.active,
        &trees.meta,
        &trees.log,
        &trees.prices,
        &trees.judged,
    );
    let result = refs.transaction(|(active, meta, log, prices, judged)| {
        let mut cursor = match meta.get(CURSOR)? {
            Some(v) => read_u64(&v).map_err(ConflictableTransactionError::Abort)?,
            None => 0,
        };
        let mut seq = first;
        let mut answers = Vec::with_capacity(ops.len());
        for op in ops {
            if let Change::Withdrawn { report_id } = &op.change {
                active.remove(report_id.as_bytes())?;
            }
            if let Change::Report {
                sequence,
                report_id,
                in_force,
                observed_price,
            } = &op.change
            {
                if *sequence <= cursor {
                    answers.push(Applied {
                        out: false,
                        appended: 0,
                    });
                    continue;
                }
                match in_force {
                    Some(report) => {
                        active.insert(report_id.as_bytes(), encode_value(report))?;
                    }
                    None => {
                        active.remove(report_id.as_bytes())?;
                    }
                }
                if let Some(price) = observed_price {
                    prices.insert(report_id.as_bytes(), &price.to_bits().to_be_bytes())?;
                }
                cursor = *sequence;
                meta.insert(CURSOR, &cursor.to_be_bytes())?;
            }
            for (key, j) in &op.judged {
                judged.insert(key.encode(), &j.encode())?;
            }
            for alert in &op.alerts {
                log.insert(&seq_key(seq), encode_value(alert))?;
                seq += 1;
            }
            answers.push(Applied {
                out: true,
                appended: op.alerts.len() as u64,
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

#[cfg(test)]
mod tests {
    use super::*;
    use orex_kit::store::StoreConfig;

    fn alert(id: &str) -> RiskAlert {
        RiskAlert {
            id: id.into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_processed_event_is_recorded_once_with_its_alerts() {
        let dir = tempfile::tempdir().unwrap();
        let key = ScoreKey {
            member: "EU".into(),
            mineral: Mineral::Gallium,
            stage: Stage::Refining,
        };
        let high = Judged {
            supply_risk: 1.25,
            above_threshold: true,
            over_ceiling: false,
        };
        {
            let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
            let s = RiskStore::open(&store).unwrap();
            let report = Report {
                id: "r1".into(),
                version: 1,
                ..Default::default()
            };
            let p = Processed {
                change: Change::Report {
                    sequence: 7,
                    report_id: "r1".into(),
                    in_force: Some(Box::new(report.clone())),
                    observed_price: Some(12.5),
                },
                alerts: vec![alert("a"), alert("b")],
                judged: vec![(key.clone(), high)],
            };
            assert!(s.record(p.clone()).await.unwrap());
            // A replay writes nothing, whatever it would judge now.
            let mut replay = p;
            replay.judged[0].1.supply_risk = 9.0;
            assert!(!s.record(replay).await.unwrap(), "a replay writes nothing");
            assert_eq!(s.judgements().unwrap()[&key], high);
            assert_eq!(s.cursor().unwrap(), 7);
            assert_eq!(s.alerts().published(), 2);
            assert_eq!(s.in_force().unwrap()["r1"], report);
            assert_eq!(s.last_price("r1").unwrap(), Some(12.5));
            s.flush_now().unwrap();
        }
        // Reopened: the same state, and the next event goes after it.
        let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        let s = RiskStore::open(&store).unwrap();
        assert_eq!(s.cursor().unwrap(), 7);
        assert_eq!(s.alerts().published(), 2);
        let done = Processed {
            change: Change::Report {
                sequence: 9,
                report_id: "r1".into(),
                in_force: None,
                observed_price: None,
            },
            alerts: vec![alert("c")],
            judged: vec![],
        };
        assert!(s.record(done).await.unwrap());
        assert!(s.in_force().unwrap().is_empty());
        assert_eq!(s.alerts().published(), 3);
        let last = s.alerts().read_after(2, 10).unwrap();
        assert_eq!(last.len(), 1);
        assert_eq!(decode_value::<RiskAlert>(&last[0].1).unwrap().id, "c");
        // A judgement survives the restart; a rejudgement moves no cursor.
        assert_eq!(s.judgements().unwrap()[&key], high);
        let low = Judged {
            supply_risk: 0.5,
            above_threshold: false,
            over_ceiling: true,
        };
        let rejudged = Processed {
            change: Change::Rejudged,
            alerts: vec![alert("d")],
            judged: vec![(key.clone(), low)],
        };
        assert!(s.record(rejudged).await.unwrap());
        assert_eq!((s.cursor().unwrap(), s.alerts().published()), (9, 4));
        assert_eq!(
            s.judgements().unwrap().into_iter().collect::<Vec<_>>(),
            [(key, low)]
        );
    }
}

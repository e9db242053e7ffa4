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
use orex_proto::risk::v1::RiskAlert;
use orex_proto::sharing::v1::Report;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

/// Key of the last processed sharing sequence in the `meta` tree.
const CURSOR: &[u8] = b"report_stream_after_sequence";

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
    /// A new version of the reference data.
    ReferenceData,
}

/// A change, with the alerts it raised (appended to the alert log in order).
#[derive(Debug, Clone)]
pub struct Processed {
    /// What changed.
    pub change: Change,
    /// The alerts it raised.
    pub alerts: Vec<RiskAlert>,
}

/// Typed access to the risk store.
#[derive(Debug, Clone)]
pub struct RiskStore {
    store: Store,
    active: sled::Tree,
    meta: sled::Tree,
    prices: sled::Tree,
    alerts: Arc<EventLog>,
    writer: GroupCommit<Processed, bool>,
}

impl RiskStore {
    /// Opens the store's trees in `store`.
    pub fn open(store: &Store) -> Result<Self, KitError> {
        let active = store.tree("disruptions")?;
        let meta = store.tree("meta")?;
        let prices = store.tree("prices")?;
        let alerts = EventLog::open(store, "alerts")?;
        let trees = (
            active.clone(),
            meta.clone(),
            alerts.tree().clone(),
            prices.clone(),
        );
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
            alerts,
            writer,
        })
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

/// Writes a batch of processed events in one transaction: each one's
/// disruption change, its alerts and the cursor, or — for a sequence at or
/// below the cursor — nothing.
fn apply(
    trees: &(sled::Tree, sled::Tree, sled::Tree, sled::Tree),
    first: u64,
    ops: &[Processed],
) -> Result<Vec<Applied<bool>>, KitError> {
    let refs = (&trees.0, &trees.1, &trees.2, &trees.3);
    let result = refs.transaction(|(active, meta, log, prices)| {
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
            };
            assert!(s.record(p.clone()).await.unwrap());
            assert!(!s.record(p).await.unwrap(), "a replay writes nothing");
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
        };
        assert!(s.record(done).await.unwrap());
        assert!(s.in_force().unwrap().is_empty());
        assert_eq!(s.alerts().published(), 3);
        let last = s.alerts().read_after(2, 10).unwrap();
        assert_eq!(last.len(), 1);
        assert_eq!(decode_value::<RiskAlert>(&last[0].1).unwrap().id, "c");
        // A reference data change moves no cursor.
        let reference = Processed {
            change: Change::ReferenceData,
            alerts: vec![alert("d")],
        };
        assert!(s.record(reference).await.unwrap());
        assert_eq!((s.cursor().unwrap(), s.alerts().published()), (9, 4));
    }
}

//! Subscribers that read their stream in a task and note when each event
//! arrived, so a case can check every delivery came exactly once and compute
//! latencies after the run.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use orex_proto::sharing::v1::SubscribeReportsResponse;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tonic::{Status, Streaming};

/// How a subscriber's stream ended.
#[derive(Debug)]
pub(crate) enum End {
    /// We stopped reading (the run was over).
    Stopped,
    /// The server ended the stream with status OK.
    Ok,
    /// The server ended the stream with an error status.
    Status(Status),
}

/// What one subscriber received.
#[derive(Debug)]
pub(crate) struct Received {
    /// Each event's sequence and when it arrived.
    pub(crate) arrivals: Vec<(u64, Instant)>,
    /// How the stream ended.
    pub(crate) end: End,
}

impl Received {
    /// Why the stream ended before we stopped reading, if it did.
    pub(crate) fn early_end(&self) -> Option<String> {
        match &self.end {
            End::Stopped => None,
            End::Ok => Some("the server ended the stream with status OK".into()),
            End::Status(s) => Some(format!("the stream ended: {:?}: {}", s.code(), s.message())),
        }
    }
}

/// A live copy of each arrival: sequence, report id, time.
pub(crate) type Live = mpsc::UnboundedSender<(u64, String, Instant)>;

/// Reads `stream` until it ends or `stop` turns true. Each arrival bumps
/// `count` (shared by many subscribers, to wait for a fan-out) and is sent
/// to `live` if given.
pub(crate) fn collect(
    mut stream: Streaming<SubscribeReportsResponse>,
    mut stop: watch::Receiver<bool>,
    count: Option<Arc<AtomicU64>>,
    live: Option<Live>,
) -> JoinHandle<Received> {
    tokio::spawn(async move {
        let mut arrivals = Vec::new();
        let end = loop {
            if *stop.borrow() {
                break End::Stopped;
            }
            tokio::select! {
                m = stream.message() => match m {
                    Ok(Some(ev)) => {
                        let at = Instant::now();
                        arrivals.push((ev.sequence, at));
                        if let Some(c) = &count {
                            c.fetch_add(1, Ordering::Relaxed);
                        }
                        if let Some(l) = &live {
                            let id = ev.report.map(|r| r.id).unwrap_or_default();
                            let _ = l.send((ev.sequence, id, at));
                        }
                    }
                    Ok(None) => break End::Ok,
                    Err(s) => break End::Status(s),
                },
                _ = stop.changed() => break End::Stopped,
            }
        };
        Received { arrivals, end }
    })
}

/// Deliveries against what was published: sequences never received, and
/// deliveries beyond the first of a sequence (or of one never published).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Exactness {
    /// Published events a subscriber never received.
    pub(crate) missed: u64,
    /// Extra deliveries (repeats, or events nobody published in this run).
    pub(crate) extra: u64,
}

impl Exactness {
    /// Checks one subscriber's arrivals against the published sequences.
    pub(crate) fn add(&mut self, arrivals: &[(u64, Instant)], published: &HashMap<u64, Instant>) {
        let mut seen: HashMap<u64, u32> = HashMap::with_capacity(arrivals.len());
        for (seq, _) in arrivals {
            *seen.entry(*seq).or_default() += 1;
        }
        for seq in published.keys() {
            if !seen.contains_key(seq) {
                self.missed += 1;
            }
        }
        for (seq, n) in seen {
            if published.contains_key(&seq) {
                self.extra += u64::from(n - 1);
            } else {
                self.extra += u64::from(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misses_and_repeats_are_counted() {
        let now = Instant::now();
        let published: HashMap<u64, Instant> = [(1, now), (2, now), (3, now)].into();
        let mut e = Exactness::default();
        e.add(&[(1, now), (2, now), (3, now)], &published);
        assert_eq!((e.missed, e.extra), (0, 0));
        e.add(&[(1, now), (1, now), (3, now), (9, now)], &published);
        assert_eq!((e.missed, e.extra), (1, 2));
    }
}

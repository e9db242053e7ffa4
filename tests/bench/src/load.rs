//! Load generators: a closed loop (N callers, each waits for its answer
//! before the next call) to find a peak, and an open loop (calls started on
//! a fixed schedule whatever the answers do) to measure latency at a given
//! rate without coordinated omission: an open-loop latency runs from when
//! the call was *due*, so a stalled server cannot hide its queue.
//!
//! Every call has a client-side timeout, every run a request cap and a wall
//! time, and the open loop a cap on calls in flight: a run always ends.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tonic::{Code, Status};

use crate::stats::Hist;

/// Longest one call may take before the client gives up on it.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(40);

/// How a call went wrong.
#[derive(Debug)]
pub(crate) enum Fail {
    /// The server (or the transport) answered with an error status.
    Status(Status),
    /// The call succeeded but the answer is not the expected one.
    Wrong(String),
}

impl From<Status> for Fail {
    fn from(s: Status) -> Self {
        Fail::Status(s)
    }
}

/// A future a load generator awaits.
pub(crate) type CallFuture = Pin<Box<dyn Future<Output = Result<(), Fail>> + Send>>;

/// One call, given its index in the run.
pub(crate) type Op = Arc<dyn Fn(u64) -> CallFuture + Send + Sync>;

/// What a run measured.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Latency of successful calls (open loop: from when the call was due).
    pub(crate) ok: Hist,
    /// Open loop: latency of successful calls from when they were sent.
    pub(crate) ok_sent: Hist,
    /// Latency of RESOURCE_EXHAUSTED refusals.
    pub(crate) exhausted: Hist,
    /// Every other error, by code (and message for transport-level ones).
    pub(crate) other: BTreeMap<String, u64>,
    /// Successful calls whose answer was wrong.
    pub(crate) wrong: u64,
    /// The first wrong answer.
    pub(crate) first_wrong: Option<String>,
    /// Open loop: calls not sent because too many were in flight.
    pub(crate) skipped: u64,
    /// Open loop: calls still unanswered when the run gave up waiting.
    pub(crate) unfinished: u64,
    /// Wall time of the run.
    pub(crate) elapsed: Duration,
}

impl Tally {
    fn record(&mut self, result: Result<(), Fail>, latency: Duration, sent: Option<Duration>) {
        match result {
            Ok(()) => {
                self.ok.record(latency);
                if let Some(s) = sent {
                    self.ok_sent.record(s);
                }
            }
            Err(Fail::Status(s)) if s.code() == Code::ResourceExhausted => {
                self.exhausted.record(latency)
            }
            Err(Fail::Status(s)) => *self.other.entry(error_key(&s)).or_default() += 1,
            Err(Fail::Wrong(w)) => {
                self.wrong += 1;
                self.first_wrong.get_or_insert(w);
            }
        }
    }

    fn merge(&mut self, o: Tally) {
        self.ok.merge(&o.ok);
        self.ok_sent.merge(&o.ok_sent);
        self.exhausted.merge(&o.exhausted);
        for (k, v) in o.other {
            *self.other.entry(k).or_default() += v;
        }
        self.wrong += o.wrong;
        if self.first_wrong.is_none() {
            self.first_wrong = o.first_wrong;
        }
        self.skipped += o.skipped;
        self.unfinished += o.unfinished;
    }

    /// Successful calls per second of wall time.
    pub(crate) fn ok_rate(&self) -> f64 {
        self.ok.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Number of errors other than RESOURCE_EXHAUSTED.
    pub(crate) fn other_errors(&self) -> u64 {
        self.other.values().sum()
    }

    /// The other errors as `code ×n` items.
    pub(crate) fn other_summary(&self) -> String {
        if self.other.is_empty() {
            return "none".into();
        }
        self.other
            .iter()
            .map(|(k, v)| format!("{k} ×{v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// A status as a tally key: the code, plus the message for the codes
/// transport failures come as.
fn error_key(s: &Status) -> String {
    match s.code() {
        Code::Unknown | Code::Internal | Code::Unavailable | Code::Cancelled => {
            let m: String = s.message().chars().take(70).collect();
            format!("{:?}: {m}", s.code())
        }
        c => format!("{c:?}"),
    }
}

async fn timed(op: &Op, i: u64) -> Result<(), Fail> {
    match tokio::time::timeout(CALL_TIMEOUT, op(i)).await {
        Ok(r) => r,
        Err(_) => Err(Fail::Status(Status::deadline_exceeded(format!(
            "client gave up after {CALL_TIMEOUT:?}"
        )))),
    }
}

/// `concurrency` callers, each calling again as soon as its answer is in,
/// until `max_requests` calls were started or `duration` has passed.
pub(crate) async fn closed_loop(
    op: Op,
    concurrency: usize,
    max_requests: u64,
    duration: Duration,
) -> Tally {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (op, next) = (op.clone(), next.clone());
        tasks.spawn(async move {
            let mut t = Tally::default();
            while start.elapsed() < duration {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= max_requests {
                    break;
                }
                let began = Instant::now();
                let r = timed(&op, i).await;
                t.record(r, began.elapsed(), None);
            }
            t
        });
    }
    let mut total = Tally::default();
    while let Some(t) = tasks.join_next().await {
        total.merge(t.expect("load task"));
    }
    total.elapsed = start.elapsed();
    total
}

/// Starts calls at `rate` per second for `duration` (at most
/// `max_in_flight` unanswered at once; the rest are counted as skipped),
/// then waits up to `drain` for the last answers.
pub(crate) async fn open_loop(
    op: Op,
    rate: f64,
    duration: Duration,
    max_in_flight: usize,
    drain: Duration,
) -> Tally {
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let (tx, mut rx) = mpsc::unbounded_channel::<(Result<(), Fail>, Duration, Duration)>();
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let collector = tokio::spawn(async move {
        let mut t = Tally::default();
        loop {
            tokio::select! {
                item = rx.recv() => match item {
                    Some((r, due, sent)) => t.record(r, due, Some(sent)),
                    None => break,
                },
                _ = &mut stopped => break,
            }
        }
        t
    });
    let in_flight = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let (mut issued, mut skipped) = (0u64, 0u64);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while issued < total && start.elapsed() < duration + Duration::from_secs(1) {
        tick.tick().await;
        let due_now = ((start.elapsed().as_secs_f64() * rate) as u64).min(total);
        while issued < due_now {
            let due = start + Duration::from_secs_f64(issued as f64 / rate);
            if in_flight.load(Ordering::Relaxed) >= max_in_flight {
                skipped += 1;
            } else {
                in_flight.fetch_add(1, Ordering::Relaxed);
                let (op, tx, in_flight) = (op.clone(), tx.clone(), in_flight.clone());
                let i = issued;
                tokio::spawn(async move {
                    let sent = Instant::now();
                    let r = timed(&op, i).await;
                    let done = Instant::now();
                    in_flight.fetch_sub(1, Ordering::Relaxed);
                    let _ = tx.send((r, done - due, done - sent));
                });
            }
            issued += 1;
        }
    }
    let issuing = start.elapsed();
    drop(tx);
    let drained = Instant::now() + drain;
    while in_flight.load(Ordering::Relaxed) > 0 && Instant::now() < drained {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let unfinished = in_flight.load(Ordering::Relaxed) as u64;
    let mut t = if unfinished > 0 {
        // Late answers still hold senders: stop waiting for them.
        let _ = stop.send(());
        collector.await.expect("collector")
    } else {
        // Every sender is gone once the last answer is in; `stop` must live
        // until then, or the collector would stop early.
        let t = collector.await.expect("collector");
        drop(stop);
        t
    };
    t.skipped = skipped;
    t.unfinished = unfinished;
    t.elapsed = issuing;
    t
}

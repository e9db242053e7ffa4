//! `fanout` and `fanout-1000`: many subscribers (spread over the reader
//! principals of five members, ten streams per connection) and one
//! publisher at a fixed rate. For every delivery: latency from the publish
//! call and from its acknowledgement; per report: when its last subscriber
//! had it. Measured through the gateway and, as the baseline, directly at
//! the sharing service with the same shape.
//!
//! Correct when every subscriber received every report exactly once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::cases::Ctx;
use crate::report::Outcome;
use crate::stack::{Api, Bench, READERS, Target, green};
use crate::stats::{Hist, dratio, dur, rate};
use crate::subs::{self, Exactness};

/// Subscribers per connection.
const PER_CONNECTION: usize = 10;

/// A fan-out to measure.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    name: &'static str,
    subscribers: (usize, usize),
    per_second: f64,
    reports: (usize, usize),
    target: &'static str,
}

impl Shape {
    /// 200 subscribers, 100 reports/s (quick: 20 subscribers, 10 reports).
    pub(crate) const FANOUT: Shape = Shape {
        name: "fanout",
        subscribers: (20, 200),
        per_second: 100.0,
        reports: (10, 1000),
        target: "p99 ≤ 10 ms",
    };
    /// 1,000 subscribers, 50 reports/s (quick: 100 subscribers, 10 reports).
    pub(crate) const FANOUT_1000: Shape = Shape {
        name: "fanout-1000",
        subscribers: (100, 1000),
        per_second: 50.0,
        reports: (10, 500),
        target: "p99 ≤ 25 ms",
    };
}

#[derive(Debug, Default)]
struct Side {
    from_publish: Hist,
    from_ack: Hist,
    last_subscriber: Hist,
    deliveries: u64,
    elapsed: Duration,
}

/// Runs the case.
pub(crate) async fn run(ctx: &Ctx, shape: Shape) -> Outcome {
    let mut out = Outcome::new(shape.name);
    let subscribers = ctx.pick(shape.subscribers.0, shape.subscribers.1);
    let reports = ctx.pick(shape.reports.0, shape.reports.1);
    let bench = Bench::spawn().await;
    let gw = side(
        &bench,
        Target::Gateway,
        subscribers,
        reports,
        shape.per_second,
        &mut out,
    )
    .await;
    let direct = side(
        &bench,
        Target::Direct,
        subscribers,
        reports,
        shape.per_second,
        &mut out,
    )
    .await;
    bench.stop().await;
    for (q, name) in [(0.5, "p50"), (0.99, "p99")] {
        out.compare(
            format!("ack → delivery {name}"),
            dur(gw.from_ack.q(q)),
            dur(direct.from_ack.q(q)),
            dratio(gw.from_ack.q(q), direct.from_ack.q(q)),
            if q > 0.9 { shape.target } else { "" },
        );
    }
    for (q, name) in [(0.5, "p50"), (0.99, "p99")] {
        out.compare(
            format!("publish sent → delivery {name}"),
            dur(gw.from_publish.q(q)),
            dur(direct.from_publish.q(q)),
            dratio(gw.from_publish.q(q), direct.from_publish.q(q)),
            "",
        );
    }
    out.compare(
        "publish sent → last subscriber p99",
        dur(gw.last_subscriber.p99()),
        dur(direct.last_subscriber.p99()),
        dratio(gw.last_subscriber.p99(), direct.last_subscriber.p99()),
        "",
    );
    let per_s = |s: &Side| s.deliveries as f64 / s.elapsed.as_secs_f64().max(1e-9);
    out.compare(
        "deliveries/s",
        rate(per_s(&gw)),
        rate(per_s(&direct)),
        crate::stats::ratio(per_s(&gw), per_s(&direct)),
        "none missed",
    );
    out.note(format!(
        "{subscribers} subscribers ({PER_CONNECTION} streams per TLS connection, {} connections, readers of 5 members), {reports} GREEN reports at {}/s from one publisher; ack → delivery counts 0 when the event arrived before the ack; baseline = directly at the sharing service",
        subscribers.div_ceil(PER_CONNECTION),
        shape.per_second
    ));
    out
}

async fn side(
    bench: &Bench,
    target: Target,
    subscribers: usize,
    reports: usize,
    per_second: f64,
    out: &mut Outcome,
) -> Side {
    let label = target.label();
    let mut side = Side::default();
    let mut conns: Vec<Api> = Vec::new();
    for c in 0..subscribers.div_ceil(PER_CONNECTION) {
        conns.push(bench.api(target, READERS[c % READERS.len()]).await);
    }
    let (stop, stop_rx) = watch::channel(false);
    let count = Arc::new(AtomicU64::new(0));
    let mut collectors = Vec::with_capacity(subscribers);
    for s in 0..subscribers {
        match conns[s / PER_CONNECTION].subscribe(None).await {
            Ok(stream) => collectors.push(subs::collect(
                stream,
                stop_rx.clone(),
                Some(count.clone()),
                None,
            )),
            Err(e) => {
                out.fail(format!("{label}: subscriber {s} refused: {e}"));
                return side;
            }
        }
    }
    let mut publisher = bench.api(target, "us-alice").await;
    let published: Arc<Mutex<HashMap<u64, (Instant, Instant)>>> = Arc::default();
    // Warm-up: one report to everyone, not timed.
    let wait_for = |n: u64, secs: u64| {
        let count = count.clone();
        async move {
            let until = Instant::now() + Duration::from_secs(secs);
            while count.load(Ordering::Relaxed) < n && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            count.load(Ordering::Relaxed)
        }
    };
    let mut warm = HashMap::new();
    match publisher.publish_content(green(0)).await {
        Ok(r) => {
            warm.insert(r.sequence, Instant::now());
        }
        Err(e) => {
            out.fail(format!("{label}: publish failed: {e}"));
            return side;
        }
    }
    wait_for(subscribers as u64, 20).await;
    let base = count.load(Ordering::Relaxed);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..reports {
        tokio::time::sleep_until((start + Duration::from_secs_f64(i as f64 / per_second)).into())
            .await;
        let (mut p, published) = (publisher.clone(), published.clone());
        tasks.spawn(async move {
            let t0 = Instant::now();
            let r = p.publish_content(green(0)).await?;
            published
                .lock()
                .expect("lock")
                .insert(r.sequence, (t0, Instant::now()));
            Ok::<_, tonic::Status>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        if let Ok(Err(e)) = r {
            out.fail(format!("{label}: publish failed: {e}"));
        }
    }
    let expected = base + (subscribers * reports) as u64;
    // Deliveries still on their way are late, not lost: wait for them.
    let got = wait_for(expected, 60).await;
    side.elapsed = start.elapsed();
    side.deliveries = got - base;
    let _ = stop.send(true);
    let published = std::mem::take(&mut *published.lock().expect("lock"));
    let mut all: HashMap<u64, Instant> = published.iter().map(|(s, (t0, _))| (*s, *t0)).collect();
    all.extend(warm);
    let mut exact = Exactness::default();
    let mut early = None;
    let mut last: HashMap<u64, Instant> = HashMap::new();
    for c in collectors {
        let received = c.await.expect("subscriber task");
        if let Some(why) = received.early_end() {
            early.get_or_insert(why);
        }
        exact.add(&received.arrivals, &all);
        for (seq, at) in &received.arrivals {
            if let Some((t0, ack)) = published.get(seq) {
                side.from_publish.record(*at - *t0);
                side.from_ack.record(at.saturating_duration_since(*ack));
                let l = last.entry(*seq).or_insert(*at);
                *l = (*l).max(*at);
            }
        }
    }
    if let Some(why) = early {
        out.fail(format!("{label}: a subscriber ended early: {why}"));
    }
    for (seq, at) in last {
        side.last_subscriber.record(at - published[&seq].0);
    }
    out.check(exact.missed == 0 && exact.extra == 0, || {
        format!(
            "{label}: {} deliveries missed, {} extra (of {} expected)",
            exact.missed,
            exact.extra,
            subscribers * (reports + 1)
        )
    });
    side
}

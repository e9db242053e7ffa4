//! `delivery`: one publisher, one subscriber of another member; each report
//! is published only after the previous one arrived. Latency runs from just
//! before the publish call to the event's arrival at the subscriber; the
//! publish acknowledgement is timed too. Measured through the gateway and,
//! as the baseline, directly at the sharing service.
//!
//! Correct when every report published arrives exactly once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::cases::Ctx;
use crate::report::Outcome;
use crate::stack::{Bench, Target, green};
use crate::stats::{Hist, dratio, dur};
use crate::subs::{self, Exactness};

/// What one side measured.
#[derive(Debug, Default)]
struct Side {
    delivery: Hist,
    ack: Hist,
}

/// Runs the case.
pub(crate) async fn run(ctx: &Ctx) -> Outcome {
    let mut out = Outcome::new("delivery");
    let n = ctx.pick(20, 500);
    let budget = ctx.pick(Duration::from_secs(8), Duration::from_secs(70));
    let bench = Bench::spawn().await;
    let gw = side(&bench, Target::Gateway, n, budget, &mut out).await;
    let direct = side(&bench, Target::Direct, n, budget, &mut out).await;
    bench.stop().await;
    for (q, name) in [(0.5, "p50"), (0.99, "p99")] {
        out.compare(
            format!("publish → delivery {name}"),
            dur(gw.delivery.q(q)),
            dur(direct.delivery.q(q)),
            dratio(gw.delivery.q(q), direct.delivery.q(q)),
            if q < 0.9 { "≤ 2 ms" } else { "≤ 10 ms" },
        );
    }
    out.compare(
        "publish → delivery max",
        dur(gw.delivery.max()),
        dur(direct.delivery.max()),
        dratio(gw.delivery.max(), direct.delivery.max()),
        "",
    );
    for (q, name) in [(0.5, "p50"), (0.99, "p99")] {
        out.compare(
            format!("publish ack {name}"),
            dur(gw.ack.q(q)),
            dur(direct.ack.q(q)),
            dratio(gw.ack.q(q), direct.ack.q(q)),
            "",
        );
    }
    out.note(format!(
        "{} reports each way, one at a time (next publish after the previous arrived); baseline = directly at the sharing service",
        gw.delivery.len()
    ));
    out
}

async fn side(
    bench: &Bench,
    target: Target,
    n: usize,
    budget: Duration,
    out: &mut Outcome,
) -> Side {
    let label = target.label();
    let mut side = Side::default();
    let mut publisher = bench.api(target, "us-alice").await;
    let mut reader = bench.api(target, "de-dieter").await;
    let stream = match reader.subscribe(None).await {
        Ok(s) => s,
        Err(e) => {
            out.fail(format!("{label}: subscribe refused: {e}"));
            return side;
        }
    };
    let (stop, stop_rx) = watch::channel(false);
    let (live, mut arrivals) = mpsc::unbounded_channel();
    let collector = subs::collect(stream, stop_rx, None, Some(live));
    let mut published: HashMap<u64, Instant> = HashMap::new();
    let started = Instant::now();
    let warmup = 3;
    for i in 0..n + warmup {
        if started.elapsed() > budget {
            out.note(format!(
                "{label}: stopped after {i} reports (time budget {budget:?})"
            ));
            break;
        }
        let t0 = Instant::now();
        let report = match publisher.publish_content(green(0)).await {
            Ok(r) => r,
            Err(e) => {
                out.fail(format!("{label}: publish failed: {e}"));
                break;
            }
        };
        let acked = Instant::now();
        published.insert(report.sequence, t0);
        let arrived = loop {
            match tokio::time::timeout(Duration::from_secs(10), arrivals.recv()).await {
                Ok(Some((_, id, at))) if id == report.id => break Some(at),
                // Another report: an extra delivery; the exactness check counts it.
                Ok(Some(_)) => continue,
                _ => break None,
            }
        };
        let Some(at) = arrived else {
            out.fail(format!(
                "{label}: report {} (sequence {}) not delivered within 10 s",
                report.id, report.sequence
            ));
            break;
        };
        if i >= warmup {
            side.delivery.record(at - t0);
            side.ack.record(acked - t0);
        }
    }
    // Late repeats would show up here.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = stop.send(true);
    let received = collector.await.expect("subscriber task");
    if let Some(why) = received.early_end() {
        out.fail(format!("{label}: subscriber: {why}"));
    }
    let mut exact = Exactness::default();
    exact.add(&received.arrivals, &published);
    out.check(exact.missed == 0 && exact.extra == 0, || {
        format!(
            "{label}: {} reports missed, {} extra deliveries",
            exact.missed, exact.extra
        )
    });
    side
}

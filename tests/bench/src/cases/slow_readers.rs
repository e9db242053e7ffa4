//! `slow-readers`: can one member's unread streams slow everyone else down?
//!
//! The same ordinary traffic runs twice for the same time: Japan's reader in
//! a `GetReport` loop, the US publishing ~4 KB reports at a fixed rate, and
//! Germany's reader subscribed. The first time alone (the baseline); the
//! second time while US/bob (a reader) holds many subscriptions on one
//! connection whose messages are never polled. Reported: the other members'
//! p99 with and without, and the ratio.
//!
//! Then (full mode) it waits past the slow-consumer timeout and reads the
//! never-read streams to see how they ended: RESOURCE_EXHAUSTED naming
//! `after_sequence=N` is right; an OK end means the client silently misses
//! what follows, which is a failure, as is any missed or repeated delivery
//! to the normal subscriber.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use orex_proto::sharing::v1::SubscribeReportsResponse;
use tokio::sync::watch;
use tonic::{Code, Streaming};

use crate::cases::Ctx;
use crate::cases::get::{check, get_op};
use crate::load::{CALL_TIMEOUT, Tally, closed_loop};
use crate::report::Outcome;
use crate::stack::{Api, Bench, Target, green};
use crate::stats::{Hist, dratio, dur};
use crate::subs::{self, Exactness};

/// Summary bytes of the reports published (the largest the API allows).
const REPORT_BYTES: usize = 4000;

/// What the ordinary traffic saw in one phase.
#[derive(Debug, Default)]
struct Phase {
    get: Tally,
    publish: Hist,
    delivery: Hist,
}

/// Runs the case.
pub(crate) async fn run(ctx: &Ctx) -> Outcome {
    let mut out = Outcome::new("slow-readers");
    let duration = ctx.pick(Duration::from_millis(1500), Duration::from_secs(15));
    let per_second = ctx.pick(4.0, 20.0);
    let slow = ctx.pick(20, 100);
    let bench = Bench::spawn().await;
    let timeout = crate::compat::slow_consumer_timeout(bench.layout());
    let mut alice = bench.api(Target::Gateway, "us-alice").await;
    let id = match alice.publish_content(green(REPORT_BYTES)).await {
        Ok(r) => r.id,
        Err(e) => {
            out.fail(format!("publish the report to read: {e}"));
            bench.stop().await;
            return out;
        }
    };
    let getter = bench.api(Target::Gateway, "jp-kenji").await;
    let wait = ctx.pick(Duration::from_secs(10), timeout + Duration::from_secs(15));
    let alone = phase(
        &bench, "alone", duration, per_second, &getter, &alice, &id, wait, &mut out,
    )
    .await;

    // US/bob opens the streams it will never read, all on one connection.
    let mut bob = bench.api(Target::Gateway, "us-bob").await;
    let mut unread: Vec<Streaming<SubscribeReportsResponse>> = Vec::with_capacity(slow);
    for i in 0..slow {
        match bob.subscribe(None).await {
            Ok(s) => unread.push(s),
            Err(e) => {
                out.fail(format!("never-read subscription {i} refused: {e}"));
                break;
            }
        }
    }
    let opened = Instant::now();
    let with = phase(
        &bench, "with", duration, per_second, &getter, &alice, &id, wait, &mut out,
    )
    .await;

    let ends = if ctx.quick {
        drop(unread);
        None
    } else {
        let until = opened + timeout + Duration::from_secs(15);
        tokio::time::sleep_until(until.into()).await;
        Some(read_ends(unread).await)
    };
    drop(bob);
    bench.stop().await;

    let rows: [(&str, &Hist, &Hist); 3] = [
        ("JP GetReport", &with.get.ok, &alone.get.ok),
        ("US publish (4 KB)", &with.publish, &alone.publish),
        ("DE subscriber delivery", &with.delivery, &alone.delivery),
    ];
    for (what, w, a) in rows {
        out.compare(
            format!("{what} p99, with vs without"),
            dur(w.p99()),
            dur(a.p99()),
            dratio(w.p99(), a.p99()),
            "≤ 1.5×",
        );
        out.compare(
            format!("{what} max, with vs without"),
            dur(w.max()),
            dur(a.max()),
            dratio(w.max(), a.max()),
            "",
        );
    }
    match ends {
        Some(e) => {
            out.fact(
                "never-read streams ended RESOURCE_EXHAUSTED",
                format!("{} of {slow}", e.exhausted),
                "all, naming after_sequence",
            );
            out.note(format!(
                "never-read streams after {:?}: {} RESOURCE_EXHAUSTED naming after_sequence (of which {} name the last event received), {} ended OK, {} other ({}), {} still open",
                timeout + Duration::from_secs(15),
                e.exhausted,
                e.exact_resume,
                e.ok,
                e.other.len(),
                e.other.first().map(String::as_str).unwrap_or("-"),
                e.open
            ));
            out.check(e.exhausted == slow as u64, || {
                format!(
                    "{} of {slow} never-read streams did not end RESOURCE_EXHAUSTED naming after_sequence ({} ended OK: their clients would silently miss every later event; {} other; {} still open)",
                    slow as u64 - e.exhausted,
                    e.ok,
                    e.other.len(),
                    e.open
                )
            });
        }
        None => out.note("quick mode: the never-read streams' end status is not waited for"),
    }
    out.note(format!(
        "each phase {duration:?}: JP/kenji GetReport loop (1 caller), US/alice publishing {per_second}/s reports of ~{REPORT_BYTES} B, DE/dieter subscribed; 'with' adds {slow} never-read subscriptions of US/bob on one connection; slow-consumer timeout {timeout:?}"
    ));
    out
}

#[allow(clippy::too_many_arguments)]
async fn phase(
    bench: &Bench,
    label: &str,
    duration: Duration,
    per_second: f64,
    getter: &Api,
    publisher: &Api,
    id: &str,
    wait: Duration,
    out: &mut Outcome,
) -> Phase {
    let mut p = Phase::default();
    let mut reader = bench.api(Target::Gateway, "de-dieter").await;
    let stream = match reader.subscribe(None).await {
        Ok(s) => s,
        Err(e) => {
            out.fail(format!("{label}: DE subscribe refused: {e}"));
            return p;
        }
    };
    let (stop, stop_rx) = watch::channel(false);
    let count = Arc::new(AtomicU64::new(0));
    let collector = subs::collect(stream, stop_rx, Some(count.clone()), None);
    let gets = tokio::spawn(closed_loop(
        get_op(vec![getter.clone()], id.to_owned()),
        1,
        u64::MAX,
        duration,
    ));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let n = (per_second * duration.as_secs_f64()) as usize;
    for i in 0..n {
        tokio::time::sleep_until((start + Duration::from_secs_f64(i as f64 / per_second)).into())
            .await;
        let mut api = publisher.clone();
        tasks.spawn(async move {
            let t0 = Instant::now();
            let r =
                tokio::time::timeout(CALL_TIMEOUT, api.publish_content(green(REPORT_BYTES))).await;
            (t0, Instant::now(), r)
        });
    }
    let mut published: HashMap<u64, Instant> = HashMap::new();
    while let Some(r) = tasks.join_next().await {
        match r.expect("publish task") {
            (t0, done, Ok(Ok(report))) => {
                p.publish.record(done - t0);
                published.insert(report.sequence, t0);
            }
            (_, _, Ok(Err(e))) => out.fail(format!("{label}: publish failed: {e}")),
            (_, _, Err(_)) => out.fail(format!(
                "{label}: publish unanswered after {CALL_TIMEOUT:?}"
            )),
        }
    }
    p.get = gets.await.expect("GetReport loop");
    check(out, &format!("{label}: JP GetReport"), &p.get, false);
    let until = Instant::now() + wait;
    while count.load(Ordering::Relaxed) < published.len() as u64 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop.send(true);
    let received = collector.await.expect("subscriber task");
    for (seq, at) in &received.arrivals {
        if let Some(t0) = published.get(seq) {
            p.delivery.record(*at - *t0);
        }
    }
    let mut exact = Exactness::default();
    exact.add(&received.arrivals, &published);
    out.check(exact.missed == 0 && exact.extra == 0, || {
        format!(
            "{label}: DE subscriber missed {} of {} reports, {} extra",
            exact.missed,
            published.len(),
            exact.extra
        )
    });
    p
}

/// How the never-read streams ended.
#[derive(Debug, Default)]
struct Ends {
    exhausted: u64,
    exact_resume: u64,
    ok: u64,
    other: Vec<String>,
    open: u64,
}

async fn read_ends(streams: Vec<Streaming<SubscribeReportsResponse>>) -> Ends {
    let mut tasks = tokio::task::JoinSet::new();
    for mut s in streams {
        tasks.spawn(async move {
            let mut last = None;
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left.min(Duration::from_secs(3)), s.message()).await {
                    Ok(Ok(Some(ev))) => last = Some(ev.sequence),
                    Ok(Ok(None)) => return (Some(Ok(())), last),
                    Ok(Err(status)) => return (Some(Err(status)), last),
                    Err(_) => return (None, last),
                }
            }
        });
    }
    let mut ends = Ends::default();
    while let Some(r) = tasks.join_next().await {
        match r.expect("drain task") {
            (None, _) => ends.open += 1,
            (Some(Ok(())), _) => ends.ok += 1,
            (Some(Err(s)), last) => {
                let resume = s
                    .message()
                    .split("after_sequence=")
                    .nth(1)
                    .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
                    .and_then(|n| n.parse::<u64>().ok());
                match (s.code(), resume) {
                    (Code::ResourceExhausted, Some(n)) => {
                        ends.exhausted += 1;
                        if Some(n) == last {
                            ends.exact_resume += 1;
                        }
                    }
                    _ => ends.other.push(format!("{:?}: {}", s.code(), s.message())),
                }
            }
        }
    }
    ends
}

//! `latency-at-half`: the gateway's peak `GetReport` rate (from `get` in the
//! same run, or a short closed loop here), then an open loop at half of it
//! through the gateway and, as the baseline, directly at the sharing service
//! at the same rate. Latencies run from when each call was due.
//!
//! Correct when every answer is the report asked for.

use std::time::Duration;

use crate::cases::get::{CONCURRENCY, CONNECTIONS, check, get_op, seed};
use crate::cases::{Ctx, Peak};
use crate::load::{closed_loop, open_loop};
use crate::report::Outcome;
use crate::stack::{Bench, Target};
use crate::stats::{delta, dratio, dur, rate};

/// Most calls in flight in an open loop before calls are skipped.
pub(crate) const MAX_IN_FLIGHT: usize = 8192;

/// The gateway's peak from an earlier case, or measured now on `bench`.
pub(crate) async fn peak(ctx: &Ctx, bench: &Bench, id: &str, out: &mut Outcome) -> Peak {
    if let Some(p) = *ctx.gateway_peak.lock().expect("lock") {
        out.note(format!(
            "gateway peak {} (p99 {}) taken from `get` earlier in this run",
            rate(p.rate),
            dur(p.p99)
        ));
        return p;
    }
    let apis = bench.apis(Target::Gateway, "us-bob", CONNECTIONS).await;
    let duration = ctx.pick(Duration::from_millis(800), Duration::from_secs(5));
    closed_loop(
        get_op(apis.clone(), id.to_owned()),
        CONCURRENCY,
        200,
        duration,
    )
    .await;
    let t = closed_loop(get_op(apis, id.to_owned()), CONCURRENCY, u64::MAX, duration).await;
    check(out, "peak run", &t, false);
    let p = Peak {
        rate: t.ok_rate(),
        p99: t.ok.p99(),
    };
    out.note(format!(
        "gateway peak {} (p99 {}): closed loop, {CONCURRENCY} callers over {CONNECTIONS} connections, {duration:?}",
        rate(p.rate),
        dur(p.p99)
    ));
    *ctx.gateway_peak.lock().expect("lock") = Some(p);
    p
}

/// Runs the case.
pub(crate) async fn run(ctx: &Ctx) -> Outcome {
    let mut out = Outcome::new("latency-at-half");
    let bench = Bench::spawn().await;
    let id = seed(&bench).await;
    let peak = peak(ctx, &bench, &id, &mut out).await;
    let offered = (peak.rate / 2.0).max(10.0);
    let duration = ctx.pick(Duration::from_secs(1), Duration::from_secs(10));
    let mut tallies = Vec::new();
    for target in [Target::Gateway, Target::Direct] {
        let apis = bench.apis(target, "us-bob", CONNECTIONS).await;
        closed_loop(get_op(apis.clone(), id.clone()), 8, 100, duration).await;
        let t = open_loop(
            get_op(apis, id.clone()),
            offered,
            duration,
            MAX_IN_FLIGHT,
            Duration::from_secs(30),
        )
        .await;
        check(&mut out, target.label(), &t, false);
        if t.skipped + t.unfinished > 0 {
            // Capacity, not correctness: noted, never a failure.
            out.note(format!(
                "{}: {} calls skipped (too many in flight), {} unanswered in time",
                target.label(),
                t.skipped,
                t.unfinished
            ));
        }
        tallies.push(t);
    }
    let (gw, direct) = (&tallies[0], &tallies[1]);
    out.fact("offered rate (half the gateway's peak)", rate(offered), "");
    for (q, name, target) in [(0.5, "p50", "≤ +300 µs"), (0.99, "p99", "≤ +1.5 ms")] {
        out.compare(
            format!("GetReport {name} at half peak"),
            dur(gw.ok.q(q)),
            dur(direct.ok.q(q)),
            dratio(gw.ok.q(q), direct.ok.q(q)),
            "",
        );
        out.fact(
            format!("added by the gateway, {name}"),
            delta(gw.ok.q(q), direct.ok.q(q)),
            target,
        );
    }
    out.note(format!(
        "open loop {duration:?} per side over {CONNECTIONS} connections; latency from when each call was due; baseline = directly at the sharing service at the same rate"
    ));
    bench.stop().await;
    out
}

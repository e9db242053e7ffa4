//! `get`: `GetReport` of one GREEN report in a closed loop, through the
//! gateway and directly at the sharing service over mutual TLS, at
//! concurrency 64 (over four connections) and 1. The concurrency-64 gateway
//! rate is the gateway's peak that `latency-at-half` and `overload` reuse.
//!
//! Correct when every answer is the report asked for.

use std::sync::Arc;
use std::time::Duration;

use crate::cases::{Ctx, Peak};
use crate::load::{Fail, Op, Tally, closed_loop};
use crate::report::Outcome;
use crate::stack::{Api, Bench, Target, green};
use crate::stats::{dur, rate, ratio};

/// Connections the concurrency-64 runs spread their calls over.
pub(crate) const CONNECTIONS: usize = 4;
/// Callers of the peak run.
pub(crate) const CONCURRENCY: usize = 64;

/// A `GetReport` of `id` on one of `apis` (round robin), checking the answer.
pub(crate) fn get_op(apis: Vec<Api>, id: String) -> Op {
    let (apis, id) = (Arc::new(apis), Arc::new(id));
    Arc::new(move |i| {
        let mut api = apis[i as usize % apis.len()].clone();
        let id = id.clone();
        Box::pin(async move {
            match api.get(&id).await? {
                Some(r) if r.id == *id => Ok(()),
                Some(r) => Err(Fail::Wrong(format!("asked for {id}, got {}", r.id))),
                None => Err(Fail::Wrong(format!("asked for {id}, got no report"))),
            }
        })
    })
}

/// Publishes the report every `GetReport` run reads.
pub(crate) async fn seed(bench: &Bench) -> String {
    let mut alice = bench.api(Target::Direct, "us-alice").await;
    alice
        .publish_content(green(0))
        .await
        .expect("publish the report to read")
        .id
}

/// Checks a run's answers into `out`.
pub(crate) fn check(out: &mut Outcome, what: &str, t: &Tally, allow_exhausted: bool) {
    out.check(t.wrong == 0, || {
        format!(
            "{what}: {} wrong answers (first: {})",
            t.wrong,
            t.first_wrong.as_deref().unwrap_or("")
        )
    });
    out.check(t.other_errors() == 0, || {
        format!("{what}: errors: {}", t.other_summary())
    });
    out.check(allow_exhausted || t.exhausted.len() == 0, || {
        format!(
            "{what}: {} RESOURCE_EXHAUSTED with the rate limits lifted",
            t.exhausted.len()
        )
    });
    out.check(t.ok.len() > 0, || format!("{what}: no call succeeded"));
}

/// Runs the case.
pub(crate) async fn run(ctx: &Ctx) -> Outcome {
    let mut out = Outcome::new("get");
    let bench = Bench::spawn().await;
    let id = seed(&bench).await;
    let duration = ctx.pick(Duration::from_millis(1500), Duration::from_secs(10));
    let max = ctx.pick(400, u64::MAX);
    for (concurrency, conns) in [(CONCURRENCY, CONNECTIONS), (1, 1)] {
        let mut tallies = Vec::new();
        for target in [Target::Gateway, Target::Direct] {
            let apis = bench.apis(target, "us-bob", conns).await;
            // Warm-up: connections, caches, token verification.
            closed_loop(get_op(apis.clone(), id.clone()), concurrency, 200, duration).await;
            let t = closed_loop(get_op(apis, id.clone()), concurrency, max, duration).await;
            check(
                &mut out,
                &format!("{} c={concurrency}", target.label()),
                &t,
                false,
            );
            tallies.push(t);
        }
        let (gw, direct) = (&tallies[0], &tallies[1]);
        out.compare(
            format!("GetReport c={concurrency} calls/s"),
            rate(gw.ok_rate()),
            rate(direct.ok_rate()),
            ratio(gw.ok_rate(), direct.ok_rate()),
            if concurrency > 1 { "≥ 0.45" } else { "" },
        );
        for (q, name) in [(0.5, "p50"), (0.99, "p99")] {
            out.compare(
                format!("GetReport c={concurrency} {name}"),
                dur(gw.ok.q(q)),
                dur(direct.ok.q(q)),
                crate::stats::dratio(gw.ok.q(q), direct.ok.q(q)),
                "",
            );
        }
        if concurrency == CONCURRENCY {
            *ctx.gateway_peak.lock().expect("lock") = Some(Peak {
                rate: gw.ok_rate(),
                p99: gw.ok.p99(),
            });
        }
    }
    out.note(format!(
        "closed loop, {:?} per run after a warm-up; c=64 over {CONNECTIONS} connections, c=1 over one; principal US/bob; baseline = directly at the sharing service (gateway's workload certificate, forwarded principal)",
        duration
    ));
    bench.stop().await;
    out
}

//! `overload`: the gateway at its peak (a closed loop of `GetReport`, 64
//! callers), then an open loop offering four times that rate for a bounded
//! time. Reports the admitted calls' p99 against the at-peak p99, how fast
//! RESOURCE_EXHAUSTED refusals come back, and every other error (transport
//! errors, UNKNOWN, …), which should not happen at all.
//!
//! Correct when every successful answer is the report asked for. Other
//! errors are the defect this case measures, so they are reported, not
//! failed on.
//!
//! The gateway and the sharing service run as separate processes pinned to
//! CPU 0, the load generator (this tool) to CPU 1: offering four times the
//! gateway's peak from the gateway's own cores would measure the
//! generator's queueing. The gateway's `[load] max_in_flight` is set to
//! [`CONCURRENCY`] — sized, as an operator would, to the concurrency at
//! which this gateway reaches its peak (README, "Load shedding").

use std::time::Duration;

use crate::cases::Ctx;
use crate::cases::get::{CONCURRENCY, CONNECTIONS, get_op};
use crate::cases::half::MAX_IN_FLIGHT;
use crate::load::{closed_loop, open_loop};
use crate::pin::SelfPinned;
use crate::procs::ProcStack;
use crate::report::Outcome;
use crate::stack::green;
use crate::stats::{dratio, dur, rate};

/// Runs the case.
pub(crate) async fn run(ctx: &Ctx) -> Outcome {
    let mut out = Outcome::new("overload");
    let Some(bins) = &ctx.bins else {
        out.fail("the release binaries are not available");
        return out;
    };
    let bound = format!("max_in_flight = {CONCURRENCY}\n");
    let stack = match ProcStack::start_with(bins, &[("max_in_flight = 512\n", &bound)]).await {
        Ok(s) => s,
        Err(e) => {
            out.fail(e);
            return out;
        }
    };
    // Pinned only where there are two CPUs to split; the note says which.
    let pinned = if crate::machine::nproc() >= 2 {
        match stack.pin_servers(&[0]).and_then(|()| SelfPinned::to(&[1])) {
            Ok(p) => Some(p),
            Err(e) => {
                out.fail(format!("pinning: {e}"));
                return out;
            }
        }
    } else {
        None
    };
    let id = match stack.api("us-alice").await.publish_content(green(0)).await {
        Ok(r) => r.id,
        Err(e) => {
            out.fail(format!("publish the report to read: {e}"));
            return out;
        }
    };
    let mut apis = Vec::new();
    for _ in 0..CONNECTIONS {
        apis.push(stack.api("us-bob").await);
    }
    let peak_time = ctx.pick(Duration::from_millis(800), Duration::from_secs(5));
    closed_loop(
        get_op(apis.clone(), id.clone()),
        CONCURRENCY,
        200,
        peak_time,
    )
    .await;
    let at_peak = closed_loop(
        get_op(apis.clone(), id.clone()),
        CONCURRENCY,
        u64::MAX,
        peak_time,
    )
    .await;
    crate::cases::get::check(&mut out, "at peak", &at_peak, false);
    let offered = at_peak.ok_rate() * 4.0;
    let duration = ctx.pick(Duration::from_millis(500), Duration::from_secs(10));
    let over = open_loop(
        get_op(apis, id),
        offered,
        duration,
        MAX_IN_FLIGHT,
        Duration::from_secs(45),
    )
    .await;
    out.check(over.wrong == 0, || {
        format!(
            "{} wrong answers (first: {})",
            over.wrong,
            over.first_wrong.as_deref().unwrap_or("")
        )
    });
    let pinning = if pinned.is_some() {
        "gateway and sharing pinned to CPU 0, the load generator to CPU 1"
    } else {
        "one CPU: servers and load generator share it"
    };
    drop(pinned);
    drop(stack);

    out.compare(
        "offered vs peak calls/s",
        rate(offered),
        rate(at_peak.ok_rate()),
        Some(4.0),
        "4×",
    );
    out.compare(
        "admitted calls/s",
        rate(over.ok_rate()),
        rate(at_peak.ok_rate()),
        crate::stats::ratio(over.ok_rate(), at_peak.ok_rate()),
        "",
    );
    out.compare(
        "admitted p99 (from send)",
        dur(over.ok_sent.p99()),
        dur(at_peak.ok.p99()),
        dratio(over.ok_sent.p99(), at_peak.ok.p99()),
        "≤ 2×",
    );
    out.compare(
        "admitted p99 (from when due)",
        dur(over.ok.p99()),
        dur(at_peak.ok.p99()),
        dratio(over.ok.p99(), at_peak.ok.p99()),
        "",
    );
    out.fact(
        "RESOURCE_EXHAUSTED refusals",
        over.exhausted.len().to_string(),
        "the excess",
    );
    out.fact(
        "refusal latency p99",
        if over.exhausted.len() > 0 {
            dur(over.exhausted.p99())
        } else {
            "—".into()
        },
        "≤ 5 ms",
    );
    out.fact("other errors", over.other_errors().to_string(), "0");
    let sent =
        over.ok.len() + over.exhausted.len() + over.other_errors() + over.wrong + over.unfinished;
    out.fact(
        "calls actually sent/s",
        rate(sent as f64 / over.elapsed.as_secs_f64().max(1e-9)),
        "",
    );
    out.fact(
        "not sent / unanswered",
        format!("{} / {}", over.skipped, over.unfinished),
        "",
    );
    out.note(format!("other errors: {}", over.other_summary()));
    out.note(format!(
        "separate processes, {pinning}; gateway [load] max_in_flight = {CONCURRENCY}; peak: closed loop {peak_time:?}, {CONCURRENCY} callers over {CONNECTIONS} connections; overload: open loop {duration:?} over the same connections, at most {MAX_IN_FLIGHT} calls in flight (beyond: not sent), client timeout {:?}",
        crate::load::CALL_TIMEOUT
    ));
    out
}

//! `memory`: does the gateway's memory follow its configuration or the
//! length of its access log? The gateway and the sharing service run as
//! separate processes; `GetReport` calls (64 callers) go through the
//! gateway, and its `VmRSS` is read at milestones. The figure is the RSS
//! after the last milestone against the RSS after the first.
//!
//! Correct when every answer is the report asked for.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::cases::Ctx;
use crate::cases::get::{CONCURRENCY, CONNECTIONS, check, get_op};
use crate::load::closed_loop;
use crate::procs::ProcStack;
use crate::report::Outcome;
use crate::stack::green;
use crate::stats::{kib, rate, ratio};

fn dir_kib(path: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_kib(&e.path()) * 1024,
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total / 1024
}

/// Runs the case.
pub(crate) async fn run(ctx: &Ctx) -> Outcome {
    let mut out = Outcome::new("memory");
    let Some(bins) = &ctx.bins else {
        out.fail("the release binaries are not available");
        return out;
    };
    let milestones = ctx.pick::<&[u64]>(
        &[200, 2_000],
        &[10_000, 100_000, 250_000, 500_000, 1_000_000],
    );
    let budget = ctx.pick(Duration::from_secs(20), Duration::from_secs(600));
    let stack = match ProcStack::start(bins).await {
        Ok(s) => s,
        Err(e) => {
            out.fail(e);
            return out;
        }
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
    let started = Instant::now();
    let (mut done, mut series) = (0u64, Vec::new());
    for &m in milestones {
        let left = budget.saturating_sub(started.elapsed());
        if left.is_zero() {
            break;
        }
        let t = closed_loop(
            get_op(apis.clone(), id.clone()),
            CONCURRENCY,
            m - done,
            left,
        )
        .await;
        check(&mut out, &format!("calls up to {m}"), &t, false);
        done += t.ok.len() + t.exhausted.len() + t.other_errors() + t.wrong;
        tokio::time::sleep(Duration::from_millis(500)).await;
        series.push((done, stack.gateway_rss(), stack.sharing_rss()));
        if done < m {
            out.note(format!(
                "stopped at {done} calls: time budget {budget:?} spent"
            ));
            break;
        }
    }
    let elapsed = started.elapsed();
    let data = dir_kib(&stack.layout.data("gateway"));
    drop(apis);
    drop(stack);
    let (Some(first), Some(last)) = (series.first().copied(), series.last().copied()) else {
        out.fail("no milestone reached");
        return out;
    };
    out.compare(
        format!("gateway RSS after {} vs {} calls", last.0, first.0),
        kib(last.1 as f64),
        kib(first.1 as f64),
        ratio(last.1 as f64, first.1 as f64),
        "≤ 1.5×",
    );
    out.compare(
        format!("sharing RSS after {} vs {} calls", last.0, first.0),
        kib(last.2 as f64),
        kib(first.2 as f64),
        ratio(last.2 as f64, first.2 as f64),
        "",
    );
    out.fact("gateway data folder (access log)", kib(data as f64), "");
    out.fact(
        "calls/s over the run",
        rate(done as f64 / elapsed.as_secs_f64().max(1e-9)),
        "",
    );
    out.note(format!(
        "gateway RSS by calls: {}",
        series
            .iter()
            .map(|(n, g, _)| format!("{n}: {}", kib(*g as f64)))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    out.note(format!(
        "GetReport, {CONCURRENCY} callers over {CONNECTIONS} connections to separate orex-gateway / orex-sharing processes; VmRSS 0.5 s after each milestone"
    ));
    out
}

//! `idle-subscribers`: the gateway's memory per idle subscriber. The gateway
//! and the sharing service run as separate processes (release binaries), so
//! their resident memory (`VmRSS`) is theirs alone. Many readers subscribe,
//! each on its own TLS connection, and sit idle; the gateway's growth over
//! its warmed-up baseline, divided by the subscribers, is the figure.
//!
//! Correct when one report then reaches every subscriber exactly once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::watch;

use crate::cases::Ctx;
use crate::procs::ProcStack;
use crate::report::Outcome;
use crate::stack::{READERS, green};
use crate::stats::{kib, ratio};
use crate::subs::{self, Exactness};

/// Runs the case.
pub(crate) async fn run(ctx: &Ctx) -> Outcome {
    let mut out = Outcome::new("idle-subscribers");
    let Some(bins) = &ctx.bins else {
        out.fail("the release binaries are not available");
        return out;
    };
    let n = ctx.pick(50, 1000);
    let stack = match ProcStack::start(bins).await {
        Ok(s) => s,
        Err(e) => {
            out.fail(e);
            return out;
        }
    };
    // Warm-up: one subscriber, one report, then gone.
    let mut alice = stack.api("us-alice").await;
    {
        let mut bob = stack.api("us-bob").await;
        let mut s = bob.subscribe(None).await.expect("warm-up subscribe");
        alice
            .publish_content(green(0))
            .await
            .expect("warm-up publish");
        let _ = tokio::time::timeout(Duration::from_secs(10), s.message()).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (gw_before, sh_before) = (stack.gateway_rss(), stack.sharing_rss());

    let (stop, stop_rx) = watch::channel(false);
    let count = Arc::new(AtomicU64::new(0));
    let opened = Instant::now();
    let layout = &stack.layout;
    let subscribers: Vec<_> = futures::stream::iter(0..n)
        .map(|i| {
            let (stop_rx, count) = (stop_rx.clone(), count.clone());
            async move {
                let mut api = crate::stack::Api::Gateway(
                    crate::stack::member_client(layout, READERS[i % READERS.len()]).await,
                );
                let stream = api.subscribe(None).await?;
                // The connection lives as long as the subscriber task.
                let task = subs::collect(stream, stop_rx, Some(count), None);
                Ok::<_, tonic::Status>((api, task))
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let open_time = opened.elapsed();
    let mut tasks = Vec::new();
    let mut conns = Vec::new();
    for s in subscribers {
        match s {
            Ok((api, task)) => {
                conns.push(api);
                tasks.push(task);
            }
            Err(e) => out.fail(format!("subscribe refused: {e}")),
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (gw_after, sh_after) = (stack.gateway_rss(), stack.sharing_rss());

    let mut published = HashMap::new();
    match alice.publish_content(green(0)).await {
        Ok(r) => {
            published.insert(r.sequence, Instant::now());
        }
        Err(e) => out.fail(format!("publish failed: {e}")),
    }
    let until = Instant::now() + Duration::from_secs(20);
    while count.load(Ordering::Relaxed) < tasks.len() as u64 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop.send(true);
    let mut exact = Exactness::default();
    let mut early = None;
    for t in tasks {
        let received = t.await.expect("subscriber");
        if let Some(why) = received.early_end() {
            early.get_or_insert(why);
        }
        exact.add(&received.arrivals, &published);
    }
    if let Some(why) = early {
        out.fail(format!("a subscriber ended early: {why}"));
    }
    out.check(exact.missed == 0 && exact.extra == 0, || {
        format!(
            "{} of {n} subscribers missed the report, {} extra deliveries",
            exact.missed, exact.extra
        )
    });
    drop(conns);
    drop(stack);

    let per = |after: u64, before: u64| (after as f64 - before as f64) / n as f64;
    out.fact(
        "gateway RSS per idle subscriber",
        kib(per(gw_after, gw_before)),
        "≤ 32 KiB",
    );
    out.compare(
        "gateway RSS with vs without subscribers",
        kib(gw_after as f64),
        kib(gw_before as f64),
        ratio(gw_after as f64, gw_before as f64),
        "",
    );
    out.fact(
        "sharing RSS per idle subscriber",
        kib(per(sh_after, sh_before)),
        "",
    );
    out.note(format!(
        "{n} subscribers, each on its own TLS connection (readers of 5 members), opened in {:.1} s; RSS = VmRSS of the separate orex-gateway / orex-sharing processes, 2 s after the last subscribed, against their warmed-up baseline",
        open_time.as_secs_f64()
    ));
    out
}

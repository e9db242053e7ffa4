//! `publish`: durable `PublishReport` by 64 concurrent publishers through
//! the gateway and directly at the sharing service, against the baseline of
//! raw sled doing the same durable work: 64 tasks inserting the same
//! encoded `Report` (same value size) into a kit store and waiting for its
//! group-commit flush, as the service must before it acknowledges.
//!
//! Correct when every publish answers with a new report (no sequence twice,
//! none replayed).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orex_proto::sharing::v1::Report;
use tonic::Status;

use crate::cases::Ctx;
use crate::cases::get::check;
use crate::load::{Fail, Op, Tally, closed_loop};
use crate::report::Outcome;
use crate::stack::{Api, Bench, Target, green};
use crate::stats::{dur, rate, ratio};

/// Publishers at once.
const PUBLISHERS: usize = 64;
/// Connections they share.
const CONNECTIONS: usize = 4;

fn publish_op(apis: Vec<Api>, sample: Arc<Mutex<Option<Report>>>) -> Op {
    let apis = Arc::new(apis);
    let seen: Arc<Mutex<HashSet<u64>>> = Arc::default();
    Arc::new(move |i| {
        let mut api = apis[i as usize % apis.len()].clone();
        let (seen, sample) = (seen.clone(), sample.clone());
        Box::pin(async move {
            let resp = api.publish(orex_e2e::publish_request(green(0))).await?;
            let Some(report) = resp.report else {
                return Err(Fail::Wrong("publish answered without a report".into()));
            };
            if resp.replayed {
                return Err(Fail::Wrong(format!(
                    "fresh request {i} answered as a replay"
                )));
            }
            if !seen.lock().expect("lock").insert(report.sequence) {
                return Err(Fail::Wrong(format!(
                    "sequence {} given twice",
                    report.sequence
                )));
            }
            sample.lock().expect("lock").get_or_insert(report);
            Ok(())
        })
    })
}

fn sled_op(store: orex_kit::store::Store, tree: sled::Tree, value: Arc<Vec<u8>>) -> Op {
    Arc::new(move |i| {
        let (store, tree, value) = (store.clone(), tree.clone(), value.clone());
        Box::pin(async move {
            let key = uuid::Uuid::now_v7();
            tree.insert(key.as_bytes(), value.as_slice())
                .map_err(|e| Status::internal(e.to_string()))?;
            store
                .durable()
                .await
                .map_err(|e| Status::internal(format!("flush {i}: {e}")))?;
            Ok(())
        })
    })
}

/// Runs the case.
pub(crate) async fn run(ctx: &Ctx) -> Outcome {
    let mut out = Outcome::new("publish");
    let duration = ctx.pick(Duration::from_secs(1), Duration::from_secs(10));
    let max = ctx.pick(300, u64::MAX);
    let bench = Bench::spawn().await;
    let sample = Arc::new(Mutex::new(None));
    let mut runs: Vec<Tally> = Vec::new();
    for target in [Target::Gateway, Target::Direct] {
        let apis = bench.apis(target, "us-alice", CONNECTIONS).await;
        closed_loop(publish_op(apis.clone(), sample.clone()), 8, 50, duration).await;
        let t = closed_loop(publish_op(apis, sample.clone()), PUBLISHERS, max, duration).await;
        check(&mut out, target.label(), &t, false);
        runs.push(t);
    }
    bench.stop().await;
    let report = sample.lock().expect("lock").take().unwrap_or_default();
    let value = Arc::new(orex_kit::store::encode_value(&report));
    let dir = tempfile::tempdir().expect("temp dir");
    let store = crate::compat::open_store(dir.path());
    let tree = store.tree("reports").expect("tree");
    let raw = closed_loop(
        sled_op(store.clone(), tree, value.clone()),
        PUBLISHERS,
        max,
        duration,
    )
    .await;
    check(&mut out, "raw sled", &raw, false);
    drop(store);
    let (gw, direct) = (&runs[0], &runs[1]);
    out.compare(
        "gateway publishes/s vs raw sled",
        rate(gw.ok_rate()),
        rate(raw.ok_rate()),
        ratio(gw.ok_rate(), raw.ok_rate()),
        "≥ 0.3",
    );
    out.compare(
        "direct publishes/s vs raw sled",
        rate(direct.ok_rate()),
        rate(raw.ok_rate()),
        ratio(direct.ok_rate(), raw.ok_rate()),
        "",
    );
    out.compare(
        "gateway publishes/s vs direct",
        rate(gw.ok_rate()),
        rate(direct.ok_rate()),
        ratio(gw.ok_rate(), direct.ok_rate()),
        "",
    );
    out.compare(
        "publish p99 gateway vs direct",
        dur(gw.ok.p99()),
        dur(direct.ok.p99()),
        crate::stats::dratio(gw.ok.p99(), direct.ok.p99()),
        "",
    );
    out.fact("raw sled insert+flush p99", dur(raw.ok.p99()), "");
    out.note(format!(
        "{PUBLISHERS} publishers, closed loop {duration:?} each; gateway and direct over {CONNECTIONS} connections as US/alice; raw sled: the same encoded Report ({} bytes) inserted under a fresh key by {PUBLISHERS} tasks, each waiting for the kit store's group-commit flush",
        value.len()
    ));
    out
}

//! `verify`: `orex audit verify` over a large access log. The log is built
//! by appending records through the running gateway's own access log from
//! many concurrent tasks (each append durable, as in the request path), a
//! checkpoint is signed, and then the released `orex` binary verifies it as
//! an auditor would (bundle `us-oversight`, the dev audit public key) in its
//! own process, whose peak memory (`VmHWM`) is sampled while it runs.
//!
//! Baseline: the hash chain recomputed in this process over the same
//! records read straight from the store — the work verification cannot
//! avoid. Correct when the CLI verifies the log (exit 0, "OK").

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use orex_proto::audit::v1::{AccessDecision, AccessRecord, AccessRecordKind};

use crate::cases::Ctx;
use crate::procs::proc_kib;
use crate::report::Outcome;
use crate::stack::Bench;
use crate::stats::{kib, rate, ratio};

/// Concurrent appenders building the log.
const APPENDERS: u64 = 256;

fn record(i: u64) -> AccessRecord {
    let decision = i.is_multiple_of(2);
    AccessRecord {
        kind: if decision {
            AccessRecordKind::Decision
        } else {
            AccessRecordKind::Outcome
        } as i32,
        time: Some(SystemTime::now().into()),
        member: "US".into(),
        subject: "bob".into(),
        certificate_fingerprint: format!("{:064x}", i / 2),
        token_id: uuid::Uuid::new_v4().to_string(),
        method: "/orex.sharing.v1.SharingService/GetReport".into(),
        resource_ids: vec![uuid::Uuid::now_v7().to_string()],
        decision: AccessDecision::Allow as i32,
        reason: if decision {
            "allowed: role reader may call orex.sharing.v1.SharingService/GetReport".into()
        } else {
            "completed".into()
        },
        grpc_status_code: (!decision).then_some(0),
        duration: (!decision).then_some(prost_types::Duration {
            seconds: 0,
            nanos: 250_000,
        }),
        ..Default::default()
    }
}

/// Runs the case.
pub(crate) async fn run(ctx: &Ctx) -> Outcome {
    let mut out = Outcome::new("verify");
    let Some(bins) = &ctx.bins else {
        out.fail("the release binaries are not available");
        return out;
    };
    let n = ctx.pick(4_000u64, 1_000_000);
    let bench = Bench::spawn().await;
    let log = bench.stack.audit_log().clone();

    // Build the log.
    let built = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::<Result<(), String>>::new();
    for _ in 0..APPENDERS {
        let (log, next) = (log.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok(());
                }
                log.append(record(i)).await.map_err(|e| e.to_string())?;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        if let Ok(Err(e)) = r {
            out.fail(format!("append failed: {e}"));
        }
    }
    let build_time = built.elapsed();
    if let Err(e) = log.checkpoint().await {
        out.fail(format!("checkpoint failed: {e}"));
    }
    let size = log.size();

    // Baseline: the chain recomputed in process.
    let chained = Instant::now();
    let (mut prev, mut checked) = (orex_gateway::audit::log::ZERO_HASH.to_owned(), 0u64);
    let mut start = 0;
    'chain: while start < size {
        let end = (start + 10_000).min(size);
        let records = match crate::compat::read_records(&log, start, end) {
            Ok(r) => r,
            Err(e) => {
                out.fail(format!("read records {start}..{end}: {e}"));
                break;
            }
        };
        for r in &records {
            let content = orex_gateway::audit::log::content_hash(r);
            let link = orex_gateway::audit::log::link_hash(&prev, &content);
            if r.prev_hash != prev || content != r.content_hash || link.as_ref() != Some(&r.hash) {
                out.fail(format!("record {} does not chain", r.index));
                break 'chain;
            }
            prev = r.hash.clone();
            checked += 1;
        }
        start = end;
    }
    let chain_rate = checked as f64 / chained.elapsed().as_secs_f64().max(1e-9);

    // The auditor's command, in its own process.
    let layout = bench.layout();
    let mut child = match tokio::process::Command::new(bins.path("orex"))
        .arg("audit")
        .arg("--bundle")
        .arg(layout.bundle("us-oversight"))
        .arg("verify")
        .arg("--public-key")
        .arg(layout.audit_keys().1)
        // Every run is a new log: keep no state across runs.
        .arg("--no-state")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            out.fail(format!("start orex: {e}"));
            bench.stop().await;
            return out;
        }
    };
    let pid = child.id().unwrap_or(0);
    let verified = Instant::now();
    let (mut hwm, mut rss_max) = (0u64, 0u64);
    let cap = ctx.pick(Duration::from_secs(30), Duration::from_secs(600));
    let status = loop {
        hwm = hwm.max(proc_kib(pid, "VmHWM").unwrap_or(0));
        rss_max = rss_max.max(proc_kib(pid, "VmRSS").unwrap_or(0));
        match tokio::time::timeout(Duration::from_millis(20), child.wait()).await {
            Ok(s) => break s.ok(),
            Err(_) if verified.elapsed() > cap => {
                let _ = child.kill().await;
                out.fail(format!("orex audit verify did not finish within {cap:?}"));
                break None;
            }
            Err(_) => {}
        }
    };
    let verify_time = verified.elapsed();
    let output = child.wait_with_output().await.ok();
    let stdout = output
        .as_ref()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let stderr = output
        .as_ref()
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .unwrap_or_default();
    let ok = status.is_some_and(|s| s.success()) && stdout.contains("OK:");
    out.check(ok, || {
        format!(
            "orex audit verify did not verify the log ({status:?}): {} {}",
            stdout.trim(),
            stderr.trim()
        )
    });
    bench.stop().await;

    let cli_rate = size as f64 / verify_time.as_secs_f64().max(1e-9);
    out.compare(
        format!("orex audit verify, {size} records"),
        rate(cli_rate),
        rate(chain_rate),
        ratio(cli_rate, chain_rate),
        "≥ 200k/s",
    );
    out.fact(
        "verify wall time",
        format!("{:.2} s", verify_time.as_secs_f64()),
        "",
    );
    out.fact(
        "verify peak RSS (VmHWM)",
        kib(hwm.max(rss_max) as f64),
        "flat in N",
    );
    out.fact(
        "log built at (durable appends)",
        rate(n as f64 / build_time.as_secs_f64().max(1e-9)),
        "",
    );
    out.note(format!(
        "log: {n} records appended by {APPENDERS} concurrent tasks through the gateway's access log, then one signed checkpoint; verify: `orex audit --bundle us-oversight verify --public-key audit-signing.pub.pem` as a separate process through the in-process gateway; baseline = the hash chain recomputed in process over the same records read from the store; verify said: {}",
        stdout.lines().next().unwrap_or("").trim()
    ));
    out
}

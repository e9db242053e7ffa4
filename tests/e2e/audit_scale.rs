//! The access log at scale: every audit answer stays within its byte budget
//! however large the records, paging hands out every record exactly once,
//! and `orex audit verify` streams through a log of many pages and still
//! catches tampering and truncation. The ignored tests measure: record sizes
//! per call, and verify over a million records (rate and the verifier's peak
//! memory, in a process of its own).

use std::path::Path;
use std::time::{Instant, SystemTime};

use orex_cli::bundle::{AuditClient, Connection};
use orex_cli::commands::audit::{
    AuditCommand, ExportFormat, FilterArgs, read_public_key, verify_log,
};
use orex_e2e::{Stack, content, publish};
use orex_gateway::audit::verify::{KeptCheckpoint, Problem, Verification};
use orex_gateway::audit::{AuditLog, MAX_RANGE_RECORDS, PAGE_BYTES};
use orex_kit::store::{decode_value, encode_value};
use orex_proto::audit::v1::{
    AccessDecision, AccessRecord, AccessRecordFilter, AccessRecordKind, GetRecordRangeRequest,
    QueryAccessRecordsRequest,
};
use orex_proto::common::v1::Marking;
use orex_proto::sharing::v1::{GetReportRequest, SubscribeReportsRequest};
use prost::Message;

const SUBSCRIBE: &str = "/orex.sharing.v1.SharingService/SubscribeReports";
const GET_REPORT: &str = "/orex.sharing.v1.SharingService/GetReport";
const GET_RECORD_RANGE: &str = "/orex.audit.v1.AuditService/GetRecordRange";

async fn auditor(stack: &Stack, bundle: &str) -> AuditClient {
    Connection::open(&stack.bundle(bundle))
        .await
        .unwrap()
        .audit()
}

/// What `orex audit verify` concludes, as `bundle`.
async fn verify(stack: &Stack, bundle: &str, kept: Option<KeptCheckpoint>) -> Verification {
    let client = auditor(stack, bundle).await;
    let key = read_public_key(&stack.layout.audit_keys().1).unwrap();
    verify_log(&client, &key, kept, |_| {}).await.unwrap()
}

/// A stream's OUTCOME naming `ids` delivered reports (UUIDs, as the sharing
/// service issues them): ~38 bytes a report.
fn stream_outcome(n: u64, ids: usize) -> AccessRecord {
    AccessRecord {
        kind: AccessRecordKind::Outcome as i32,
        time: Some(SystemTime::now().into()),
        member: "US".into(),
        subject: "bulk".into(),
        method: SUBSCRIBE.into(),
        resource_ids: (0..ids)
            .map(|i| format!("0191c7a2-{:04x}-7000-8000-{:012x}", n % 0x10000, i))
            .collect(),
        decision: AccessDecision::Allow as i32,
        reason: format!("stream delivered {ids} events, withheld 0"),
        grpc_status_code: Some(0),
        duration: Some(prost_types::Duration {
            seconds: 3600,
            nanos: 1,
        }),
        decision_index: Some(n),
        ..Default::default()
    }
}

/// Appends `records` concurrently, as the gateway's calls do.
async fn append_all(log: &AuditLog, records: impl IntoIterator<Item = AccessRecord>) {
    let appends = records.into_iter().map(|r| log.append(r));
    for appended in futures::future::join_all(appends).await {
        appended.unwrap();
    }
}

#[tokio::test]
async fn audit_pages_stay_within_the_byte_budget_and_hand_out_every_record_once() {
    let stack = Stack::spawn().await;
    let log = stack.audit_log();
    append_all(log, (0..60).map(|n| stream_outcome(n, 1000))).await;
    // One record over the whole budget, which only a direct append can make
    // (the gateway's largest is ~135 KB): it is served alone.
    let mut huge = stream_outcome(60, 0);
    huge.resource_ids = vec!["x".repeat(128); 12_000];
    let huge = log.append(huge).await.unwrap();
    append_all(log, (61..90).map(|n| stream_outcome(n, 1000))).await;
    let size = log.size();
    let mut oversight = auditor(&stack, "us-oversight").await;

    // GetRecordRange: short answers, continued from the last index + 1.
    let (mut next, mut answers) = (0, 0);
    while next < size {
        let page = oversight
            .get_record_range(GetRecordRangeRequest {
                start_index: next,
                end_index: next + MAX_RANGE_RECORDS,
            })
            .await
            .unwrap()
            .into_inner();
        answers += 1;
        let bytes = page.encoded_len();
        assert!(!page.records.is_empty(), "every answer makes progress");
        if page.records.iter().any(|r| r.index == huge.index) {
            assert_eq!(page.records.len(), 1, "the oversized record comes alone");
        } else {
            assert!(bytes <= PAGE_BYTES, "{bytes} bytes from index {next}");
        }
        for r in &page.records {
            assert_eq!(r.index, next, "every record once, in order");
            next += 1;
        }
    }
    assert!(answers >= 5, "{answers} answers for ~3.5 MB of records");

    // QueryAccessRecords: pages cut by bytes, every match exactly once.
    let filter = AccessRecordFilter {
        subject: "bulk".into(),
        ..Default::default()
    };
    let (mut seen, mut token) = (Vec::new(), String::new());
    loop {
        let page = oversight
            .query_access_records(QueryAccessRecordsRequest {
                filter: Some(filter.clone()),
                page_size: 1000,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        let bytes = page.encoded_len();
        assert!(
            bytes <= PAGE_BYTES || page.records.len() == 1,
            "{bytes} bytes in {} records",
            page.records.len()
        );
        seen.extend(page.records.iter().map(|r| r.index));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        seen,
        (0..90).collect::<Vec<_>>(),
        "every match once, in order"
    );
    stack.stop().await;
}

#[tokio::test]
async fn export_writes_a_log_of_many_pages_page_by_page() {
    let stack = Stack::spawn().await;
    append_all(stack.audit_log(), (0..80).map(|n| stream_outcome(n, 1000))).await;
    let out = stack.layout.data("export.jsonl");
    orex_cli::commands::audit::run(
        &stack.bundle("us-oversight"),
        AuditCommand::Export {
            filter: FilterArgs {
                subject: Some("bulk".into()),
                member: None,
                method: None,
                resource: None,
                decision: None,
                since: None,
                until: None,
            },
            format: ExportFormat::Jsonl,
            output: Some(out.clone()),
        },
    )
    .await
    .unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    let indices: Vec<u64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["index"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(
        indices,
        (0..80).collect::<Vec<_>>(),
        "~3 MB over several pages"
    );
    stack.stop().await;
}

/// The gateway's store, opened while the gateway is stopped.
fn store(stack: &Stack) -> sled::Db {
    sled::open(stack.layout.data("gateway")).unwrap()
}

/// Rewrites record `index` in place (its hashes left as they were) and
/// returns the original bytes.
fn change_record(stack: &Stack, index: u64) -> sled::IVec {
    let db = store(stack);
    let records = db.open_tree("audit_records").unwrap();
    let key = (index + 1).to_be_bytes();
    let original = records.get(key).unwrap().unwrap();
    let mut r: AccessRecord = decode_value(&original).unwrap();
    r.reason = "nothing to see here".into();
    records.insert(key, encode_value(&r)).unwrap();
    db.flush().unwrap();
    original
}

fn restore_record(stack: &Stack, index: u64, original: sled::IVec) {
    let db = store(stack);
    let records = db.open_tree("audit_records").unwrap();
    records.insert((index + 1).to_be_bytes(), original).unwrap();
    db.flush().unwrap();
}

/// Deletes every record from `size` on, and with `checkpoints` also every
/// checkpoint covering more than `size` records.
fn truncate(stack: &Stack, size: u64, checkpoints: bool) {
    let db = store(stack);
    let records = db.open_tree("audit_records").unwrap();
    for key in records.range((size + 1).to_be_bytes()..) {
        records.remove(key.unwrap().0).unwrap();
    }
    if checkpoints {
        let signed = db.open_tree("audit_checkpoints").unwrap();
        for key in signed.range((size + 1).to_be_bytes()..) {
            signed.remove(key.unwrap().0).unwrap();
        }
    }
    db.flush().unwrap();
}

/// `orex audit verify --state <state>` as us-oversight.
async fn cli_verify(stack: &Stack, state: &Path) -> Result<(), orex_cli::CliError> {
    orex_cli::commands::audit::run(
        &stack.bundle("us-oversight"),
        AuditCommand::Verify {
            public_key: stack.layout.audit_keys().1,
            expect_full_scope: true,
            state: Some(state.to_owned()),
            no_state: false,
        },
    )
    .await
}

/// A log of `records` big stream outcomes (~38 KB each) with a signed
/// checkpoint after the first half and one at the end. Returns the size the
/// first checkpoint covers.
async fn many_pages(stack: &Stack, records: u64) -> u64 {
    let half = records / 2;
    append_all(
        stack.audit_log(),
        (0..half).map(|n| stream_outcome(n, 1000)),
    )
    .await;
    stack.audit_log().checkpoint().await.unwrap();
    let first_checkpoint = stack.audit_log().size();
    append_all(
        stack.audit_log(),
        (half..records).map(|n| stream_outcome(n, 1000)),
    )
    .await;
    stack.audit_log().checkpoint().await.unwrap();
    first_checkpoint
}

#[tokio::test]
async fn verify_streams_a_log_of_many_pages_and_still_catches_tampering_and_truncation() {
    let mut stack = Stack::spawn().await;
    let first_checkpoint = many_pages(&stack, 240).await;

    let v = verify(&stack, "us-oversight", None).await;
    assert_eq!(v.problem, None);
    assert!(v.records >= 240 && v.checkpoints >= 2, "{v:?}");
    let log = stack.audit_log();
    let range_calls = log
        .range(0, log.size())
        .unwrap()
        .iter()
        .filter(|r| r.method == GET_RECORD_RANGE && r.kind() == AccessRecordKind::Decision)
        .count();
    assert!(range_calls >= 8, "{range_calls} pages for ~9 MB of records");
    // A member's auditor follows the chain across redacted copies.
    let jp = verify(&stack, "jp-audit", None).await;
    assert_eq!(jp.problem, None);
    assert!(jp.redacted >= 240);
    let kept = v.newest.expect("a checkpoint to keep");
    // The command itself keeps the newest checkpoint for the next run.
    let state = stack.layout.data("kept.json");
    cli_verify(&stack, &state).await.unwrap();
    assert!(state.exists());

    // A record changed deep in the log, pages after the first.
    stack.stop_gateway().await;
    let target = 170;
    let original = change_record(&stack, target);
    stack.start_gateway().await;
    let v = verify(&stack, "us-oversight", None).await;
    assert_eq!(v.problem, Some(Problem::Hash { index: target }));
    stack.stop_gateway().await;
    restore_record(&stack, target, original);

    // Truncated, with the checkpoints that would betray it deleted: the
    // chain verifies up to the older checkpoint, and only the checkpoint
    // the auditor kept exposes the cut.
    truncate(&stack, first_checkpoint + 30, true);
    // The gateway would refuse this log (its witness); someone who moved
    // the witness aside could still serve it: the auditor's checks must hold.
    stack.discard_audit_witness();
    stack.start_gateway().await;
    let v = verify(&stack, "us-oversight", Some(kept)).await;
    assert_eq!(v.problem, None);
    assert!(v.checkpoints >= 1);
    assert_eq!(v.kept, Some(false));
    cli_verify(&stack, &state)
        .await
        .expect_err("the command fails on the kept checkpoint");
    stack.stop().await;
}

#[tokio::test]
async fn a_log_truncated_below_a_checkpoint_its_store_holds_is_refused_at_start() {
    let mut stack = Stack::spawn().await;
    let first_checkpoint = many_pages(&stack, 240).await;
    stack.stop_gateway().await;
    let cut = first_checkpoint + 30;
    truncate(&stack, cut, false);
    // Witness or not: the store's own newest checkpoint betrays the cut.
    // (The verifier's answer to such a log, `Problem::Missing`, is tested
    // in gateway/src/audit/verify.rs.)
    for discard in [false, true] {
        if discard {
            stack.discard_audit_witness();
        }
        let err = stack.try_start_gateway().await.expect_err("refused");
        assert!(
            err.to_string().contains(&format!("holds {cut} records")),
            "{err}"
        );
    }
    stack.stop().await;
}

/// Encoded size of `r` as stored and served.
fn bytes(r: &AccessRecord) -> usize {
    r.encoded_len()
}

/// Prints the records one call left: its DECISION, then its OUTCOMEs.
fn print_call(what: &str, records: &[AccessRecord], decision: &AccessRecord) {
    let outcomes: Vec<&AccessRecord> = records
        .iter()
        .filter(|r| r.decision_index == Some(decision.index))
        .collect();
    let total = bytes(decision) + outcomes.iter().map(|r| bytes(r)).sum::<usize>();
    println!("{what}: {} records, {total} bytes", 1 + outcomes.len());
    println!("  DECISION {} bytes", bytes(decision));
    for r in outcomes {
        println!(
            "  OUTCOME  {} bytes ({} ids, owners {:?})",
            bytes(r),
            r.resource_ids.len(),
            r.resource_owner_members
        );
    }
}

#[tokio::test]
#[ignore = "measurement: cargo test -p orex-e2e --test e2e audit_scale::record_sizes -- --ignored --nocapture"]
async fn record_sizes_per_call() {
    const EVENTS: usize = 5;
    let stack = Stack::spawn().await;
    let mut alice = stack.client("us-alice").await;
    let mut dora = stack.client("de-dora").await;
    let mut events = dora
        .subscribe_reports(SubscribeReportsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut ids = Vec::new();
    for _ in 0..EVENTS {
        ids.push(
            publish(&mut alice, content(Marking::Green, &[], &[]))
                .await
                .id,
        );
    }
    for _ in 0..EVENTS {
        events.message().await.unwrap().unwrap();
    }
    drop(events);
    let read = |id: &str| GetReportRequest {
        report_id: id.to_owned(),
        version: 0,
    };
    dora.get_report(read(&ids[0])).await.unwrap();
    alice.get_report(read(&ids[1])).await.unwrap();
    // Hang guard only: the stream's outcome is written once the gateway
    // notices the client left.
    let records = orex_e2e::within(20, async {
        loop {
            let log = stack.audit_log();
            let all = log.range(0, log.size()).unwrap();
            let closed = all
                .iter()
                .any(|r| r.method == SUBSCRIBE && r.kind() == AccessRecordKind::Outcome);
            if closed {
                return all;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    let decision = |method: &str, subject: &str| {
        records
            .iter()
            .find(|r| {
                r.method == method && r.subject == subject && r.kind() == AccessRecordKind::Decision
            })
            .unwrap_or_else(|| panic!("{method} by {subject}"))
    };
    print_call(
        "GetReport of another member's report",
        &records,
        decision(GET_REPORT, "dora"),
    );
    print_call(
        "GetReport of one's own member's report",
        &records,
        decision(GET_REPORT, "alice"),
    );
    let stream = decision(SUBSCRIBE, "dora");
    print_call(
        &format!("SubscribeReports delivering {EVENTS} reports"),
        &records,
        stream,
    );
    let per_id = ids[0].len() + 2;
    println!("  each delivered report id adds {per_id} bytes to the stream's OUTCOME(s)");
    println!(
        "a redacted copy: {} bytes",
        bytes(&orex_gateway::audit::log::redacted(stream))
    );
    stack.stop().await;
}

/// Peak resident memory of this process (`VmHWM`), in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// CPU time this process has used so far (user + system), in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces): state is the
    // first, utime and stime the 12th and 13th, in clock ticks (100 a second
    // on Linux).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// A typical record: a GetReport's DECISION or OUTCOME (of another member's
/// report), with one stream OUTCOME of 1,000 reports in every 1,000 records.
fn typical(n: u64) -> AccessRecord {
    if n % 1000 == 999 {
        return stream_outcome(n, 1000);
    }
    let decision = n.is_multiple_of(2);
    AccessRecord {
        kind: if decision {
            AccessRecordKind::Decision
        } else {
            AccessRecordKind::Outcome
        } as i32,
        time: Some(SystemTime::now().into()),
        member: "DE".into(),
        subject: "dora".into(),
        // Outcomes leave these to their decision.
        certificate_fingerprint: if decision {
            "cd".repeat(32)
        } else {
            String::new()
        },
        token_id: if decision {
            format!("{:0>36}", n / 2)
        } else {
            String::new()
        },
        method: GET_REPORT.into(),
        resource_ids: vec![format!("0191c7a2-0000-7000-8000-{:012x}", n / 2)],
        decision: AccessDecision::Allow as i32,
        reason: if decision {
            "allowed: role reader may call orex.sharing.v1.SharingService/GetReport".into()
        } else {
            "completed".into()
        },
        grpc_status_code: (!decision).then_some(0),
        duration: (!decision).then_some(prost_types::Duration {
            seconds: 0,
            nanos: 812_345,
        }),
        decision_index: (!decision).then_some(n - 1),
        resource_owner_members: if decision { vec![] } else { vec!["US".into()] },
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: cargo test --release -p orex-e2e --test e2e audit_scale::a_million -- --ignored --nocapture (OREX_AUDIT_SCALE_RECORDS, OREX_AUDIT_SCALE_CLI)"]
async fn a_million_record_log_verifies_in_flat_memory() {
    let total: u64 = std::env::var("OREX_AUDIT_SCALE_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let stack = Stack::spawn().await;
    // Measure verify, not the dev policy's 100 reads/s (verify would wait).
    stack.edit_policy(|p| {
        format!(
            "{p}\n[rate_limits.members.US]\nread = {{ per_minute = 6000000, burst = 100000 }}\n"
        )
    });
    stack.policy().reload().unwrap();

    let started = Instant::now();
    const WRITERS: u64 = 512;
    let writers = (0..WRITERS).map(|w| {
        let log = stack.audit_log().clone();
        tokio::spawn(async move {
            let mut n = w;
            while n < total {
                log.append(typical(n)).await.unwrap();
                n += WRITERS;
            }
        })
    });
    for w in futures::future::join_all(writers).await {
        w.unwrap();
    }
    stack.audit_log().checkpoint().await.unwrap();
    let appended = started.elapsed().as_secs_f64();
    println!(
        "appended {total} records from {WRITERS} tasks in {appended:.1} s ({:.0} records/s)",
        total as f64 / appended
    );

    // The verifier runs in a process of its own (this test binary, running
    // `verifier_process`), so its peak memory is its own.
    let bundle = stack.bundle("us-oversight");
    let key = stack.layout.audit_keys().1;
    let gateway_cpu = cpu_seconds();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "audit_scale::verifier_process",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .env("OREX_AUDIT_SCALE_BUNDLE", bundle)
            .env("OREX_AUDIT_SCALE_KEY", key)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("VERIFIER"))
        .unwrap_or_else(|| panic!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    println!("{line}");
    println!(
        "gateway (this process) used {:.2} s of CPU while serving the verifier",
        cpu_seconds() - gateway_cpu
    );
    assert!(line.contains("problem=None"), "{line}");

    // The real command too, when given (`OREX_AUDIT_SCALE_CLI=target/release/orex`),
    // under /usr/bin/time for its wall time and peak RSS.
    if let Ok(orex) = std::env::var("OREX_AUDIT_SCALE_CLI") {
        let bundle = stack.bundle("us-oversight");
        let key = stack.layout.audit_keys().1;
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new("/usr/bin/time")
                .args([
                    "-f",
                    "orex audit verify: %e s wall, %U s user, %S s system, peak RSS %M KiB",
                ])
                .arg(orex)
                .args(["audit", "verify", "--bundle"])
                .arg(bundle)
                .arg("--public-key")
                .arg(key)
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        print!("{}", String::from_utf8_lossy(&out.stdout));
        print!("{}", String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success());
    }
    stack.stop().await;
}

#[test]
#[ignore = "the verifier side of a_million_record_log_verifies_in_flat_memory"]
fn verifier_process() {
    let (Ok(bundle), Ok(key)) = (
        std::env::var("OREX_AUDIT_SCALE_BUNDLE"),
        std::env::var("OREX_AUDIT_SCALE_KEY"),
    ) else {
        return; // run on its own: nothing to verify
    };
    orex_kit::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = Connection::open(Path::new(&bundle)).await.unwrap().audit();
        let key = read_public_key(Path::new(&key)).unwrap();
        let at_start = peak_rss_kib();
        let mut samples = Vec::new();
        let mut next_sample = 100_000;
        let started = Instant::now();
        let v = verify_log(&client, &key, None, |records| {
            if records >= next_sample {
                samples.push(format!("{}k:{}", records / 1000, peak_rss_kib()));
                next_sample += 100_000;
            }
        })
        .await
        .unwrap();
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "VERIFIER records={} checkpoints={} seconds={seconds:.2} cpu_seconds={:.2} records_per_s={:.0} \
             peak_rss_kib_at_start={at_start} peak_rss_kib_by_records=[{}] peak_rss_kib_end={} problem={:?}",
            v.records,
            v.checkpoints,
            cpu_seconds(),
            v.records as f64 / seconds,
            samples.join(" "),
            peak_rss_kib(),
            v.problem,
        );
    });
}

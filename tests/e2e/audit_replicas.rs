//! Two gateway replicas in front of the same services, each with its own
//! access-log chain (its own log id, one signing key): `orex audit
//! query|verify|export --replicas …` reads every replica's log at its own
//! address, verifies each against its own kept checkpoint, and names the
//! replica whose log fails.

use std::net::SocketAddr;
use std::path::Path;

use orex_cli::commands::audit::{
    AuditCommand, ExportFormat, FilterArgs, StateChoice, VerifyOptions, export_replicas,
    open_replicas, query_replicas, run_on, verify_replicas,
};
use orex_e2e::{SECOND_LOG_ID, Stack, content, lose_audit_tail_in, publish};
use orex_kit::store::{decode_value, encode_value};
use orex_proto::audit::v1::{AccessRecord, AccessRecordFilter};
use orex_proto::common::v1::Marking;
use orex_proto::sharing::v1::{GetReportRequest, ListReportsRequest};

const FIRST_LOG_ID: &str = "orex-gateway/dev";
const PUBLISH: &str = "/orex.sharing.v1.SharingService/PublishReport";
const GET_REPORT: &str = "/orex.sharing.v1.SharingService/GetReport";

/// A stack with a second gateway replica; a report published through the
/// first and read through the second; both logs signed. Returns the
/// `--replicas` values of both.
async fn two_replicas_with_traffic() -> (Stack, Vec<String>) {
    let mut stack = Stack::spawn().await;
    let second = stack.start_second_gateway().await;
    let mut alice = stack.client("us-alice").await;
    let report = publish(&mut alice, content(Marking::Green, &[], &[])).await;
    let mut kenji = stack.client_at(second, "jp-kenji").await;
    let got = kenji
        .get_report(GetReportRequest {
            report_id: report.id.clone(),
            version: 0,
        })
        .await
        .expect("the second replica serves the same sharing service")
        .into_inner();
    assert_eq!(got.report.unwrap().id, report.id);
    sign_both(&stack).await;
    let targets = vec![stack.gateway_addr.to_string(), second.to_string()];
    (stack, targets)
}

async fn sign_both(stack: &Stack) {
    stack.audit_log().checkpoint().await.unwrap();
    stack.second_audit_log().checkpoint().await.unwrap();
}

fn options(stack: &Stack, state: &Path) -> VerifyOptions {
    VerifyOptions {
        public_key: stack.layout.audit_keys().1,
        expect_full_scope: true,
        state: StateChoice::File(state.to_owned()),
    }
}

fn no_filter() -> FilterArgs {
    FilterArgs {
        member: None,
        subject: None,
        method: None,
        resource: None,
        decision: None,
        since: None,
        until: None,
    }
}

/// `orex audit --replicas … verify --state <state> --expect-full-scope` as
/// us-oversight, as the command runs it.
async fn cli_verify(
    stack: &Stack,
    targets: &[String],
    state: &Path,
) -> Result<(), orex_cli::CliError> {
    run_on(
        &stack.bundle("us-oversight"),
        targets,
        AuditCommand::Verify {
            public_key: stack.layout.audit_keys().1,
            expect_full_scope: true,
            state: Some(state.to_owned()),
            no_state: false,
        },
    )
    .await
}

/// A plain TCP forwarder to `to`: a second address of the same replica (as
/// a name resolving to a pod's IPv4 and IPv6 addresses gives).
async fn second_address_of(to: SocketAddr) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replicas_log_is_queried_exported_and_verified_on_its_own() {
    let (stack, targets) = two_replicas_with_traffic().await;
    let bundle = stack.bundle("us-oversight");

    // The first replica also at a second address: one log, read once.
    let mut with_alias = targets.clone();
    with_alias.push(second_address_of(stack.gateway_addr).await.to_string());
    let replicas = open_replicas(&bundle, &with_alias).await.unwrap();
    assert!(
        replicas.unreachable.is_empty(),
        "{:?}",
        replicas.unreachable
    );
    let ids: Vec<_> = replicas
        .reached
        .iter()
        .map(|r| r.log_id.clone().unwrap())
        .collect();
    assert_eq!(ids, [FIRST_LOG_ID, SECOND_LOG_ID]);
    assert_eq!(replicas.reached[0].addresses.len(), 2, "the alias");
    assert_eq!(replicas.reached[1].address(), stack.second_gateway_addr());
    let replicas = replicas.reached;

    // query: one timeline, each record labelled with its log.
    let records = query_replicas(&replicas, &AccessRecordFilter::default(), 10_000)
        .await
        .unwrap();
    let of = |log: &str, method: &str| {
        records
            .iter()
            .filter(|r| r.log_id.as_deref() == Some(log) && r.record.method == method)
            .count()
    };
    assert!(
        of(FIRST_LOG_ID, PUBLISH) > 0,
        "the publish, in the first log"
    );
    assert!(of(SECOND_LOG_ID, GET_REPORT) > 0, "the read, in the second");
    assert_eq!(of(FIRST_LOG_ID, GET_REPORT), 0);
    assert_eq!(of(SECOND_LOG_ID, PUBLISH), 0);
    let times: Vec<_> = records
        .iter()
        .map(|r| {
            let t = r.record.time.unwrap();
            (t.seconds, t.nanos)
        })
        .collect();
    assert!(times.is_sorted(), "merged oldest first");
    let limited = query_replicas(&replicas, &AccessRecordFilter::default(), 3)
        .await
        .unwrap();
    assert_eq!(limited.len(), 3, "the limit counts all logs together");
    assert_eq!(
        limited
            .iter()
            .map(|r| r.record.hash.clone())
            .collect::<Vec<_>>(),
        records[..3]
            .iter()
            .map(|r| r.record.hash.clone())
            .collect::<Vec<_>>()
    );

    // export: one log after the other, each whole and in index order, every
    // line labelled.
    let mut out = Vec::new();
    let counts = export_replicas(
        &replicas,
        &AccessRecordFilter::default(),
        ExportFormat::Jsonl,
        &mut out,
    )
    .await
    .unwrap();
    assert_eq!(counts.len(), 2);
    let lines: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (log, replica) in [
        (FIRST_LOG_ID, stack.gateway_addr),
        (SECOND_LOG_ID, stack.second_gateway_addr()),
    ] {
        let indices: Vec<u64> = lines
            .iter()
            .filter(|l| l["log_id"] == log)
            .inspect(|l| assert_eq!(l["replica"], replica.to_string()))
            .map(|l| l["index"].as_u64().unwrap())
            .collect();
        assert!(!indices.is_empty(), "{log}");
        assert_eq!(indices, (0..indices.len() as u64).collect::<Vec<_>>());
    }
    // CSV through the command: the label columns first.
    let csv = stack.layout.data("replicas.csv");
    run_on(
        &bundle,
        &targets,
        AuditCommand::Export {
            filter: no_filter(),
            format: ExportFormat::Csv,
            output: Some(csv.clone()),
        },
    )
    .await
    .unwrap();
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.starts_with("log_id,replica,index,"), "{text}");
    assert!(text.contains(&format!(
        "\n{SECOND_LOG_ID},{},",
        stack.second_gateway_addr()
    )));

    // verify: each log on its own, one state file per log.
    let state = tempfile::tempdir().unwrap();
    let verdicts = verify_replicas(&bundle, &targets, &options(&stack, state.path()), |_| {})
        .await
        .unwrap();
    assert_eq!(verdicts.len(), 2);
    for v in &verdicts {
        assert_eq!(v.failure(), None, "{}", v.label);
        assert!(v.outcome.as_ref().unwrap().verification.checkpoints >= 1);
    }
    let kept: Vec<String> = std::fs::read_dir(state.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert_eq!(
        kept.iter()
            .filter(|k| k.starts_with("orex-gateway_dev-2-"))
            .count(),
        1,
        "one file per log: {kept:?}"
    );
    cli_verify(&stack, &targets, state.path()).await.unwrap();

    // One address only (the other replica scaled down): its log, kept from
    // the run above, is reported as not reached instead of silently missing.
    let verdicts = verify_replicas(
        &bundle,
        &targets[..1],
        &options(&stack, state.path()),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(verdicts.len(), 2);
    assert_eq!(verdicts[0].failure(), None);
    let missing = verdicts[1].failure().expect("the unreached log fails");
    assert!(
        missing.contains("NOT VERIFIED") && missing.contains(SECOND_LOG_ID),
        "{missing}"
    );
    stack.stop().await;
}

/// Changes record `index` of the stopped gateway whose data folder is
/// `data`, leaving its hashes.
fn change_record(data: &Path, index: u64) {
    let db = orex_e2e::open_stopped_gateway_store(data);
    let tree = db.open_tree("audit_records").unwrap();
    let key = (index + 1).to_be_bytes();
    let mut r: AccessRecord = decode_value(&tree.get(key).unwrap().unwrap()).unwrap();
    r.reason = "nothing to see here".into();
    tree.insert(key, encode_value(&r)).unwrap();
    db.flush().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_record_fails_only_its_own_replica_by_name() {
    let (mut stack, targets) = two_replicas_with_traffic().await;
    let bundle = stack.bundle("us-oversight");
    let state = tempfile::tempdir().unwrap();
    cli_verify(&stack, &targets, state.path()).await.unwrap();

    stack.stop_second_gateway().await;
    change_record(&stack.second_gateway_data(), 2);
    stack.start_second_gateway().await;

    let verdicts = verify_replicas(&bundle, &targets, &options(&stack, state.path()), |_| {})
        .await
        .unwrap();
    let first = &verdicts[0];
    assert_eq!(first.log_id.as_deref(), Some(FIRST_LOG_ID));
    assert_eq!(first.failure(), None);
    let second = &verdicts[1];
    assert_eq!(second.log_id.as_deref(), Some(SECOND_LOG_ID));
    let why = second.failure().expect("the tampered log fails");
    assert!(why.contains("BROKEN: record 2 was changed"), "{why}");

    let err = cli_verify(&stack, &targets, state.path())
        .await
        .unwrap_err()
        .to_string();
    let second_label = format!("{SECOND_LOG_ID} at {}", stack.second_gateway_addr());
    assert!(err.contains(&second_label), "{err}");
    assert!(
        !err.contains(&format!("{FIRST_LOG_ID} at")),
        "only the second: {err}"
    );

    // A replica that does not answer fails verify by its address, and a
    // query, which would look complete without it, is refused.
    stack.stop_second_gateway().await;
    let verdicts = verify_replicas(&bundle, &targets, &options(&stack, state.path()), |_| {})
        .await
        .unwrap();
    assert_eq!(verdicts[0].failure(), None);
    assert!(
        verdicts[1]
            .label
            .contains(&stack.second_gateway_addr().to_string())
    );
    assert!(verdicts[1].failure().is_some());
    let err = run_on(
        &bundle,
        &targets,
        AuditCommand::Query {
            filter: no_filter(),
            json: true,
            limit: 10,
        },
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(&stack.second_gateway_addr().to_string()),
        "{err}"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_lost_its_tail_fails_against_its_own_kept_checkpoint() {
    let (mut stack, targets) = two_replicas_with_traffic().await;
    let state = tempfile::tempdir().unwrap();
    cli_verify(&stack, &targets, state.path()).await.unwrap();

    // The second replica loses every record from index 1 on (below the
    // checkpoint the auditor kept) and every checkpoint; its witness is
    // moved aside; it serves and signs a new history over the lost one.
    stack.stop_second_gateway().await;
    lose_audit_tail_in(&stack.second_gateway_data(), 1);
    orex_e2e::discard_witness_of(&stack.second_gateway_data());
    let second = stack.start_second_gateway().await;
    let mut kenji = stack.client_at(second, "jp-kenji").await;
    for _ in 0..10 {
        kenji
            .list_reports(ListReportsRequest::default())
            .await
            .unwrap();
    }
    sign_both(&stack).await;

    let verdicts = verify_replicas(
        &stack.bundle("us-oversight"),
        &targets,
        &options(&stack, state.path()),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(verdicts[0].failure(), None, "the first kept its own state");
    let why = verdicts[1].failure().expect("the second lost its tail");
    assert!(
        why.contains("no longer holds the checkpoint you kept"),
        "{why}"
    );
    stack.stop().await;
}

#[tokio::test]
async fn two_replicas_writing_one_log_id_are_refused_by_name() {
    let mut stack = Stack::spawn().await;
    let second = stack.start_second_gateway_as(FIRST_LOG_ID).await;
    for addr in [stack.gateway_addr, second] {
        let mut alice = stack.client_at(addr, "us-alice").await;
        alice
            .list_reports(ListReportsRequest::default())
            .await
            .unwrap();
    }
    sign_both(&stack).await;
    let targets = [stack.gateway_addr.to_string(), second.to_string()];
    let err = open_replicas(&stack.bundle("us-oversight"), &targets)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("different logs under the same id"), "{err}");
    assert!(err.contains(&second.to_string()), "{err}");
    assert!(err.contains("audit.log_id"), "{err}");
    stack.stop().await;
}

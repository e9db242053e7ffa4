//! `orex audit … --replicas HOST:PORT …` as an auditor types it, against two
//! gateway replicas in front of the same services: the option is accepted
//! before or after the subcommand and repeated, every line says which log
//! and replica it is from, and without it the output is the single
//! gateway's, unchanged.

use std::process::{Command, Output, Stdio};

use orex_e2e::{SECOND_LOG_ID, Stack};
use orex_proto::sharing::v1::ListReportsRequest;

/// `orex audit --bundle us-oversight <args>` (the servers keep running on
/// the other worker meanwhile).
fn orex_audit(stack: &Stack, args: &[&str], state_dir: &std::path::Path) -> Output {
    let bundle = stack.bundle("us-oversight");
    tokio::task::block_in_place(|| {
        Command::new(env!("CARGO_BIN_EXE_orex"))
            .args(["audit", "--bundle", bundle.to_str().unwrap()])
            .args(args)
            .env("OREX_STATE_DIR", state_dir)
            .stdin(Stdio::null())
            .output()
            .expect("run orex")
    })
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_is_read_and_every_line_names_its_log() {
    let mut stack = Stack::spawn().await;
    let second = stack.start_second_gateway().await;
    for addr in [stack.gateway_addr, second] {
        let mut alice = stack.client_at(addr, "us-alice").await;
        for _ in 0..3 {
            alice
                .list_reports(ListReportsRequest::default())
                .await
                .unwrap();
        }
    }
    stack.audit_log().checkpoint().await.unwrap();
    stack.second_audit_log().checkpoint().await.unwrap();
    let (first, second) = (stack.gateway_addr.to_string(), second.to_string());
    let state = tempfile::tempdir().unwrap();
    let key = stack.layout.audit_keys().1;
    let key = key.to_str().unwrap();

    // verify, the option before the subcommand and repeated.
    let out = orex_audit(
        &stack,
        &[
            "--replicas",
            &first,
            "--replicas",
            &second,
            "verify",
            "--public-key",
            key,
            "--expect-full-scope",
        ],
        state.path(),
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.contains(&format!("log orex-gateway/dev at {first}:")),
        "{text}"
    );
    assert!(
        text.contains(&format!("log {SECOND_LOG_ID} at {second}:")),
        "{text}"
    );
    assert_eq!(text.matches("OK: every hash").count(), 2, "{text}");
    assert!(
        text.contains("OK: all 2 access logs verify, each on its own"),
        "{text}"
    );
    assert_eq!(std::fs::read_dir(state.path()).unwrap().count(), 2);

    // query --json, the option after the subcommand.
    let out = orex_audit(
        &stack,
        &[
            "query",
            "--json",
            "--replicas",
            &first,
            "--replicas",
            &second,
        ],
        state.path(),
    );
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() <= 100, "the default limit, over both logs");
    for (log, replica) in [("orex-gateway/dev", &first), (SECOND_LOG_ID, &second)] {
        let of_log: Vec<_> = lines.iter().filter(|l| l["log_id"] == log).collect();
        assert!(!of_log.is_empty(), "{log}");
        assert!(of_log.iter().all(|l| l["replica"] == replica.as_str()));
    }

    // The table has a log column.
    let out = orex_audit(
        &stack,
        &["--replicas", &second, "query", "--limit", "3"],
        state.path(),
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{out:?}");
    assert!(text.starts_with("log "), "{text}");
    assert_eq!(text.matches(SECOND_LOG_ID).count(), 3, "{text}");

    // export --format csv to standard output.
    let out = orex_audit(
        &stack,
        &[
            "--replicas",
            &first,
            "--replicas",
            &second,
            "export",
            "--format",
            "csv",
        ],
        state.path(),
    );
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(text.starts_with("log_id,replica,index,kind,"), "{text}");
    assert!(text.contains(&format!("\n{SECOND_LOG_ID},{second},0,")));

    // Without --replicas: the bundle's gateway, as before (no labels).
    let out = orex_audit(&stack, &["query", "--json", "--limit", "1"], state.path());
    assert!(out.status.success(), "{out:?}");
    let line: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert!(line.get("log_id").is_none() && line.get("replica").is_none());
    let out = orex_audit(&stack, &["export", "--format", "csv"], state.path());
    assert!(stdout(&out).starts_with("index,kind,"));

    // A value that is not HOST:PORT is refused by name.
    let out = orex_audit(
        &stack,
        &["query", "--replicas", "gateway-replicas"],
        state.path(),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--replicas gateway-replicas:") && err.contains("expected HOST:PORT"),
        "{err}"
    );
    stack.stop().await;
}

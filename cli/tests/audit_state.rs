//! `orex audit verify` keeps the newest checkpoint it verified, by default,
//! per log id: a log that later lost its tail and every checkpoint over it
//! (and was served again by a gateway whose witness was moved aside) verifies
//! as self-consistent — only the kept checkpoint betrays it. `--no-state`
//! turns the keeping off.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use orex_e2e::Stack;
use orex_proto::sharing::v1::ListReportsRequest;

/// `orex audit verify` as us-oversight (the servers keep running on the
/// other worker meanwhile).
fn verify(stack: &Stack, state_dir: &Path, extra: &[&str]) -> Output {
    tokio::task::block_in_place(|| verify_blocking(stack, state_dir, extra))
}

fn verify_blocking(stack: &Stack, state_dir: &Path, extra: &[&str]) -> Output {
    let bundle = stack.bundle("us-oversight");
    let key = stack.layout.audit_keys().1;
    Command::new(env!("CARGO_BIN_EXE_orex"))
        .args(["audit", "--bundle", bundle.to_str().unwrap(), "verify"])
        .args(["--public-key", key.to_str().unwrap(), "--expect-full-scope"])
        .args(extra)
        .env("OREX_STATE_DIR", state_dir)
        .stdin(Stdio::null())
        .output()
        .expect("run orex")
}

async fn calls(stack: &Stack, n: usize) {
    let mut alice = stack.client("us-alice").await;
    for _ in 0..n {
        alice
            .list_reports(ListReportsRequest::default())
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_keeps_its_state_by_default_and_catches_a_lost_tail() {
    let mut stack = Stack::spawn().await;
    let state = tempfile::tempdir().unwrap();
    calls(&stack, 10).await;
    stack.stop_gateway().await; // signs a checkpoint over everything
    stack.start_gateway().await;

    let first = verify(&stack, state.path(), &[]);
    assert!(first.status.success(), "{first:?}");
    let kept: Vec<_> = std::fs::read_dir(state.path()).unwrap().collect();
    assert_eq!(kept.len(), 1, "one state file for the one log");
    let name = kept[0].as_ref().unwrap().file_name();
    assert!(
        name.to_string_lossy().starts_with("orex-gateway_dev-"),
        "{name:?}"
    );

    // The tail and every checkpoint are lost; the witness is moved aside;
    // the gateway serves, and signs new checkpoints over a new history.
    stack.stop_gateway().await;
    stack.lose_audit_tail(5);
    stack.discard_audit_witness();
    stack.start_gateway().await;
    calls(&stack, 20).await;
    stack.stop_gateway().await;
    stack.start_gateway().await;

    let no_state = verify(&stack, state.path(), &["--no-state"]);
    assert!(
        no_state.status.success(),
        "without state the rewritten log is self-consistent: {no_state:?}"
    );
    let second = verify(&stack, state.path(), &[]);
    let out = String::from_utf8_lossy(&second.stdout);
    assert!(!second.status.success(), "{second:?}");
    assert!(
        out.contains("no longer holds the checkpoint you kept"),
        "{out}"
    );
    stack.stop().await;
}

/// A fresh dev stack reuses the log id `orex-gateway/dev` but signs with a
/// new key: it is a new log, not the old one truncated, so its kept state
/// is its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_stack_with_the_same_log_id_keeps_its_own_state() {
    let state = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let mut stack = Stack::spawn().await;
        calls(&stack, 3).await;
        stack.stop_gateway().await;
        stack.start_gateway().await;
        let run = verify(&stack, state.path(), &[]);
        assert!(run.status.success(), "{run:?}");
        stack.stop().await;
    }
    assert_eq!(std::fs::read_dir(state.path()).unwrap().count(), 2);
}

//! Every command ends quietly when the reader of its output goes away
//! (`orex report list … | head -1`): status 0, no panic, no backtrace.
//! The reader is closed before the command writes anything, so its first
//! write meets a closed pipe — deterministic, whatever the pipe's buffer.

use std::process::{Command, Stdio};

use orex_e2e::{Stack, content, publish_request};
use orex_proto::common::v1::Marking;

fn orex(args: &[&str], stdout: Stdio) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_orex"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("run orex")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_end_quietly_when_their_output_is_closed() {
    let stack = Stack::spawn().await;
    let mut alice = stack.client("us-alice").await;
    for _ in 0..5 {
        alice
            .publish_report(publish_request(content(Marking::Green, &[], &[])))
            .await
            .unwrap();
    }
    let alice_dir = stack.bundle("us-alice");
    let oversight_dir = stack.bundle("us-oversight");
    let analyst_dir = stack.bundle("us-ana");
    let (alice_dir, oversight_dir) = (alice_dir.to_str().unwrap(), oversight_dir.to_str().unwrap());
    let analyst_dir = analyst_dir.to_str().unwrap();
    // Something to list for the emergency commands.
    let mut cole = stack.emergency_client("us-cole").await;
    cole.report_stockpile(orex_proto::emergency::v1::ReportStockpileRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        content: Some(orex_proto::emergency::v1::StockpileContent {
            mineral: orex_proto::common::v1::Mineral::Gallium as i32,
            as_of: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
            disclosure: Some(
                orex_proto::emergency::v1::stockpile_content::Disclosure::Figures(
                    orex_proto::emergency::v1::StockpileFigures {
                        stockpile_tonnes: 1.0,
                        consumption_tonnes_per_year: 10.0,
                        net_imports_tonnes_per_year: 10.0,
                    },
                ),
            ),
            marking: Marking::Green as i32,
            recipient_members: vec![],
        }),
    })
    .await
    .unwrap();
    let commands: [&[&str]; 7] = [
        &["report", "list", "--bundle", alice_dir],
        &["risk", "list", "--bundle", analyst_dir],
        &["risk", "show", "gallium", "--bundle", analyst_dir],
        &["stockpile", "list", "--bundle", analyst_dir],
        &["emergency", "list", "--bundle", analyst_dir],
        &["audit", "--bundle", oversight_dir, "query", "--json"],
        &[
            "audit",
            "--bundle",
            oversight_dir,
            "export",
            "--format",
            "csv",
        ],
    ];
    for args in commands {
        // Control: with a reader, the command prints.
        let full = tokio::task::spawn_blocking({
            let child = orex(args, Stdio::piped());
            move || child.wait_with_output().unwrap()
        })
        .await
        .unwrap();
        assert!(full.status.success(), "{args:?}: {full:?}");
        assert!(!full.stdout.is_empty(), "{args:?} printed nothing");

        // Without one.
        let mut child = orex(args, Stdio::piped());
        drop(child.stdout.take());
        let closed = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&closed.stderr);
        assert!(
            closed.status.success() && !stderr.contains("panicked"),
            "{args:?}: {:?}, stderr: {stderr}",
            closed.status
        );
    }
    stack.stop().await;
}

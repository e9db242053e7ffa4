//! Isolation between members under load: streams a member never reads cannot
//! delay anyone else's calls or deliveries, and a stream that is dropped for
//! reading too slowly says so (RESOURCE_EXHAUSTED, with the sequence to resume
//! after) — so a client resumes with nothing lost.

use futures::StreamExt;
use orex_cli::bundle::Connection;
use orex_e2e::{Stack, content, publish, within};
use orex_proto::audit::v1::AccessRecordKind;
use orex_proto::common::v1::Marking;
use orex_proto::sharing::v1::{GetReportRequest, ReportContent, SubscribeReportsRequest};
use tonic::Code;

fn from(after: Option<u64>) -> SubscribeReportsRequest {
    SubscribeReportsRequest {
        filter: None,
        after_sequence: after,
    }
}

/// A GREEN report of about 4 KB, the size that used to exhaust the shared
/// gateway→service connection window.
fn large_report() -> ReportContent {
    ContentExt::with_summary(content(Marking::Green, &[], &[]), "x".repeat(4000))
}

trait ContentExt {
    fn with_summary(self, summary: String) -> Self;
}

impl ContentExt for ReportContent {
    fn with_summary(mut self, summary: String) -> Self {
        self.summary = summary;
        self
    }
}

fn set_streams(layout: &orex_cli::devstack::DevLayout, buffer: usize, slow_seconds: u64) {
    for file in ["gateway.toml", "sharing.toml"] {
        Stack::edit_config(
            layout,
            file,
            "buffer_events = 64\nslow_consumer_seconds = 30",
            &format!("buffer_events = {buffer}\nslow_consumer_seconds = {slow_seconds}"),
        );
    }
}

fn lift_stream_cap(stack: &Stack) {
    stack.edit_policy(|p| p.replace("open_streams = 50", "open_streams = 500"));
    stack.policy().reload().expect("policy reloads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_that_never_read_do_not_delay_other_members() {
    // A deadline far beyond the test: if stalled streams held the shared
    // backend connection, the calls below would wait for it and time out.
    let stack = Stack::spawn_configured(|l| set_streams(l, 64, 600)).await;
    lift_stream_cap(&stack);

    let mut dieter = stack.client("de-dieter").await;
    let mut stalled = Vec::new();
    for _ in 0..100 {
        stalled.push(
            dieter
                .subscribe_reports(from(None))
                .await
                .expect("subscribe")
                .into_inner(),
        );
    }
    let mut kenji = stack.client("jp-kenji").await;
    let mut live = kenji
        .subscribe_reports(from(None))
        .await
        .unwrap()
        .into_inner();
    let mut felix = stack.client("fr-felix").await;
    let mut alice = stack.client("us-alice").await;

    // 150 reports × 4 KB × 100 unread streams: 60 MB nobody reads.
    for _ in 0..150 {
        let report = within(10, publish(&mut alice, large_report())).await;
        let event = within(10, live.next()).await.unwrap().unwrap();
        assert_eq!(event.report.unwrap().id, report.id);
        let got = within(
            10,
            felix.get_report(GetReportRequest {
                report_id: report.id.clone(),
                version: 0,
            }),
        )
        .await
        .expect("another member's read is served");
        assert_eq!(got.into_inner().report.unwrap().id, report.id);
    }
    drop(stalled);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_stream_ends_with_resource_exhausted_and_resumes_with_nothing_lost() {
    let stack = Stack::spawn_configured(|l| set_streams(l, 4, 1)).await;
    // Small windows on the subscriber's side, so a few reports fill them.
    let dora = Connection::open_tuned(&stack.bundle("de-dora"), |e| {
        e.initial_stream_window_size(64 * 1024)
            .initial_connection_window_size(64 * 1024)
    })
    .await
    .expect("connect");
    let mut slow = dora
        .sharing()
        .subscribe_reports(from(Some(0)))
        .await
        .unwrap()
        .into_inner();

    let mut alice = stack.client("us-alice").await;
    let mut ids = Vec::new();
    for _ in 0..60 {
        ids.push(publish(&mut alice, large_report()).await.id);
    }
    // The gateway records the stream's end when it drops it: wait for that
    // record (the subscriber still has not read anything).
    within(30, async {
        loop {
            let log = stack.audit_log();
            let ended = log.range(0, log.size()).unwrap().into_iter().any(|r| {
                r.kind() == AccessRecordKind::Outcome
                    && r.method.ends_with("/SubscribeReports")
                    && r.grpc_status_code == Some(Code::ResourceExhausted as u32)
            });
            if ended {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;

    // Everything handed over before the drop arrives, then the status.
    let mut seen = Vec::new();
    let status = loop {
        match within(10, slow.next()).await {
            Some(Ok(event)) => seen.push((event.sequence, event.report.unwrap().id)),
            Some(Err(status)) => break status,
            None => panic!(
                "the stream ended without a status after {} events",
                seen.len()
            ),
        }
    };
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(seen.len() < ids.len(), "the subscriber was dropped early");
    let last = seen.last().map(|(seq, _)| *seq).unwrap_or(0);
    assert!(
        status.message().contains(&format!("after_sequence={last}")),
        "the status names the last delivered sequence {last}: {:?}",
        status.message()
    );

    // Resuming from it delivers the rest, once each.
    let mut resumed = dora
        .sharing()
        .subscribe_reports(from(Some(last)))
        .await
        .unwrap()
        .into_inner();
    while seen.len() < ids.len() {
        let event = within(10, resumed.next()).await.unwrap().unwrap();
        seen.push((event.sequence, event.report.unwrap().id));
    }
    let got: Vec<String> = seen.into_iter().map(|(_, id)| id).collect();
    assert_eq!(got, ids, "every report exactly once, in order");
    stack.stop().await;
}

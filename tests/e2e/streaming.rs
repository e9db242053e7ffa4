//! Publish → subscriber delivery through the gateway, resume after reconnect,
//! and idempotent retries.

use futures::StreamExt;
use orex_e2e::{Stack, content, publish, publish_request, within};
use orex_proto::common::v1::Marking;
use orex_proto::sharing::v1::{ReportEventKind, SubscribeReportsRequest};

fn from(after: Option<u64>) -> SubscribeReportsRequest {
    SubscribeReportsRequest {
        filter: None,
        after_sequence: after,
    }
}

#[tokio::test]
async fn published_report_reaches_a_subscriber_of_another_member_through_the_gateway() {
    let stack = Stack::spawn().await;
    let mut jp = stack.client("jp-kenji").await;
    let mut events = jp.subscribe_reports(from(None)).await.unwrap().into_inner();
    let mut us = stack.client("us-alice").await;
    let published = publish(&mut us, content(Marking::Green, &[], &[])).await;

    let event = within(10, events.next()).await.unwrap().unwrap();
    assert_eq!(event.kind(), ReportEventKind::Published);
    let report = event.report.unwrap();
    assert_eq!(report.id, published.id);
    assert_eq!(report.author.unwrap().member, "US");
    assert!(event.sequence >= 1);
    stack.stop().await;
}

#[tokio::test]
async fn subscriber_resumes_after_reconnect_with_nothing_lost_or_doubled() {
    let stack = Stack::spawn().await;
    let mut us = stack.client("us-alice").await;
    let mut de = stack.client("de-dora").await;

    let mut first = de
        .subscribe_reports(from(Some(0)))
        .await
        .unwrap()
        .into_inner();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(publish(&mut us, content(Marking::Clear, &[], &[])).await.id);
    }
    let mut seen = Vec::new();
    let mut last_seq = 0;
    for _ in 0..2 {
        let ev = within(10, first.next()).await.unwrap().unwrap();
        last_seq = ev.sequence;
        seen.push(ev.report.unwrap().id);
    }
    drop(first); // the client goes away after two events

    for _ in 0..2 {
        ids.push(publish(&mut us, content(Marking::Clear, &[], &[])).await.id);
    }
    let mut resumed = de
        .subscribe_reports(from(Some(last_seq)))
        .await
        .unwrap()
        .into_inner();
    for _ in 0..3 {
        let ev = within(10, resumed.next()).await.unwrap().unwrap();
        assert!(ev.sequence > last_seq, "sequences only grow");
        last_seq = ev.sequence;
        seen.push(ev.report.unwrap().id);
    }
    assert_eq!(seen, ids, "every event exactly once, in order");
    stack.stop().await;
}

#[tokio::test]
async fn publish_retry_with_the_same_request_id_returns_the_original_report() {
    let stack = Stack::spawn().await;
    let mut us = stack.client("us-alice").await;
    let req = publish_request(content(Marking::Green, &[], &[]));
    let first = us.publish_report(req.clone()).await.unwrap().into_inner();
    let retry = us.publish_report(req.clone()).await.unwrap().into_inner();
    assert!(!first.replayed);
    assert!(retry.replayed);
    assert_eq!(first.report, retry.report);

    let list = us
        .list_reports(orex_proto::sharing::v1::ListReportsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.reports.len(), 1, "no duplicate was created");

    // Another principal using the same request id publishes its own report.
    let mut de = stack.client("de-dora").await;
    let other = de.publish_report(req).await.unwrap().into_inner();
    assert!(!other.replayed);
    assert_ne!(other.report.unwrap().id, first.report.unwrap().id);
    stack.stop().await;
}

#[tokio::test]
async fn concurrent_retries_of_one_publish_create_one_report() {
    let stack = Stack::spawn().await;
    let us = stack.client("us-alice").await;
    let req = publish_request(content(Marking::Green, &[], &[]));
    let calls = (0..8).map(|_| {
        let mut c = us.clone();
        let r = req.clone();
        async move { c.publish_report(r).await.unwrap().into_inner() }
    });
    let answers = futures::future::join_all(calls).await;
    let ids: std::collections::BTreeSet<_> = answers
        .iter()
        .map(|a| a.report.as_ref().unwrap().id.clone())
        .collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(answers.iter().filter(|a| !a.replayed).count(), 1);
    stack.stop().await;
}

#[tokio::test]
async fn subscribing_beyond_the_latest_sequence_is_out_of_range() {
    let stack = Stack::spawn().await;
    let mut de = stack.client("de-dora").await;
    let err = de.subscribe_reports(from(Some(99))).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::OutOfRange);
    stack.stop().await;
}

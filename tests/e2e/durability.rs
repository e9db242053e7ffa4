//! Acknowledged reports survive a restart of the sharing service, and
//! subscribers resume across it with nothing lost or doubled.

use futures::StreamExt;
use orex_e2e::{Stack, content, publish, within};
use orex_proto::common::v1::Marking;
use orex_proto::sharing::v1::{ListReportsRequest, SubscribeReportsRequest};
use tonic::Code;

#[tokio::test]
async fn no_acknowledged_report_is_lost_across_a_service_restart() {
    let mut stack = Stack::spawn().await;
    let mut us = stack.client("us-alice").await;
    let mut de = stack.client("de-dora").await;
    let mut events = de
        .subscribe_reports(SubscribeReportsRequest {
            filter: None,
            after_sequence: Some(0),
        })
        .await
        .unwrap()
        .into_inner();

    // Concurrent publishes share group-committed flushes.
    let calls = (0..20).map(|_| {
        let mut c = us.clone();
        async move { publish(&mut c, content(Marking::Green, &[], &[])).await.id }
    });
    let mut acknowledged = futures::future::join_all(calls).await;

    let mut last = 0;
    let mut delivered = Vec::new();
    while delivered.len() < acknowledged.len() {
        let ev = within(10, events.next()).await.unwrap().unwrap();
        last = ev.sequence;
        delivered.push(ev.report.unwrap().id);
    }

    stack.restart_sharing().await;
    // The open stream ends with a resumable UNAVAILABLE, never silently.
    let status = within(10, events.next())
        .await
        .expect("the stream ends with a status")
        .expect_err("the stream ends with an error status");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains(&format!("after_sequence={last}")),
        "{status:?}"
    );

    let listed = us
        .list_reports(ListReportsRequest {
            page_size: 500,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .reports;
    let mut listed: Vec<_> = listed.into_iter().map(|r| r.id).collect();
    listed.sort();
    acknowledged.sort();
    assert_eq!(
        listed, acknowledged,
        "every acknowledged report is still there"
    );

    let after = publish(&mut us, content(Marking::Green, &[], &[])).await;
    let mut resumed = de
        .subscribe_reports(SubscribeReportsRequest {
            filter: None,
            after_sequence: Some(last),
        })
        .await
        .unwrap()
        .into_inner();
    let ev = within(10, resumed.next()).await.unwrap().unwrap();
    assert_eq!(
        ev.report.unwrap().id,
        after.id,
        "resumes with the next event only"
    );
    assert!(ev.sequence > last);
    delivered.sort();
    assert_eq!(delivered, acknowledged);
    stack.stop().await;
}

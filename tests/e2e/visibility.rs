//! TLP visibility in get, list, history and streams: a principal never learns
//! that a report it may not see exists.

use futures::StreamExt;
use orex_cli::bundle::SharingClient;
use orex_e2e::{Stack, content, publish, within};
use orex_proto::common::v1::Marking;
use orex_proto::sharing::v1::{
    GetReportRequest, ListReportVersionsRequest, ListReportsRequest, Report,
    SubscribeReportsRequest,
};

async fn sees(client: &mut SharingClient, report: &Report) -> bool {
    let get = client
        .get_report(GetReportRequest {
            report_id: report.id.clone(),
            version: 0,
        })
        .await;
    let listed = client
        .list_reports(ListReportsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .reports
        .iter()
        .any(|r| r.id == report.id);
    let history = client
        .list_report_versions(ListReportVersionsRequest {
            report_id: report.id.clone(),
            ..Default::default()
        })
        .await;
    match get {
        Ok(_) => {
            assert!(listed, "get and list must agree");
            assert!(history.is_ok(), "get and history must agree");
            true
        }
        Err(status) => {
            assert_eq!(status.code(), tonic::Code::NotFound, "hidden looks absent");
            assert!(!listed, "get and list must agree");
            assert_eq!(history.unwrap_err().code(), tonic::Code::NotFound);
            false
        }
    }
}

#[tokio::test]
async fn clear_and_green_reach_every_member() {
    let stack = Stack::spawn().await;
    let mut us = stack.client("us-alice").await;
    for marking in [Marking::Clear, Marking::Green] {
        let r = publish(&mut us, content(marking, &[], &[])).await;
        for who in ["us-bob", "eu-eva", "de-dieter", "fr-felix", "jp-kenji"] {
            assert!(
                sees(&mut stack.client(who).await, &r).await,
                "{who} {marking:?}"
            );
        }
    }
    stack.stop().await;
}

#[tokio::test]
async fn amber_report_reaches_bloc_states_but_not_outsiders() {
    let stack = Stack::spawn().await;
    let mut us = stack.client("us-alice").await;
    let r = publish(&mut us, content(Marking::Amber, &["EU"], &[])).await;
    for (who, expected) in [
        ("us-alice", true),
        ("us-bob", true), // the author's own member
        ("eu-eva", true),
        ("de-dieter", true), // a state of the recipient bloc
        ("fr-felix", true),
        ("jp-kenji", false),
    ] {
        assert_eq!(
            sees(&mut stack.client(who).await, &r).await,
            expected,
            "{who}"
        );
    }
    stack.stop().await;
}

#[tokio::test]
async fn amber_strict_report_to_a_bloc_does_not_reach_its_states() {
    let stack = Stack::spawn().await;
    let mut us = stack.client("us-alice").await;
    let r = publish(&mut us, content(Marking::AmberStrict, &["EU"], &[])).await;
    for (who, expected) in [
        ("us-bob", true),
        ("eu-eva", true),
        ("de-dieter", false),
        ("fr-felix", false),
        ("jp-kenji", false),
    ] {
        assert_eq!(
            sees(&mut stack.client(who).await, &r).await,
            expected,
            "{who}"
        );
    }
    stack.stop().await;
}

#[tokio::test]
async fn red_report_reaches_only_named_principals_and_the_author() {
    let stack = Stack::spawn().await;
    let mut us = stack.client("us-alice").await;
    let r = publish(&mut us, content(Marking::Red, &[], &[("DE", "dieter")])).await;
    for (who, expected) in [
        ("us-alice", true),
        ("de-dieter", true),
        ("us-bob", false),  // the author's colleague is not named
        ("de-dora", false), // the recipient's colleague is not named
        ("eu-eva", false),
        ("jp-kenji", false),
    ] {
        assert_eq!(
            sees(&mut stack.client(who).await, &r).await,
            expected,
            "{who}"
        );
    }
    stack.stop().await;
}

#[tokio::test]
async fn streams_skip_reports_the_subscriber_may_not_see() {
    let stack = Stack::spawn().await;
    let mut jp = stack.client("jp-kenji").await;
    let mut events = jp
        .subscribe_reports(SubscribeReportsRequest {
            filter: None,
            after_sequence: Some(0),
        })
        .await
        .unwrap()
        .into_inner();
    let mut us = stack.client("us-alice").await;
    let hidden = publish(&mut us, content(Marking::Amber, &["EU"], &[])).await;
    let red = publish(&mut us, content(Marking::Red, &[], &[("DE", "dora")])).await;
    let visible = publish(&mut us, content(Marking::Amber, &["JP"], &[])).await;
    let ev = within(10, events.next()).await.unwrap().unwrap();
    let got = ev.report.unwrap();
    assert_eq!(
        got.id, visible.id,
        "the first event JP receives is the one for JP"
    );
    assert_ne!(got.id, hidden.id);
    assert_ne!(got.id, red.id);
    stack.stop().await;
}

#[tokio::test]
async fn export_restriction_by_a_partner_is_flagged_to_every_reader() {
    let stack = Stack::spawn().await;
    let mut de = stack.client("de-dora").await;
    let mut c = content(Marking::Green, &[], &[]);
    c.category = orex_proto::sharing::v1::Category::ExportRestriction as i32;
    c.origin_country = "FR".into();
    let breach = publish(&mut de, c.clone()).await;
    assert!(breach.breaches_no_export_ban);
    c.origin_country = "CN".into();
    let outside = publish(&mut de, c).await;
    assert!(!outside.breaches_no_export_ban);

    let mut jp = stack.client("jp-kenji").await;
    let seen = jp
        .get_report(GetReportRequest {
            report_id: breach.id,
            version: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .report
        .unwrap();
    assert!(seen.breaches_no_export_ban);
    stack.stop().await;
}

//! Amend, resolve and retract: versions with history, optimistic concurrency,
//! and transitions only where the report's state allows them.

use orex_e2e::{Stack, content, publish};
use orex_proto::common::v1::Marking;
use orex_proto::sharing::v1::{
    AmendReportRequest, GetReportRequest, ListReportVersionsRequest, ListReportsRequest,
    ReportFilter, ReportStatus, ResolveReportRequest, RetractReportRequest,
};
use tonic::Code;

fn id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[tokio::test]
async fn amendments_make_versions_and_history_keeps_them() {
    let stack = Stack::spawn().await;
    let mut us = stack.client("us-alice").await;
    let v1 = publish(&mut us, content(Marking::Green, &[], &[])).await;
    let mut changed = content(Marking::Green, &[], &[]);
    changed.severity = 5;
    let amend = AmendReportRequest {
        request_id: id(),
        report_id: v1.id.clone(),
        expected_version: 1,
        content: Some(changed.clone()),
        note: "worse than first thought".into(),
    };
    let v2 = us
        .amend_report(amend.clone())
        .await
        .unwrap()
        .into_inner()
        .report
        .unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(v2.status(), ReportStatus::Amended);
    // Retrying the same amend returns the same version, not a third one.
    let again = us
        .amend_report(amend)
        .await
        .unwrap()
        .into_inner()
        .report
        .unwrap();
    assert_eq!(again, v2);

    // A stale expected_version is ABORTED: no lost update.
    let status = us
        .amend_report(AmendReportRequest {
            request_id: id(),
            report_id: v1.id.clone(),
            expected_version: 1,
            content: Some(changed),
            note: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Aborted);

    let mut de = stack.client("de-dieter").await;
    let history = de
        .list_report_versions(ListReportVersionsRequest {
            report_id: v1.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .reports;
    assert_eq!(
        history.iter().map(|r| r.version).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(history[0].content.as_ref().unwrap().severity, 3);
    let old = de
        .get_report(GetReportRequest {
            report_id: v1.id.clone(),
            version: 1,
        })
        .await
        .unwrap()
        .into_inner()
        .report
        .unwrap();
    assert_eq!(old, v1);
    stack.stop().await;
}

#[tokio::test]
async fn resolved_reports_cannot_be_amended_or_resolved_again() {
    let stack = Stack::spawn().await;
    let mut us = stack.client("us-alice").await;
    let r = publish(&mut us, content(Marking::Green, &[], &[])).await;
    let resolved = us
        .resolve_report(ResolveReportRequest {
            request_id: id(),
            report_id: r.id.clone(),
            note: "supply restored".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .report
        .unwrap();
    assert_eq!(resolved.status(), ReportStatus::Resolved);
    assert_eq!(resolved.version, 2);

    let status = us
        .resolve_report(ResolveReportRequest {
            request_id: id(),
            report_id: r.id.clone(),
            note: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    let status = us
        .amend_report(AmendReportRequest {
            request_id: id(),
            report_id: r.id.clone(),
            expected_version: 2,
            content: Some(content(Marking::Green, &[], &[])),
            note: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);

    // A resolved report can still be retracted, once.
    let retract = RetractReportRequest {
        request_id: id(),
        report_id: r.id.clone(),
        reason: "duplicate of an earlier report".into(),
    };
    let retracted = us
        .retract_report(retract)
        .await
        .unwrap()
        .into_inner()
        .report
        .unwrap();
    assert_eq!(retracted.status(), ReportStatus::Retracted);
    let status = us
        .retract_report(RetractReportRequest {
            request_id: id(),
            report_id: r.id,
            reason: "again".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    stack.stop().await;
}

#[tokio::test]
async fn only_the_authors_member_may_change_a_report() {
    let stack = Stack::spawn().await;
    let mut us = stack.client("us-alice").await;
    let r = publish(&mut us, content(Marking::Green, &[], &[])).await;
    let mut de = stack.client("de-dora").await;
    let status = de
        .resolve_report(ResolveReportRequest {
            request_id: id(),
            report_id: r.id.clone(),
            note: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    // A member that cannot see the report gets NOT_FOUND, as if it did not exist.
    let hidden = publish(&mut us, content(Marking::AmberStrict, &["EU"], &[])).await;
    let status = de
        .retract_report(RetractReportRequest {
            request_id: id(),
            report_id: hidden.id,
            reason: "probe".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    let status = us
        .retract_report(RetractReportRequest {
            request_id: id(),
            report_id: r.id,
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::InvalidArgument,
        "a retraction needs a reason"
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_marking_can_be_made_stricter_but_never_relaxed() {
    let stack = Stack::spawn().await;
    let mut us = stack.client("us-alice").await;
    let r = publish(&mut us, content(Marking::Amber, &["EU"], &[])).await;
    let status = us
        .amend_report(AmendReportRequest {
            request_id: id(),
            report_id: r.id.clone(),
            expected_version: 1,
            content: Some(content(Marking::Green, &[], &[])),
            note: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("audience may only shrink"),
        "{status:?}"
    );
    us.amend_report(AmendReportRequest {
        request_id: id(),
        report_id: r.id.clone(),
        expected_version: 1,
        content: Some(content(Marking::AmberStrict, &["EU"], &[])),
        note: String::new(),
    })
    .await
    .unwrap();
    // DE saw version 1 (AMBER to EU) but not version 2 (AMBER+STRICT).
    let mut de = stack.client("de-dieter").await;
    let status = de
        .get_report(GetReportRequest {
            report_id: r.id,
            version: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    stack.stop().await;
}

#[tokio::test]
async fn lists_filter_and_page_without_gaps_or_repeats() {
    let stack = Stack::spawn().await;
    let mut us = stack.client("us-alice").await;
    let mut published = Vec::new();
    for severity in 1..=5 {
        for _ in 0..3 {
            let mut c = content(Marking::Green, &[], &[]);
            c.severity = severity;
            published.push(publish(&mut us, c).await);
        }
    }
    let mut de = stack.client("de-dora").await;
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = de
            .list_reports(ListReportsRequest {
                filter: Some(ReportFilter {
                    min_severity: 4,
                    ..Default::default()
                }),
                page_size: 4,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.reports.len() <= 4);
        seen.extend(page.reports.into_iter().map(|r| r.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut expected: Vec<_> = published
        .iter()
        .filter(|r| r.content.as_ref().unwrap().severity >= 4)
        .map(|r| r.id.clone())
        .collect();
    expected.reverse(); // newest first
    assert_eq!(seen, expected);
    stack.stop().await;
}

#[tokio::test]
async fn a_request_id_reused_with_other_arguments_is_refused() {
    let stack = Stack::spawn().await;
    let mut us = stack.client("us-alice").await;
    let first = orex_e2e::publish_request(content(Marking::Green, &[], &[]));
    us.publish_report(first.clone()).await.unwrap();
    let mut other = first.clone();
    other.content.as_mut().unwrap().severity = 5;
    let status = us.publish_report(other).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("different arguments"),
        "{status:?}"
    );

    // The same key on another method is refused too, and names the first use.
    let a = publish(&mut us, content(Marking::Green, &[], &[])).await;
    let status = us
        .resolve_report(ResolveReportRequest {
            request_id: first.request_id.clone(),
            report_id: a.id.clone(),
            note: String::new(),
        })
        .await
        .unwrap_err();
    assert!(status.message().contains("PublishReport"), "{status:?}");

    // Resolving another report with a used resolve key is refused, not answered
    // with the first report.
    let b = publish(&mut us, content(Marking::Green, &[], &[])).await;
    let key = id();
    us.resolve_report(ResolveReportRequest {
        request_id: key.clone(),
        report_id: a.id,
        note: String::new(),
    })
    .await
    .unwrap();
    let status = us
        .resolve_report(ResolveReportRequest {
            request_id: key,
            report_id: b.id,
            note: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    stack.stop().await;
}

#[tokio::test]
async fn bad_amend_resolve_and_retract_arguments_are_refused_by_name() {
    let stack = Stack::spawn().await;
    let mut us = stack.client("us-alice").await;
    let r = publish(&mut us, content(Marking::Green, &[], &[])).await;
    let amend = |report_id: &str, expected_version, note: &str| AmendReportRequest {
        request_id: id(),
        report_id: report_id.into(),
        expected_version,
        content: Some(content(Marking::Green, &[], &[])),
        note: note.into(),
    };
    for (req, field) in [
        (amend("nope", 1, ""), "report_id:"),
        (amend(&r.id, 0, ""), "expected_version:"),
        (amend(&r.id, 1, &"n".repeat(1001)), "note:"),
        (amend(&r.id, 1, "bell\u{7}"), "note:"),
    ] {
        let status = us.amend_report(req).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{field}");
        assert!(status.message().starts_with(field), "{field}: {status:?}");
    }
    let mut bad = amend(&r.id, 1, "");
    bad.content.as_mut().unwrap().summary = "\u{1b}[2Jcleared".into();
    let status = us.amend_report(bad).await.unwrap_err();
    assert!(
        status.message().starts_with("content.summary:"),
        "{status:?}"
    );

    let status = us
        .amend_report(amend(&uuid::Uuid::now_v7().to_string(), 1, ""))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = us
        .retract_report(RetractReportRequest {
            request_id: id(),
            report_id: r.id.clone(),
            reason: "x".repeat(1001),
        })
        .await
        .unwrap_err();
    assert!(status.message().starts_with("reason:"), "{status:?}");
    let status = us
        .get_report(GetReportRequest {
            report_id: r.id,
            version: 7,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    stack.stop().await;
}

#[tokio::test]
async fn an_amendment_cannot_widen_the_audience() {
    let stack = Stack::spawn().await;
    let mut us = stack.client("us-alice").await;
    let r = publish(&mut us, content(Marking::AmberStrict, &["EU"], &[])).await;
    for (marking, to, principals) in [
        (Marking::AmberStrict, vec!["EU", "JP"], vec![]),
        (Marking::Amber, vec!["EU"], vec![]), // would add DE and FR
        (Marking::Red, vec![], vec![("JP", "kenji")]),
    ] {
        let status = us
            .amend_report(AmendReportRequest {
                request_id: id(),
                report_id: r.id.clone(),
                expected_version: 1,
                content: Some(content(marking, &to, &principals)),
                note: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{marking:?} {to:?}");
        assert!(status.message().contains("audience may only shrink"));
    }
    // Narrowing to a named EU principal is fine.
    us.amend_report(AmendReportRequest {
        request_id: id(),
        report_id: r.id,
        expected_version: 1,
        content: Some(content(Marking::Red, &[], &[("EU", "eva")])),
        note: String::new(),
    })
    .await
    .unwrap();
    stack.stop().await;
}

#[tokio::test]
async fn history_pages_and_refuses_foreign_page_tokens() {
    let stack = Stack::spawn().await;
    let mut us = stack.client("us-alice").await;
    let r = publish(&mut us, content(Marking::Green, &[], &[])).await;
    for v in 1..=4 {
        us.amend_report(AmendReportRequest {
            request_id: id(),
            report_id: r.id.clone(),
            expected_version: v,
            content: Some(content(Marking::Green, &[], &[])),
            note: format!("update {v}"),
        })
        .await
        .unwrap();
    }
    let mut versions = Vec::new();
    let mut token = String::new();
    loop {
        let page = us
            .list_report_versions(ListReportVersionsRequest {
                report_id: r.id.clone(),
                page_size: 2,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        versions.extend(page.reports.iter().map(|r| r.version));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(versions, vec![1, 2, 3, 4, 5]);

    // A token issued to alice means nothing to bob, nor to another list.
    let first = us
        .list_report_versions(ListReportVersionsRequest {
            report_id: r.id.clone(),
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .next_page_token;
    let mut bob = stack.client("us-bob").await;
    let status = bob
        .list_report_versions(ListReportVersionsRequest {
            report_id: r.id.clone(),
            page_size: 2,
            page_token: first.clone(),
        })
        .await
        .unwrap_err();
    assert!(status.message().starts_with("page_token:"), "{status:?}");
    let status = us
        .list_reports(ListReportsRequest {
            page_token: first,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(status.message().starts_with("page_token:"), "{status:?}");
    stack.stop().await;
}

#[tokio::test]
async fn a_replayed_stream_hides_versions_whose_report_became_stricter() {
    use futures::StreamExt;
    let stack = Stack::spawn().await;
    let mut us = stack.client("us-alice").await;
    let r = publish(&mut us, content(Marking::Amber, &["EU"], &[])).await;
    us.amend_report(AmendReportRequest {
        request_id: id(),
        report_id: r.id.clone(),
        expected_version: 1,
        content: Some(content(Marking::AmberStrict, &["EU"], &[])),
        note: String::new(),
    })
    .await
    .unwrap();
    let marker = publish(&mut us, content(Marking::Green, &[], &[])).await;
    let mut de = stack.client("de-dieter").await;
    let mut events = de
        .subscribe_reports(orex_proto::sharing::v1::SubscribeReportsRequest {
            filter: None,
            after_sequence: Some(0),
        })
        .await
        .unwrap()
        .into_inner();
    let first = orex_e2e::within(10, events.next()).await.unwrap().unwrap();
    assert_eq!(
        first.report.unwrap().id,
        marker.id,
        "DE may no longer see the report, so its replay skips every version"
    );
    stack.stop().await;
}

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

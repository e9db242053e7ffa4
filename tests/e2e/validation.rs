//! Every bad field a member can send is refused with INVALID_ARGUMENT naming
//! the field, and nothing is stored.

use orex_e2e::{Stack, content, publish_request};
use orex_proto::common::v1::{Marking, PrincipalRef, TimeWindow};
use orex_proto::sharing::v1::{
    GetReportRequest, ListReportsRequest, Price, ReportContent, ReportFilter,
    SubscribeReportsRequest,
};
use prost_types::Timestamp;
use tonic::Code;

type Mutate = fn(&mut ReportContent);

#[tokio::test]
async fn bad_report_fields_are_refused_by_name_and_nothing_is_stored() {
    let stack = Stack::spawn().await;
    let mut us = stack.client("us-alice").await;
    let cases: Vec<(&str, Mutate)> = vec![
        ("content.mineral", |c| c.mineral = 0),
        ("content.mineral", |c| c.mineral = 999),
        ("content.stage", |c| c.stage = 0),
        ("content.category", |c| c.category = 42),
        ("content.severity", |c| c.severity = 0),
        ("content.severity", |c| c.severity = 6),
        ("content.origin_country", |c| {
            c.origin_country = "China".into()
        }),
        ("content.origin_country", |c| c.origin_country = "cn".into()),
        ("content.affected_members[0]", |c| {
            c.affected_members = vec!["XX".into()]
        }),
        ("content.affected_members[1]", |c| {
            c.affected_members = vec!["US".into(), "US".into()]
        }),
        ("content.volume_impact_tonnes_per_month", |c| {
            c.volume_impact_tonnes_per_month = f64::NAN
        }),
        ("content.volume_impact_tonnes_per_month", |c| {
            c.volume_impact_tonnes_per_month = 1e12
        }),
        ("content.observed_price.usd_per_tonne", |c| {
            c.observed_price = Some(Price {
                usd_per_tonne: -5.0,
                observed_at: Some(Timestamp::default()),
            })
        }),
        ("content.observed_price.observed_at", |c| {
            c.observed_price = Some(Price {
                usd_per_tonne: 5.0,
                observed_at: None,
            })
        }),
        ("content.effective_window", |c| c.effective_window = None),
        ("content.effective_window.start", |c| {
            c.effective_window = Some(TimeWindow::default())
        }),
        ("content.effective_window.end", |c| {
            let start = c.effective_window.as_ref().unwrap().start;
            c.effective_window = Some(TimeWindow {
                start,
                end: Some(Timestamp::default()),
            })
        }),
        ("content.effective_window.start", |c| {
            c.effective_window = Some(TimeWindow {
                start: Some(Timestamp {
                    seconds: 0,
                    nanos: -1,
                }),
                end: None,
            })
        }),
        ("content.summary", |c| c.summary = "   ".into()),
        ("content.summary", |c| c.summary = "x".repeat(4001)),
        ("content.marking", |c| c.marking = 0),
        ("content.recipient_members", |c| {
            c.recipient_members = vec!["EU".into()]
        }),
        ("content.recipient_members", |c| {
            c.marking = Marking::Amber as i32;
            c.recipient_members.clear();
        }),
        ("content.recipient_members[0]", |c| {
            c.marking = Marking::AmberStrict as i32;
            c.recipient_members = vec!["ZZ".into()];
        }),
        ("content.recipient_principals", |c| {
            c.marking = Marking::Red as i32;
        }),
        ("content.recipient_principals[0]", |c| {
            c.marking = Marking::Red as i32;
            c.recipient_principals = vec![PrincipalRef {
                member: "US".into(),
                subject: String::new(),
            }];
        }),
        ("content.recipient_principals", |c| {
            c.recipient_principals = vec![PrincipalRef {
                member: "US".into(),
                subject: "bob".into(),
            }];
        }),
    ];
    for (field, mutate) in cases {
        let mut c = content(Marking::Green, &[], &[]);
        mutate(&mut c);
        let status = us
            .publish_report(publish_request(c))
            .await
            .expect_err(field);
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(
            status.message().starts_with(&format!("{field}:")),
            "{field}: {}",
            status.message()
        );
    }
    let mut req = publish_request(content(Marking::Green, &[], &[]));
    req.content = None;
    let status = us.publish_report(req).await.unwrap_err();
    assert!(status.message().starts_with("content:"));
    for bad_id in ["", "has space", &"x".repeat(129)] {
        let mut req = publish_request(content(Marking::Green, &[], &[]));
        req.request_id = bad_id.to_string();
        let status = us.publish_report(req).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().starts_with("request_id:"));
    }

    let stored = us
        .list_reports(ListReportsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(stored.reports.is_empty(), "no bad report was stored");
    stack.stop().await;
}

#[tokio::test]
async fn bad_read_arguments_are_refused_by_name() {
    let stack = Stack::spawn().await;
    let mut de = stack.client("de-dora").await;
    let status = de
        .get_report(GetReportRequest {
            report_id: "not-an-id".into(),
            version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("report_id:"));

    let status = de
        .list_reports(ListReportsRequest {
            page_size: 501,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(status.message().starts_with("page_size:"), "{status:?}");

    let status = de
        .list_reports(ListReportsRequest {
            page_token: "%%%".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(status.message().starts_with("page_token:"), "{status:?}");

    let status = de
        .list_reports(ListReportsRequest {
            filter: Some(ReportFilter {
                min_severity: 9,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        status.message().starts_with("filter.min_severity:"),
        "{status:?}"
    );

    let status = de
        .subscribe_reports(SubscribeReportsRequest {
            filter: Some(ReportFilter {
                minerals: vec![12345],
                ..Default::default()
            }),
            after_sequence: None,
        })
        .await
        .unwrap_err();
    assert!(
        status.message().starts_with("filter.minerals[0]:"),
        "{status:?}"
    );
    stack.stop().await;
}

//! Live scores and alerts end to end: members publish reports to the
//! sharing service, the risk service follows its report stream as the
//! workload `risk`, and analysts see scores move and alerts arrive through
//! the gateway. Only CLEAR and GREEN reports count; restarts of either
//! service apply nothing twice; the alert stream resumes.
//!
//! Each test sets the alert threshold between the baseline score of US
//! gallium (processing) and the score with a severity-5 Chinese export
//! restriction — computed here by the service's own library from the
//! shipped reference data — so the restriction crosses it.

use orex_cli::devstack::{DEMO_MEMBERS, SHIPPED_REFERENCE_DATA};
use orex_e2e::{Stack, content, publish, within};
use orex_membership::Partnership;
use orex_proto::common::v1::{Marking, Mineral, Stage};
use orex_proto::risk::v1::*;
use orex_proto::sharing::v1::{
    AmendReportRequest, Category, Price, ReportContent, ResolveReportRequest,
};
use orex_risk::assess::{Assessor, Disruption, Settings};
use orex_risk::reference::ReferenceData;
use prost_types::Timestamp;
use tonic::{Code, Streaming};

const MINERAL: Mineral = Mineral::Gallium;
const STAGE: Stage = Stage::Processing;

fn partnership() -> Partnership {
    let mut text = String::new();
    for m in DEMO_MEMBERS {
        text.push_str(&format!(
            "[[members]]\ncode = \"{}\"\nname = \"{}\"\nkind = \"{}\"\nfounding = {}\n",
            m.code, m.name, m.kind, m.founding
        ));
        if let Some(b) = m.bloc {
            text.push_str(&format!("bloc = \"{b}\"\n"));
        }
    }
    Partnership::parse(&text, std::path::Path::new(".")).unwrap()
}

/// US gallium's score from the reference data alone, and with a severity-5
/// export restriction by CN in force.
fn scores() -> (f64, f64) {
    let data = ReferenceData::parse(SHIPPED_REFERENCE_DATA.as_bytes()).unwrap();
    let p = partnership();
    let restriction = [Disruption {
        report_id: "x".into(),
        report_version: 1,
        mineral: MINERAL,
        stage: Some(STAGE),
        origin_country: "CN".into(),
        volume_impact_tonnes_per_month: 0.0,
        export_restriction: true,
        severity: 5,
        cut_fraction: 0.0,
    }];
    let score = |d: &[Disruption]| {
        Assessor {
            data: &data,
            partnership: &p,
            disruptions: d,
            settings: Settings::default(),
            now: Timestamp::default(),
        }
        .assess("US", MINERAL, STAGE)
        .unwrap()
        .supply_risk
    };
    let (base, restricted) = (score(&[]), score(&restriction));
    assert!(restricted > base * 1.2, "{base} → {restricted}");
    (base, restricted)
}

async fn spawn() -> (Stack, f64, f64) {
    let (base, restricted) = scores();
    let threshold = (base + restricted) / 2.0;
    let stack = Stack::spawn_configured(|l| {
        Stack::edit_config(
            l,
            "risk.toml",
            "threshold = 1.0",
            &format!("threshold = {threshold}"),
        );
        Stack::edit_config(
            l,
            "risk.toml",
            "recheck_seconds = 60",
            "recheck_seconds = 1",
        );
    })
    .await;
    (stack, base, restricted)
}

fn restriction(marking: Marking, to_members: &[&str]) -> ReportContent {
    ReportContent {
        mineral: MINERAL as i32,
        stage: STAGE as i32,
        category: Category::ExportRestriction as i32,
        severity: 5,
        volume_impact_tonnes_per_month: 0.0,
        summary: "Export licensing of primary gallium".into(),
        ..content(marking, to_members, &[])
    }
}

/// A GREEN report with an observed antimony price far below any reference:
/// its PRICE_DUMPING alert marks a point in the report stream.
fn dumping_marker() -> ReportContent {
    ReportContent {
        mineral: Mineral::Antimony as i32,
        stage: Stage::Refining as i32,
        category: Category::PriceDumping as i32,
        severity: 2,
        volume_impact_tonnes_per_month: 0.0,
        observed_price: Some(Price {
            usd_per_tonne: 1.0,
            observed_at: Some(Timestamp::from(std::time::SystemTime::now())),
        }),
        summary: "Antimony offered far below cost".into(),
        ..content(Marking::Green, &[], &[])
    }
}

async fn subscribe(
    stack: &Stack,
    members: &[&str],
    after: Option<u64>,
) -> Streaming<SubscribeRiskAlertsResponse> {
    stack
        .risk_client("us-ana")
        .await
        .subscribe_risk_alerts(SubscribeRiskAlertsRequest {
            filter: Some(RiskAlertFilter {
                members: members.iter().map(|m| m.to_string()).collect(),
                ..Default::default()
            }),
            after_sequence: after,
        })
        .await
        .expect("subscribe")
        .into_inner()
}

async fn next(stream: &mut Streaming<SubscribeRiskAlertsResponse>) -> SubscribeRiskAlertsResponse {
    within(20, stream.message())
        .await
        .expect("alert stream")
        .expect("an alert")
}

async fn us_score(stack: &Stack) -> SupplyRisk {
    stack
        .risk_client("us-ana")
        .await
        .get_supply_risk(GetSupplyRiskRequest {
            mineral: MINERAL as i32,
            stage: STAGE as i32,
            member: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .supply_risk
        .unwrap()
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-9, "{a} != {b}");
}

fn crossing(a: &SubscribeRiskAlertsResponse) -> (RiskAlertKind, &ThresholdCrossing) {
    let alert = a.alert.as_ref().unwrap();
    match &alert.detail {
        Some(risk_alert::Detail::ThresholdCrossing(c)) => (alert.kind(), c),
        other => panic!("not a crossing: {other:?}"),
    }
}

#[tokio::test]
async fn a_green_export_restriction_raises_the_score_and_an_alert_and_its_resolution_clears_them() {
    let (stack, base, restricted) = spawn().await;
    let mut alerts = subscribe(&stack, &["US"], Some(0)).await;
    let mut alice = stack.client("us-alice").await;
    let report = publish(&mut alice, restriction(Marking::Green, &[])).await;

    let raised = next(&mut alerts).await;
    let (kind, c) = crossing(&raised);
    assert_eq!(kind, RiskAlertKind::ThresholdExceeded);
    assert_eq!(c.cause_report_ids, [report.id.as_str()]);
    close(c.previous_supply_risk, base);
    let alert = raised.alert.as_ref().unwrap();
    assert_eq!(
        (alert.mineral, alert.stage, alert.member.as_str()),
        (MINERAL as i32, STAGE as i32, "US")
    );
    // The score moved, and says why.
    let s = us_score(&stack).await;
    close(s.supply_risk, restricted);
    close(s.baseline_supply_risk, base);
    assert!(s.above_threshold);
    assert_eq!(s.applied_disruptions.len(), 1);
    let d = &s.applied_disruptions[0];
    assert_eq!(
        (d.report_id.as_str(), d.export_restriction),
        (report.id.as_str(), true)
    );
    let cn = s
        .global_supply
        .as_ref()
        .unwrap()
        .countries
        .iter()
        .find(|c| c.country == "CN")
        .unwrap();
    close(cn.trade_restriction_factor, 2.0);

    // Resolved: the alert clears and the score returns to its baseline.
    alice
        .resolve_report(ResolveReportRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            report_id: report.id.clone(),
            note: "licences granted again".into(),
        })
        .await
        .unwrap();
    let cleared = next(&mut alerts).await;
    let (kind, c) = crossing(&cleared);
    assert_eq!(kind, RiskAlertKind::ThresholdCleared);
    assert_eq!(c.cause_report_ids, [report.id.as_str()]);
    assert!(cleared.sequence > raised.sequence);
    let s = us_score(&stack).await;
    close(s.supply_risk, base);
    assert!(s.applied_disruptions.is_empty());
    stack.stop().await;
}

#[tokio::test]
async fn an_amber_restriction_changes_nothing_anyone_can_observe() {
    let (stack, base, _) = spawn().await;
    let before_eu = stack
        .risk_client("de-dana")
        .await
        .list_supply_risks(ListSupplyRisksRequest {
            filter: Some(SupplyRiskFilter {
                members: vec!["US".into(), "EU".into(), "DE".into()],
                ..Default::default()
            }),
            page_size: 500,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .supply_risks;
    let mut alerts = subscribe(&stack, &[], Some(0)).await;
    let mut alice = stack.client("us-alice").await;
    // Shared with the EU only — including the EU's own analysts, whose
    // view must not change either: scores are partnership-wide.
    publish(&mut alice, restriction(Marking::Amber, &["EU"])).await;
    let marker = publish(&mut alice, dumping_marker()).await;

    // The stream is in order: once the marker's alert is here, the AMBER
    // report was processed before it — and raised nothing.
    let first = next(&mut alerts).await;
    let alert = first.alert.unwrap();
    assert_eq!(alert.kind(), RiskAlertKind::PriceDumping, "{alert:?}");
    match alert.detail {
        Some(risk_alert::Detail::PriceDumping(p)) => {
            assert_eq!(p.report_id, marker.id);
            assert!(p.discount > 0.99);
        }
        other => panic!("{other:?}"),
    }
    // The marker amended with the same price raises nothing new; a second
    // marker's alert is the next one.
    alice
        .amend_report(AmendReportRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            report_id: marker.id.clone(),
            expected_version: 1,
            content: Some(ReportContent {
                summary: "Antimony offered far below cost (confirmed)".into(),
                ..dumping_marker()
            }),
            note: "confirmed".into(),
        })
        .await
        .unwrap();
    let second = publish(&mut alice, dumping_marker()).await;
    match next(&mut alerts).await.alert.unwrap().detail {
        Some(risk_alert::Detail::PriceDumping(p)) => assert_eq!(p.report_id, second.id),
        other => panic!("{other:?}"),
    }
    let s = us_score(&stack).await;
    close(s.supply_risk, base);
    assert!(s.applied_disruptions.is_empty());
    let after_eu = stack
        .risk_client("de-dana")
        .await
        .list_supply_risks(ListSupplyRisksRequest {
            filter: Some(SupplyRiskFilter {
                members: vec!["US".into(), "EU".into(), "DE".into()],
                ..Default::default()
            }),
            page_size: 500,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .supply_risks;
    let strip = |v: Vec<SupplyRisk>| -> Vec<SupplyRisk> {
        v.into_iter()
            .map(|mut s| {
                s.computed_at = None;
                s
            })
            .collect()
    };
    assert_eq!(strip(before_eu), strip(after_eu));
    stack.stop().await;
}

#[tokio::test]
async fn restarts_of_either_service_apply_nothing_twice_and_the_alert_stream_resumes() {
    let (mut stack, _, _) = spawn().await;
    let mut alerts = subscribe(&stack, &["US"], Some(0)).await;
    let mut alice = stack.client("us-alice").await;
    let r1 = publish(&mut alice, restriction(Marking::Green, &[])).await;
    let first = next(&mut alerts).await;
    assert_eq!(crossing(&first).0, RiskAlertKind::ThresholdExceeded);

    // The risk service stops; r1 is resolved meanwhile; the service comes
    // back and catches up from the sequence it recorded.
    stack.stop_risk().await;
    let ended = within(20, alerts.message()).await.unwrap_err();
    assert_eq!(ended.code(), Code::Unavailable, "{ended:?}");
    alice
        .resolve_report(ResolveReportRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            report_id: r1.id.clone(),
            note: "lifted".into(),
        })
        .await
        .unwrap();
    stack.start_risk().await;
    let mut alerts = subscribe(&stack, &["US"], Some(first.sequence)).await;
    let second = next(&mut alerts).await;
    assert_eq!(crossing(&second).0, RiskAlertKind::ThresholdCleared);
    assert_eq!(crossing(&second).1.cause_report_ids, [r1.id.as_str()]);

    // The sharing service restarts under the follower; it reconnects.
    stack.restart_sharing().await;
    let mut alice = stack.client("us-alice").await;
    let r2 = publish(&mut alice, restriction(Marking::Green, &[])).await;
    let third = next(&mut alerts).await;
    assert_eq!(crossing(&third).0, RiskAlertKind::ThresholdExceeded);
    assert_eq!(crossing(&third).1.cause_report_ids, [r2.id.as_str()]);

    // One more restart of the risk service, then a marker: everything
    // before the marker was applied exactly once.
    stack.restart_risk().await;
    let marker = publish(&mut alice, dumping_marker()).await;
    let mut all = subscribe(&stack, &["US"], Some(0)).await;
    let mut seen = Vec::new();
    loop {
        let a = next(&mut all).await;
        let alert = a.alert.clone().unwrap();
        let cause = match &alert.detail {
            Some(risk_alert::Detail::ThresholdCrossing(c)) => c.cause_report_ids[0].clone(),
            Some(risk_alert::Detail::PriceDumping(p)) => p.report_id.clone(),
            None => panic!("no detail"),
        };
        seen.push((alert.kind(), cause));
        if alert.kind() == RiskAlertKind::PriceDumping {
            break;
        }
    }
    assert_eq!(
        seen,
        [
            (RiskAlertKind::ThresholdExceeded, r1.id.clone()),
            (RiskAlertKind::ThresholdCleared, r1.id.clone()),
            (RiskAlertKind::ThresholdExceeded, r2.id.clone()),
            (RiskAlertKind::PriceDumping, marker.id.clone()),
        ]
    );
    assert!(
        us_score(&stack).await.above_threshold,
        "r2 is still in force"
    );

    // A resume point beyond the end of the alert log is refused.
    let err = stack
        .risk_client("us-ana")
        .await
        .subscribe_risk_alerts(SubscribeRiskAlertsRequest {
            filter: None,
            after_sequence: Some(1_000_000),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange);
    stack.stop().await;
}

#[tokio::test]
async fn only_the_risk_workload_reads_the_report_stream_and_only_what_everyone_may_see() {
    let stack = Stack::spawn().await;
    let mut alice = stack.client("us-alice").await;
    let amber = publish(&mut alice, restriction(Marking::Amber, &["EU"])).await;
    let green = publish(&mut alice, restriction(Marking::Green, &[])).await;
    // As the workload `risk`, directly at the sharing service.
    let (cert, key) = stack.workload_identity("risk");
    let ch = stack
        .channel(stack.sharing_addr, "sharing", Some((cert, key)))
        .await
        .unwrap();
    let mut sharing =
        orex_proto::sharing::v1::sharing_service_client::SharingServiceClient::new(ch.clone());
    let mut events = sharing
        .subscribe_reports(orex_proto::sharing::v1::SubscribeReportsRequest {
            filter: None,
            after_sequence: Some(0),
        })
        .await
        .unwrap()
        .into_inner();
    let first = within(10, events.message()).await.unwrap().unwrap();
    assert_eq!(
        first.report.unwrap().id,
        green.id,
        "the AMBER report is skipped"
    );
    // It may read a report every member may see; any other is NOT_FOUND,
    // exactly as for a member outside the report's audience.
    let get = |id: &str| orex_proto::sharing::v1::GetReportRequest {
        report_id: id.to_owned(),
        version: 0,
    };
    sharing.get_report(get(&green.id)).await.unwrap();
    let err = sharing.get_report(get(&amber.id)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    // Any other call as the workload is refused: it speaks for no member.
    let err = sharing
        .list_reports(orex_proto::sharing::v1::ListReportsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    // Principal metadata from a workload acting as itself is ignored.
    let mut req = tonic::Request::new(orex_proto::sharing::v1::ListReportsRequest::default());
    req.metadata_mut()
        .insert("x-orex-member", "US".parse().unwrap());
    req.metadata_mut()
        .insert("x-orex-subject", "alice".parse().unwrap());
    req.metadata_mut()
        .insert("x-orex-roles", "reader".parse().unwrap());
    let err = sharing.list_reports(req).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    // A workload on neither list may not call at all.
    let other = stack.layout.ca().unwrap().workload("emergency").unwrap();
    let ch = stack
        .channel(
            stack.sharing_addr,
            "sharing",
            Some((other.cert_pem, other.key_pem)),
        )
        .await
        .unwrap();
    let err = orex_proto::sharing::v1::sharing_service_client::SharingServiceClient::new(ch)
        .subscribe_reports(orex_proto::sharing::v1::SubscribeReportsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    stack.stop().await;
}

#[tokio::test]
async fn a_new_reference_data_version_that_crosses_a_threshold_raises_an_alert_without_a_cause() {
    let (mut stack, _, restricted) = spawn().await;
    let mut alerts = subscribe(&stack, &["US"], Some(0)).await;
    let mut alice = stack.client("us-alice").await;
    publish(&mut alice, restriction(Marking::Green, &[])).await;
    assert_eq!(
        crossing(&next(&mut alerts).await).0,
        RiskAlertKind::ThresholdExceeded
    );
    // Gallium's substitution index halved: the US score falls below the
    // threshold with the restriction still in force.
    let path = stack.layout.config("reference.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let from = "stage = \"processing\"\nsubstitution_index = 1.0\n";
    assert_eq!(
        text.matches(from).count(),
        1,
        "one gallium processing entry"
    );
    let text = text
        .replacen(
            from,
            "stage = \"processing\"\nsubstitution_index = 0.5\n",
            1,
        )
        .replacen("version = \"", "version = \"e2e-", 1);
    std::fs::write(&path, text).unwrap();
    stack.reload_reference_data().unwrap();
    let cleared = next(&mut alerts).await;
    let (kind, c) = crossing(&cleared);
    assert_eq!(kind, RiskAlertKind::ThresholdCleared);
    assert!(c.cause_report_ids.is_empty(), "{:?}", c.cause_report_ids);
    close(c.previous_supply_risk, restricted);
    let now = c.supply_risk.as_ref().unwrap();
    close(now.supply_risk, restricted * 0.5);
    assert!(now.reference_data_version.starts_with("e2e-"));

    // Other figures under the version in force: refused, the old kept.
    let in_force = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        in_force.replacen("substitution_index = 0.5", "substitution_index = 0.6", 1),
    )
    .unwrap();
    let refused = stack.reload_reference_data().unwrap_err().to_string();
    assert!(refused.contains("must carry a new version"), "{refused}");
    close(us_score(&stack).await.supply_risk, restricted * 0.5);

    // A new version put in place while the risk service is down is judged
    // when it starts: the score is back over the threshold, announced once.
    stack.stop_risk().await;
    std::fs::write(
        &path,
        in_force
            .replacen("substitution_index = 0.5", "substitution_index = 1.0", 1)
            .replacen("version = \"e2e-", "version = \"e2e-2-", 1),
    )
    .unwrap();
    stack.start_risk().await;
    let mut alerts = subscribe(&stack, &["US"], Some(cleared.sequence)).await;
    let back = next(&mut alerts).await;
    let (kind, c) = crossing(&back);
    assert_eq!(kind, RiskAlertKind::ThresholdExceeded);
    assert!(c.cause_report_ids.is_empty(), "{:?}", c.cause_report_ids);
    close(c.previous_supply_risk, restricted * 0.5);
    close(c.supply_risk.as_ref().unwrap().supply_risk, restricted);
    // Nothing more: a restart judges the same scores the same way.
    stack.restart_risk().await;
    let mut alice = stack.client("us-alice").await;
    let marker = publish(&mut alice, dumping_marker()).await;
    let mut alerts = subscribe(&stack, &["US"], Some(back.sequence)).await;
    let a = next(&mut alerts).await.alert.unwrap();
    assert_eq!(a.kind(), RiskAlertKind::PriceDumping, "{a:?}");
    match a.detail {
        Some(risk_alert::Detail::PriceDumping(p)) => assert_eq!(p.report_id, marker.id),
        other => panic!("{other:?}"),
    }
    stack.stop().await;
}

/// A GREEN report narrowed to AMBER vanishes for every member outside its
/// new audience, and so for the risk service (which re-reads the reports in
/// force): it stops moving scores, and the stream never told anyone why.
#[tokio::test]
async fn a_restriction_narrowed_below_green_stops_moving_scores() {
    let (stack, base, _) = spawn().await;
    let mut alerts = subscribe(&stack, &["US"], Some(0)).await;
    let mut alice = stack.client("us-alice").await;
    let report = publish(&mut alice, restriction(Marking::Green, &[])).await;
    assert_eq!(
        crossing(&next(&mut alerts).await).0,
        RiskAlertKind::ThresholdExceeded
    );
    alice
        .amend_report(AmendReportRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            report_id: report.id.clone(),
            expected_version: 1,
            content: Some(restriction(Marking::Amber, &["EU"])),
            note: "for the EU only".into(),
        })
        .await
        .unwrap();
    let cleared = next(&mut alerts).await;
    let (kind, c) = crossing(&cleared);
    assert_eq!(kind, RiskAlertKind::ThresholdCleared);
    assert_eq!(c.cause_report_ids, [report.id.as_str()]);
    let s = us_score(&stack).await;
    close(s.supply_risk, base);
    assert!(s.applied_disruptions.is_empty());
    stack.stop().await;
}

/// A GREEN report narrowed to AMBER while the risk service was down: its
/// GREEN event is stale when the service catches up. The sharing service
/// withholds it (a version is streamed only while the latest is visible
/// too), and the risk service confirms any report before it moves scores
/// (for an event already in flight when the narrowing lands): the report
/// never moves a score, and nothing says it existed.
#[tokio::test]
async fn a_restriction_narrowed_while_the_risk_service_was_down_never_moves_scores() {
    let (mut stack, base, _) = spawn().await;
    stack.stop_risk().await;
    let mut alice = stack.client("us-alice").await;
    let report = publish(&mut alice, restriction(Marking::Green, &[])).await;
    alice
        .amend_report(AmendReportRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            report_id: report.id.clone(),
            expected_version: 1,
            content: Some(restriction(Marking::Amber, &["EU"])),
            note: "for the EU only".into(),
        })
        .await
        .unwrap();
    stack.start_risk().await;
    let marker = publish(&mut alice, dumping_marker()).await;
    let mut alerts = subscribe(&stack, &["US"], Some(0)).await;
    let a = next(&mut alerts).await.alert.unwrap();
    assert_eq!(a.kind(), RiskAlertKind::PriceDumping, "{a:?}");
    match a.detail {
        Some(risk_alert::Detail::PriceDumping(p)) => assert_eq!(p.report_id, marker.id),
        other => panic!("{other:?}"),
    }
    let s = us_score(&stack).await;
    close(s.supply_risk, base);
    assert!(s.applied_disruptions.is_empty());
    stack.stop().await;
}

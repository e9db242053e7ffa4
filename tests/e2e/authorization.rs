//! Authorisation at the gateway: permissions by method and role from the
//! policy file, suspended members, per-member rate limits, policy changes
//! without a restart, and screening of whatever a backend returns.

use std::time::Duration;

use futures::StreamExt;
use orex_e2e::rogue::{GREEN_ID, LEAKED_ID};
use orex_e2e::{Stack, content, publish_request, within};
use orex_proto::audit::v1::{AccessDecision, AccessRecord, QueryAccessRecordsRequest};
use orex_proto::common::v1::Marking;
use orex_proto::sharing::v1::{GetReportRequest, ListReportsRequest, SubscribeReportsRequest};
use tonic::Code;

#[tokio::test]
async fn a_call_outside_the_callers_roles_names_the_missing_permission() {
    let stack = Stack::spawn().await;
    let mut bob = stack.client("us-bob").await; // reader
    let status = bob
        .publish_report(publish_request(content(Marking::Clear, &[], &[])))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status
            .message()
            .contains("PublishReport needs the reporter role"),
        "{status:?}"
    );

    // Readers cannot read the access log ...
    let conn = orex_cli::bundle::Connection::open(&stack.bundle("us-bob"))
        .await
        .unwrap();
    let status = conn
        .audit()
        .query_access_records(QueryAccessRecordsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains("needs the auditor role"),
        "{status:?}"
    );

    // ... and auditors cannot read reports.
    let mut auditor = stack.client("us-oversight").await;
    let status = auditor
        .list_reports(ListReportsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        !status.message().contains("Refinery"),
        "never what the data is"
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_suspended_member_is_refused_everywhere_and_others_are_not() {
    let stack = Stack::spawn().await;
    let mut jp = stack.client("jp-kenji").await;
    jp.list_reports(ListReportsRequest::default())
        .await
        .unwrap();
    let mut open_stream = jp
        .subscribe_reports(SubscribeReportsRequest::default())
        .await
        .unwrap()
        .into_inner();

    stack.edit_policy(|p| {
        p.replace(
            "code = \"JP\"\nname = \"Japan\"",
            "code = \"JP\"\nname = \"Japan\"\nstatus = \"suspended\"",
        )
    });
    stack.policy().reload().unwrap();

    let status = jp
        .list_reports(ListReportsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(status.message().contains("JP is suspended"), "{status:?}");
    let status = jp
        .subscribe_reports(SubscribeReportsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = jp
        .publish_report(publish_request(content(Marking::Clear, &[], &[])))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let jp_audit = orex_cli::bundle::Connection::open(&stack.bundle("jp-audit"))
        .await
        .unwrap();
    let status = jp_audit
        .audit()
        .query_access_records(QueryAccessRecordsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    let mut us = stack.client("us-alice").await;
    us.list_reports(ListReportsRequest::default())
        .await
        .unwrap();
    // A stream opened before the suspension ends at its next event.
    us.publish_report(publish_request(content(Marking::Green, &[], &[])))
        .await
        .unwrap();
    let status = within(10, open_stream.next()).await.unwrap().unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    // The refusals are recorded with who was refused.
    let mut oversight = orex_cli::bundle::Connection::open(&stack.bundle("us-oversight"))
        .await
        .unwrap()
        .audit();
    let refused = oversight
        .query_access_records(QueryAccessRecordsRequest {
            filter: Some(orex_proto::audit::v1::AccessRecordFilter {
                member: "JP".into(),
                decision: orex_proto::audit::v1::AccessDecision::Deny as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .records;
    assert!(
        refused
            .iter()
            .any(|r| r.subject == "kenji" && r.reason.contains("suspended")),
        "{refused:?}"
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_member_over_its_rate_limit_is_refused_with_a_retry_hint_and_others_are_not() {
    let stack = Stack::spawn().await;
    stack.edit_policy(|p| {
        format!("{p}\n[rate_limits.members.JP]\nwrite = {{ per_minute = 1, burst = 2 }}\n")
    });
    stack.policy().reload().unwrap();

    let mut jp = stack.client("jp-kenji").await;
    for _ in 0..2 {
        jp.publish_report(publish_request(content(Marking::Green, &[], &[])))
            .await
            .unwrap();
    }
    let status = jp
        .publish_report(publish_request(content(Marking::Green, &[], &[])))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains("member JP"), "{status:?}");
    let retry_ms: u64 = status
        .metadata()
        .get("retry-after-ms")
        .expect("a retry hint")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_ms > 0 && retry_ms <= 60_000, "{retry_ms}");

    // Reads are another class, and other members have their own buckets.
    jp.list_reports(ListReportsRequest::default())
        .await
        .unwrap();
    let mut us = stack.client("us-alice").await;
    for _ in 0..5 {
        us.publish_report(publish_request(content(Marking::Green, &[], &[])))
            .await
            .unwrap();
    }
    stack.stop().await;
}

#[tokio::test]
async fn an_invalid_policy_change_is_refused_and_the_old_policy_stays_in_force() {
    let stack = Stack::spawn().await;
    let good = std::fs::read_to_string(stack.layout.config("policy.toml")).unwrap();
    for (edit, named) in [
        (good.replace("auditor = [", "superuser = ["), "superuser"),
        (
            good.replace(
                "\"orex.sharing.v1.SharingService/GetReport\",",
                "\"orex.sharing.v1.SharingService/GetReports\",",
            ),
            "GetReports",
        ),
        (
            format!("{good}\n[rate_limits.members.XX]\nread = {{ per_minute = 1, burst = 1 }}\n"),
            "XX",
        ),
        (good.replace("bloc = \"EU\"", "bloc = \"EX\""), "EX"),
        (good.replace("[[members]]", "[[member]]"), "member"),
    ] {
        stack.edit_policy(|_| edit.clone());
        let err = stack.policy().reload().unwrap_err().to_string();
        assert!(err.contains(named), "{named}: {err}");
        // Still served under the old policy.
        let mut de = stack.client("de-dora").await;
        de.list_reports(ListReportsRequest::default())
            .await
            .unwrap();
    }
    stack.stop().await;
}

#[tokio::test]
async fn editing_the_policy_file_takes_effect_without_a_restart() {
    let stack = Stack::spawn().await;
    let mut jp = stack.client("jp-kenji").await;
    jp.list_reports(ListReportsRequest::default())
        .await
        .unwrap();
    stack.edit_policy(|p| {
        p.replace(
            "code = \"JP\"\nname = \"Japan\"",
            "code = \"JP\"\nname = \"Japan\"\nstatus = \"suspended\"",
        )
    });
    // The gateway polls the file; wait (bounded) until the change is in force.
    within(20, async {
        loop {
            match jp.list_reports(ListReportsRequest::default()).await {
                Err(s) if s.code() == Code::PermissionDenied => break,
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .await;
    stack.stop().await;
}

#[tokio::test]
async fn the_gateway_withholds_reports_a_backend_returns_wrongly() {
    let stack = Stack::spawn_with_rogue_sharing().await;
    let mut jp = stack.client("jp-kenji").await;
    let status = jp
        .get_report(GetReportRequest {
            report_id: LEAKED_ID.into(),
            version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    let listed = jp
        .list_reports(ListReportsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .reports;
    assert_eq!(
        listed.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        vec![GREEN_ID]
    );

    let mut events = jp
        .subscribe_reports(SubscribeReportsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let first = within(10, events.next()).await.unwrap().unwrap();
    assert_eq!(
        first.report.unwrap().id,
        GREEN_ID,
        "the RED event was withheld"
    );

    // The named recipient still gets it.
    let mut dora = stack.client("de-dora").await;
    dora.get_report(GetReportRequest {
        report_id: LEAKED_ID.into(),
        version: 0,
    })
    .await
    .unwrap();
    stack.stop().await;
}

#[tokio::test]
async fn a_member_cannot_hold_more_streams_open_than_its_cap() {
    let stack = Stack::spawn().await;
    stack.edit_policy(|p| format!("{p}\n[rate_limits.members.JP]\nopen_streams = 1\n"));
    stack.policy().reload().unwrap();
    let mut jp = stack.client("jp-kenji").await;
    let first = jp
        .subscribe_reports(SubscribeReportsRequest::default())
        .await
        .unwrap();
    let status = jp
        .subscribe_reports(SubscribeReportsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains("1 streams open"), "{status:?}");
    // Other members are not affected.
    let mut de = stack.client("de-dora").await;
    let _de_stream = de
        .subscribe_reports(SubscribeReportsRequest::default())
        .await
        .unwrap();
    // Closing the first frees the slot (as soon as the gateway notices).
    drop(first);
    within(20, async {
        loop {
            match jp
                .subscribe_reports(SubscribeReportsRequest::default())
                .await
            {
                Ok(_) => break,
                Err(s) if s.code() == Code::ResourceExhausted => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(s) => panic!("{s:?}"),
            }
        }
    })
    .await;
    stack.stop().await;
}

#[tokio::test]
async fn a_member_added_to_the_policy_file_is_known_to_every_service_without_a_restart() {
    let stack = Stack::spawn().await;
    let mut us = stack.client("us-alice").await;
    let to_canada = || publish_request(content(Marking::Amber, &["CA"], &[]));
    let status = us.publish_report(to_canada()).await.unwrap_err();
    assert_eq!(
        status.code(),
        Code::InvalidArgument,
        "CA is not a member yet"
    );

    stack.edit_policy(|p| {
        format!("{p}\n[[members]]\ncode = \"CA\"\nname = \"Canada\"\nkind = \"state\"\n")
    });
    // Both the gateway and the sharing service watch the file.
    within(20, async {
        loop {
            match us.publish_report(to_canada()).await {
                Ok(_) => break,
                Err(s) if s.code() == Code::InvalidArgument => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(s) => panic!("{s:?}"),
            }
        }
    })
    .await;
    stack.stop().await;
}

/// A certificate from the partnership CA that names no member — no orex
/// identity, a workload's, or a member the policy does not know — can never
/// be served; a flood of calls with it is cut to `[rate_limits.unidentified]`
/// (default burst 10), and the refusals beyond become a tally record, so it
/// cannot fill the access log.
#[tokio::test]
async fn certificates_naming_no_member_are_rate_limited_and_cannot_fill_the_log() {
    let stack = Stack::spawn().await;
    let ca = stack.layout.ca().unwrap();
    let token = stack.token(orex_e2e::TokenParams::of("us-alice"));
    for uri in [
        "https://example.invalid/no-orex-identity",
        "spiffe://orex/workload/batch-job",
        "spiffe://orex/member/ZZ/zed",
    ] {
        let cert = ca.client_with_uris(&[uri]).unwrap();
        let mut client = stack
            .raw_client(
                stack.gateway_addr,
                "gateway",
                Some((cert.cert_pem, cert.key_pem)),
                Some(&token),
            )
            .await
            .unwrap();
        let (mut unauthenticated, mut exhausted) = (0, 0);
        for _ in 0..60 {
            let status = client
                .list_reports(ListReportsRequest::default())
                .await
                .unwrap_err();
            match status.code() {
                Code::Unauthenticated => unauthenticated += 1,
                Code::ResourceExhausted => {
                    assert!(status.metadata().get("retry-after-ms").is_some());
                    exhausted += 1;
                }
                other => panic!("{uri}: unexpected {other:?}: {status:?}"),
            }
        }
        // Burst 10, refilled at 1/s: a few more may pass on a slow machine.
        assert!(
            (10..=20).contains(&unauthenticated) && exhausted == 60 - unauthenticated,
            "{uri}: {unauthenticated} unauthenticated, {exhausted} refused"
        );
        // One DENY record per call let through, then the tally of the rest.
        let log = stack.audit_log();
        let fingerprint = log
            .range(0, log.size())
            .unwrap()
            .into_iter()
            .rev()
            .find(|r| r.decision() == AccessDecision::Deny && !r.reason.starts_with("refused"))
            .map(|r| r.certificate_fingerprint)
            .unwrap();
        assert_eq!(fingerprint.len(), 64, "{uri}: recorded by fingerprint");
        let tallied = async {
            loop {
                let records: Vec<AccessRecord> = log
                    .range(0, log.size())
                    .unwrap()
                    .into_iter()
                    .filter(|r| r.certificate_fingerprint == fingerprint)
                    .collect();
                let counted: u64 = records
                    .iter()
                    .filter_map(|r| {
                        r.reason
                            .strip_prefix("refused ")?
                            .split(' ')
                            .next()?
                            .parse::<u64>()
                            .ok()
                    })
                    .sum();
                if counted == exhausted {
                    return records.len();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        let records = tokio::time::timeout(Duration::from_secs(10), tallied)
            .await
            .unwrap_or_else(|_| panic!("{uri}: the {exhausted} refusals were not tallied"));
        assert!(
            records <= unauthenticated as usize + 3,
            "{uri}: {records} records for 60 calls"
        );
    }
    stack.stop().await;
}

//! Every refusal carries the standard `google.rpc` details a client library
//! can read (`grpc-status-details-bin`): an `ErrorInfo` with domain `orex`
//! and a stable reason, `BadRequest` naming the field, `RetryInfo` on what a
//! retry can cure, `PreconditionFailure` on a state conflict — also when the
//! error comes from a service behind the gateway.

use std::time::Duration;

use orex_e2e::{Stack, TokenParams, content, publish_request};
use orex_kit::status::{DOMAIN, Reason, reason_of};
use orex_proto::common::v1::Marking;
use orex_proto::sharing::v1::{
    GetReportRequest, ListReportsRequest, PublishReportRequest, ResolveReportRequest,
};
use tonic::{Code, Status};
use tonic_types::StatusExt;

fn id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn reason(status: &Status, code: Code, expected: Reason) {
    assert_eq!(status.code(), code, "{status:?}");
    let info = status.get_details_error_info().expect("an ErrorInfo");
    assert_eq!(info.domain, DOMAIN);
    assert_eq!(reason_of(status), Some(expected), "{status:?}");
}

async fn list_as(stack: &Stack, bundle: &str, token: &str) -> Status {
    stack
        .client_with_token(bundle, Some(token))
        .await
        .list_reports(ListReportsRequest::default())
        .await
        .unwrap_err()
}

#[tokio::test]
async fn authentication_refusals_name_their_reason() {
    let stack = Stack::spawn().await;
    let expired = stack.token(TokenParams {
        ttl: Duration::from_secs(60),
        not_before_offset: -3600,
        ..TokenParams::of("us-alice")
    });
    reason(
        &list_as(&stack, "us-alice", &expired).await,
        Code::Unauthenticated,
        Reason::TokenExpired,
    );
    let bobs = stack.token(TokenParams::of("us-bob"));
    reason(
        &list_as(&stack, "us-alice", &bobs).await,
        Code::Unauthenticated,
        Reason::CnfMismatch,
    );
    let foreign = stack.token(TokenParams {
        signer: Some("JP"),
        ..TokenParams::of("us-alice")
    });
    let status = list_as(&stack, "us-alice", &foreign).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(reason_of(&status).is_some(), "{status:?}");
    stack.stop().await;
}

#[tokio::test]
async fn authorisation_and_limits_name_their_reason() {
    let stack = Stack::spawn().await;
    // bob is a reader: publishing needs the reporter role.
    let mut bob = stack.client("us-bob").await;
    let status = bob
        .publish_report(publish_request(content(Marking::Green, &[], &[])))
        .await
        .unwrap_err();
    reason(&status, Code::PermissionDenied, Reason::RoleMissing);

    stack.edit_policy(|p| {
        format!("{p}\n[rate_limits.members.JP]\nread = {{ per_minute = 1, burst = 1 }}\n")
    });
    stack.policy().reload().unwrap();
    let mut jp = stack.client("jp-kenji").await;
    jp.list_reports(ListReportsRequest::default())
        .await
        .unwrap();
    let status = jp
        .list_reports(ListReportsRequest::default())
        .await
        .unwrap_err();
    reason(&status, Code::ResourceExhausted, Reason::RateLimited);
    let retry = status.get_details_retry_info().expect("RetryInfo");
    assert!(retry.retry_delay.is_some_and(|d| d > Duration::ZERO));

    stack.edit_policy(|p| {
        p.replace(
            "code = \"JP\"\nname = \"Japan\"",
            "code = \"JP\"\nname = \"Japan\"\nstatus = \"suspended\"",
        )
        .replace("read = { per_minute = 1, burst = 1 }", "")
    });
    stack.policy().reload().unwrap();
    let status = jp
        .list_reports(ListReportsRequest::default())
        .await
        .unwrap_err();
    reason(&status, Code::PermissionDenied, Reason::MemberSuspended);
    stack.stop().await;
}

#[tokio::test]
async fn a_services_details_pass_through_the_gateway() {
    let stack = Stack::spawn().await;
    let mut alice = stack.client("us-alice").await;

    // A bad field, found by the sharing service: BadRequest names it.
    let mut bad = content(Marking::Green, &[], &[]);
    bad.severity = 9;
    let status = alice
        .publish_report(PublishReportRequest {
            request_id: id(),
            content: Some(bad),
        })
        .await
        .unwrap_err();
    reason(&status, Code::InvalidArgument, Reason::InvalidField);
    let violations = status.get_details_bad_request().expect("BadRequest");
    assert_eq!(violations.field_violations[0].field, "content.severity");

    // A state conflict: PreconditionFailure names the report.
    let r = alice
        .publish_report(publish_request(content(Marking::Green, &[], &[])))
        .await
        .unwrap()
        .into_inner()
        .report
        .unwrap();
    let resolve = || ResolveReportRequest {
        request_id: id(),
        report_id: r.id.clone(),
        note: String::new(),
    };
    alice.resolve_report(resolve()).await.unwrap();
    let status = alice.resolve_report(resolve()).await.unwrap_err();
    reason(
        &status,
        Code::FailedPrecondition,
        Reason::ReportStatusConflict,
    );
    let pre = status
        .get_details_precondition_failure()
        .expect("PreconditionFailure");
    assert_eq!(pre.violations[0].subject, format!("report/{}", r.id));

    // Absent and hidden reports look the same, details included.
    let status = alice
        .get_report(GetReportRequest {
            report_id: id(),
            version: 0,
        })
        .await
        .unwrap_err();
    reason(&status, Code::NotFound, Reason::NotFound);
    stack.stop().await;
}

#[test]
fn the_security_model_documents_every_reason() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../gateway/SECURITY-MODEL.md"
    ))
    .unwrap();
    for r in Reason::ALL {
        assert!(
            doc.contains(&format!("| `{}` |", r.as_str())),
            "gateway/SECURITY-MODEL.md §3a has no row for {r}"
        );
    }
}

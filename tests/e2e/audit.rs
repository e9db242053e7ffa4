//! The access log: every call recorded before it is forwarded, queries and
//! auditor scope, survival across restarts, and tampering caught by
//! `orex audit verify`.

use orex_cli::bundle::{AuditClient, Connection};
use orex_cli::commands::audit::{read_public_key, verify_log};
use orex_e2e::{Stack, TokenParams, content, publish, publish_request};
use orex_gateway::audit::log::seal_record;
use orex_gateway::audit::verify::Problem;
use orex_kit::store::{decode_value, encode_value};
use orex_proto::audit::v1::{
    AccessDecision, AccessRecord, AccessRecordFilter, AccessRecordKind, GetRecordRangeRequest,
    QueryAccessRecordsRequest,
};
use orex_proto::common::v1::{Marking, TimeWindow};
use orex_proto::sharing::v1::{GetReportRequest, ListReportsRequest};
use tonic::Code;

async fn auditor(stack: &Stack, bundle: &str) -> AuditClient {
    Connection::open(&stack.bundle(bundle))
        .await
        .unwrap()
        .audit()
}

async fn query(client: &mut AuditClient, filter: AccessRecordFilter) -> Vec<AccessRecord> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .query_access_records(QueryAccessRecordsRequest {
                filter: Some(filter.clone()),
                page_size: 7,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        out.extend(page.records);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

const PUBLISH: &str = "/orex.sharing.v1.SharingService/PublishReport";

#[tokio::test]
async fn every_call_allowed_or_denied_is_recorded_with_who_what_and_how_it_ended() {
    let stack = Stack::spawn().await;
    let mut alice = stack.client("us-alice").await;
    let report = publish(&mut alice, content(Marking::Green, &[], &[])).await;
    let mut bob = stack.client("us-bob").await;
    bob.publish_report(publish_request(content(Marking::Green, &[], &[])))
        .await
        .unwrap_err();
    // A valid certificate with an expired token: recorded as denied.
    let expired = stack.token(TokenParams {
        not_before_offset: -3600,
        ..TokenParams::of("us-alice")
    });
    let identity = Some((
        stack.bundle_file("us-alice", "cert.pem"),
        stack.bundle_file("us-alice", "key.pem"),
    ));
    let mut stale = stack
        .raw_client(stack.gateway_addr, "gateway", identity, Some(&expired))
        .await
        .unwrap();
    stale
        .list_reports(ListReportsRequest::default())
        .await
        .unwrap_err();

    let mut oversight = auditor(&stack, "us-oversight").await;
    let records = query(
        &mut oversight,
        AccessRecordFilter {
            member: "US".into(),
            ..Default::default()
        },
    )
    .await;

    let decision = records
        .iter()
        .find(|r| {
            r.subject == "alice" && r.method == PUBLISH && r.kind() == AccessRecordKind::Decision
        })
        .expect("the allowed publish has a decision record");
    assert_eq!(decision.decision(), AccessDecision::Allow);
    assert_eq!(decision.certificate_fingerprint.len(), 64);
    assert!(!decision.token_id.is_empty());
    assert!(
        decision.grpc_status_code.is_none(),
        "written before forwarding"
    );
    let outcome = records
        .iter()
        .find(|r| r.decision_index == Some(decision.index))
        .expect("and an outcome record");
    assert_eq!(outcome.grpc_status_code, Some(0));
    assert!(outcome.duration.is_some());
    assert!(outcome.resource_ids.contains(&report.id));
    assert!(
        outcome.resource_owner_members.is_empty(),
        "the caller's own record is for its own member's auditors"
    );
    assert!(outcome.index > decision.index);

    let denied = records
        .iter()
        .find(|r| r.subject == "bob" && r.method == PUBLISH)
        .expect("the denied publish is recorded");
    assert_eq!(denied.decision(), AccessDecision::Deny);
    assert_eq!(denied.grpc_status_code, Some(Code::PermissionDenied as u32));
    assert!(denied.reason.contains("reporter"), "{}", denied.reason);

    let unauthenticated = records
        .iter()
        .find(|r| r.grpc_status_code == Some(Code::Unauthenticated as u32))
        .expect("the expired token is recorded");
    assert_eq!(unauthenticated.member, "US", "member from the certificate");
    assert!(unauthenticated.subject.is_empty(), "no verified subject");
    assert!(unauthenticated.reason.contains("expired"));
    stack.stop().await;
}

#[tokio::test]
async fn a_call_that_cannot_be_recorded_is_refused_and_never_forwarded() {
    let stack = Stack::spawn().await;
    let mut alice = stack.client("us-alice").await;
    stack.audit_log().inject_write_failure(true);
    let status = alice
        .publish_report(publish_request(content(Marking::Green, &[], &[])))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(status.message().contains("access log"), "{status:?}");
    stack.audit_log().inject_write_failure(false);
    let listed = alice
        .list_reports(ListReportsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .reports;
    assert!(
        listed.is_empty(),
        "the refused publish never reached the service"
    );
    stack.stop().await;
}

#[tokio::test]
async fn queries_filter_and_member_auditors_see_only_their_own_member() {
    let stack = Stack::spawn().await;
    let mut kenji = stack.client("jp-kenji").await;
    let jp_report = publish(&mut kenji, content(Marking::Green, &[], &[])).await;
    let mut alice = stack.client("us-alice").await;
    let us_report = publish(&mut alice, content(Marking::Green, &[], &[])).await;
    // A US principal reads JP's report: JP's auditors may see that access.
    alice
        .get_report(GetReportRequest {
            report_id: jp_report.id.clone(),
            version: 0,
        })
        .await
        .unwrap();
    let mut bob = stack.client("us-bob").await;
    bob.publish_report(publish_request(content(Marking::Green, &[], &[])))
        .await
        .unwrap_err();

    let mut oversight = auditor(&stack, "us-oversight").await;
    let by_resource = query(
        &mut oversight,
        AccessRecordFilter {
            resource_id: jp_report.id.clone(),
            ..Default::default()
        },
    )
    .await;
    assert!(!by_resource.is_empty());
    assert!(
        by_resource
            .iter()
            .all(|r| r.resource_ids.contains(&jp_report.id))
    );
    let denied = query(
        &mut oversight,
        AccessRecordFilter {
            decision: AccessDecision::Deny as i32,
            ..Default::default()
        },
    )
    .await;
    assert!(!denied.is_empty() && denied.iter().all(|r| r.decision() == AccessDecision::Deny));
    let by_subject_and_method = query(
        &mut oversight,
        AccessRecordFilter {
            subject: "alice".into(),
            method: PUBLISH.into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(by_subject_and_method.len(), 2, "one decision, one outcome");
    let future = query(
        &mut oversight,
        AccessRecordFilter {
            time_window: Some(TimeWindow {
                start: Some(prost_types::Timestamp {
                    seconds: 4_102_444_800,
                    nanos: 0,
                }),
                end: None,
            }),
            ..Default::default()
        },
    )
    .await;
    assert!(future.is_empty());

    let mut jp_audit = auditor(&stack, "jp-audit").await;
    let seen = query(&mut jp_audit, AccessRecordFilter::default()).await;
    assert!(!seen.is_empty());
    for r in &seen {
        assert!(
            r.member == "JP" || r.resource_owner_members.contains(&"JP".to_string()),
            "JP's auditor saw a record outside its scope: {r:?}"
        );
        assert!(!r.resource_ids.contains(&us_report.id));
    }
    assert!(
        seen.iter()
            .any(|r| r.member == "US" && r.resource_ids.contains(&jp_report.id)),
        "the US access to JP's report is visible to JP's auditors"
    );
    // Records carry access metadata only, never report contents.
    for r in &seen {
        assert!(!format!("{r:?}").contains("Refinery outage"));
    }

    // Range downloads redact out-of-scope records but keep the chain.
    let range = jp_audit
        .get_record_range(GetRecordRangeRequest {
            start_index: 0,
            end_index: 1000,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        range
            .records
            .iter()
            .any(|r| r.redacted && r.member.is_empty())
    );
    let v = stack.verify_audit_log("jp-audit").await;
    assert_eq!(v.problem, None);
    assert!(v.redacted > 0);
    stack.stop().await;
}

#[tokio::test]
async fn bad_audit_arguments_are_refused_by_name() {
    let stack = Stack::spawn().await;
    let mut oversight = auditor(&stack, "us-oversight").await;
    let status = oversight
        .get_record_range(GetRecordRangeRequest {
            start_index: 1_000_000,
            end_index: 1_000_001,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange);
    let status = oversight
        .get_record_range(GetRecordRangeRequest {
            start_index: 0,
            end_index: orex_gateway::audit::MAX_RANGE_RECORDS + 1,
        })
        .await
        .unwrap_err();
    assert!(status.message().starts_with("end_index:"), "{status:?}");
    let status = oversight
        .query_access_records(QueryAccessRecordsRequest {
            page_token: "forged".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(status.message().starts_with("page_token:"), "{status:?}");
    let status = oversight
        .query_access_records(QueryAccessRecordsRequest {
            page_size: 5000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(status.message().starts_with("page_size:"), "{status:?}");
    stack.stop().await;
}

#[tokio::test]
async fn the_log_survives_a_gateway_restart_with_its_chain_intact() {
    let mut stack = Stack::spawn().await;
    let mut alice = stack.client("us-alice").await;
    publish(&mut alice, content(Marking::Green, &[], &[])).await;
    let before = stack.audit_log().size();
    stack.stop_gateway().await; // signs a last checkpoint
    stack.start_gateway().await;
    assert!(stack.audit_log().size() >= before);
    assert!(stack.audit_log().latest_checkpoint().unwrap().is_some());
    let mut alice = stack.client("us-alice").await;
    publish(&mut alice, content(Marking::Green, &[], &[])).await;
    let v = stack.verify_audit_log("us-oversight").await;
    assert_eq!(v.problem, None);
    assert!(v.checkpoints >= 1);
    assert!(v.records > before);
    stack.stop().await;
}

/// What an attacker with write access to the gateway's disk does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tamper {
    /// Change a record's reason, leave its hash.
    Change,
    /// Change a record and recompute its own hash.
    ChangeAndRehash,
    /// Delete a record.
    Remove,
    /// Swap two records.
    Reorder,
    /// Change a record and recompute the whole chain after it.
    RewriteChain,
}

fn tamper(path: &std::path::Path, how: Tamper, target: u64) {
    let db = sled::open(path).unwrap();
    let tree = db.open_tree("audit_records").unwrap();
    let key = |index: u64| (index + 1).to_be_bytes();
    let read = |index: u64| -> AccessRecord {
        decode_value(&tree.get(key(index)).unwrap().unwrap()).unwrap()
    };
    let write = |r: &AccessRecord| {
        tree.insert(key(r.index), encode_value(r)).unwrap();
    };
    match how {
        Tamper::Change => {
            let mut r = read(target);
            r.reason = "nothing to see here".into();
            write(&r);
        }
        Tamper::ChangeAndRehash => {
            let mut r = read(target);
            r.reason = "nothing to see here".into();
            seal_record(&mut r);
            write(&r);
        }
        Tamper::Remove => {
            tree.remove(key(target)).unwrap();
        }
        Tamper::Reorder => {
            let (a, b) = (
                tree.get(key(target)).unwrap().unwrap(),
                tree.get(key(target + 1)).unwrap().unwrap(),
            );
            tree.insert(key(target), b).unwrap();
            tree.insert(key(target + 1), a).unwrap();
        }
        Tamper::RewriteChain => {
            let mut prev = read(target - 1).hash;
            let last = tree
                .last()
                .unwrap()
                .map(|(k, _)| u64::from_be_bytes(k.as_ref().try_into().unwrap()) - 1)
                .unwrap();
            for index in target..=last {
                let mut r = read(index);
                if index == target {
                    r.reason = "nothing to see here".into();
                }
                r.prev_hash = prev;
                seal_record(&mut r);
                prev = r.hash.clone();
                write(&r);
            }
        }
    }
    db.flush().unwrap();
}

#[tokio::test]
async fn tampering_with_the_stored_log_is_caught_by_verify() {
    for how in [
        Tamper::Change,
        Tamper::ChangeAndRehash,
        Tamper::Remove,
        Tamper::Reorder,
        Tamper::RewriteChain,
    ] {
        let mut stack = Stack::spawn().await;
        let mut alice = stack.client("us-alice").await;
        for _ in 0..3 {
            publish(&mut alice, content(Marking::Green, &[], &[])).await;
        }
        assert_eq!(stack.verify_audit_log("us-oversight").await.problem, None);
        stack.stop_gateway().await; // signs a checkpoint over everything so far
        let target = 2;
        tamper(&stack.layout.data("gateway"), how, target);
        if how == Tamper::RewriteChain {
            // A rewritten head contradicts the signed checkpoint: the
            // gateway itself refuses to serve such a log, witness or not
            // (tests/e2e/log_integrity.rs); the verifier's answer to it is
            // tested in gateway/src/audit/verify.rs.
            for discard in [false, true] {
                if discard {
                    stack.discard_audit_witness();
                }
                let err = stack.try_start_gateway().await.expect_err("refused");
                assert!(err.to_string().contains("differs"), "{err}");
            }
            stack.stop().await;
            continue;
        }
        stack.start_gateway().await;
        let v = stack.verify_audit_log("us-oversight").await;
        // `orex audit verify` streams page by page and must agree.
        let key = read_public_key(&stack.layout.audit_keys().1).unwrap();
        let client = auditor(&stack, "us-oversight").await;
        let streamed = verify_log(&client, &key, None, |_| {}).await.unwrap();
        assert_eq!(streamed.problem, v.problem, "{how:?}");
        let problem = v
            .problem
            .unwrap_or_else(|| panic!("{how:?} went unnoticed"));
        match (how, &problem) {
            (Tamper::Change, Problem::Hash { index }) => assert_eq!(*index, target),
            (Tamper::ChangeAndRehash, Problem::Link { index }) => assert_eq!(*index, target + 1),
            (Tamper::Remove | Tamper::Reorder, Problem::Index { position, .. }) => {
                assert_eq!(*position, target)
            }
            (Tamper::RewriteChain, Problem::Head { .. }) => {}
            other => panic!("{how:?} reported as {other:?}"),
        }
        stack.stop().await;
    }
}

#[tokio::test]
async fn another_members_auditors_see_only_the_access_to_their_own_reports() {
    let stack = Stack::spawn().await;
    let mut alice = stack.client("us-alice").await;
    let us_green = publish(&mut alice, content(Marking::Green, &[], &[])).await;
    let mut kenji = stack.client("jp-kenji").await;
    let jp_green = publish(&mut kenji, content(Marking::Green, &[], &[])).await;
    // DE lists both reports in one call.
    let mut dora = stack.client("de-dora").await;
    let listed = dora
        .list_reports(ListReportsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .reports;
    assert_eq!(listed.len(), 2);

    let mut jp_audit = auditor(&stack, "jp-audit").await;
    let seen = query(
        &mut jp_audit,
        AccessRecordFilter {
            member: "DE".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(seen.len(), 1, "only the record about JP's report: {seen:?}");
    assert_eq!(seen[0].resource_ids, vec![jp_green.id.clone()]);
    assert_eq!(seen[0].resource_owner_members, vec!["JP".to_string()]);
    assert!(
        !seen[0].resource_ids.contains(&us_green.id),
        "nothing about other members' reports"
    );

    // DE's own auditors (and the partnership's) see the whole call.
    let mut oversight = auditor(&stack, "us-oversight").await;
    let all = query(
        &mut oversight,
        AccessRecordFilter {
            member: "DE".into(),
            kind: AccessRecordKind::Outcome as i32,
            ..Default::default()
        },
    )
    .await;
    let main = all
        .iter()
        .find(|r| r.resource_owner_members.is_empty())
        .expect("the caller's outcome");
    assert!(main.resource_ids.contains(&us_green.id) && main.resource_ids.contains(&jp_green.id));
    stack.stop().await;
}

#[tokio::test]
async fn a_cancelled_call_still_gets_an_outcome_record() {
    let stack = Stack::spawn().await;
    let mut dora = stack.client("de-dora").await;
    let events = dora
        .subscribe_reports(orex_proto::sharing::v1::SubscribeReportsRequest::default())
        .await
        .unwrap();
    drop(events); // the client goes away
    let mut oversight = auditor(&stack, "us-oversight").await;
    // Hang guard only: the outcome is written as soon as the gateway notices.
    let outcome = orex_e2e::within(20, async {
        loop {
            let found = query(
                &mut oversight,
                AccessRecordFilter {
                    subject: "dora".into(),
                    kind: AccessRecordKind::Outcome as i32,
                    ..Default::default()
                },
            )
            .await;
            if let Some(r) = found.into_iter().next() {
                return r;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(outcome.grpc_status_code, Some(Code::Cancelled as u32));
    assert!(
        outcome.reason.contains("delivered 0 events"),
        "{}",
        outcome.reason
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_denied_call_that_cannot_be_recorded_is_unavailable() {
    let stack = Stack::spawn().await;
    let mut bob = stack.client("us-bob").await;
    stack.audit_log().inject_write_failure(true);
    let status = bob
        .publish_report(publish_request(content(Marking::Green, &[], &[])))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    stack.audit_log().inject_write_failure(false);
    stack.stop().await;
}

#[tokio::test]
async fn oversized_ids_are_recorded_as_their_hash() {
    let stack = Stack::spawn().await;
    let mut dora = stack.client("de-dora").await;
    let huge = "x".repeat(100_000);
    dora.get_report(GetReportRequest {
        report_id: huge.clone(),
        version: 0,
    })
    .await
    .unwrap_err();
    let mut oversight = auditor(&stack, "us-oversight").await;
    let records = query(
        &mut oversight,
        AccessRecordFilter {
            subject: "dora".into(),
            ..Default::default()
        },
    )
    .await;
    assert!(!records.is_empty());
    for r in &records {
        for id in &r.resource_ids {
            assert!(id.len() <= 128 && id.starts_with("sha256:"), "{id:.40}");
        }
    }
    stack.stop().await;
}

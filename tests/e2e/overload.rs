//! Load shedding at the gateway: above its bound on calls in flight, a call is
//! refused at once with RESOURCE_EXHAUSTED and a retry hint, and recorded —
//! while other members are still admitted.

use std::time::Duration;

use orex_e2e::{Stack, within};
use orex_proto::audit::v1::{AccessDecision, AccessRecord};
use orex_proto::sharing::v1::GetReportRequest;
use tokio::net::TcpListener;
use tonic::Code;

fn get(id: &str) -> GetReportRequest {
    GetReportRequest {
        report_id: id.into(),
        version: 0,
    }
}

/// Waits until the access log holds `n` records matching `matches`.
async fn wait_for_records(stack: &Stack, n: usize, matches: impl Fn(&AccessRecord) -> bool) {
    within(20, async {
        loop {
            let log = stack.audit_log();
            let found = log
                .range(0, log.size())
                .unwrap()
                .iter()
                .filter(|r| matches(r))
                .count();
            if found >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// `orex_rejected_requests_total{reason="overloaded"}` in this process.
fn overloaded_count() -> u64 {
    let text = orex_kit::metrics::global().render();
    text.lines()
        .find_map(|l| l.strip_prefix("orex_rejected_requests_total{reason=\"overloaded\"} "))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_over_its_in_flight_bound_is_shed_at_once_and_recorded() {
    let mut stack = Stack::spawn_configured(|l| {
        Stack::edit_config(
            l,
            "gateway.toml",
            "max_in_flight_per_member = 256",
            "max_in_flight_per_member = 2",
        )
    })
    .await;
    // A backend that accepts connections and never answers holds every
    // forwarded call in flight.
    let addr = stack.sharing_addr;
    stack.stop_sharing().await;
    let silent = TcpListener::bind(addr)
        .await
        .expect("rebind the sharing port");
    let _held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });

    let felix = stack.client("fr-felix").await;
    let mut pending = Vec::new();
    for i in 0..2 {
        let mut c = felix.clone();
        pending.push(tokio::spawn(async move {
            c.get_report(get(&format!("held-{i}"))).await
        }));
    }
    let is_allowed_get = |r: &AccessRecord| {
        r.member == "FR"
            && r.method.ends_with("/GetReport")
            && r.decision() == AccessDecision::Allow
    };
    wait_for_records(&stack, 2, is_allowed_get).await;

    // The third call of the same member is refused without waiting.
    let shed_before = overloaded_count();
    let mut c = felix.clone();
    let refused = within(5, c.get_report(get("one-too-many")))
        .await
        .expect_err("over the bound");
    // ... and counted for operators (other tests in this process may add).
    assert!(
        overloaded_count() > shed_before,
        "orex_rejected_requests_total"
    );
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("calls in flight"), "{refused:?}");
    assert!(
        refused.metadata().get("retry-after-ms").is_some(),
        "a retry hint"
    );
    // ... and recorded: shed calls are tallied into one refusal record per
    // member, certificate and method each second.
    wait_for_records(&stack, 1, |r| {
        r.member == "FR"
            && r.method.ends_with("/GetReport")
            && r.decision() == AccessDecision::Deny
            && r.reason.starts_with("refused 1 calls between")
            && r.reason.contains("calls in flight")
            && r.grpc_status_code == Some(Code::ResourceExhausted as u32)
            && !r.certificate_fingerprint.is_empty()
    })
    .await;

    // Another member is not held back by FR's bound: it is admitted (its
    // call then waits on the silent backend like FR's).
    let mut kenji = stack.client("jp-kenji").await;
    let other = tokio::spawn(async move { kenji.get_report(get("other-member")).await });
    wait_for_records(&stack, 1, |r| {
        r.member == "JP"
            && r.method.ends_with("/GetReport")
            && r.decision() == AccessDecision::Allow
    })
    .await;

    other.abort();
    for p in pending {
        p.abort();
    }
}

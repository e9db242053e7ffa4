//! The real binaries stopped by a real SIGTERM, as Kubernetes stops a pod:
//! health turns NOT_SERVING on the ops port, open streams end with a status
//! that says where to resume, every answered call is kept, the store and
//! the access log are flushed, and the process exits 0 within the grace
//! period. Also the ops port's metrics, read as Prometheus reads them.

use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use orex_cli::bundle::Connection;
use orex_cli::devstack::{self, DevLayout, Ports};
use orex_e2e::procs::{Proc, free_port, scrape};
use orex_e2e::{content, publish_request, within};
use orex_kit::status::{Reason, reason_of};
use orex_proto::common::v1::Marking;
use orex_proto::sharing::v1::{GetReportRequest, SubscribeReportsRequest};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_types::StatusExt;

/// Kubernetes' default grace period; the processes must be done well before.
const GRACE: Duration = Duration::from_secs(30);

struct Procs {
    layout: DevLayout,
    gateway_ops: SocketAddr,
    sharing_ops: SocketAddr,
    logs: tempfile::TempDir,
    _dir: tempfile::TempDir,
}

impl Procs {
    fn new() -> Procs {
        let dir = tempfile::tempdir().unwrap();
        let layout = DevLayout::new(dir.path().join("orex"));
        let ports = Ports {
            gateway: free_port(),
            sharing: free_port(),
            risk: free_port(),
            emergency: free_port(),
        };
        devstack::init(&layout, ports).expect("dev folder");
        Procs {
            layout,
            gateway_ops: SocketAddr::from(([127, 0, 0, 1], free_port())),
            sharing_ops: SocketAddr::from(([127, 0, 0, 1], free_port())),
            logs: tempfile::tempdir().unwrap(),
            _dir: dir,
        }
    }

    fn start_sharing(&self) -> Proc {
        Proc::start(
            "orex-sharing",
            &self.layout.config("sharing.toml"),
            &[
                ("OREX_SHARING__OPS__LISTEN", self.sharing_ops.to_string()),
                ("OREX_LOG_FORMAT", "json".into()),
                ("RUST_LOG", "info,orex_kit=debug".into()),
            ],
            self.logs.path(),
        )
    }

    /// The gateway (its risk and emergency backends are not running: it
    /// connects lazily and serves sharing meanwhile).
    fn start_gateway(&self) -> Proc {
        Proc::start(
            "orex-gateway",
            &self.layout.config("gateway.toml"),
            &[
                ("OREX_GATEWAY__OPS__LISTEN", self.gateway_ops.to_string()),
                ("OREX_LOG_FORMAT", "json".into()),
                ("RUST_LOG", "info,orex_kit=debug".into()),
            ],
            self.logs.path(),
        )
    }
}

/// A plain-text gRPC channel to an ops port, once it answers SERVING.
async fn serving(ops: SocketAddr, proc: &mut Proc) -> HealthClient<tonic::transport::Channel> {
    within(60, async {
        loop {
            proc.assert_running();
            if let Ok(channel) = tonic::transport::Endpoint::from_shared(format!("http://{ops}"))
                .unwrap()
                .connect()
                .await
            {
                let mut health = HealthClient::new(channel);
                let answer = health
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await;
                if answer.is_ok_and(|a| a.into_inner().status() == ServingStatus::Serving) {
                    return health;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_gateway_and_the_service_and_loses_nothing() {
    let procs = Procs::new();
    let mut sharing = procs.start_sharing();
    let mut gateway = procs.start_gateway();
    serving(procs.sharing_ops, &mut sharing).await;
    let mut health = serving(procs.gateway_ops, &mut gateway).await;

    let member = Connection::open(&procs.layout.bundle("us-alice"))
        .await
        .unwrap();
    let mut client = member.sharing();
    let mut events = client
        .subscribe_reports(SubscribeReportsRequest {
            filter: None,
            after_sequence: Some(0),
        })
        .await
        .unwrap()
        .into_inner();
    // A member's own trace id is kept through the gateway into the service.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut traced = tonic::Request::new(publish_request(content(Marking::Green, &[], &[])));
    traced.metadata_mut().insert(
        "traceparent",
        format!("00-{trace}-00f067aa0ba902b7-01").parse().unwrap(),
    );
    let first = client
        .publish_report(traced)
        .await
        .unwrap()
        .into_inner()
        .report
        .unwrap();
    let event = within(10, events.next()).await.unwrap().unwrap();
    assert_eq!(event.report.unwrap().id, first.id);

    // What Prometheus would read now.
    let metrics = scrape(procs.gateway_ops).await;
    for line in [
        "orex_grpc_requests_total{method=\"/orex.sharing.v1.SharingService/PublishReport\",code=\"OK\"} 1",
        "orex_grpc_open_streams{method=\"/orex.sharing.v1.SharingService/SubscribeReports\"} 1",
        "orex_stream_events_delivered_total 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
    for name in [
        "orex_grpc_request_duration_seconds_bucket{",
        "orex_access_log_records{log_id=",
        "orex_store_size_bytes{path=",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }
    let sharing_metrics = scrape(procs.sharing_ops).await;
    assert!(
        sharing_metrics.contains(
            "orex_grpc_requests_total{method=\"/orex.sharing.v1.SharingService/PublishReport\",code=\"OK\"} 1"
        ),
        "{sharing_metrics}"
    );

    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let now = within(10, watch.next()).await.unwrap().unwrap();
    assert_eq!(now.status(), ServingStatus::Serving);

    // Calls in flight as the signal arrives: each is answered or refused
    // in a way that says "retry", every confirmed report is kept, and a
    // retry of a refused one (same request id) makes exactly one report.
    let mut calls = Vec::new();
    for _ in 0..20 {
        let mut c = member.sharing();
        let request = publish_request(content(Marking::Green, &[], &[]));
        calls.push(tokio::spawn(async move {
            let answer = c
                .publish_report(request.clone())
                .await
                .map(|r| r.into_inner().report.unwrap().id);
            (request, answer)
        }));
    }
    gateway.terminate();

    let now = within(10, watch.next()).await.unwrap().unwrap();
    assert_eq!(now.status(), ServingStatus::NotServing);
    // The member's stream ends with where to resume, not a broken connection.
    let end = within(GRACE.as_secs(), events.next()).await;
    let end = end.expect("the stream ends with a status").unwrap_err();
    assert_eq!(end.code(), tonic::Code::Unavailable, "{end:?}");
    assert_eq!(reason_of(&end), Some(Reason::ShuttingDown), "{end:?}");
    let info = end.get_details_error_info().expect("ErrorInfo");
    assert!(info.metadata.contains_key("after_sequence"), "{info:?}");

    let mut kept = vec![first.id.clone()];
    let mut to_retry = Vec::new();
    for call in calls {
        match call.await.unwrap() {
            (_, Ok(id)) => kept.push(id),
            // UNAVAILABLE from the gateway, or an error of the client's own
            // transport for a call the closing connection never carried
            // (HTTP/2 GOAWAY; tonic reports it as CANCELLED or as INTERNAL
            // "h2 protocol error" with the transport error as its source):
            // all mean "not done here, retry" — which the retry below
            // proves, with exactly one report per request id.
            (request, Err(s)) => {
                let from_transport = std::error::Error::source(&s)
                    .is_some_and(|e| e.downcast_ref::<tonic::transport::Error>().is_some());
                assert!(
                    matches!(s.code(), tonic::Code::Unavailable | tonic::Code::Cancelled)
                        || from_transport,
                    "a call cut by the shutdown must be refused UNAVAILABLE or never carried: {s:?}"
                );
                to_retry.push(request);
            }
        }
    }
    let exit = gateway
        .wait_exit(GRACE)
        .expect("the gateway exits within the grace period");
    assert!(exit.success(), "{exit}\n{}", gateway.log_tail());
    for (name, log) in [("gateway", gateway.log()), ("sharing", sharing.log())] {
        let line = log
            .lines()
            .find(|l| l.contains(trace))
            .unwrap_or_else(|| panic!("no {name} log line has trace id {trace}:\n{log}"));
        let json: serde_json::Value = serde_json::from_str(line).expect("JSON log line");
        assert_eq!(json["span"]["trace_id"], trace, "{line}");
    }
    assert!(
        gateway.log_tail().contains("access log flushed"),
        "{}",
        gateway.log_tail()
    );

    sharing.terminate();
    let exit = sharing
        .wait_exit(GRACE)
        .expect("sharing exits within the grace period");
    assert!(exit.success(), "{exit}\n{}", sharing.log_tail());
    assert!(
        sharing.log_tail().contains("store flushed"),
        "{}",
        sharing.log_tail()
    );

    // Both restart on what they flushed (the gateway checks its access log
    // against its witness at start) and every confirmed report is there.
    let mut sharing = procs.start_sharing();
    let mut gateway = procs.start_gateway();
    serving(procs.sharing_ops, &mut sharing).await;
    serving(procs.gateway_ops, &mut gateway).await;
    let mut client = Connection::open(&procs.layout.bundle("us-alice"))
        .await
        .unwrap()
        .sharing();
    for request in to_retry {
        let id = client
            .publish_report(request)
            .await
            .expect("a retried publish")
            .into_inner()
            .report
            .unwrap()
            .id;
        kept.push(id);
    }
    let distinct: std::collections::HashSet<_> = kept.iter().collect();
    assert_eq!(distinct.len(), kept.len(), "a retry made a second report");
    for id in kept {
        client
            .get_report(GetReportRequest {
                report_id: id.clone(),
                version: 0,
            })
            .await
            .unwrap_or_else(|s| panic!("report {id} confirmed before SIGTERM is gone: {s:?}"));
    }
}

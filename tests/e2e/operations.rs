//! What operators and integrators rely on: grpc.health.v1 and server
//! reflection on every server, behind the same mutual TLS.

use futures::StreamExt;
use orex_e2e::{Stack, within};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

#[tokio::test]
async fn every_server_reports_health_and_serves_reflection() {
    let stack = Stack::spawn().await;
    let gateway = stack
        .channel(
            stack.gateway_addr,
            "gateway",
            Some(stack.bundle_identity("jp-kenji")),
        )
        .await
        .unwrap();
    let sharing = stack
        .channel(
            stack.sharing_addr,
            "sharing",
            Some(stack.workload_identity("gateway")),
        )
        .await
        .unwrap();
    for ch in [gateway, sharing] {
        let health = HealthClient::new(ch.clone())
            .check(HealthCheckRequest {
                service: "orex.sharing.v1.SharingService".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(health.status(), ServingStatus::Serving);

        let mut reflection = ServerReflectionClient::new(ch);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut answers = reflection
            .server_reflection_info(futures::stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let answer = within(10, answers.next()).await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
            panic!("expected a service list");
        };
        let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
        assert!(
            names.contains(&"orex.sharing.v1.SharingService".to_string()),
            "{names:?}"
        );
        assert!(
            names.contains(&"grpc.health.v1.Health".to_string()),
            "{names:?}"
        );
    }
    stack.stop().await;
}

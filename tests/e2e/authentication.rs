//! The gateway refuses every call whose certificate or token fails a check,
//! with UNAUTHENTICATED and a message naming the check; services refuse
//! anyone but their allow-listed workloads.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use orex_cli::devpki::DevCa;
use orex_e2e::{Stack, TokenParams, content, publish_request};
use orex_proto::common::v1::Marking;
use orex_proto::sharing::v1::ListReportsRequest;
use tonic::Code;

/// Calls ListReports through the gateway as `cert_of`'s certificate with
/// `token`, and returns the status.
async fn list_as(stack: &Stack, cert_of: &str, token: &str) -> tonic::Status {
    list_with(stack, cert_of, Some(token)).await
}

async fn list_with(stack: &Stack, cert_of: &str, token: Option<&str>) -> tonic::Status {
    let identity = Some((
        stack.bundle_file(cert_of, "cert.pem"),
        stack.bundle_file(cert_of, "key.pem"),
    ));
    let mut client = stack
        .raw_client(stack.gateway_addr, "gateway", identity, token)
        .await
        .expect("connect");
    client
        .list_reports(ListReportsRequest::default())
        .await
        .expect_err("the call must be refused")
}

fn assert_unauthenticated(status: &tonic::Status, says: &str) {
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().contains(says),
        "message {:?} should say {says:?}",
        status.message()
    );
}

#[tokio::test]
async fn a_valid_certificate_and_bound_token_are_accepted() {
    let stack = Stack::spawn().await;
    let token = stack.token(TokenParams::of("us-alice"));
    let identity = Some((
        stack.bundle_file("us-alice", "cert.pem"),
        stack.bundle_file("us-alice", "key.pem"),
    ));
    let mut client = stack
        .raw_client(stack.gateway_addr, "gateway", identity, Some(&token))
        .await
        .unwrap();
    client
        .list_reports(ListReportsRequest::default())
        .await
        .unwrap();
    stack.stop().await;
}

#[tokio::test]
async fn a_token_of_one_member_on_another_members_connection_is_refused() {
    let stack = Stack::spawn().await;
    let us_token = stack.token(TokenParams::of("us-alice"));
    let status = list_as(&stack, "jp-kenji", &us_token).await;
    assert_unauthenticated(&status, "trusted for member JP");
    stack.stop().await;
}

#[tokio::test]
async fn a_token_signed_by_another_members_issuer_is_refused() {
    let stack = Stack::spawn().await;
    let forged = stack.token(TokenParams {
        signer: Some("JP"),
        ..TokenParams::of("us-alice")
    });
    let status = list_as(&stack, "us-alice", &forged).await;
    assert_unauthenticated(&status, "signature does not verify");
    stack.stop().await;
}

#[tokio::test]
async fn a_token_naming_another_members_issuer_is_refused() {
    let stack = Stack::spawn().await;
    let token = stack.token(TokenParams {
        issuer: Some("urn:orex:dev:issuer:JP"),
        ..TokenParams::of("us-alice")
    });
    let status = list_as(&stack, "us-alice", &token).await;
    assert_unauthenticated(&status, "issuer (iss) is not trusted for member US");
    stack.stop().await;
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let stack = Stack::spawn().await;
    let token = stack.token(TokenParams {
        not_before_offset: -3600,
        ttl: std::time::Duration::from_secs(600),
        ..TokenParams::of("us-alice")
    });
    let status = list_as(&stack, "us-alice", &token).await;
    assert_unauthenticated(&status, "expired");
    stack.stop().await;
}

#[tokio::test]
async fn a_token_not_valid_yet_is_refused() {
    let stack = Stack::spawn().await;
    let token = stack.token(TokenParams {
        not_before_offset: 3600,
        ..TokenParams::of("us-alice")
    });
    let status = list_as(&stack, "us-alice", &token).await;
    assert_unauthenticated(&status, "not valid yet (nbf)");
    stack.stop().await;
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused() {
    let stack = Stack::spawn().await;
    let token = stack.token(TokenParams {
        audience: Some("someone-else"),
        ..TokenParams::of("us-alice")
    });
    let status = list_as(&stack, "us-alice", &token).await;
    assert_unauthenticated(&status, "audience (aud)");
    stack.stop().await;
}

#[tokio::test]
async fn an_unsigned_token_is_refused() {
    let stack = Stack::spawn().await;
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(
        r#"{"iss":"urn:orex:dev:issuer:US","aud":"orex-gateway","sub":"alice","exp":4102444800,"nbf":0,"roles":["reporter","reader"]}"#,
    );
    let status = list_as(&stack, "us-alice", &format!("{header}.{claims}.")).await;
    assert_unauthenticated(&status, "unsigned tokens are refused");
    stack.stop().await;
}

#[tokio::test]
async fn a_token_bound_to_another_certificate_is_refused() {
    let stack = Stack::spawn().await;
    // Same member, same issuer, valid signature: but bound to bob's certificate.
    let bobs = stack.token(TokenParams::of("us-bob"));
    let status = list_as(&stack, "us-alice", &bobs).await;
    assert_unauthenticated(&status, "bound to a different client certificate");
    stack.stop().await;
}

#[tokio::test]
async fn a_call_without_a_token_is_refused() {
    let stack = Stack::spawn().await;
    let status = list_with(&stack, "us-alice", None).await;
    assert_unauthenticated(&status, "missing authorization");
    let status = list_as(&stack, "us-alice", "").await;
    assert_unauthenticated(&status, "empty");
    let status = list_as(&stack, "us-alice", "not-a-jwt").await;
    assert_unauthenticated(&status, "malformed");
    stack.stop().await;
}

#[tokio::test]
async fn a_connection_without_a_client_certificate_is_refused() {
    let stack = Stack::spawn().await;
    let token = stack.token(TokenParams::of("us-alice"));
    // TLS 1.3 lets the handshake finish; the refusal shows on the first call.
    let result = match stack
        .raw_client(stack.gateway_addr, "gateway", None, Some(&token))
        .await
    {
        Ok(mut client) => client
            .list_reports(ListReportsRequest::default())
            .await
            .err(),
        Err(_) => return stack.stop().await,
    };
    let status = result.expect("a call without a client certificate must fail");
    assert_ne!(status.code(), Code::Ok);
    stack.stop().await;
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let stack = Stack::spawn().await;
    let rogue = DevCa::generate("rogue CA").unwrap();
    let cert = rogue.member_client("US", "alice").unwrap();
    let token = stack.token(TokenParams::of("us-alice"));
    let result = match stack
        .raw_client(
            stack.gateway_addr,
            "gateway",
            Some((cert.cert_pem, cert.key_pem)),
            Some(&token),
        )
        .await
    {
        Ok(mut client) => client
            .list_reports(ListReportsRequest::default())
            .await
            .err(),
        Err(_) => return stack.stop().await,
    };
    assert!(
        result.is_some(),
        "a certificate from another CA must be refused"
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_workload_certificate_is_not_a_member_at_the_gateway() {
    let stack = Stack::spawn().await;
    let (cert, key) = stack.layout.workload("sharing");
    let identity = Some((
        std::fs::read_to_string(cert).unwrap(),
        std::fs::read_to_string(key).unwrap(),
    ));
    let token = stack.token(TokenParams::of("us-alice"));
    let mut client = stack
        .raw_client(stack.gateway_addr, "gateway", identity, Some(&token))
        .await
        .unwrap();
    let status = client
        .list_reports(ListReportsRequest::default())
        .await
        .unwrap_err();
    assert_unauthenticated(&status, "not a member certificate");
    stack.stop().await;
}

#[tokio::test]
async fn members_cannot_bypass_the_gateway_to_reach_the_sharing_service() {
    let stack = Stack::spawn().await;
    let identity = Some((
        stack.bundle_file("us-alice", "cert.pem"),
        stack.bundle_file("us-alice", "key.pem"),
    ));
    let token = stack.token(TokenParams::of("us-alice"));
    let mut direct = stack
        .raw_client(stack.sharing_addr, "sharing", identity, Some(&token))
        .await
        .unwrap();
    let status = direct
        .publish_report(publish_request(content(Marking::Clear, &[], &[])))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("through the gateway"));

    // Health and reflection on a service port are for workloads too.
    let (cert, key) = (
        stack.bundle_file("us-alice", "cert.pem"),
        stack.bundle_file("us-alice", "key.pem"),
    );
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(
            std::fs::read(stack.layout.ca_cert()).unwrap(),
        ))
        .identity(tonic::transport::Identity::from_pem(cert, key))
        .domain_name("sharing");
    let channel =
        tonic::transport::Endpoint::from_shared(format!("https://{}", stack.sharing_addr))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
    let status = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    stack.stop().await;
}

#[tokio::test]
async fn a_reader_without_the_reporter_role_cannot_publish() {
    let stack = Stack::spawn().await;
    let mut bob = stack.client("us-bob").await;
    let status = bob
        .publish_report(publish_request(content(Marking::Clear, &[], &[])))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(status.message().contains("reporter"));
    stack.stop().await;
}

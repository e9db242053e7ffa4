//! Hand-crafted tokens the gateway must refuse: wrong algorithm families,
//! missing claims, unsafe subjects, and tokens replayed on another
//! connection after being cached.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use orex_cli::tokens::cert_thumbprint;
use orex_e2e::{Stack, TokenParams};
use orex_proto::sharing::v1::ListReportsRequest;
use serde_json::{Value, json};
use tonic::Code;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Valid claims for us-alice, to be altered by each test.
fn alice_claims(stack: &Stack) -> serde_json::Map<String, Value> {
    let cert = stack.bundle_file("us-alice", "cert.pem");
    let Value::Object(map) = json!({
        "iss": "urn:orex:dev:issuer:US",
        "aud": "orex-gateway",
        "sub": "alice",
        "nbf": now() - 5,
        "exp": now() + 600,
        "roles": ["reporter", "reader"],
        "cnf": { "x5t#S256": cert_thumbprint(&cert).unwrap() },
    }) else {
        unreachable!()
    };
    map
}

fn sign_us(stack: &Stack, claims: &serde_json::Map<String, Value>) -> String {
    let key = std::fs::read(stack.layout.issuer_keys("US").0).unwrap();
    jsonwebtoken::encode(
        &Header::new(Algorithm::EdDSA),
        claims,
        &EncodingKey::from_ed_pem(&key).unwrap(),
    )
    .unwrap()
}

async fn call_as(stack: &Stack, bundle: &str, token: &str) -> Result<(), tonic::Status> {
    let identity = Some((
        stack.bundle_file(bundle, "cert.pem"),
        stack.bundle_file(bundle, "key.pem"),
    ));
    let mut client = stack
        .raw_client(stack.gateway_addr, "gateway", identity, Some(token))
        .await
        .unwrap();
    client
        .list_reports(ListReportsRequest::default())
        .await
        .map(|_| ())
}

fn refused(result: Result<(), tonic::Status>, says: &str) {
    let status = result.expect_err("the token must be refused");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        status.message().contains(says),
        "{:?} should say {says:?}",
        status.message()
    );
}

#[tokio::test]
async fn crafted_valid_claims_are_accepted() {
    let stack = Stack::spawn().await;
    let token = sign_us(&stack, &alice_claims(&stack));
    call_as(&stack, "us-alice", &token).await.unwrap();
    stack.stop().await;
}

#[tokio::test]
async fn an_hmac_token_keyed_with_the_public_key_is_refused() {
    let stack = Stack::spawn().await;
    // The classic algorithm-confusion attack: HS256 with the public key as secret.
    let public = std::fs::read(stack.layout.issuer_keys("US").1).unwrap();
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &alice_claims(&stack),
        &EncodingKey::from_secret(&public),
    )
    .unwrap();
    refused(
        call_as(&stack, "us-alice", &token).await,
        "algorithm HS256 is not allowed",
    );
    stack.stop().await;
}

#[tokio::test]
async fn tokens_missing_a_required_claim_are_refused_by_claim() {
    let stack = Stack::spawn().await;
    for (claim, says) in [
        ("cnf", "not bound to a certificate"),
        ("nbf", "lacks the nbf claim"),
        ("exp", "lacks the exp claim"),
        ("sub", "lacks the sub claim"),
        ("aud", "lacks the aud claim"),
        ("iss", "lacks the iss claim"),
    ] {
        let mut claims = alice_claims(&stack);
        claims.remove(claim);
        let token = sign_us(&stack, &claims);
        refused(call_as(&stack, "us-alice", &token).await, says);
    }
    stack.stop().await;
}

#[tokio::test]
async fn a_subject_that_is_not_visible_ascii_is_refused() {
    let stack = Stack::spawn().await;
    for sub in ["josé", "alice bob", "a\u{7}"] {
        let mut claims = alice_claims(&stack);
        claims.insert("sub".into(), json!(sub));
        let token = sign_us(&stack, &claims);
        refused(call_as(&stack, "us-alice", &token).await, "visible ASCII");
    }
    stack.stop().await;
}

#[tokio::test]
async fn a_cached_token_is_still_refused_on_another_certificate() {
    let stack = Stack::spawn().await;
    let alices = stack.token(TokenParams::of("us-alice"));
    call_as(&stack, "us-alice", &alices).await.unwrap(); // verified and cached
    refused(
        call_as(&stack, "us-bob", &alices).await,
        "bound to a different client certificate",
    );
    refused(
        call_as(&stack, "jp-kenji", &alices).await,
        "not trusted for member JP",
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_basic_authorization_scheme_is_refused() {
    let stack = Stack::spawn().await;
    let identity = Some((
        stack.bundle_file("us-alice", "cert.pem"),
        stack.bundle_file("us-alice", "key.pem"),
    ));
    let client = stack
        .raw_client(stack.gateway_addr, "gateway", identity, None)
        .await
        .unwrap();
    let mut req = tonic::Request::new(ListReportsRequest::default());
    req.metadata_mut().insert(
        "authorization",
        format!("Basic {}", URL_SAFE_NO_PAD.encode("alice:secret"))
            .parse()
            .unwrap(),
    );
    let status = client.clone().list_reports(req).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("Bearer"));
    stack.stop().await;
}

#[tokio::test]
async fn certificates_without_a_single_known_member_identity_are_refused() {
    let stack = Stack::spawn().await;
    let ca = stack.layout.ca().unwrap();
    let token = stack.token(TokenParams::of("us-alice"));
    for (uris, says) in [
        (
            vec!["spiffe://orex/member/ZZ/zed"],
            "not in the partnership policy",
        ),
        (
            vec![
                "spiffe://orex/member/US/alice",
                "spiffe://orex/member/JP/kenji",
            ],
            "no single spiffe://orex/ identity",
        ),
        (
            vec!["https://example.invalid/alice"],
            "no single spiffe://orex/ identity",
        ),
    ] {
        let cert = ca.client_with_uris(&uris).unwrap();
        let mut client = stack
            .raw_client(
                stack.gateway_addr,
                "gateway",
                Some((cert.cert_pem, cert.key_pem)),
                Some(&token),
            )
            .await
            .unwrap();
        let status = client
            .list_reports(ListReportsRequest::default())
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{uris:?}");
        assert!(
            status.message().contains(says),
            "{uris:?}: {}",
            status.message()
        );
    }
    stack.stop().await;
}

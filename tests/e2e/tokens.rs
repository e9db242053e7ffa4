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
        "iat": now() - 5,
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
    stack
        .client_with_token(bundle, Some(token))
        .await
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
        ("iat", "lacks the iat claim"),
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
    let client = stack.client_with_token("us-alice", None).await;
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

#[tokio::test]
async fn tokens_living_longer_than_the_issuers_maximum_are_refused() {
    let stack = Stack::spawn().await;
    // The default maximum is 24 h: a token until the year 2100 is refused…
    let mut claims = alice_claims(&stack);
    claims.insert("exp".into(), json!(4_102_444_800u64));
    refused(
        call_as(&stack, "us-alice", &sign_us(&stack, &claims)).await,
        "exceeds the 86400 s issuer urn:orex:dev:issuer:US allows",
    );
    // …and so is one "issued" in the future with a short lifetime.
    let mut claims = alice_claims(&stack);
    claims.insert("iat".into(), json!(4_102_444_000u64));
    claims.insert("exp".into(), json!(4_102_444_800u64));
    refused(
        call_as(&stack, "us-alice", &sign_us(&stack, &claims)).await,
        "issued in the future (iat)",
    );
    // Exactly the maximum is accepted.
    let mut claims = alice_claims(&stack);
    claims.insert("exp".into(), json!(now() - 5 + 86_400));
    call_as(&stack, "us-alice", &sign_us(&stack, &claims))
        .await
        .unwrap();
    stack.stop().await;
}

#[tokio::test]
async fn an_issuers_own_maximum_token_lifetime_applies() {
    let stack = Stack::spawn_configured(|layout| {
        orex_e2e::Stack::edit_config(
            layout,
            "policy.toml",
            "issuer = \"urn:orex:dev:issuer:US\"\n",
            "issuer = \"urn:orex:dev:issuer:US\"\nmax_token_lifetime_seconds = 3600\n",
        );
    })
    .await;
    let mut claims = alice_claims(&stack);
    claims.insert("exp".into(), json!(now() + 2 * 3600));
    refused(
        call_as(&stack, "us-alice", &sign_us(&stack, &claims)).await,
        "exceeds the 3600 s issuer urn:orex:dev:issuer:US allows",
    );
    call_as(&stack, "us-alice", &sign_us(&stack, &alice_claims(&stack)))
        .await
        .unwrap();
    stack.stop().await;
}

#[tokio::test]
async fn two_authorization_values_are_refused_and_recorded() {
    let stack = Stack::spawn().await;
    let client = stack.client_with_token("us-alice", None).await;
    let alices = stack.token(TokenParams::of("us-alice"));
    let bobs = stack.token(TokenParams::of("us-bob"));
    // Each alone is fine (alice's on her own connection); together, in
    // either order, ambiguous.
    for (first, second) in [(&alices, &bobs), (&alices, &alices), (&bobs, &alices)] {
        let mut req = tonic::Request::new(ListReportsRequest::default());
        for t in [first, second] {
            req.metadata_mut()
                .append("authorization", format!("Bearer {t}").parse().unwrap());
        }
        let status = client.clone().list_reports(req).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        assert!(
            status.message().contains("more than one authorization"),
            "{status:?}"
        );
    }
    let log = stack.audit_log();
    let denied = log
        .range(0, log.size())
        .unwrap()
        .into_iter()
        .filter(|r| r.reason.contains("more than one authorization"))
        .count();
    assert_eq!(denied, 3, "each ambiguous call leaves a DENY record");
    stack.stop().await;
}

//! Member token verification (`orex_gateway::tokens::TokenVerifier::verify`)
//! on arbitrary token text: refuse or accept, never panic. The issuer's key
//! is a fixed test key; the seed corpus holds a token it signed, so the
//! fuzzer starts from a well-formed JWT and mutates its parts.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use orex_gateway::tokens::TokenVerifier;
use orex_membership::Partnership;

/// The public half of the fuzz issuer's Ed25519 key (test material only).
const ISSUER_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAgZBQc/JxKG2dmiPzY5/86Xa9V2+uMH9hCEgR0/Ee7Wk=
-----END PUBLIC KEY-----
";

const POLICY: &str = r#"
[[members]]
code = "US"
name = "United States"
kind = "state"
[[members.issuers]]
issuer = "urn:fuzz:US"
public_key = "us.pub.pem"
algorithms = ["EdDSA"]
"#;

/// The certificate hash the seed token is bound to (`cnf.x5t#S256` =
/// base64url of 32 bytes of 7).
const CERT_SHA256: [u8; 32] = [7; 32];

static VERIFIER: LazyLock<TokenVerifier> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("us.pub.pem"), ISSUER_PUBLIC_KEY).expect("key");
    let partnership = Partnership::parse(POLICY, dir.path()).expect("policy");
    TokenVerifier::new(&partnership, "orex-gateway", 30).expect("verifier")
});

fuzz_target!(|data: &[u8]| {
    if let Ok(token) = std::str::from_utf8(data) {
        let _ = VERIFIER.verify("US", token, &CERT_SHA256);
    }
});

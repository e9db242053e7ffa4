//! Minting member tokens for development: EdDSA JWTs bound to a client
//! certificate by `cnf.x5t#S256` (RFC 8705), as the gateway requires.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::CliError;

/// What goes into a token.
#[derive(Debug, Clone)]
pub struct TokenSpec<'a> {
    /// `iss`: the member's issuer.
    pub issuer: &'a str,
    /// `aud`: the gateway's audience.
    pub audience: &'a str,
    /// `sub`: the principal.
    pub subject: &'a str,
    /// Roles granted.
    pub roles: &'a [String],
    /// The client certificate (PEM) the token is bound to.
    pub cert_pem: &'a str,
    /// Lifetime from `nbf`.
    pub ttl: Duration,
    /// Seconds from now to `nbf`/`iat` (negative: in the past). Tests use it
    /// for expired and not-yet-valid tokens; normally 0.
    pub not_before_offset: i64,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    jti: String,
    roles: &'a [String],
    cnf: Cnf,
}

#[derive(Serialize)]
struct Cnf {
    #[serde(rename = "x5t#S256")]
    x5t_s256: String,
}

/// Signs a token with an Ed25519 issuer key (PKCS#8 PEM).
pub fn mint(spec: &TokenSpec<'_>, issuer_private_pem: &str) -> Result<String, CliError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let nbf = now.saturating_add_signed(spec.not_before_offset);
    let claims = Claims {
        iss: spec.issuer,
        aud: spec.audience,
        sub: spec.subject,
        iat: nbf,
        nbf,
        exp: nbf + spec.ttl.as_secs(),
        jti: uuid::Uuid::new_v4().to_string(),
        roles: spec.roles,
        cnf: Cnf {
            x5t_s256: cert_thumbprint(spec.cert_pem)?,
        },
    };
    let key = EncodingKey::from_ed_pem(issuer_private_pem.as_bytes())?;
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::EdDSA),
        &claims,
        &key,
    )?)
}

/// base64url(SHA-256(DER of the certificate)), the RFC 8705 thumbprint.
pub fn cert_thumbprint(cert_pem: &str) -> Result<String, CliError> {
    let der = pem_to_der(cert_pem)?;
    Ok(URL_SAFE_NO_PAD.encode(Sha256::digest(&der)))
}

fn pem_to_der(pem: &str) -> Result<Vec<u8>, CliError> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map(|c| c.to_vec())
        .map_err(|_| CliError::Invalid("client certificate is not valid PEM".into()))
}

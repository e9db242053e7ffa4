//! Member token verification: a JWT from an issuer trusted for the caller's
//! member only, bound to the caller's client certificate (RFC 8705).
//!
//! Checks, in order: the header's algorithm is on the member's allow-list;
//! the signature verifies with a key of one of the member's issuers; `iss`,
//! `aud`, `exp`, `nbf`, `iat` and `sub` are present and valid; `iat` is not
//! in the future and `exp` − `iat` is within the issuer's maximum lifetime
//! (a token good for decades is refused); `cnf.x5t#S256` is
//! the SHA-256 of the presented certificate. Verified tokens are cached per
//! (token, certificate) until they expire, because verifying a signature
//! costs more CPU than the call it guards.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use orex_kit::KitError;
use orex_membership::{Partnership, Principal, Role, TokenAlgorithm};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::GatewayError;
use orex_kit::status::Reason;

/// Most cached verified tokens; the cache is pruned when it fills.
const CACHE_LIMIT: usize = 16_384;

/// SHA-256 of the token and of the client certificate it was verified with.
type CacheKey = ([u8; 32], [u8; 32]);

/// The claims orex reads from a member token.
#[derive(Debug, Deserialize)]
struct Claims {
    // Presence of `sub` and `exp` is enforced by the validation's required
    // claims, which reports them by name; defaults keep parsing from failing first.
    #[serde(default)]
    sub: String,
    #[serde(default)]
    exp: u64,
    // jsonwebtoken cannot require `iat`; its absence is refused by name below.
    #[serde(default)]
    iat: Option<u64>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    cnf: Option<Confirmation>,
}

/// Just the issuer, read before verification to pick the key.
#[derive(Debug, Deserialize)]
struct IssuerOnly {
    #[serde(default)]
    iss: Option<String>,
}

/// RFC 8705 confirmation claim.
#[derive(Debug, Deserialize)]
struct Confirmation {
    #[serde(rename = "x5t#S256")]
    x5t_s256: Option<String>,
}

/// One issuer's verification material.
struct IssuerKey {
    issuer: String,
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
    max_lifetime: u64,
}

impl std::fmt::Debug for IssuerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerKey")
            .field("issuer", &self.issuer)
            .field("algorithms", &self.algorithms)
            .field("max_lifetime", &self.max_lifetime)
            .finish_non_exhaustive()
    }
}

/// A verified token: who it names and its id for the audit log.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The principal the token names.
    pub principal: Principal,
    /// The token's `jti`, if any.
    pub token_id: Option<String>,
    /// The token's `exp`, in seconds since the Unix epoch.
    pub exp: u64,
}

/// Verifies member tokens against per-member issuers.
#[derive(Debug)]
pub struct TokenVerifier {
    audience: String,
    leeway: u64,
    issuers: HashMap<String, Vec<IssuerKey>>,
    cache: Mutex<HashMap<CacheKey, Verified>>,
}

impl TokenVerifier {
    /// Loads every member's issuer keys from the policy.
    pub fn new(partnership: &Partnership, audience: &str, leeway: u64) -> Result<Self, KitError> {
        let mut issuers = HashMap::new();
        for m in partnership.members() {
            let mut keys = Vec::new();
            for i in &m.issuers {
                let pem = std::fs::read(&i.public_key).map_err(|e| {
                    KitError::Config(format!(
                        "member {} issuer {}: cannot read key {}: {e}",
                        m.code,
                        i.issuer,
                        i.public_key.display()
                    ))
                })?;
                let algorithms: Vec<Algorithm> = i.algorithms.iter().map(|a| alg(*a)).collect();
                let key = decoding_key(i.algorithms[0], &pem).map_err(|e| {
                    KitError::Config(format!(
                        "member {} issuer {}: key {} is not a valid {:?} public key: {e}",
                        m.code,
                        i.issuer,
                        i.public_key.display(),
                        i.algorithms[0]
                    ))
                })?;
                keys.push(IssuerKey {
                    issuer: i.issuer.clone(),
                    algorithms,
                    key,
                    max_lifetime: i.max_token_lifetime_seconds,
                });
            }
            issuers.insert(m.code.clone(), keys);
        }
        Ok(Self {
            audience: audience.to_owned(),
            leeway,
            issuers,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Verifies `token` for a connection of `member` whose certificate hashes
    /// to `cert_sha256`.
    pub fn verify(
        &self,
        member: &str,
        token: &str,
        cert_sha256: &[u8; 32],
    ) -> Result<Verified, GatewayError> {
        let now = unix_now();
        let cache_key = (Sha256::digest(token.as_bytes()).into(), *cert_sha256);
        if let Some(hit) = self
            .cache_get(&cache_key, now)
            .filter(|hit| hit.principal.member == member)
        {
            return Ok(hit);
        }
        let verified = self.verify_uncached(member, token, cert_sha256)?;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_LIMIT {
            cache.retain(|_, v| v.exp > now);
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
        }
        cache.insert(cache_key, verified.clone());
        Ok(verified)
    }

    fn cache_get(&self, key: &CacheKey, now: u64) -> Option<Verified> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        // Cached entries are used strictly before `exp` (no leeway), so a
        // cache hit is never more permissive than a fresh verification.
        cache.get(key).filter(|v| v.exp > now).cloned()
    }

    fn verify_uncached(
        &self,
        member: &str,
        token: &str,
        cert_sha256: &[u8; 32],
    ) -> Result<Verified, GatewayError> {
        let unauth = GatewayError::Unauthenticated;
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            unauth(Reason::TokenMalformed, "token is malformed or its algorithm is not supported (unsigned tokens are refused)".into())
        })?;
        // The unverified `iss` only selects which of this member's issuers
        // to verify with; nothing else is read before the signature checks.
        let iss = jsonwebtoken::dangerous::insecure_decode_claims::<IssuerOnly>(token)
            .map_err(|_| unauth(Reason::TokenMalformed, "token is malformed".into()))?
            .iss
            .ok_or(GatewayError::MissingClaim("iss"))?;
        let key = self
            .issuers
            .get(member)
            .and_then(|keys| keys.iter().find(|k| k.issuer == iss))
            .ok_or_else(|| {
                unauth(
                    Reason::TokenIssuerUntrusted,
                    format!("token issuer (iss) is not trusted for member {member}"),
                )
            })?;
        if !key.algorithms.contains(&header.alg) {
            return Err(unauth(
                Reason::TokenAlgorithmNotAllowed,
                format!(
                    "token algorithm {:?} is not allowed for member {member}",
                    header.alg
                ),
            ));
        }
        let mut v = Validation::new(header.alg);
        v.algorithms = key.algorithms.clone();
        v.leeway = self.leeway;
        v.validate_exp = true;
        v.validate_nbf = true;
        v.set_audience(&[&self.audience]);
        v.set_issuer(&[&key.issuer]);
        v.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        match jsonwebtoken::decode::<Claims>(token, &key.key, &v) {
            Ok(data) => {
                self.check_lifetime(key, &data.claims)?;
                self.bind(member, data.claims, cert_sha256)
            }
            Err(e) => Err(match e.kind() {
                ErrorKind::InvalidSignature => unauth(
                    Reason::TokenSignatureInvalid,
                    format!(
                        "token signature does not verify with the key of issuer {iss} (trusted for member {member})"
                    ),
                ),
                ErrorKind::ExpiredSignature => {
                    unauth(Reason::TokenExpired, "token has expired (exp)".into())
                }
                ErrorKind::ImmatureSignature => unauth(
                    Reason::TokenNotYetValid,
                    "token is not valid yet (nbf)".into(),
                ),
                ErrorKind::InvalidAudience => unauth(
                    Reason::TokenAudienceMismatch,
                    format!("token audience (aud) is not {}", self.audience),
                ),
                ErrorKind::InvalidIssuer => unauth(
                    Reason::TokenIssuerUntrusted,
                    format!("token issuer (iss) is not trusted for member {member}"),
                ),
                ErrorKind::MissingRequiredClaim(c) => match c.as_str() {
                    "exp" => GatewayError::MissingClaim("exp"),
                    "nbf" => GatewayError::MissingClaim("nbf"),
                    "aud" => GatewayError::MissingClaim("aud"),
                    "sub" => GatewayError::MissingClaim("sub"),
                    _ => GatewayError::MissingClaim("iss"),
                },
                ErrorKind::InvalidAlgorithm => unauth(
                    Reason::TokenAlgorithmNotAllowed,
                    "token algorithm is not allowed".into(),
                ),
                _ => unauth(Reason::TokenMalformed, "token is invalid".into()),
            }),
        }
    }

    /// `iat` present, not in the future (beyond the leeway), and `exp` −
    /// `iat` within the issuer's maximum: without the second check a token
    /// issued "in 2099" for an hour would pass the first.
    fn check_lifetime(&self, key: &IssuerKey, claims: &Claims) -> Result<(), GatewayError> {
        let unauth = GatewayError::Unauthenticated;
        let iat = claims.iat.ok_or(GatewayError::MissingClaim("iat"))?;
        if iat > unix_now().saturating_add(self.leeway) {
            return Err(unauth(
                Reason::TokenLifetimeTooLong,
                "token is issued in the future (iat)".into(),
            ));
        }
        let lifetime = claims.exp.saturating_sub(iat);
        if lifetime > key.max_lifetime {
            return Err(unauth(
                Reason::TokenLifetimeTooLong,
                format!(
                    "token lifetime (exp - iat) of {lifetime} s exceeds the {} s issuer {} allows",
                    key.max_lifetime, key.issuer
                ),
            ));
        }
        Ok(())
    }

    fn bind(
        &self,
        member: &str,
        claims: Claims,
        cert_sha256: &[u8; 32],
    ) -> Result<Verified, GatewayError> {
        let unauth = |r: Reason, m: &str| GatewayError::Unauthenticated(r, m.to_owned());
        let thumbprint = claims.cnf.and_then(|c| c.x5t_s256).ok_or_else(|| {
            unauth(
                Reason::CnfMissing,
                "token is not bound to a certificate (cnf.x5t#S256 missing)",
            )
        })?;
        if thumbprint != URL_SAFE_NO_PAD.encode(cert_sha256) {
            return Err(unauth(
                Reason::CnfMismatch,
                "token is bound to a different client certificate (cnf.x5t#S256 mismatch)",
            ));
        }
        // Subjects travel in gRPC metadata and audit records: visible ASCII only.
        if claims.sub.is_empty()
            || claims.sub.len() > 256
            || !claims.sub.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(unauth(
                Reason::TokenSubjectInvalid,
                "token subject (sub) must be 1 to 256 visible ASCII characters",
            ));
        }
        // Role names this gateway does not know grant nothing.
        let roles = claims
            .roles
            .iter()
            .filter_map(|r| r.parse::<Role>().ok())
            .collect();
        Ok(Verified {
            principal: Principal {
                member: member.to_owned(),
                subject: claims.sub,
                roles,
            },
            token_id: claims.jti,
            exp: claims.exp,
        })
    }
}

fn alg(a: TokenAlgorithm) -> Algorithm {
    match a {
        TokenAlgorithm::EdDSA => Algorithm::EdDSA,
        TokenAlgorithm::ES256 => Algorithm::ES256,
        TokenAlgorithm::ES384 => Algorithm::ES384,
        TokenAlgorithm::PS256 => Algorithm::PS256,
        TokenAlgorithm::RS256 => Algorithm::RS256,
    }
}

fn decoding_key(a: TokenAlgorithm, pem: &[u8]) -> jsonwebtoken::errors::Result<DecodingKey> {
    match a {
        TokenAlgorithm::EdDSA => DecodingKey::from_ed_pem(pem),
        TokenAlgorithm::ES256 | TokenAlgorithm::ES384 => DecodingKey::from_ec_pem(pem),
        TokenAlgorithm::PS256 | TokenAlgorithm::RS256 => DecodingKey::from_rsa_pem(pem),
    }
}

/// Seconds since the Unix epoch, as token times are written.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

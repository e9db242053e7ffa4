//! Authentication of a member's call: the client certificate names the
//! member, the bearer token names the principal, and the token must be bound
//! to that very certificate.

use std::sync::Arc;

use orex_kit::identity::{IdentityError, Peer, PeerIdentity, peer_of};
use orex_membership::{Partnership, Principal};
use tonic::Request;

use crate::error::GatewayError;
use crate::tokens::TokenVerifier;
use orex_kit::status::Reason;

/// Who is calling, as the gateway established it.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The verified principal.
    pub principal: Principal,
    /// SHA-256 of the client certificate, lower-case hex.
    pub cert_fingerprint: String,
    /// The token's `jti`, if it has one.
    pub token_id: Option<String>,
    /// When the token expires (seconds since the Unix epoch); long streams
    /// end then.
    pub expires_at: u64,
}

/// Authenticates member calls.
#[derive(Debug)]
pub struct Authenticator {
    partnership: Arc<Partnership>,
    tokens: TokenVerifier,
}

impl Authenticator {
    /// Builds an authenticator over the partnership policy.
    pub fn new(partnership: Arc<Partnership>, tokens: TokenVerifier) -> Self {
        Self {
            partnership,
            tokens,
        }
    }

    /// Establishes the caller of `req` or says which check failed.
    pub fn authenticate<T>(&self, req: &Request<T>) -> Result<Caller, GatewayError> {
        self.authenticate_peer(req, &peer_of(req))
    }

    /// [`authenticate`](Self::authenticate) with the peer already read from
    /// the request's certificate (the door reads it once per call).
    pub fn authenticate_peer<T>(
        &self,
        req: &Request<T>,
        peer: &Result<Peer, IdentityError>,
    ) -> Result<Caller, GatewayError> {
        let unauth = GatewayError::Unauthenticated;
        let peer = peer
            .as_ref()
            .map_err(|e| unauth(e.reason(), e.to_string()))?;
        let member = match &peer.identity {
            PeerIdentity::Member { member, .. } => member.clone(),
            PeerIdentity::Workload(name) => {
                return Err(unauth(
                    Reason::CertificateNotMember,
                    format!("workload certificate {name:?} is not a member certificate"),
                ));
            }
        };
        if self.partnership.member(&member).is_none() {
            return Err(unauth(
                Reason::MemberUnknown,
                format!(
                    "certificate names member {member}, which is not in the partnership policy"
                ),
            ));
        }
        let token = bearer(req)?;
        let verified = self.tokens.verify(&member, token, &peer.cert_sha256)?;
        // Suspension is an authorisation decision: the door checks it once
        // the principal is known, so the refusal is recorded with who it was.
        Ok(Caller {
            principal: verified.principal,
            cert_fingerprint: peer.fingerprint_hex(),
            token_id: verified.token_id,
            expires_at: verified.exp,
        })
    }
}

fn bearer<T>(req: &Request<T>) -> Result<&str, GatewayError> {
    let unauth = |m: &str| GatewayError::Unauthenticated(Reason::TokenMissing, m.to_owned());
    let mut values = req.metadata().get_all("authorization").iter();
    let value = values
        .next()
        .ok_or_else(|| unauth("missing authorization metadata (expected \"Bearer <token>\")"))?;
    // Two credentials are ambiguous: which principal is calling? Using the
    // first and ignoring the rest would let a proxy or a client library that
    // appends its own header act as someone else.
    if values.next().is_some() {
        return Err(GatewayError::Unauthenticated(
            Reason::TokenAmbiguous,
            "more than one authorization metadata value; send exactly one bearer token".into(),
        ));
    }
    let value = value
        .to_str()
        .map_err(|_| unauth("authorization metadata is not ASCII"))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(|| unauth("authorization metadata must be \"Bearer <token>\""))?
        .trim();
    if token.is_empty() {
        return Err(unauth("bearer token is empty"));
    }
    Ok(token)
}

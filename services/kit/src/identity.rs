//! Who is on the other end of a connection, read from its client certificate.
//!
//! orex certificates carry one SPIFFE-style URI SAN:
//! - `spiffe://orex/member/<MEMBER>/<name>` for a member's principal or system,
//! - `spiffe://orex/workload/<name>` for an orex workload (gateway, sharing, …).
//!
//! The TLS layer has already verified the chain to the partnership CA; this
//! module only reads the verified leaf.

use std::collections::HashMap;
use std::fmt;
use std::sync::{LazyLock, Mutex};

use sha2::{Digest, Sha256};
use tonic::Request;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The URI SAN prefix of every orex identity.
pub const SPIFFE_PREFIX: &str = "spiffe://orex/";

/// The identity named by a peer's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerIdentity {
    /// A member's client: its member code and the certificate's name.
    Member {
        /// Member code (`US`, `EU`).
        member: String,
        /// Name within the member (often the token subject).
        name: String,
    },
    /// An orex workload (`gateway`, `sharing`).
    Workload(String),
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerIdentity::Member { member, name } => {
                write!(f, "{SPIFFE_PREFIX}member/{member}/{name}")
            }
            PeerIdentity::Workload(name) => write!(f, "{SPIFFE_PREFIX}workload/{name}"),
        }
    }
}

/// A verified peer: its identity and the SHA-256 of its leaf certificate
/// (the value a cert-bound token carries as `cnf.x5t#S256`).
#[derive(Debug, Clone)]
pub struct Peer {
    /// Identity from the URI SAN.
    pub identity: PeerIdentity,
    /// SHA-256 of the DER leaf certificate.
    pub cert_sha256: [u8; 32],
}

impl Peer {
    /// Lower-case hex of the certificate hash, as logged and audited.
    pub fn fingerprint_hex(&self) -> String {
        self.cert_sha256
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Why a peer has no usable identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// No client certificate on the connection.
    #[error("no client certificate was presented")]
    NoCertificate,
    /// The certificate could not be parsed.
    #[error("the client certificate could not be parsed")]
    Unparsable,
    /// The certificate has no orex URI SAN, or more than one.
    #[error("the client certificate carries no single spiffe://orex/ identity")]
    NoIdentity,
}

impl IdentityError {
    /// The stable reason a caller is told (`kit::status`).
    pub fn reason(&self) -> crate::status::Reason {
        match self {
            IdentityError::NoCertificate => crate::status::Reason::CertificateMissing,
            IdentityError::Unparsable | IdentityError::NoIdentity => {
                crate::status::Reason::CertificateNoIdentity
            }
        }
    }
}

/// Reads the verified peer of a request.
pub fn peer_of<T>(request: &Request<T>) -> Result<Peer, IdentityError> {
    let certs = request.peer_certs().ok_or(IdentityError::NoCertificate)?;
    let leaf = certs.first().ok_or(IdentityError::NoCertificate)?;
    peer_from_der(leaf.as_ref())
}

/// Certificates whose identity is remembered; the cache is emptied when full.
const CACHE_LIMIT: usize = 16_384;

/// Identities already read, by certificate hash: a connection presents the
/// same certificate on every call, and parsing it cost more than the rest
/// of the identity check. The hash covers the whole DER, so a hit is the
/// same certificate (already verified by TLS for this connection).
static IDENTITIES: LazyLock<Mutex<IdentityCache>> = LazyLock::new(|| Mutex::new(HashMap::new()));

type IdentityCache = HashMap<[u8; 32], Result<PeerIdentity, IdentityError>>;

/// Reads a peer from a DER certificate.
pub fn peer_from_der(der: &[u8]) -> Result<Peer, IdentityError> {
    let cert_sha256: [u8; 32] = Sha256::digest(der).into();
    let cached = IDENTITIES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&cert_sha256)
        .cloned();
    let identity = match cached {
        Some(found) => found,
        None => {
            let found = identity_from_der(der);
            let mut cache = IDENTITIES.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(cert_sha256, found.clone());
            found
        }
    }?;
    Ok(Peer {
        identity,
        cert_sha256,
    })
}

fn identity_from_der(der: &[u8]) -> Result<PeerIdentity, IdentityError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|_| IdentityError::Unparsable)?;
    let san = cert
        .subject_alternative_name()
        .map_err(|_| IdentityError::Unparsable)?
        .ok_or(IdentityError::NoIdentity)?;
    let mut found = san.value.general_names.iter().filter_map(|n| match n {
        GeneralName::URI(uri) if uri.starts_with(SPIFFE_PREFIX) => Some(*uri),
        _ => None,
    });
    let uri = found.next().ok_or(IdentityError::NoIdentity)?;
    if found.next().is_some() {
        return Err(IdentityError::NoIdentity);
    }
    parse_identity(uri).ok_or(IdentityError::NoIdentity)
}

/// Parses `spiffe://orex/member/US/alice` or `spiffe://orex/workload/gateway`.
pub fn parse_identity(uri: &str) -> Option<PeerIdentity> {
    let rest = uri.strip_prefix(SPIFFE_PREFIX)?;
    let parts: Vec<&str> = rest.split('/').collect();
    let ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    match parts.as_slice() {
        ["member", member, name] if ok(member) && ok(name) => Some(PeerIdentity::Member {
            member: (*member).to_owned(),
            name: (*name).to_owned(),
        }),
        ["workload", name] if ok(name) => Some(PeerIdentity::Workload((*name).to_owned())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_member_and_workload_uris() {
        assert_eq!(
            parse_identity("spiffe://orex/member/US/alice"),
            Some(PeerIdentity::Member {
                member: "US".into(),
                name: "alice".into()
            })
        );
        assert_eq!(
            parse_identity("spiffe://orex/workload/gateway"),
            Some(PeerIdentity::Workload("gateway".into()))
        );
        assert_eq!(parse_identity("spiffe://other/workload/gateway"), None);
        assert_eq!(parse_identity("spiffe://orex/member/US"), None);
        assert_eq!(parse_identity("spiffe://orex/member/US/a/b"), None);
        assert_eq!(parse_identity("spiffe://orex/workload/../x"), None);
    }
}

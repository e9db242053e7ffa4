//! The verified principal, as the gateway forwards it to a service.
//!
//! Services do not verify member tokens themselves: the gateway does, then
//! sends the principal in `x-orex-*` metadata. A service believes that
//! metadata only on a connection whose client certificate is a workload on
//! its allow-list ([`WorkloadGuard`], applied by the server to every call,
//! health and reflection included); from anyone else the call is refused.
//! [`with_principal`] then turns the metadata into a [`Principal`].

use std::collections::BTreeSet;
use std::sync::Arc;

use orex_membership::{Principal, Role};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Status};

use crate::identity::{PeerIdentity, peer_of};
use crate::status::{self, Reason};
use tonic::Code;

const MEMBER: &str = "x-orex-member";
const SUBJECT: &str = "x-orex-subject";
const ROLES: &str = "x-orex-roles";

/// Writes `principal` into outgoing metadata.
pub fn attach(principal: &Principal, metadata: &mut MetadataMap) -> Result<(), Status> {
    let value = |s: &str| {
        MetadataValue::try_from(s).map_err(|_| {
            status::error(
                Code::Internal,
                Reason::Internal,
                "principal cannot be forwarded as metadata",
            )
        })
    };
    metadata.insert(MEMBER, value(&principal.member)?);
    metadata.insert(SUBJECT, value(&principal.subject)?);
    let roles: Vec<&str> = principal.roles.iter().map(|r| r.as_str()).collect();
    metadata.insert(ROLES, value(&roles.join(","))?);
    Ok(())
}

/// Reads the principal the gateway forwarded.
pub fn extract(metadata: &MetadataMap) -> Result<Principal, Status> {
    let get = |k: &str| {
        metadata
            .get(k)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                status::error(
                    Code::Unauthenticated,
                    Reason::PrincipalMissing,
                    format!("missing forwarded principal ({k})"),
                )
            })
    };
    let member = get(MEMBER)?.to_owned();
    let subject = get(SUBJECT)?.to_owned();
    let roles = metadata
        .get(ROLES)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(',')
        .filter(|r| !r.is_empty())
        // Unknown role names are dropped: a newer gateway may know more roles.
        .filter_map(|r| r.parse::<Role>().ok())
        .collect();
    Ok(Principal {
        member,
        subject,
        roles,
    })
}

/// Admits only allow-listed workloads, on every route of a server.
#[derive(Debug, Clone)]
pub struct WorkloadGuard {
    allowed: Arc<BTreeSet<String>>,
}

impl WorkloadGuard {
    /// Admits the named workloads (`gateway`).
    pub fn new<I, S>(allowed: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            allowed: Arc::new(allowed.into_iter().map(Into::into).collect()),
        }
    }

    /// Checks the peer's certificate names an allowed workload.
    pub fn admit(&self, request: Request<()>) -> Result<Request<()>, Status> {
        let peer = peer_of(&request)
            .map_err(|e| status::error(Code::Unauthenticated, e.reason(), e.to_string()))?;
        match &peer.identity {
            PeerIdentity::Workload(name) if self.allowed.contains(name) => Ok(request),
            other => {
                tracing::warn!(peer = %other, "refused a peer that is not on the workload allow-list");
                Err(status::error(
                    Code::PermissionDenied,
                    Reason::WorkloadNotAllowed,
                    format!(
                        "{other} may not call this service directly; members go through the gateway"
                    ),
                ))
            }
        }
    }
}

/// A service interceptor that reads the forwarded principal into a request
/// extension. Only meaningful behind a [`WorkloadGuard`].
pub fn with_principal(mut request: Request<()>) -> Result<Request<()>, Status> {
    let principal = extract(request.metadata())?;
    request.extensions_mut().insert(principal);
    Ok(request)
}

/// The principal [`with_principal`] put on the request.
pub fn principal_of<T>(request: &Request<T>) -> Result<Principal, Status> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| {
            status::error(
                Code::Unauthenticated,
                Reason::PrincipalMissing,
                "no verified principal on this call",
            )
        })
}

//! The verified principal, as the gateway forwards it to a service.
//!
//! Services do not verify member tokens themselves: the gateway does, then
//! sends the principal in `x-orex-*` metadata. A service believes that
//! metadata only on a connection whose client certificate is a workload on
//! its allow-list of forwarders ([`WorkloadGuard`], applied by the server to
//! every call, health and reflection included); from anyone else the call is
//! refused. [`WorkloadGuard::principals`] then turns the metadata into a
//! [`Principal`] — or, for a workload allowed to call as itself (the risk
//! service reading the report stream), marks the call a [`WorkloadCaller`].

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

/// Writes `principal` into outgoing metadata, with the call's trace id
/// (`trace`) so the service logs under the same id.
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
    if let Some(id) = crate::trace::current() {
        metadata.insert("traceparent", value(&id.traceparent())?);
    }
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

/// Admits only allow-listed workloads, on every route of a server, in two
/// kinds: *forwarders* (the gateway), whose calls carry the member principal
/// they verified, and *workloads acting as themselves* (the risk service
/// following the sharing service's report stream), whose calls carry none
/// and are answered only where a service says a workload may call.
#[derive(Debug, Clone)]
pub struct WorkloadGuard {
    forwarders: Arc<BTreeSet<String>>,
    themselves: Arc<BTreeSet<String>>,
}

/// The workload [`WorkloadGuard::admit`] let in.
#[derive(Debug, Clone)]
struct Admitted(String);

/// A call from a workload acting as itself (no member principal): its
/// workload name, put on the request by [`WorkloadGuard::principals`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadCaller(pub String);

impl WorkloadGuard {
    /// Admits the named forwarders (`gateway`).
    pub fn new<I, S>(forwarders: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            forwarders: Arc::new(forwarders.into_iter().map(Into::into).collect()),
            themselves: Arc::new(BTreeSet::new()),
        }
    }

    /// Also admits the named workloads calling as themselves (`risk`). A
    /// name in both lists fails closed: it is only a workload acting as
    /// itself, never a forwarder (configs refuse the overlap outright).
    pub fn acting_as_themselves<I, S>(mut self, workloads: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let themselves: BTreeSet<String> = workloads.into_iter().map(Into::into).collect();
        self.forwarders = Arc::new(
            self.forwarders
                .iter()
                .filter(|w| !themselves.contains(*w))
                .cloned()
                .collect(),
        );
        self.themselves = Arc::new(themselves);
        self
    }

    fn workload<T>(request: &Request<T>) -> Result<PeerIdentity, Status> {
        peer_of(request)
            .map(|p| p.identity)
            .map_err(|e| status::error(Code::Unauthenticated, e.reason(), e.to_string()))
    }

    /// Checks the peer's certificate names an allowed workload, and notes
    /// which on the request (so [`principals`](Self::principals) reads the
    /// certificate once per call, not twice).
    pub fn admit(&self, mut request: Request<()>) -> Result<Request<()>, Status> {
        match Self::workload(&request)? {
            PeerIdentity::Workload(name)
                if self.forwarders.contains(&name) || self.themselves.contains(&name) =>
            {
                request.extensions_mut().insert(Admitted(name));
                Ok(request)
            }
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

    /// The service interceptor that says who is calling: for a forwarder,
    /// the member principal it forwarded ([`principal_of`]); for a workload
    /// acting as itself, a [`WorkloadCaller`] ([`workload_of`]) — any
    /// principal metadata it sends is ignored, so only forwarders can speak
    /// for members.
    pub fn principals(
        &self,
    ) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone + Send + Sync + 'static
    {
        let guard = self.clone();
        move |mut request: Request<()>| {
            let peer = match request.extensions().get::<Admitted>() {
                Some(Admitted(name)) => PeerIdentity::Workload(name.clone()),
                None => Self::workload(&request)?,
            };
            match peer {
                PeerIdentity::Workload(name) if guard.forwarders.contains(&name) => {
                    let principal = extract(request.metadata())?;
                    request.extensions_mut().insert(principal);
                }
                PeerIdentity::Workload(name) if guard.themselves.contains(&name) => {
                    request.extensions_mut().insert(WorkloadCaller(name));
                }
                other => {
                    return Err(status::error(
                        Code::PermissionDenied,
                        Reason::WorkloadNotAllowed,
                        format!("{other} may not call this service directly"),
                    ));
                }
            }
            Ok(request)
        }
    }
}

/// The workload calling as itself, if this call is one.
pub fn workload_of<T>(request: &Request<T>) -> Option<&str> {
    request
        .extensions()
        .get::<WorkloadCaller>()
        .map(|w| w.0.as_str())
}

/// The member principal [`WorkloadGuard::principals`] put on the request.
pub fn principal_of<T>(request: &Request<T>) -> Result<Principal, Status> {
    // A workload acting as itself speaks for no member: every handler that
    // needs a principal refuses it, unless it reads `workload_of` first.
    if let Some(w) = workload_of(request) {
        return Err(status::error(
            Code::PermissionDenied,
            Reason::WorkloadNotAllowed,
            format!("workload {w} calls as itself and may not call this method"),
        ));
    }
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

//! The door every member call passes: authenticate, authorise (method,
//! member, role), rate-limit, and write the access record — durably, before
//! anything is forwarded. A call that cannot be recorded is refused.
//!
//! Every call that presented a certificate from the partnership CA leaves
//! records: a DECISION record (allow or deny, with the reason) and, for an
//! allowed call, an OUTCOME record when it ends (status, duration, which
//! resources and whose).

use std::time::{Instant, SystemTime};

use orex_kit::identity::{PeerIdentity, peer_of};
use orex_proto::audit::v1::{AccessDecision, AccessRecord, AccessRecordKind};
use prost_types::Timestamp;
use std::sync::Arc;
use tonic::{Code, Request, Status};

use crate::audit::AuditLog;
use crate::authn::Caller;
use crate::error::GatewayError;
use crate::policy::{Policy, PolicyHandle};
use crate::ratelimit::class_of;

/// Authenticates, authorises, limits and records member calls.
#[derive(Debug, Clone)]
pub struct Door {
    policy: PolicyHandle,
    audit: AuditLog,
}

/// An admitted call: who, under which policy, and its decision record.
#[derive(Debug)]
pub struct Pass {
    /// The verified caller.
    pub caller: Caller,
    /// The policy the call was admitted under.
    pub policy: Arc<Policy>,
    audit: AuditLog,
    decision: AccessRecord,
    started: Instant,
}

impl Door {
    /// A door with this policy and access log.
    pub fn new(policy: PolicyHandle, audit: AuditLog) -> Self {
        Self { policy, audit }
    }

    /// The access log.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// Admits the call to `method` (`/package.Service/Method`) naming
    /// `resources`, or refuses it. Either way the decision is recorded first.
    pub async fn admit<T>(
        &self,
        req: &Request<T>,
        method: &str,
        resources: Vec<String>,
    ) -> Result<Pass, Status> {
        let started = Instant::now();
        let policy = self.policy.current();
        let mut record = AccessRecord {
            kind: AccessRecordKind::Decision as i32,
            time: Some(Timestamp::from(SystemTime::now())),
            method: method.to_owned(),
            resource_ids: resources,
            ..Default::default()
        };
        if let Ok(peer) = peer_of(req) {
            record.certificate_fingerprint = peer.fingerprint_hex();
            if let PeerIdentity::Member { member, .. } = &peer.identity {
                record.member = member.clone();
            }
        }
        let decided = self.decide(&policy, req, method, &mut record);
        match decided {
            Ok((caller, rule)) => {
                record.decision = AccessDecision::Allow as i32;
                record.reason = rule;
                match self.audit.append(record).await {
                    Ok(decision) => Ok(Pass {
                        caller,
                        policy,
                        audit: self.audit.clone(),
                        decision,
                        started,
                    }),
                    Err(e) => {
                        tracing::error!(error = %e, method, "access record not written; call refused");
                        Err(GatewayError::AuditUnavailable.into())
                    }
                }
            }
            Err(refusal) => {
                let status = Status::from(refusal.clone());
                record.decision = AccessDecision::Deny as i32;
                record.reason = refusal.to_string();
                record.grpc_status_code = Some(status.code() as u32);
                record.duration = prost_types::Duration::try_from(started.elapsed()).ok();
                if let Err(e) = self.audit.append(record).await {
                    tracing::error!(error = %e, method, "denied call not recorded");
                }
                Err(status)
            }
        }
    }

    fn decide<T>(
        &self,
        policy: &Policy,
        req: &Request<T>,
        method: &str,
        record: &mut AccessRecord,
    ) -> Result<(Caller, String), GatewayError> {
        let caller = policy.authenticator.authenticate(req)?;
        record.member = caller.principal.member.clone();
        record.subject = caller.principal.subject.clone();
        record.token_id = caller.token_id.clone().unwrap_or_default();
        let permission = method.trim_start_matches('/');
        let permissions = policy.partnership.permissions();
        if !permissions.allows(&caller.principal.roles, permission) {
            let needed: Vec<String> = permissions
                .roles_for(permission)
                .iter()
                .map(|r| r.to_string())
                .collect();
            return Err(GatewayError::PermissionDenied(format!(
                "{permission} needs the {} role",
                if needed.is_empty() {
                    "(no role may call it)".to_owned()
                } else {
                    needed.join(" or ")
                }
            )));
        }
        let class = class_of(method);
        if let Err(retry_after) = policy.limiter.check(&caller.principal.member, class) {
            return Err(GatewayError::RateLimited {
                member: caller.principal.member.clone(),
                class: match class {
                    orex_membership::MethodClass::Read => "read",
                    orex_membership::MethodClass::Write => "write",
                    orex_membership::MethodClass::Stream => "stream",
                },
                retry_after,
            });
        }
        let granting = caller
            .principal
            .roles
            .iter()
            .find(|r| permissions.allows(&[**r], permission))
            .map(|r| r.to_string())
            .unwrap_or_default();
        Ok((
            caller,
            format!("allowed: role {granting} may call {permission}"),
        ))
    }
}

impl Pass {
    /// The request to send to the backend: the message, the caller's
    /// deadline and the verified principal — nothing else the member sent.
    pub fn outbound<T>(&self, req: Request<T>) -> Result<Request<T>, Status> {
        let deadline = req.metadata().get("grpc-timeout").cloned();
        let mut out = Request::new(req.into_inner());
        if let Some(d) = deadline {
            out.metadata_mut().insert("grpc-timeout", d);
        }
        orex_kit::forwarded::attach(&self.caller.principal, out.metadata_mut())?;
        Ok(out)
    }

    /// Records how the call ended: its status, which resources it returned
    /// or touched and whose they were.
    pub async fn finish(
        self,
        code: Code,
        resources: Vec<String>,
        owners: Vec<String>,
        reason: String,
    ) {
        let mut resource_ids = self.decision.resource_ids.clone();
        for r in resources {
            if !resource_ids.contains(&r) {
                resource_ids.push(r);
            }
        }
        let mut owners = owners;
        owners.sort();
        owners.dedup();
        let outcome = AccessRecord {
            kind: AccessRecordKind::Outcome as i32,
            time: Some(Timestamp::from(SystemTime::now())),
            grpc_status_code: Some(code as u32),
            duration: prost_types::Duration::try_from(self.started.elapsed()).ok(),
            decision_index: Some(self.decision.index),
            resource_ids,
            resource_owner_members: owners,
            reason,
            index: 0,
            prev_hash: String::new(),
            hash: String::new(),
            ..self.decision
        };
        if let Err(e) = self.audit.append(outcome).await {
            tracing::error!(error = %e, "outcome record not written");
        }
    }
}

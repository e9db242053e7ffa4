//! The door every member call passes: rate-limit, authenticate, authorise
//! (method, member, role), and write the access record — durably, before
//! anything is forwarded. A call that cannot be recorded is refused.
//!
//! Every call that presented a certificate from the partnership CA leaves
//! records: a DECISION record (allow or deny, with the reason) and, for an
//! allowed call, OUTCOME records when it ends — one for the caller's member
//! (status, duration, every resource touched) and one per other member whose
//! reports it touched, so that member's auditors see who accessed them
//! without seeing anything else about the call.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use orex_kit::identity::{IdentityError, Peer, PeerIdentity, peer_from_der, peer_of};
use orex_kit::request_errors::RefusedRequest;
use orex_membership::{Partnership, Principal};
use orex_proto::audit::v1::{AccessDecision, AccessRecord, AccessRecordKind};
use prost_types::Timestamp;
use sha2::{Digest, Sha256};
use tonic::{Code, Request, Status};

use crate::audit::AuditLog;
use crate::authn::Caller;
use crate::config::LoadConfig;
use crate::error::GatewayError;
use crate::load::{InFlight, SHED_RECORD_INTERVAL};
use crate::policy::{Policy, PolicyHandle};
use crate::ratelimit::class_of;
use orex_kit::group_commit::{Durable, Staged};

/// The longest an access record may take to become durable before the call
/// is refused: a stalled disk must not hang every caller.
pub const RECORD_DEADLINE: Duration = Duration::from_secs(5);

/// Ids longer than this, or with other characters than `[A-Za-z0-9._:-]`,
/// are recorded as their SHA-256, so callers cannot bloat the log.
const MAX_ID: usize = 128;

/// Authenticates, authorises, limits and records member calls.
#[derive(Debug, Clone)]
pub struct Door {
    policy: PolicyHandle,
    audit: AuditLog,
    load: Arc<InFlight>,
}

/// A resource an answer returned or a call touched, and its owner member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touched {
    /// The resource id (a report id).
    pub id: String,
    /// The member that owns it (the report's author member).
    pub owner: String,
}

/// An admitted call: who, under which policy, and its decision record. If
/// it is dropped before [`Pass::finish`] (the client cancelled, the handler
/// returned early), a CANCELLED outcome is recorded in the background.
#[derive(Debug)]
pub struct Pass {
    /// The verified caller.
    pub caller: Caller,
    /// The policy the call was admitted under.
    pub policy: Arc<Policy>,
    /// For a stream: its member's open-stream slot, freed when the pass ends.
    _slot: Option<crate::ratelimit::StreamSlot>,
    /// For a unary call: its place among the calls in flight.
    _in_flight: Option<crate::load::Slot>,
    audit: AuditLog,
    decision: Option<AccessRecord>,
    /// For a read: the decision record's flush, awaited before release.
    decision_durable: Option<Durable>,
    started: Instant,
}

/// Makes an id safe to record: short, plain ids as they are, others hashed.
pub fn recordable_id(id: &str) -> String {
    let plain = !id.is_empty()
        && id.len() <= MAX_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
    if plain {
        id.to_owned()
    } else {
        format!("sha256:{}", hex::encode(Sha256::digest(id.as_bytes())))
    }
}

/// SHA-256 (hex) of the client certificate, for a peer whose certificate
/// names no orex identity (the identity cache has no entry for it).
fn certificate_fingerprint<T>(req: &Request<T>) -> Option<String> {
    let certs = req.peer_certs()?;
    let leaf = certs.first()?;
    Some(hex::encode(Sha256::digest(leaf.as_ref())))
}

/// A time as RFC 3339 UTC with milliseconds.
fn rfc3339_millis(t: SystemTime) -> String {
    let mut ts = Timestamp::from(t);
    ts.nanos -= ts.nanos % 1_000_000;
    ts.to_string()
}

/// Stores a record within [`RECORD_DEADLINE`] without waiting for its
/// flush: [`AuditLog::append_staged`] (a flush starts now) or, with
/// `deferred`, [`AuditLog::append_deferred`] (it waits for the next one).
async fn stage_in_time(
    audit: &AuditLog,
    record: AccessRecord,
    deferred: bool,
) -> Result<Staged<AccessRecord>, String> {
    let staged = async {
        if deferred {
            audit.append_deferred(record).await
        } else {
            audit.append_staged(record).await
        }
    };
    match tokio::time::timeout(RECORD_DEADLINE, staged).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("not stored within {RECORD_DEADLINE:?}")),
    }
}

async fn append_in_time(audit: &AuditLog, record: AccessRecord) -> Result<AccessRecord, String> {
    match tokio::time::timeout(RECORD_DEADLINE, audit.append(record)).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("not durable within {RECORD_DEADLINE:?}")),
    }
}

impl Door {
    /// A door with this policy, access log and load bounds.
    pub fn new(policy: PolicyHandle, audit: AuditLog, load: LoadConfig) -> Self {
        Self {
            policy,
            audit,
            load: Arc::new(InFlight::new(load)),
        }
    }

    /// The access log.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// Admits the call to `method` (`/package.Service/Method`) naming
    /// `resources`, or refuses it. Either way the decision is recorded first;
    /// if it cannot be, the call is refused with UNAVAILABLE.
    pub async fn admit<T>(
        &self,
        req: &Request<T>,
        method: &str,
        resources: Vec<String>,
    ) -> Result<Pass, Status> {
        self.admit_as(req, method, resources, false).await
    }

    /// Admits a read: like [`admit`](Self::admit), but an allowed call is
    /// forwarded while its decision record is being flushed. A read changes
    /// nothing, and its answer leaves only through [`Pass::release`], which
    /// waits until the decision and the outcome are both on disk: one flush
    /// per read instead of two, and still nothing reaches the member
    /// unrecorded.
    pub async fn admit_read<T>(
        &self,
        req: &Request<T>,
        method: &str,
        resources: Vec<String>,
    ) -> Result<Pass, Status> {
        self.admit_as(req, method, resources, true).await
    }

    async fn admit_as<T>(
        &self,
        req: &Request<T>,
        method: &str,
        resources: Vec<String>,
        read: bool,
    ) -> Result<Pass, Status> {
        let started = Instant::now();
        let policy = self.policy.current();
        let mut record = AccessRecord {
            kind: AccessRecordKind::Decision as i32,
            time: Some(Timestamp::from(SystemTime::now())),
            method: method.to_owned(),
            resource_ids: resources.iter().map(|r| recordable_id(r)).collect(),
            ..Default::default()
        };
        let mut cert_member = None;
        let peer = peer_of(req);
        match &peer {
            Ok(peer) => {
                record.certificate_fingerprint = peer.fingerprint_hex();
                cert_member = Some(match &peer.identity {
                    PeerIdentity::Member { member, .. } => {
                        record.member = member.clone();
                        member.clone()
                    }
                    // Non-member certificates: one key per certificate.
                    PeerIdentity::Workload(_) => format!("cert:{}", peer.fingerprint_hex()),
                });
            }
            // A CA-issued certificate without a single orex identity is still
            // limited and recorded, by its fingerprint.
            Err(_) => {
                if let Some(fingerprint) = certificate_fingerprint(req) {
                    cert_member = Some(format!("cert:{fingerprint}"));
                    record.certificate_fingerprint = fingerprint;
                }
            }
        }
        // Shedding comes first and costs least: over a bound, the call is
        // refused before any other work and only tallied; the door records
        // the tallies every second (see `load`).
        let in_flight = if class_of(method) == orex_membership::MethodClass::Stream {
            None
        } else {
            match self
                .load
                .admit(cert_member.as_deref().unwrap_or("anonymous"))
            {
                Ok(slot) => Some(slot),
                Err(bound) => {
                    let refusal = GatewayError::Overloaded { bound };
                    self.load.note_shed(
                        &record.member,
                        &record.certificate_fingerprint,
                        method,
                        refusal.clone(),
                    );
                    return Err(refusal.into());
                }
            }
        };
        // Rate limits next, keyed by the certificate, so a caller's failed
        // and refused calls count against its own budget. Calls over it are
        // tallied like shed ones, not recorded one by one: a flood, even
        // from a certificate that names no member, cannot fill the log that
        // every member shares.
        let class = class_of(method);
        if let Some(key) = cert_member.as_deref()
            && let Err(retry_after) = self.policy.limiter().check(&policy.partnership, key, class)
        {
            let refusal = GatewayError::RateLimited {
                member: key.to_owned(),
                class: class.as_str(),
                retry_after,
            };
            self.load.note_shed(
                &record.member,
                &record.certificate_fingerprint,
                method,
                refusal.clone(),
            );
            return Err(refusal.into());
        }
        let decided = self.decide(&policy, req, &peer, method, &mut record);
        match decided {
            Ok((caller, rule, slot)) => {
                record.decision = AccessDecision::Allow as i32;
                record.reason = rule;
                let recorded = if read {
                    stage_in_time(&self.audit, record, true)
                        .await
                        .map(|s| (s.out, Some(s.durable)))
                } else {
                    append_in_time(&self.audit, record).await.map(|r| (r, None))
                };
                match recorded {
                    Ok((decision, decision_durable)) => Ok(Pass {
                        caller,
                        policy,
                        _slot: slot,
                        _in_flight: in_flight,
                        audit: self.audit.clone(),
                        decision: Some(decision),
                        decision_durable,
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
                match append_in_time(&self.audit, record).await {
                    Ok(_) => Err(status),
                    Err(e) => {
                        tracing::error!(error = %e, method, "denied call not recorded");
                        Err(GatewayError::AuditUnavailable.into())
                    }
                }
            }
        }
    }

    /// Records a request refused before any handler ran (its bytes did not
    /// decode, or it was too large; `orex_kit::request_errors`) and returns
    /// the answer: the refusal, RESOURCE_EXHAUSTED if the caller's
    /// certificate is over its rate limit (tallied like other limited
    /// calls), or UNAVAILABLE if the record cannot be written. The method
    /// comes from the path, the caller from its certificate; no token is
    /// read, since nothing of the request was understood.
    pub async fn record_refused(&self, refused: RefusedRequest) -> Status {
        let policy = self.policy.current();
        let leaf = refused.peer_certs.as_ref().and_then(|c| c.first());
        let (member, key, fingerprint) = match leaf {
            Some(der) => {
                let fingerprint = hex::encode(Sha256::digest(der.as_ref()));
                match peer_from_der(der.as_ref()).map(|p| p.identity) {
                    Ok(PeerIdentity::Member { member, .. }) => {
                        (member.clone(), member, fingerprint)
                    }
                    _ => (String::new(), format!("cert:{fingerprint}"), fingerprint),
                }
            }
            None => (String::new(), String::new(), String::new()),
        };
        let method = refused.method;
        if !key.is_empty()
            && let Err(retry_after) =
                self.policy
                    .limiter()
                    .check(&policy.partnership, &key, class_of(&method))
        {
            let refusal = GatewayError::RateLimited {
                member: key,
                class: class_of(&method).as_str(),
                retry_after,
            };
            self.load
                .note_shed(&member, &fingerprint, &method, refusal.clone());
            return refusal.into();
        }
        let record = AccessRecord {
            kind: AccessRecordKind::Decision as i32,
            time: Some(Timestamp::from(SystemTime::now())),
            member,
            certificate_fingerprint: fingerprint,
            method: method.chars().take(MAX_ID * 2).collect(),
            decision: AccessDecision::Deny as i32,
            reason: refused.status.message().to_owned(),
            grpc_status_code: Some(refused.status.code() as u32),
            ..Default::default()
        };
        match append_in_time(&self.audit, record).await {
            Ok(_) => refused.status,
            Err(e) => {
                tracing::error!(error = %e, method, "refused request not recorded");
                GatewayError::AuditUnavailable.into()
            }
        }
    }

    /// Records an admin call (a backup of this gateway's access log): an
    /// admitted one as ALLOW before it runs — refused if the record cannot
    /// be written — and a refused one as DENY, like any refusal.
    pub async fn record_admin(&self, attempt: orex_kit::admin::AdminAttempt) -> Result<(), Status> {
        let workload = match attempt.decision {
            Ok(workload) => workload,
            Err(status) => {
                return Err(self
                    .record_refused(RefusedRequest {
                        method: attempt.method,
                        peer_certs: attempt.peer_certs,
                        status,
                    })
                    .await);
            }
        };
        let fingerprint = attempt
            .peer_certs
            .as_ref()
            .and_then(|c| c.first())
            .map(|der| hex::encode(Sha256::digest(der.as_ref())))
            .unwrap_or_default();
        let record = AccessRecord {
            kind: AccessRecordKind::Decision as i32,
            time: Some(Timestamp::from(SystemTime::now())),
            certificate_fingerprint: fingerprint,
            method: attempt.method.chars().take(MAX_ID * 2).collect(),
            decision: AccessDecision::Allow as i32,
            reason: format!("admin workload {workload}"),
            ..Default::default()
        };
        match append_in_time(&self.audit, record).await {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::error!(error = %e, method = %attempt.method, "admin call not recorded; refused");
                Err(GatewayError::AuditUnavailable.into())
            }
        }
    }

    /// Writes the tallies of shed and rate-limited calls as DENY records every
    /// [`SHED_RECORD_INTERVAL`], and once more at shutdown.
    pub async fn record_shed_calls(self, shutdown: orex_kit::Shutdown) {
        loop {
            let stop = tokio::select! {
                _ = tokio::time::sleep(SHED_RECORD_INTERVAL) => false,
                _ = shutdown.wait() => true,
            };
            let mut durables = Vec::new();
            for tally in self.load.take_shed() {
                let status = Status::from(tally.refusal.clone());
                let record = AccessRecord {
                    kind: AccessRecordKind::Decision as i32,
                    time: Some(Timestamp::from(tally.last)),
                    member: tally.member,
                    certificate_fingerprint: tally.certificate_fingerprint,
                    method: tally.method,
                    decision: AccessDecision::Deny as i32,
                    reason: format!(
                        "refused {} calls between {} and {}: {}",
                        tally.count,
                        rfc3339_millis(tally.first),
                        rfc3339_millis(tally.last),
                        status.message()
                    ),
                    grpc_status_code: Some(status.code() as u32),
                    ..Default::default()
                };
                // Stored one after the other, flushed together below.
                match stage_in_time(&self.audit, record, false).await {
                    Ok(staged) => durables.push(staged.durable),
                    Err(e) => tracing::error!(error = %e, "record of shed calls not written"),
                }
            }
            for durable in durables {
                if let Err(e) = durable.await {
                    tracing::error!(error = %e, "record of shed calls not durable");
                }
            }
            if stop {
                return;
            }
        }
    }

    fn decide<T>(
        &self,
        policy: &Policy,
        req: &Request<T>,
        peer: &Result<Peer, IdentityError>,
        method: &str,
        record: &mut AccessRecord,
    ) -> Result<(Caller, String, Option<crate::ratelimit::StreamSlot>), GatewayError> {
        let class = class_of(method);
        let caller = policy.authenticator.authenticate_peer(req, peer)?;
        record.member = caller.principal.member.clone();
        record.subject = caller.principal.subject.clone();
        record.token_id = caller
            .token_id
            .as_deref()
            .map(recordable_id)
            .unwrap_or_default();
        let rule = authorise(&policy.partnership, &caller.principal, method)?;
        let slot = if class == orex_membership::MethodClass::Stream {
            let member = &caller.principal.member;
            let slot = self
                .policy
                .limiter()
                .open_stream(&policy.partnership, member)
                .map_err(|cap| {
                    orex_kit::metrics::global().rejected("too_many_streams");
                    GatewayError::TooManyStreams {
                        member: member.clone(),
                        cap,
                    }
                })?;
            Some(slot)
        } else {
            None
        };
        Ok((caller, rule, slot))
    }
}

/// May `who` call `method` under `partnership`: an active member, and a role
/// the policy grants the method to. `Ok` names the granting rule. The door
/// asks at admission; open streams ask again as the policy changes.
pub fn authorise(
    partnership: &Partnership,
    who: &Principal,
    method: &str,
) -> Result<String, GatewayError> {
    if !partnership.is_active_member(&who.member) {
        return Err(GatewayError::PermissionDenied(
            orex_kit::status::Reason::MemberSuspended,
            format!("member {} is suspended", who.member),
        ));
    }
    let permission = method.trim_start_matches('/');
    let permissions = partnership.permissions();
    let Some(granting) = who
        .roles
        .iter()
        .find(|r| permissions.allows(&[**r], permission))
    else {
        let needed: Vec<String> = permissions
            .roles_for(permission)
            .iter()
            .map(|r| r.to_string())
            .collect();
        return Err(GatewayError::PermissionDenied(
            orex_kit::status::Reason::RoleMissing,
            format!(
                "{permission} needs the {} role",
                if needed.is_empty() {
                    "(no role may call it)".to_owned()
                } else {
                    needed.join(" or ")
                }
            ),
        ));
    };
    Ok(format!("allowed: role {granting} may call {permission}"))
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

    /// Records how the call ended: its status and the resources it returned
    /// or touched, with their owners.
    pub async fn finish(self, code: Code, touched: Vec<Touched>, reason: String) {
        if let Err(e) = self.record_outcome(code, touched, reason).await {
            tracing::error!(error = %e, "outcome record not written");
        }
    }

    /// Records how a read ended, like [`finish`](Self::finish), and returns
    /// once the decision and outcome records are on disk; the answer may
    /// leave only then. `Err` (UNAVAILABLE) means they are not: the answer
    /// must be withheld.
    pub async fn release(
        self,
        code: Code,
        touched: Vec<Touched>,
        reason: String,
    ) -> Result<(), Status> {
        self.record_outcome(code, touched, reason)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "read not recorded; answer withheld");
                GatewayError::AuditUnavailable.into()
            })
    }

    /// Appends the outcome records and waits until they, and the decision,
    /// are durable.
    async fn record_outcome(
        mut self,
        code: Code,
        touched: Vec<Touched>,
        reason: String,
    ) -> Result<(), String> {
        let Some(decision) = self.decision.take() else {
            return Ok(());
        };
        let decision_durable = self.decision_durable.take();
        let mut durables = Vec::new();
        for record in outcomes(&decision, self.started, code, touched, reason, &self.caller) {
            durables.push(stage_in_time(&self.audit, record, false).await?.durable);
        }
        let flushed = async {
            if let Some(d) = decision_durable {
                d.await?;
            }
            // Flushes are in order: the last outcome's covers the others.
            for d in durables {
                d.await?;
            }
            Ok::<_, orex_kit::KitError>(())
        };
        match tokio::time::timeout(RECORD_DEADLINE, flushed).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("not durable within {RECORD_DEADLINE:?}")),
        }
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        let Some(decision) = self.decision.take() else {
            return;
        };
        let records = outcomes(
            &decision,
            self.started,
            Code::Cancelled,
            vec![],
            "ended before an answer (client cancelled or deadline passed)".into(),
            &self.caller,
        );
        let audit = self.audit.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                for record in records {
                    if let Err(e) = append_in_time(&audit, record).await {
                        tracing::error!(error = %e, "outcome record not written");
                    }
                }
            });
        }
    }
}

/// The OUTCOME records of a call: one for the caller's member with every
/// resource, and one per other owner member with only that member's ids —
/// or a single record naming the owner when its ids are all the call touched.
fn outcomes(
    decision: &AccessRecord,
    started: Instant,
    code: Code,
    touched: Vec<Touched>,
    reason: String,
    caller: &Caller,
) -> Vec<AccessRecord> {
    let base = AccessRecord {
        kind: AccessRecordKind::Outcome as i32,
        time: Some(Timestamp::from(SystemTime::now())),
        grpc_status_code: Some(code as u32),
        duration: prost_types::Duration::try_from(started.elapsed()).ok(),
        decision_index: Some(decision.index),
        index: 0,
        prev_hash: String::new(),
        hash: String::new(),
        content_hash: String::new(),
        resource_owner_members: vec![],
        reason,
        // Kept once, in the decision record the outcome points to.
        certificate_fingerprint: String::new(),
        token_id: String::new(),
        ..decision.clone()
    };
    let mut by_owner: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut all = decision.resource_ids.clone();
    for t in touched {
        let id = recordable_id(&t.id);
        if !all.contains(&id) {
            all.push(id.clone());
        }
        if t.owner != caller.principal.member {
            let ids = by_owner.entry(t.owner).or_default();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    // When every resource belongs to one other member, that member's copy
    // would repeat the caller's record: one record, visible to both.
    if by_owner.len() == 1
        && let Some((owner, ids)) = by_owner.first_key_value()
        && ids.len() == all.len()
        && all.iter().all(|id| ids.contains(id))
    {
        return vec![AccessRecord {
            resource_ids: all,
            resource_owner_members: vec![owner.clone()],
            ..base
        }];
    }
    let mut records = vec![AccessRecord {
        resource_ids: all,
        ..base.clone()
    }];
    for (owner, ids) in by_owner {
        records.push(AccessRecord {
            resource_ids: ids,
            resource_owner_members: vec![owner.clone()],
            reason: format!("accessed resources of member {owner}"),
            ..base.clone()
        });
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(member: &str) -> Caller {
        Caller {
            principal: Principal {
                member: member.into(),
                subject: "someone".into(),
                roles: vec![],
            },
            cert_fingerprint: String::new(),
            token_id: None,
            expires_at: 0,
        }
    }

    fn touched(id: &str, owner: &str) -> Touched {
        Touched {
            id: id.into(),
            owner: owner.into(),
        }
    }

    fn decision(resources: &[&str]) -> AccessRecord {
        AccessRecord {
            index: 7,
            member: "JP".into(),
            resource_ids: resources.iter().map(|r| r.to_string()).collect(),
            ..Default::default()
        }
    }

    fn outcomes_of(resources: &[&str], got: Vec<Touched>) -> Vec<AccessRecord> {
        outcomes(
            &decision(resources),
            Instant::now(),
            Code::Ok,
            got,
            "completed".into(),
            &caller("JP"),
        )
    }

    #[test]
    fn reading_one_report_of_another_member_is_one_outcome_visible_to_its_owner() {
        let records = outcomes_of(&["r1"], vec![touched("r1", "US")]);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].resource_ids, vec!["r1"]);
        assert_eq!(records[0].resource_owner_members, vec!["US"]);
        assert_eq!(records[0].decision_index, Some(7));
    }

    #[test]
    fn a_list_spanning_owners_gives_each_owner_only_its_own_ids() {
        let records = outcomes_of(
            &[],
            vec![
                touched("r1", "US"),
                touched("r2", "DE"),
                touched("r3", "JP"),
            ],
        );
        assert_eq!(records.len(), 3);
        assert_eq!(records[0].resource_ids, vec!["r1", "r2", "r3"]);
        assert!(records[0].resource_owner_members.is_empty());
        assert_eq!(records[1].resource_owner_members, vec!["DE"]);
        assert_eq!(records[1].resource_ids, vec!["r2"]);
        assert_eq!(records[2].resource_owner_members, vec!["US"]);
        assert_eq!(records[2].resource_ids, vec!["r1"]);
    }

    #[test]
    fn own_reports_need_no_owner_copy() {
        let records = outcomes_of(&["r3"], vec![touched("r3", "JP")]);
        assert_eq!(records.len(), 1);
        assert!(records[0].resource_owner_members.is_empty());
    }
}

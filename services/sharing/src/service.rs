//! The gRPC handlers of `orex.sharing.v1.SharingService`: check the caller,
//! validate, apply the domain rules, and call the store.

use std::sync::Arc;
use std::time::SystemTime;

use orex_kit::Shutdown;
use orex_kit::forwarded::{principal_of, workload_of};
use orex_kit::page_token::PageTokens;
use orex_kit::status::Reason;
use orex_kit::store::decode_value;
use orex_kit::stream::{BoxStream, StreamConfig, follow};
use orex_membership::{Audience, Partnership, Principal, Role};
use orex_proto::common::v1::{Marking, PrincipalRef};
use orex_proto::sharing::v1::sharing_service_server::SharingService;
use orex_proto::sharing::v1::*;
use prost::Message;
use prost_types::Timestamp;
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};

use crate::error::SharingError;
use crate::filter::matches;
use crate::store::{Method, ReportStore, RequestKey};
use crate::validate;

/// Most reports one list call inspects, so a page never costs a full scan.
const MAX_SCAN: usize = 10_000;

/// Who reads reports (a stream or a get).
#[derive(Debug, Clone)]
enum Viewer {
    /// A member principal, forwarded by the gateway.
    Member(Principal),
    /// A workload reading as itself (`reader_workloads`): it sees only
    /// partnership-wide reports, so nothing it computes can reveal a
    /// restricted one.
    Workload(String),
}

/// A report every member may see (CLEAR or GREEN).
fn partnership_wide(r: &Report) -> bool {
    r.content
        .as_ref()
        .is_some_and(|c| orex_membership::partnership_wide(c.marking()))
}

/// The sharing service's state, shared by every call.
#[derive(Debug, Clone)]
pub struct Sharing {
    store: ReportStore,
    partnership: SharedPartnership,
    tokens: Arc<PageTokens>,
    streams: StreamConfig,
    shutdown: Shutdown,
}

/// The partnership policy in force; replaced whole when the file changes.
pub type SharedPartnership = Arc<arc_swap::ArcSwap<Partnership>>;

impl Sharing {
    /// Builds the service over an opened store.
    pub fn new(
        store: ReportStore,
        partnership: SharedPartnership,
        tokens: Arc<PageTokens>,
        streams: StreamConfig,
        shutdown: Shutdown,
    ) -> Self {
        Self {
            store,
            partnership,
            tokens,
            streams,
            shutdown,
        }
    }

    fn caller<T>(&self, req: &Request<T>, role: Role) -> Result<Principal, SharingError> {
        if let Some(w) = workload_of(req) {
            return Err(SharingError::PermissionDenied(
                Reason::WorkloadNotAllowed,
                format!(
                    "workload {w} reads as itself: it may only follow the report stream and get partnership-wide reports"
                ),
            ));
        }
        let who =
            principal_of(req).map_err(|s| SharingError::Unauthenticated(s.message().to_owned()))?;
        if !self.partnership.load().is_active_member(&who.member) {
            return Err(SharingError::PermissionDenied(
                Reason::MemberSuspended,
                format!(
                    "member {} is not an active member of the partnership",
                    who.member
                ),
            ));
        }
        if !who.has_role(role) {
            return Err(SharingError::PermissionDenied(
                Reason::RoleMissing,
                format!("this call needs the {role} role"),
            ));
        }
        Ok(who)
    }

    /// Page tokens are bound to the caller and to what they page through.
    fn token_context(who: &Principal, what: &[u8]) -> Vec<u8> {
        orex_kit::page_token::context(&[who.member.as_bytes(), who.subject.as_bytes(), what])
    }

    fn open_token(&self, context: &[u8], token: &str) -> Result<Option<Vec<u8>>, SharingError> {
        if token.is_empty() {
            return Ok(None);
        }
        self.tokens.open(context, token).map(Some).ok_or_else(|| {
            SharingError::invalid(
                "page_token",
                "is not a token this service issued to you for this request",
            )
        })
    }

    fn visible(&self, who: &Principal, r: &Report) -> bool {
        let Some(c) = &r.content else { return false };
        let author = r.author.clone().unwrap_or_default();
        self.partnership.load().can_see(
            who,
            &Audience {
                marking: c.marking(),
                author: &author,
                recipient_members: &c.recipient_members,
                recipient_principals: &c.recipient_principals,
            },
        )
    }

    /// The latest version if the caller may see it; NOT_FOUND otherwise, so
    /// a hidden report is indistinguishable from a missing one.
    fn visible_latest(&self, who: &Principal, id: &str) -> Result<Report, SharingError> {
        validate::report_id(id)?;
        match self.store.get(id)? {
            Some(r) if self.visible(who, &r) => Ok(r),
            _ => Err(SharingError::NotFound(id.to_owned())),
        }
    }

    /// True when `who` may see both this version and the report's latest:
    /// the rule get and history apply, so streams apply it too.
    fn visible_now(&self, who: &Viewer, r: &Report) -> bool {
        self.sees(who, r)
            && match self.store.get(&r.id) {
                Ok(Some(latest)) => latest.version == r.version || self.sees(who, &latest),
                _ => false,
            }
    }

    /// [`visible`](Self::visible) for a member; partnership-wide reports
    /// only for a reader workload.
    fn sees(&self, who: &Viewer, r: &Report) -> bool {
        match who {
            Viewer::Member(p) => self.visible(p, r),
            Viewer::Workload(_) => partnership_wide(r),
        }
    }

    /// Who reads a report (stream or get): a member principal with the
    /// reader role, or a reader workload (which sees only what every member
    /// may see — and, like a member outside a report's audience, gets
    /// NOT_FOUND for one that is no longer partnership-wide).
    fn viewer<T>(&self, req: &Request<T>) -> Result<Viewer, SharingError> {
        match workload_of(req) {
            Some(w) => Ok(Viewer::Workload(w.to_owned())),
            None => self.caller(req, Role::Reader).map(Viewer::Member),
        }
    }

    /// Refuses an amendment that would show the report to anyone who could
    /// not see the previous version. For markings other than RED visibility
    /// depends only on the member, for RED on named principals, so checking
    /// every member (as an unnamed principal) and every named principal
    /// covers every possible reader.
    fn audience_only_shrinks(&self, old: &Report, new: &ReportContent) -> Result<(), SharingError> {
        let partnership = self.partnership.load();
        let author = old.author.clone().unwrap_or_default();
        let old_c = old.content.clone().unwrap_or_default();
        let audience = |c: &ReportContent| -> (Marking, Vec<String>, Vec<PrincipalRef>) {
            (
                c.marking(),
                c.recipient_members.clone(),
                c.recipient_principals.clone(),
            )
        };
        let (om, orm, orp) = audience(&old_c);
        let (nm, nrm, nrp) = audience(new);
        let old_a = Audience {
            marking: om,
            author: &author,
            recipient_members: &orm,
            recipient_principals: &orp,
        };
        let new_a = Audience {
            marking: nm,
            author: &author,
            recipient_members: &nrm,
            recipient_principals: &nrp,
        };
        let unnamed = partnership.members().map(|m| Principal {
            member: m.code.clone(),
            subject: "\0unnamed".into(),
            roles: vec![],
        });
        let named = nrp.iter().chain(orp.iter()).map(|p| Principal {
            member: p.member.clone(),
            subject: p.subject.clone(),
            roles: vec![],
        });
        for reader in unnamed.chain(named) {
            if partnership.can_see(&reader, &new_a) && !partnership.can_see(&reader, &old_a) {
                return Err(SharingError::invalid(
                    "content",
                    format!(
                        "the new marking or recipients would show the report to {} who could not see it before; the audience may only shrink",
                        if reader.subject.starts_with('\0') {
                            reader.member.clone()
                        } else {
                            reader.to_string()
                        }
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Checks that `who` may change report `r` at all.
    fn may_change(&self, who: &Principal, r: &Report) -> Result<(), SharingError> {
        if !self.visible(who, r) {
            return Err(SharingError::NotFound(r.id.clone()));
        }
        let author_member = r.author.as_ref().map(|a| a.member.as_str());
        if author_member != Some(who.member.as_str()) {
            return Err(SharingError::PermissionDenied(
                Reason::NotAuthorMember,
                "only principals of the author's member may change a report".into(),
            ));
        }
        Ok(())
    }

    fn breaches_no_export_ban(&self, c: &ReportContent) -> bool {
        c.category() == Category::ExportRestriction
            && self
                .partnership
                .load()
                .is_partner_country(&c.origin_country)
    }
}

fn now() -> Timestamp {
    Timestamp::from(SystemTime::now())
}

fn next_version(
    r: Report,
    who: &Principal,
    status: ReportStatus,
    note: &str,
    at: &Timestamp,
) -> Report {
    Report {
        version: r.version + 1,
        status: status as i32,
        updated_by: Some(who.as_ref()),
        updated_at: Some(*at),
        change_note: note.to_owned(),
        ..r
    }
}

fn is_open(r: &Report) -> bool {
    matches!(r.status(), ReportStatus::Active | ReportStatus::Amended)
}

/// SHA-256 of a request, tagged with its method, for idempotency checks.
fn fingerprint<M: Message>(method: Method, req: &M) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([method as u8]);
    h.update(req.encode_to_vec());
    h.finalize().into()
}

#[tonic::async_trait]
impl SharingService for Sharing {
    async fn publish_report(
        &self,
        req: Request<PublishReportRequest>,
    ) -> Result<Response<PublishReportResponse>, Status> {
        let who = self.caller(&req, Role::Reporter)?;
        let req = req.into_inner();
        validate::publish_request(&req, &self.partnership.load())?;
        let key = RequestKey {
            who: &who,
            request_id: &req.request_id,
            fingerprint: fingerprint(Method::Publish, &req),
        };
        let content = req.content.clone().unwrap_or_default();
        let breach = self.breaches_no_export_ban(&content);
        let at = now();
        let author = who.as_ref();
        let outcome = self
            .store
            .publish(key, move |id| Report {
                id: id.to_owned(),
                version: 1,
                status: ReportStatus::Active as i32,
                content: Some(content.clone()),
                author: Some(author.clone()),
                updated_by: Some(author.clone()),
                published_at: Some(at),
                updated_at: Some(at),
                breaches_no_export_ban: breach,
                change_note: String::new(),
                sequence: 0,
            })
            .await?;
        if !outcome.replayed {
            tracing::info!(report = %outcome.report.id, author = %who, breach, "report published");
        }
        Ok(Response::new(PublishReportResponse {
            report: Some(outcome.report),
            replayed: outcome.replayed,
        }))
    }

    async fn amend_report(
        &self,
        req: Request<AmendReportRequest>,
    ) -> Result<Response<AmendReportResponse>, Status> {
        let who = self.caller(&req, Role::Reporter)?;
        let req = req.into_inner();
        validate::amend_request(&req, &self.partnership.load())?;
        let key = RequestKey {
            who: &who,
            request_id: &req.request_id,
            fingerprint: fingerprint(Method::Amend, &req),
        };
        let content = req.content.clone().unwrap_or_default();
        let breach = self.breaches_no_export_ban(&content);
        let at = now();
        let (this, by, note, expected) = (
            self.clone(),
            who.clone(),
            req.note.clone(),
            req.expected_version,
        );
        let outcome = self
            .store
            .update(key, Method::Amend, &req.report_id, move |r| {
                this.may_change(&by, &r)?;
                if !is_open(&r) {
                    return Err(SharingError::status_conflict(
                        &r.id,
                        format!(
                            "report is {}; only active or amended reports can be amended",
                            r.status().as_str_name()
                        ),
                    ));
                }
                if r.version != expected {
                    return Err(SharingError::Aborted(format!(
                        "report is at version {}, not {expected}; read it again and reapply your change",
                        r.version
                    )));
                }
                this.audience_only_shrinks(&r, &content)?;
                let mut next = next_version(r, &by, ReportStatus::Amended, &note, &at);
                next.content = Some(content.clone());
                next.breaches_no_export_ban = breach;
                Ok(next)
            })
            .await?;
        Ok(Response::new(AmendReportResponse {
            report: Some(outcome.report),
        }))
    }

    async fn resolve_report(
        &self,
        req: Request<ResolveReportRequest>,
    ) -> Result<Response<ResolveReportResponse>, Status> {
        let who = self.caller(&req, Role::Reporter)?;
        let req = req.into_inner();
        validate::resolve_request(&req)?;
        let key = RequestKey {
            who: &who,
            request_id: &req.request_id,
            fingerprint: fingerprint(Method::Resolve, &req),
        };
        let at = now();
        let (this, by, note) = (self.clone(), who.clone(), req.note.clone());
        let outcome = self
            .store
            .update(key, Method::Resolve, &req.report_id, move |r| {
                this.may_change(&by, &r)?;
                if !is_open(&r) {
                    return Err(SharingError::status_conflict(
                        &r.id,
                        format!(
                            "report is {}; only active or amended reports can be resolved",
                            r.status().as_str_name()
                        ),
                    ));
                }
                Ok(next_version(r, &by, ReportStatus::Resolved, &note, &at))
            })
            .await?;
        Ok(Response::new(ResolveReportResponse {
            report: Some(outcome.report),
        }))
    }

    async fn retract_report(
        &self,
        req: Request<RetractReportRequest>,
    ) -> Result<Response<RetractReportResponse>, Status> {
        let who = self.caller(&req, Role::Reporter)?;
        let req = req.into_inner();
        validate::retract_request(&req)?;
        let key = RequestKey {
            who: &who,
            request_id: &req.request_id,
            fingerprint: fingerprint(Method::Retract, &req),
        };
        let at = now();
        let (this, by, reason) = (self.clone(), who.clone(), req.reason.clone());
        let outcome = self
            .store
            .update(key, Method::Retract, &req.report_id, move |r| {
                this.may_change(&by, &r)?;
                if r.status() == ReportStatus::Retracted {
                    return Err(SharingError::status_conflict(
                        &r.id,
                        "report is already retracted",
                    ));
                }
                Ok(next_version(r, &by, ReportStatus::Retracted, &reason, &at))
            })
            .await?;
        Ok(Response::new(RetractReportResponse {
            report: Some(outcome.report),
        }))
    }

    async fn get_report(
        &self,
        req: Request<GetReportRequest>,
    ) -> Result<Response<GetReportResponse>, Status> {
        let who = self.viewer(&req)?;
        let req = req.into_inner();
        validate::get_request(&req)?;
        let latest = match self.store.get(&req.report_id)? {
            Some(r) if self.sees(&who, &r) => r,
            _ => return Err(SharingError::NotFound(req.report_id).into()),
        };
        let report = if req.version == 0 || req.version == latest.version {
            latest
        } else {
            match self.store.version(&req.report_id, req.version)? {
                Some(r) if self.sees(&who, &r) => r,
                _ => {
                    return Err(SharingError::NotFound(format!(
                        "{} version {}",
                        req.report_id, req.version
                    ))
                    .into());
                }
            }
        };
        Ok(Response::new(GetReportResponse {
            report: Some(report),
        }))
    }

    async fn list_reports(
        &self,
        req: Request<ListReportsRequest>,
    ) -> Result<Response<ListReportsResponse>, Status> {
        let who = self.caller(&req, Role::Reader)?;
        let req = req.into_inner();
        let size = validate::list_request(&req)?;
        let filter = req.filter.unwrap_or_default();
        let context = Self::token_context(&who, &filter.encode_to_vec());
        let cursor = match self.open_token(&context, &req.page_token)? {
            Some(c) => Some(String::from_utf8(c).map_err(|_| {
                SharingError::invalid("page_token", "is not a token this service issued")
            })?),
            None => None,
        };
        let mut reports = Vec::new();
        let mut last_scanned = None;
        let mut more = false;
        for (scanned, r) in self.store.newest_first(cursor.as_deref()).enumerate() {
            if scanned >= MAX_SCAN || reports.len() >= size {
                more = true;
                break;
            }
            let r = r?;
            last_scanned = Some(r.id.clone());
            if self.visible(&who, &r) && matches(&filter, &r) {
                reports.push(r);
            }
        }
        // The cursor may name a report the caller cannot see; sealing it
        // keeps that hidden.
        let next_page_token = match (more, last_scanned) {
            (true, Some(id)) => self.tokens.seal(&context, id.as_bytes()),
            _ => String::new(),
        };
        Ok(Response::new(ListReportsResponse {
            reports,
            next_page_token,
        }))
    }

    async fn list_report_versions(
        &self,
        req: Request<ListReportVersionsRequest>,
    ) -> Result<Response<ListReportVersionsResponse>, Status> {
        let who = self.caller(&req, Role::Reader)?;
        let req = req.into_inner();
        let size = validate::versions_request(&req)?;
        self.visible_latest(&who, &req.report_id)?;
        let context = Self::token_context(&who, req.report_id.as_bytes());
        let after = match self.open_token(&context, &req.page_token)? {
            Some(t) => u32::from_be_bytes(t.try_into().map_err(|_| {
                SharingError::invalid("page_token", "is not a token this service issued")
            })?),
            None => 0,
        };
        let mut reports = Vec::new();
        let mut next_page_token = String::new();
        for r in self.store.versions_after(&req.report_id, after) {
            let r = r?;
            if reports.len() >= size {
                next_page_token = self.tokens.seal(&context, &(r.version - 1).to_be_bytes());
                break;
            }
            // Each version keeps its own audience: a version made before the
            // marking became stricter is not shown to its former readers.
            if self.visible(&who, &r) {
                reports.push(r);
            }
        }
        Ok(Response::new(ListReportVersionsResponse {
            reports,
            next_page_token,
        }))
    }

    type SubscribeReportsStream = BoxStream<SubscribeReportsResponse>;

    async fn subscribe_reports(
        &self,
        req: Request<SubscribeReportsRequest>,
    ) -> Result<Response<Self::SubscribeReportsStream>, Status> {
        let who = self.viewer(&req)?;
        let req = req.into_inner();
        validate::subscribe_request(&req)?;
        let filter = req.filter.unwrap_or_default();
        let log = self.store.log();
        let latest = log.published();
        let after = match req.after_sequence {
            // The latest sequence is not revealed: it counts hidden events.
            Some(s) if s > latest => {
                return Err(SharingError::OutOfRange(format!(
                    "after_sequence {s} is beyond the end of the report log; resume from a sequence you received"
                ))
                .into());
            }
            Some(s) => s,
            None => latest,
        };
        let this = self.clone();
        match &who {
            Viewer::Member(p) => {
                tracing::debug!(subscriber = %p, after, "report subscription opened")
            }
            Viewer::Workload(w) => {
                tracing::info!(workload = %w, after, "report subscription opened by a reader workload");
            }
        }
        let stream = follow(
            log,
            after,
            self.streams,
            self.shutdown.clone(),
            move |_, bytes| {
                let event: SubscribeReportsResponse = match decode_value(bytes) {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::error!(error = %e, "undecodable report event");
                        return Some(Err(Status::from(SharingError::Store(e))));
                    }
                };
                let report = event.report.as_ref()?;
                (matches(&filter, report) && this.visible_now(&who, report)).then_some(Ok(event))
            },
        );
        Ok(Response::new(stream))
    }
}

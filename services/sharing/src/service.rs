//! The gRPC handlers of `orex.sharing.v1.SharingService`: check the caller,
//! validate, apply the domain rules, and call the store.

use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use orex_kit::Shutdown;
use orex_kit::forwarded::principal_of;
use orex_kit::store::decode_value;
use orex_kit::stream::{BoxStream, follow};
use orex_membership::{Audience, Partnership, Principal, Role};
use orex_proto::common::v1::Marking;
use orex_proto::sharing::v1::sharing_service_server::SharingService;
use orex_proto::sharing::v1::*;
use prost_types::Timestamp;
use tonic::{Request, Response, Status};

use crate::error::SharingError;
use crate::filter::matches;
use crate::store::{Method, ReportStore};
use crate::validate;

/// Default and largest page sizes of list calls.
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 500;
/// Most reports one list call inspects, so a page never costs a full scan.
const MAX_SCAN: usize = 10_000;

/// The sharing service's state, shared by every call.
#[derive(Debug, Clone)]
pub struct Sharing {
    store: ReportStore,
    partnership: Arc<Partnership>,
    shutdown: Shutdown,
}

impl Sharing {
    /// Builds the service over an opened store.
    pub fn new(store: ReportStore, partnership: Arc<Partnership>, shutdown: Shutdown) -> Self {
        Self {
            store,
            partnership,
            shutdown,
        }
    }

    fn caller<T>(&self, req: &Request<T>, role: Role) -> Result<Principal, Status> {
        let who = principal_of(req)?;
        if !self.partnership.is_active_member(&who.member) {
            return Err(Status::permission_denied(format!(
                "member {} is not an active member of the partnership",
                who.member
            )));
        }
        if !who.has_role(role) {
            return Err(Status::permission_denied(format!(
                "this call needs the {role} role"
            )));
        }
        Ok(who)
    }

    fn visible(&self, who: &Principal, r: &Report) -> bool {
        let Some(c) = &r.content else { return false };
        let author = r.author.clone().unwrap_or_default();
        self.partnership.can_see(
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

    /// Checks that `who` may change report `r` at all.
    fn may_change(&self, who: &Principal, r: &Report) -> Result<(), SharingError> {
        if !self.visible(who, r) {
            return Err(SharingError::NotFound(r.id.clone()));
        }
        let author_member = r.author.as_ref().map(|a| a.member.as_str());
        if author_member != Some(who.member.as_str()) {
            return Err(SharingError::PermissionDenied(
                "only principals of the author's member may change a report".into(),
            ));
        }
        Ok(())
    }

    fn breaches_no_export_ban(&self, c: &ReportContent) -> bool {
        c.category() == Category::ExportRestriction
            && self.partnership.is_partner_country(&c.origin_country)
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

fn marking_rank(m: Marking) -> u8 {
    match m {
        Marking::Unspecified => 0,
        Marking::Clear => 1,
        Marking::Green => 2,
        Marking::Amber => 3,
        Marking::AmberStrict => 4,
        Marking::Red => 5,
    }
}

fn page_size(requested: u32) -> Result<usize, SharingError> {
    match requested as usize {
        0 => Ok(DEFAULT_PAGE),
        n if n <= MAX_PAGE => Ok(n),
        n => Err(SharingError::invalid(
            "page_size",
            format!("must be at most {MAX_PAGE}, got {n}"),
        )),
    }
}

fn decode_token(token: &str) -> Result<Option<String>, SharingError> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || SharingError::invalid("page_token", "is not a token this service issued");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let s = String::from_utf8(bytes).map_err(|_| bad())?;
    Ok(Some(s))
}

fn encode_token(cursor: &str) -> String {
    URL_SAFE_NO_PAD.encode(cursor)
}

#[tonic::async_trait]
impl SharingService for Sharing {
    async fn publish_report(
        &self,
        req: Request<PublishReportRequest>,
    ) -> Result<Response<PublishReportResponse>, Status> {
        let who = self.caller(&req, Role::Reporter)?;
        let req = req.into_inner();
        validate::request_id(&req.request_id)?;
        validate::content(req.content.as_ref(), &self.partnership)?;
        let content = req.content.unwrap_or_default();
        let breach = self.breaches_no_export_ban(&content);
        let at = now();
        let outcome = self
            .store
            .publish(&who, &req.request_id, |id| Report {
                id: id.to_owned(),
                version: 1,
                status: ReportStatus::Active as i32,
                content: Some(content.clone()),
                author: Some(who.as_ref()),
                updated_by: Some(who.as_ref()),
                published_at: Some(at),
                updated_at: Some(at),
                breaches_no_export_ban: breach,
                change_note: String::new(),
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
        validate::request_id(&req.request_id)?;
        validate::report_id(&req.report_id)?;
        validate::content(req.content.as_ref(), &self.partnership)?;
        validate::note("note", &req.note, false)?;
        if req.expected_version == 0 {
            return Err(SharingError::invalid(
                "expected_version",
                "is required: the version you are amending",
            )
            .into());
        }
        let content = req.content.unwrap_or_default();
        let breach = self.breaches_no_export_ban(&content);
        let at = now();
        let outcome = self
            .store
            .update(&who, &req.request_id, Method::Amend, &req.report_id, |r| {
                self.may_change(&who, &r)?;
                if !is_open(&r) {
                    return Err(SharingError::FailedPrecondition(format!(
                        "report is {:?}; only active or amended reports can be amended",
                        r.status()
                    )));
                }
                if r.version != req.expected_version {
                    return Err(SharingError::Aborted(format!(
                        "report is at version {}, not {}; read it again and reapply your change",
                        r.version, req.expected_version
                    )));
                }
                let old = r.content.as_ref().map(|c| c.marking()).unwrap_or_default();
                if marking_rank(content.marking()) < marking_rank(old) {
                    return Err(SharingError::invalid(
                        "content.marking",
                        "may be kept or made stricter, never relaxed",
                    ));
                }
                let mut next = next_version(r, &who, ReportStatus::Amended, &req.note, &at);
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
        validate::request_id(&req.request_id)?;
        validate::report_id(&req.report_id)?;
        validate::note("note", &req.note, false)?;
        let at = now();
        let outcome = self
            .store
            .update(
                &who,
                &req.request_id,
                Method::Resolve,
                &req.report_id,
                |r| {
                    self.may_change(&who, &r)?;
                    if !is_open(&r) {
                        return Err(SharingError::FailedPrecondition(format!(
                            "report is {:?}; only active or amended reports can be resolved",
                            r.status()
                        )));
                    }
                    Ok(next_version(
                        r,
                        &who,
                        ReportStatus::Resolved,
                        &req.note,
                        &at,
                    ))
                },
            )
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
        validate::request_id(&req.request_id)?;
        validate::report_id(&req.report_id)?;
        validate::note("reason", &req.reason, true)?;
        let at = now();
        let outcome = self
            .store
            .update(
                &who,
                &req.request_id,
                Method::Retract,
                &req.report_id,
                |r| {
                    self.may_change(&who, &r)?;
                    if r.status() == ReportStatus::Retracted {
                        return Err(SharingError::FailedPrecondition(
                            "report is already retracted".into(),
                        ));
                    }
                    Ok(next_version(
                        r,
                        &who,
                        ReportStatus::Retracted,
                        &req.reason,
                        &at,
                    ))
                },
            )
            .await?;
        Ok(Response::new(RetractReportResponse {
            report: Some(outcome.report),
        }))
    }

    async fn get_report(
        &self,
        req: Request<GetReportRequest>,
    ) -> Result<Response<GetReportResponse>, Status> {
        let who = self.caller(&req, Role::Reader)?;
        let req = req.into_inner();
        let latest = self.visible_latest(&who, &req.report_id)?;
        let report = if req.version == 0 || req.version == latest.version {
            latest
        } else {
            match self.store.version(&req.report_id, req.version)? {
                Some(r) if self.visible(&who, &r) => r,
                _ => {
                    return Err(Status::not_found(format!(
                        "report {} has no version {} visible to you",
                        req.report_id, req.version
                    )));
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
        let size = page_size(req.page_size)?;
        let filter = req.filter.unwrap_or_default();
        crate::filter::validate(&filter)?;
        let cursor = decode_token(&req.page_token)?;
        if let Some(c) = &cursor {
            validate::report_id(c).map_err(|_| {
                SharingError::invalid("page_token", "is not a token this service issued")
            })?;
        }
        let mut reports = Vec::new();
        let mut last_seen = None;
        let mut exhausted = true;
        for (scanned, r) in self.store.newest_first(cursor.as_deref()).enumerate() {
            if scanned >= MAX_SCAN || reports.len() >= size {
                exhausted = false;
                break;
            }
            let r = r?;
            last_seen = Some(r.id.clone());
            if self.visible(&who, &r) && matches(&filter, &r) {
                reports.push(r);
            }
        }
        let next_page_token = match (exhausted, last_seen) {
            (false, Some(id)) => encode_token(&id),
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
        let size = page_size(req.page_size)?;
        self.visible_latest(&who, &req.report_id)?;
        let after = match decode_token(&req.page_token)? {
            Some(t) => t.parse::<u32>().map_err(|_| {
                SharingError::invalid("page_token", "is not a token this service issued")
            })?,
            None => 0,
        };
        let mut reports = Vec::new();
        let mut next_page_token = String::new();
        for r in self.store.versions_after(&req.report_id, after) {
            let r = r?;
            if reports.len() >= size {
                next_page_token = encode_token(&(r.version - 1).to_string());
                break;
            }
            // Each version keeps its own audience: a version shared with
            // others before a marking change stays theirs.
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
        let who = self.caller(&req, Role::Reader)?;
        let req = req.into_inner();
        let filter = req.filter.unwrap_or_default();
        crate::filter::validate(&filter)?;
        let log = self.store.log();
        let latest = log.published();
        let after = match req.after_sequence {
            Some(s) if s > latest => {
                return Err(Status::out_of_range(format!(
                    "after_sequence {s} is beyond the latest event {latest}"
                )));
            }
            Some(s) => s,
            None => latest,
        };
        let this = self.clone();
        tracing::debug!(subscriber = %who, after, "report subscription opened");
        let stream = follow(log, after, self.shutdown.clone(), move |_, bytes| {
            let event: SubscribeReportsResponse = match decode_value(bytes) {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(error = %e, "undecodable report event");
                    return Some(Err(Status::internal("report stream is damaged")));
                }
            };
            let report = event.report.as_ref()?;
            (this.visible(&who, report) && matches(&filter, report)).then_some(Ok(event))
        });
        Ok(Response::new(stream))
    }
}

//! The gRPC handlers of `orex.emergency.v1.EmergencyService`: check the
//! caller, validate ([`crate::validate`]), run the case rules
//! ([`crate::cases`]) inside the store's transaction, and answer.

use std::sync::Arc;

use arc_swap::ArcSwap;
use orex_kit::Shutdown;
use orex_kit::forwarded::{principal_of, workload_of};
use orex_kit::page_token::{PageTokens, context};
use orex_kit::status::Reason;
use orex_kit::store::decode_value;
use orex_kit::stream::{BoxStream, StreamConfig, follow};
use orex_membership::{Partnership, Principal, Role};
use orex_proto::common::v1::Mineral;
use orex_proto::emergency::v1::emergency_service_server::EmergencyService;
use orex_proto::emergency::v1::*;
use orex_reference::ReferenceData;
use prost::Message;
use prost_types::Timestamp;
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};

use crate::cases::{self, Split};
use crate::error::EmergencyError;
use crate::stockpile::{self, Viewer};
use crate::store::{EmergencyStore, Method, RequestKey, StockpileOf, Transition};
use crate::validate;
use crate::voting::{Electorate, PolicyMember, Rule};

/// The policy in force; replaced whole when the file changes.
pub type SharedPartnership = Arc<ArcSwap<Partnership>>;
/// The reference data in force; replaced whole when the file changes.
pub type SharedReference = Arc<ArcSwap<ReferenceData>>;

/// Most cases one list call inspects, so a page never costs a full scan.
const MAX_SCAN: usize = 10_000;

/// What the service is built from.
#[derive(Debug, Clone)]
pub struct Parts {
    /// The store.
    pub store: EmergencyStore,
    /// The policy in force.
    pub partnership: SharedPartnership,
    /// The reference data in force.
    pub reference: SharedReference,
    /// The activation rule.
    pub rule: Rule,
    /// The longest voting period a declaration may set.
    pub max_voting_hours: u32,
    /// Page-token sealer.
    pub tokens: Arc<PageTokens>,
    /// Stream settings.
    pub streams: StreamConfig,
    /// Ends streams at shutdown.
    pub shutdown: Shutdown,
    /// Wakes the expiry task when a case with a new deadline is declared.
    pub deadlines: Arc<tokio::sync::Notify>,
}

/// The emergency service.
#[derive(Debug, Clone)]
pub struct Emergency {
    p: Parts,
}

fn now() -> Timestamp {
    Timestamp::from(std::time::SystemTime::now())
}

/// SHA-256 of a request, tagged with its method, for idempotency checks.
fn fingerprint<M: Message>(method: Method, req: &M) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([method as u8]);
    h.update(req.encode_to_vec());
    h.finalize().into()
}

/// A stored answer (a plain encoded response message).
fn decoded<M: Message + Default>(reply: &[u8]) -> Result<M, EmergencyError> {
    M::decode(reply).map_err(|e| orex_kit::KitError::Corrupt(format!("stored answer: {e}")).into())
}

impl Emergency {
    /// Builds the service.
    pub fn new(p: Parts) -> Self {
        Self { p }
    }

    /// The member principal calling with one of `roles`; a workload acting
    /// as itself may call only ListStockpiles.
    fn caller<T>(&self, req: &Request<T>, roles: &[Role]) -> Result<Principal, EmergencyError> {
        if let Some(w) = workload_of(req) {
            return Err(EmergencyError::PermissionDenied(
                Reason::WorkloadNotAllowed,
                format!("workload {w} reads as itself: it may only list stockpiles"),
            ));
        }
        let who = principal_of(req)
            .map_err(|s| EmergencyError::Unauthenticated(s.message().to_owned()))?;
        if !self.p.partnership.load().is_active_member(&who.member) {
            return Err(EmergencyError::PermissionDenied(
                Reason::MemberSuspended,
                format!(
                    "member {} is not an active member of the partnership",
                    who.member
                ),
            ));
        }
        if !roles.iter().any(|r| who.has_role(*r)) {
            let names: Vec<String> = roles.iter().map(ToString::to_string).collect();
            return Err(EmergencyError::PermissionDenied(
                Reason::RoleMissing,
                format!("this call needs the {} role", names.join(" or ")),
            ));
        }
        Ok(who)
    }

    fn viewer<T>(&self, req: &Request<T>) -> Result<Viewer, EmergencyError> {
        match workload_of(req) {
            Some(w) => Ok(Viewer::Workload(w.to_owned())),
            None => self
                .caller(req, &[Role::Coordinator, Role::Analyst])
                .map(Viewer::Member),
        }
    }

    /// The party that votes and is allocated for `who`'s member: its bloc
    /// for a bloc state, else the member itself.
    fn voting_member(&self, who: &Principal) -> String {
        let p = self.p.partnership.load();
        crate::voting::voting_member(&who.member, p.bloc_of(&who.member)).to_owned()
    }

    fn case_or_not_found(&self, id: &str) -> Result<ShortageCase, EmergencyError> {
        self.p
            .store
            .case(id)?
            .ok_or_else(|| EmergencyError::NotFound(format!("case {id}")))
    }

    /// The mineral of a stored case (the store reads stockpiles of it).
    fn mineral_of(&self, id: &str) -> Result<Mineral, EmergencyError> {
        let c = self.case_or_not_found(id)?;
        Ok(c.declaration
            .as_ref()
            .and_then(|d| Mineral::try_from(d.mineral).ok())
            .unwrap_or_default())
    }

    fn key<M: Message>(who: &Principal, request_id: &str, method: Method, req: &M) -> RequestKey {
        RequestKey {
            who: who.clone(),
            request_id: request_id.to_owned(),
            method,
            fingerprint: fingerprint(method, req),
        }
    }

    /// `c` as `who` may see it: linked report ids only for principals of
    /// the declaring member (the gateway checked the declarer may see each;
    /// this service cannot tell which another viewer may, so it shows none
    /// rather than one too many).
    fn screened_case(&self, who: &Viewer, mut c: ShortageCase) -> ShortageCase {
        let declarer = c.declared_by.as_ref().map(|p| p.member.as_str());
        let own = matches!(who, Viewer::Member(p) if Some(p.member.as_str()) == declarer);
        if !own && let Some(d) = c.declaration.as_mut() {
            d.linked_report_ids.clear();
        }
        c
    }

    /// Applies `step` to existing case `case_id` for `who`'s call `key`,
    /// inside the store's transaction, and answers with what it returned
    /// (or, for a retry, what it returned the first time).
    async fn step<R, F>(
        &self,
        key: RequestKey,
        case_id: &str,
        who: &Principal,
        step: F,
    ) -> Result<R, EmergencyError>
    where
        R: Message + Default,
        F: Fn(ShortageCase, &StockpileOf<'_>) -> Result<(cases::Events, R), EmergencyError>
            + Send
            + 'static,
    {
        let mineral = self.mineral_of(case_id)?;
        let answer = self
            .p
            .store
            .change_case(
                Some(key),
                case_id.to_owned(),
                mineral,
                Some(who.as_ref()),
                move |current, stockpile_of| {
                    let c =
                        current.ok_or_else(|| EmergencyError::Internal("case vanished".into()))?;
                    let (events, reply) = step(c, stockpile_of)?;
                    Ok(Transition {
                        events,
                        reply: reply.encode_to_vec(),
                    })
                },
            )
            .await?;
        decoded(&answer.reply)
    }

    /// Wakes the expiry task (a new deadline may be the earliest).
    fn deadline_changed(&self) {
        self.p.deadlines.notify_one();
    }

    /// Expires case `id` if its deadline has passed; nothing otherwise.
    pub async fn expire(&self, id: &str) -> Result<(), EmergencyError> {
        let mineral = self.mineral_of(id)?;
        let rule = self.p.rule;
        self.p
            .store
            .change_case(None, id.to_owned(), mineral, None, move |current, _| {
                let c = current.ok_or_else(|| EmergencyError::Internal("case vanished".into()))?;
                let events = cases::expire(c, now(), &rule)?;
                Ok(Transition {
                    events,
                    reply: Vec::new(),
                })
            })
            .await?;
        Ok(())
    }
}

#[tonic::async_trait]
impl EmergencyService for Emergency {
    async fn report_stockpile(
        &self,
        req: Request<ReportStockpileRequest>,
    ) -> Result<Response<ReportStockpileResponse>, Status> {
        let who = self.caller(&req, &[Role::Coordinator])?;
        let req = req.into_inner();
        let mineral = validate::report_stockpile(&req, &self.p.partnership.load())?;
        let key = Self::key(&who, &req.request_id, Method::ReportStockpile, &req);
        let content = req.content.clone().unwrap_or_default();
        let (member, by, at) = (who.member.clone(), who.as_ref(), now());
        let answer = self
            .p
            .store
            .report_stockpile(
                key,
                mineral,
                who.member.clone(),
                move |previous| {
                    Ok(stockpile::with_coverage(Stockpile {
                        member: member.clone(),
                        content: Some(content.clone()),
                        version: previous.map_or(1, |p| p.version + 1),
                        reported_by: Some(by.clone()),
                        reported_at: Some(at),
                        ..Default::default()
                    }))
                },
                |s| {
                    ReportStockpileResponse {
                        stockpile: Some(s.clone()),
                        replayed: false,
                    }
                    .encode_to_vec()
                },
            )
            .await?;
        let mut resp: ReportStockpileResponse = decoded(&answer.reply)?;
        resp.replayed = answer.replayed;
        if !answer.replayed {
            tracing::info!(member = %who.member, mineral = ?mineral, "stockpile reported");
        }
        Ok(Response::new(resp))
    }

    async fn list_stockpiles(
        &self,
        req: Request<ListStockpilesRequest>,
    ) -> Result<Response<ListStockpilesResponse>, Status> {
        let viewer = self.viewer(&req)?;
        let req = req.into_inner();
        let partnership = self.p.partnership.load_full();
        let size = validate::list_stockpiles(&req, &partnership)?;
        let filter = req.filter.clone().unwrap_or_default();
        let who = match &viewer {
            Viewer::Member(p) => format!("{}\0{}", p.member, p.subject),
            Viewer::Workload(w) => format!("workload\0{w}"),
        };
        let ctx = context(&[b"ListStockpiles", who.as_bytes(), &filter.encode_to_vec()]);
        let after = if req.page_token.is_empty() {
            None
        } else {
            Some(self.p.tokens.open(&ctx, &req.page_token).ok_or_else(|| {
                EmergencyError::invalid(
                    "page_token",
                    "is not a token this service issued to you for this filter",
                )
            })?)
        };
        // One pass: the page, and on the first page also every report of
        // the filter's minerals for the aggregate (the member filter does
        // not narrow it).
        let first_page = after.is_none();
        let mut page = Vec::new();
        let mut of_minerals = Vec::new();
        let mut last_key = None;
        let mut more = false;
        for item in self.p.store.stockpiles_after(after) {
            let (k, s) = item?;
            let m = s.content.as_ref().map_or(0, |c| c.mineral);
            if !(filter.minerals.is_empty() || filter.minerals.contains(&m)) {
                continue;
            }
            if filter.members.is_empty() || filter.members.contains(&s.member) {
                if page.len() == size {
                    more = true;
                    if !first_page {
                        break;
                    }
                } else if !more {
                    last_key = Some(k);
                    page.push(stockpile::screened(&viewer, s.clone(), &partnership));
                }
            }
            if first_page {
                of_minerals.push(s);
            }
        }
        let aggregates = stockpile::aggregates(&of_minerals);
        let next_page_token = match (more, last_key) {
            (true, Some(k)) => self.p.tokens.seal(&ctx, &k),
            _ => String::new(),
        };
        Ok(Response::new(ListStockpilesResponse {
            stockpiles: page,
            next_page_token,
            aggregates,
        }))
    }

    async fn declare_shortage(
        &self,
        req: Request<DeclareShortageRequest>,
    ) -> Result<Response<DeclareShortageResponse>, Status> {
        let who = self.caller(&req, &[Role::Coordinator])?;
        let req = req.into_inner();
        let mineral = validate::declare(&req)?;
        let key = Self::key(&who, &req.request_id, Method::Declare, &req);
        // The electorate is fixed now: a member that joins later votes on
        // later cases only.
        let partnership = self.p.partnership.load_full();
        let electorate =
            Electorate::from_members(partnership.members().filter(|m| m.is_active()).map(|m| {
                PolicyMember {
                    code: &m.code,
                    bloc: m.bloc.as_deref(),
                    founding: m.founding,
                }
            }))
            .map_err(|e| EmergencyError::CaseStatus {
                subject: "policy".into(),
                message: format!("no case can be declared: the policy gives no voting party ({e})"),
            })?;
        let id = uuid::Uuid::now_v7().hyphenated().to_string();
        let declaration = req.declaration.clone().unwrap_or_default();
        let (by, at, rule, max_hours) = (who.as_ref(), now(), self.p.rule, self.p.max_voting_hours);
        let answer = self
            .p
            .store
            .change_case(
                Some(key),
                id.clone(),
                mineral,
                Some(who.as_ref()),
                move |current, _| {
                    if current.is_some() {
                        return Err(EmergencyError::Internal("case id reused".into()));
                    }
                    validate::voting_deadline(
                        &declaration,
                        orex_kit::fields::nanos(&at),
                        max_hours,
                    )?;
                    let events = cases::declare(
                        &id,
                        declaration.clone(),
                        by.clone(),
                        at,
                        &electorate,
                        &rule,
                    )?;
                    let reply = DeclareShortageResponse {
                        shortage_case: events.last().map(|(_, c)| c.clone()),
                        replayed: false,
                    }
                    .encode_to_vec();
                    Ok(Transition { events, reply })
                },
            )
            .await?;
        let mut resp: DeclareShortageResponse = decoded(&answer.reply)?;
        resp.replayed = answer.replayed;
        if !answer.replayed {
            tracing::info!(case = ?resp.shortage_case.as_ref().map(|c| &c.id), by = %who, "shortage declared");
            self.deadline_changed();
        }
        Ok(Response::new(resp))
    }

    async fn cast_vote(
        &self,
        req: Request<CastVoteRequest>,
    ) -> Result<Response<CastVoteResponse>, Status> {
        let who = self.caller(&req, &[Role::Coordinator])?;
        let req = req.into_inner();
        let choice = validate::cast_vote(&req)?;
        let key = Self::key(&who, &req.request_id, Method::Vote, &req);
        let reference = self.p.reference.load_full();
        let rule = self.p.rule;
        let ballot = cases::Ballot {
            voting_member: self.voting_member(&who),
            choice,
            comment: req.comment.clone(),
            by: who.as_ref(),
            at: now(),
        };
        let resp = self
            .step(key, &req.case_id, &who, move |c, stockpile_of| {
                let split = Split {
                    stockpile_of,
                    reference: &reference,
                };
                let events = cases::vote(c, &ballot, &rule, &split)?;
                let shortage_case = events.last().map(|(_, c)| c.clone());
                Ok((events, CastVoteResponse { shortage_case }))
            })
            .await?;
        let mut resp = resp;
        resp.shortage_case = resp
            .shortage_case
            .map(|c| self.screened_case(&Viewer::Member(who.clone()), c));
        Ok(Response::new(resp))
    }

    async fn get_case(
        &self,
        req: Request<GetCaseRequest>,
    ) -> Result<Response<GetCaseResponse>, Status> {
        let who = self.caller(&req, &[Role::Coordinator, Role::Analyst])?;
        let req = req.into_inner();
        validate::get_case(&req)?;
        let c = self.case_or_not_found(&req.case_id)?;
        Ok(Response::new(GetCaseResponse {
            shortage_case: Some(self.screened_case(&Viewer::Member(who), c)),
        }))
    }

    async fn list_cases(
        &self,
        req: Request<ListCasesRequest>,
    ) -> Result<Response<ListCasesResponse>, Status> {
        let who = self.caller(&req, &[Role::Coordinator, Role::Analyst])?;
        let req = req.into_inner();
        let size = validate::list_cases(&req)?;
        let filter = req.filter.clone().unwrap_or_default();
        let ctx = context(&[
            b"ListCases",
            who.member.as_bytes(),
            who.subject.as_bytes(),
            &filter.encode_to_vec(),
        ]);
        let before = if req.page_token.is_empty() {
            None
        } else {
            let cursor = self.p.tokens.open(&ctx, &req.page_token).ok_or_else(|| {
                EmergencyError::invalid(
                    "page_token",
                    "is not a token this service issued to you for this filter",
                )
            })?;
            Some(
                String::from_utf8(cursor)
                    .map_err(|_| EmergencyError::invalid("page_token", "is damaged"))?,
            )
        };
        let viewer = Viewer::Member(who);
        let mut page = Vec::new();
        let mut last = None;
        let mut more = false;
        for (scanned, id) in self.p.store.case_ids_newest_first(before).enumerate() {
            let id = id?;
            if scanned >= MAX_SCAN {
                more = true;
                break;
            }
            let Some(c) = self.p.store.case(&id)? else {
                continue;
            };
            if !crate::filter::matches(&filter, &c) {
                last = Some(id);
                continue;
            }
            if page.len() == size {
                more = true;
                break;
            }
            last = Some(id);
            page.push(self.screened_case(&viewer, c));
        }
        let next_page_token = match (more, last) {
            (true, Some(id)) => self.p.tokens.seal(&ctx, id.as_bytes()),
            _ => String::new(),
        };
        Ok(Response::new(ListCasesResponse {
            cases: page,
            next_page_token,
        }))
    }

    async fn pledge_release(
        &self,
        req: Request<PledgeReleaseRequest>,
    ) -> Result<Response<PledgeReleaseResponse>, Status> {
        let who = self.caller(&req, &[Role::Coordinator])?;
        let req = req.into_inner();
        validate::pledge(&req)?;
        let key = Self::key(&who, &req.request_id, Method::Pledge, &req);
        let voting_member = self.voting_member(&who);
        let pledge_id = uuid::Uuid::now_v7().hyphenated().to_string();
        let (by, at, tonnes, note) = (who.as_ref(), now(), req.tonnes, req.note.clone());
        let resp = self
            .step(key, &req.case_id, &who, move |c, _| {
                let (events, pledge) =
                    cases::pledge(c, &pledge_id, &voting_member, tonnes, &note, by.clone(), at)?;
                let shortage_case = events.last().map(|(_, c)| c.clone());
                Ok((
                    events,
                    PledgeReleaseResponse {
                        shortage_case,
                        pledge: Some(pledge),
                    },
                ))
            })
            .await?;
        let mut resp = resp;
        resp.shortage_case = resp
            .shortage_case
            .map(|c| self.screened_case(&Viewer::Member(who.clone()), c));
        Ok(Response::new(resp))
    }

    async fn record_fulfilment(
        &self,
        req: Request<RecordFulfilmentRequest>,
    ) -> Result<Response<RecordFulfilmentResponse>, Status> {
        let who = self.caller(&req, &[Role::Coordinator])?;
        let req = req.into_inner();
        validate::fulfil(&req)?;
        let key = Self::key(&who, &req.request_id, Method::Fulfil, &req);
        let voting_member = self.voting_member(&who);
        let fulfilment_id = uuid::Uuid::now_v7().hyphenated().to_string();
        let at = now();
        let delivered_at = req.delivered_at.unwrap_or(at);
        let (by, pledge_id, tonnes, note) = (
            who.as_ref(),
            req.pledge_id.clone(),
            req.tonnes,
            req.note.clone(),
        );
        let resp = self
            .step(key, &req.case_id, &who, move |c, _| {
                let (events, fulfilment) = cases::fulfil(
                    c,
                    &fulfilment_id,
                    &pledge_id,
                    &voting_member,
                    tonnes,
                    delivered_at,
                    &note,
                    by.clone(),
                    at,
                )?;
                let shortage_case = events.last().map(|(_, c)| c.clone());
                Ok((
                    events,
                    RecordFulfilmentResponse {
                        shortage_case,
                        fulfilment: Some(fulfilment),
                    },
                ))
            })
            .await?;
        let mut resp = resp;
        resp.shortage_case = resp
            .shortage_case
            .map(|c| self.screened_case(&Viewer::Member(who.clone()), c));
        Ok(Response::new(resp))
    }

    async fn close_case(
        &self,
        req: Request<CloseCaseRequest>,
    ) -> Result<Response<CloseCaseResponse>, Status> {
        let who = self.caller(&req, &[Role::Coordinator])?;
        let req = req.into_inner();
        validate::close(&req)?;
        let key = Self::key(&who, &req.request_id, Method::Close, &req);
        let (by, at, reason) = (who.as_ref(), now(), req.reason.clone());
        let resp = self
            .step(key, &req.case_id, &who, move |c, _| {
                let events = cases::close(c, &reason, &by, at)?;
                let shortage_case = events.last().map(|(_, c)| c.clone());
                Ok((events, CloseCaseResponse { shortage_case }))
            })
            .await?;
        let mut resp = resp;
        resp.shortage_case = resp
            .shortage_case
            .map(|c| self.screened_case(&Viewer::Member(who.clone()), c));
        Ok(Response::new(resp))
    }

    type SubscribeCaseEventsStream = BoxStream<SubscribeCaseEventsResponse>;

    async fn subscribe_case_events(
        &self,
        req: Request<SubscribeCaseEventsRequest>,
    ) -> Result<Response<Self::SubscribeCaseEventsStream>, Status> {
        let who = self.caller(&req, &[Role::Coordinator, Role::Analyst])?;
        let req = req.into_inner();
        validate::subscribe(&req)?;
        let log = self.p.store.log();
        let latest = log.published();
        let after = match req.after_sequence {
            Some(s) if s > latest => {
                return Err(EmergencyError::OutOfRange(format!(
                    "after_sequence {s} is beyond the end of the case event log ({latest}); resume from a sequence you received"
                ))
                .into());
            }
            Some(s) => s,
            None => latest,
        };
        let filter = req.filter.unwrap_or_default();
        let viewer = Viewer::Member(who);
        let me = self.clone();
        Ok(Response::new(follow(
            log,
            after,
            self.p.streams,
            self.p.shutdown.clone(),
            move |seq, bytes| {
                let mut event: SubscribeCaseEventsResponse = match decode_value(bytes) {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::error!(error = %e, sequence = seq, "undecodable case event");
                        return Some(Err(EmergencyError::Internal(e.to_string()).into()));
                    }
                };
                let case = event.shortage_case.take()?;
                if !crate::filter::matches(&filter, &case) {
                    return None;
                }
                event.shortage_case = Some(me.screened_case(&viewer, case));
                Some(Ok(event))
            },
        )))
    }
}

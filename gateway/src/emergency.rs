//! `orex.emergency.v1.EmergencyService` at the gateway: every call through
//! the same [`Door`](crate::door::Door), [`Face`] and stream relay as the
//! other faces, forwarded to the emergency service over mutual TLS.
//!
//! A declaration may link sharing reports; the gateway checks, as the
//! declaring principal, that each is one it may see (GetReport at the
//! sharing service with the forwarded principal), so no one can link — and
//! so learn of — a report outside their audience.
//!
//! The service already shows each caller only the stockpile figures its
//! marking allows; the gateway checks again before an answer leaves (as it
//! does for reports), so a service bug cannot leak restricted figures: a
//! figure the caller may not see is removed and the answer marks it
//! restricted, and the service's mistake is logged.

use orex_kit::Shutdown;
use orex_kit::stream::{BoxStream, StreamConfig};
use orex_membership::{Audience, Partnership, Principal};
use orex_proto::emergency::v1::emergency_service_client::EmergencyServiceClient;
use orex_proto::emergency::v1::emergency_service_server::EmergencyService;
use orex_proto::emergency::v1::*;
use orex_proto::sharing::v1::GetReportRequest;
use orex_proto::sharing::v1::sharing_service_client::SharingServiceClient;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::backend::Backend;
use crate::door::{Door, Pass, Touched};
use crate::forward::{Face, Sequenced, open_stream, relay_screened};

const SERVICE: &str = "/orex.emergency.v1.EmergencyService/";

/// Most reports a declaration may link (the contract's bound).
const MAX_LINKED: usize = 50;

impl Sequenced for SubscribeCaseEventsResponse {
    fn sequence(&self) -> u64 {
        self.sequence
    }
}

/// The gateway's face of the emergency API.
#[derive(Debug, Clone)]
pub struct EmergencyGateway {
    face: Face<EmergencyServiceClient<Channel>>,
    sharing: SharingServiceClient<Channel>,
    policy: crate::policy::PolicyHandle,
    streams_backend: EmergencyServiceClient<Channel>,
    streams: StreamConfig,
    shutdown: Shutdown,
}

/// The case a call is about, for the access record.
fn case_resource(id: &str) -> Vec<String> {
    vec![format!("case:{id}")]
}

/// A case as touched (`case:<id>`, as the call's resource), owned by the
/// declaring member.
fn touched_case(c: &ShortageCase) -> Touched {
    Touched {
        id: format!("case:{}", c.id),
        owner: c
            .declared_by
            .as_ref()
            .map(|p| p.member.clone())
            .unwrap_or_default(),
    }
}

fn cases_touched<'a>(cases: impl IntoIterator<Item = &'a ShortageCase>) -> Vec<Touched> {
    cases.into_iter().map(touched_case).collect()
}

/// True when `who` may see the figures of `s`.
fn may_see_figures(partnership: &Partnership, who: &Principal, s: &Stockpile) -> bool {
    let (Some(c), Some(author)) = (&s.content, &s.reported_by) else {
        return false;
    };
    partnership.can_see(
        who,
        &Audience {
            marking: c.marking(),
            author,
            recipient_members: &c.recipient_members,
            recipient_principals: &[],
        },
    )
}

/// Removes figures the caller may not see (a service bug if any arrive).
fn screen_stockpile(partnership: &Partnership, who: &Principal, s: &mut Stockpile) {
    let has_figures = matches!(
        s.content.as_ref().and_then(|c| c.disclosure.as_ref()),
        Some(stockpile_content::Disclosure::Figures(_))
    );
    if has_figures && !may_see_figures(partnership, who, s) {
        tracing::error!(member = %s.member, viewer = %who, "the emergency service sent stockpile figures the caller may not see; removed");
        if let Some(c) = s.content.as_mut() {
            c.disclosure = None;
            c.recipient_members.clear();
        }
        s.days_of_cover = None;
        s.days_of_net_imports = None;
        s.share_of_annual_consumption = None;
        s.figures_restricted = true;
    }
}

/// A stockpile as touched: `stockpile:<member>/<mineral>`, owned by its member.
fn touched_stockpile(s: &Stockpile) -> Touched {
    let mineral = s
        .content
        .as_ref()
        .and_then(|c| orex_proto::common::v1::Mineral::try_from(c.mineral).ok())
        .unwrap_or_default();
    Touched {
        id: format!(
            "stockpile:{}/{}",
            s.member,
            orex_proto::names::mineral(mineral)
        ),
        owner: s.member.clone(),
    }
}

/// Refuses a declaration linking a report its declaring principal may not
/// see: each is read at the sharing service as that principal (member and
/// subject from the outbound request's forwarded metadata). Visibility
/// depends on member and subject only, so the read goes with the reader
/// role whatever roles the coordinator holds; its answer never leaves the
/// gateway. NOT_FOUND there — missing or outside the audience, deliberately
/// alike — is INVALID_ARGUMENT here.
async fn linked_reports_visible<T>(
    mut sharing: SharingServiceClient<Channel>,
    out: &Request<T>,
    linked: &[String],
) -> Result<(), Status> {
    // Checked before anything is read, so a declaration cannot make the
    // gateway read more than the contract allows (the service checks them
    // again).
    if linked.len() > MAX_LINKED {
        return Err(orex_kit::fields::invalid(
            "declaration.linked_report_ids",
            format!("at most {MAX_LINKED} entries"),
        )
        .into());
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, id) in linked.iter().enumerate() {
        let field = format!("declaration.linked_report_ids[{i}]");
        orex_kit::fields::issued_id(&field, id, "PublishReport")?;
        if !seen.insert(id) {
            return Err(orex_kit::fields::invalid(field, "is listed twice").into());
        }
    }
    let mut reader = orex_kit::forwarded::extract(out.metadata())?;
    reader.roles = vec![orex_membership::Role::Reader];
    for (i, id) in linked.iter().enumerate() {
        let mut get = Request::new(GetReportRequest {
            report_id: id.clone(),
            version: 0,
        });
        orex_kit::forwarded::attach(&reader, get.metadata_mut())?;
        match sharing.get_report(get).await {
            Ok(_) => {}
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::NotFound | tonic::Code::InvalidArgument
                ) =>
            {
                return Err(orex_kit::fields::invalid(
                    format!("declaration.linked_report_ids[{i}]"),
                    "is not a report you may see",
                )
                .into());
            }
            Err(s) => return Err(s),
        }
    }
    Ok(())
}

/// Clears `c`'s linked report ids unless the caller is of the declaring
/// member.
fn keep_links_for_declarer(pass: &Pass, c: &mut ShortageCase) {
    let declarer = c.declared_by.as_ref().map(|p| p.member.as_str());
    if declarer != Some(pass.caller.principal.member.as_str())
        && let Some(d) = c.declaration.as_mut()
    {
        d.linked_report_ids.clear();
    }
}

/// The answer's case, recorded as touched; its linked report ids kept only
/// for principals of the declaring member (the service does the same: this
/// is the second check, as for reports).
fn one_case<T>(
    case: impl Fn(&mut T) -> Option<&mut ShortageCase>,
) -> impl Fn(&Pass, T) -> Result<(T, Vec<Touched>), Status> {
    move |pass, mut resp| {
        let mut touched = Vec::new();
        if let Some(c) = case(&mut resp) {
            keep_links_for_declarer(pass, c);
            touched.push(touched_case(c));
        }
        Ok((resp, touched))
    }
}

impl EmergencyGateway {
    /// Forwards to `backend` after the door admits a call; `sharing` checks
    /// linked reports.
    pub fn new(
        door: Door,
        policy: crate::policy::PolicyHandle,
        backend: Backend,
        sharing: &Backend,
        streams: StreamConfig,
        shutdown: Shutdown,
    ) -> Self {
        Self {
            face: Face {
                door,
                service: SERVICE,
                backend: EmergencyServiceClient::new(backend.unary),
            },
            sharing: SharingServiceClient::new(sharing.unary.clone()),
            policy,
            streams_backend: EmergencyServiceClient::new(backend.streams),
            streams,
            shutdown,
        }
    }
}

#[tonic::async_trait]
impl EmergencyService for EmergencyGateway {
    async fn report_stockpile(
        &self,
        req: Request<ReportStockpileRequest>,
    ) -> Result<Response<ReportStockpileResponse>, Status> {
        self.face
            .unary(
                "ReportStockpile",
                req,
                vec![],
                |mut c, r| async move { c.report_stockpile(r).await },
                |_, resp: ReportStockpileResponse| {
                    let touched = resp.stockpile.iter().map(touched_stockpile).collect();
                    Ok((resp, touched))
                },
            )
            .await
    }

    async fn list_stockpiles(
        &self,
        req: Request<ListStockpilesRequest>,
    ) -> Result<Response<ListStockpilesResponse>, Status> {
        self.face
            .unary(
                "ListStockpiles",
                req,
                vec![],
                |mut c, r| async move { c.list_stockpiles(r).await },
                |pass, mut resp: ListStockpilesResponse| {
                    let partnership = &pass.policy.partnership;
                    for s in &mut resp.stockpiles {
                        screen_stockpile(partnership, &pass.caller.principal, s);
                    }
                    let touched = resp.stockpiles.iter().map(touched_stockpile).collect();
                    Ok((resp, touched))
                },
            )
            .await
    }

    async fn declare_shortage(
        &self,
        req: Request<DeclareShortageRequest>,
    ) -> Result<Response<DeclareShortageResponse>, Status> {
        let linked: Vec<String> = req
            .get_ref()
            .declaration
            .as_ref()
            .map(|d| d.linked_report_ids.clone())
            .unwrap_or_default();
        let resources = linked.iter().map(|id| format!("report:{id}")).collect();
        let sharing = self.sharing.clone();
        self.face
            .unary(
                "DeclareShortage",
                req,
                resources,
                |mut c, r| async move {
                    linked_reports_visible(sharing, &r, &linked).await?;
                    c.declare_shortage(r).await
                },
                one_case(|r: &mut DeclareShortageResponse| r.shortage_case.as_mut()),
            )
            .await
    }

    async fn cast_vote(
        &self,
        req: Request<CastVoteRequest>,
    ) -> Result<Response<CastVoteResponse>, Status> {
        let resources = case_resource(&req.get_ref().case_id);
        self.face
            .unary(
                "CastVote",
                req,
                resources,
                |mut c, r| async move { c.cast_vote(r).await },
                one_case(|r: &mut CastVoteResponse| r.shortage_case.as_mut()),
            )
            .await
    }

    async fn get_case(
        &self,
        req: Request<GetCaseRequest>,
    ) -> Result<Response<GetCaseResponse>, Status> {
        let resources = case_resource(&req.get_ref().case_id);
        self.face
            .unary(
                "GetCase",
                req,
                resources,
                |mut c, r| async move { c.get_case(r).await },
                one_case(|r: &mut GetCaseResponse| r.shortage_case.as_mut()),
            )
            .await
    }

    async fn list_cases(
        &self,
        req: Request<ListCasesRequest>,
    ) -> Result<Response<ListCasesResponse>, Status> {
        self.face
            .unary(
                "ListCases",
                req,
                vec![],
                |mut c, r| async move { c.list_cases(r).await },
                |pass, mut resp: ListCasesResponse| {
                    for c in &mut resp.cases {
                        keep_links_for_declarer(pass, c);
                    }
                    let touched = cases_touched(&resp.cases);
                    Ok((resp, touched))
                },
            )
            .await
    }

    async fn pledge_release(
        &self,
        req: Request<PledgeReleaseRequest>,
    ) -> Result<Response<PledgeReleaseResponse>, Status> {
        let resources = case_resource(&req.get_ref().case_id);
        self.face
            .unary(
                "PledgeRelease",
                req,
                resources,
                |mut c, r| async move { c.pledge_release(r).await },
                one_case(|r: &mut PledgeReleaseResponse| r.shortage_case.as_mut()),
            )
            .await
    }

    async fn record_fulfilment(
        &self,
        req: Request<RecordFulfilmentRequest>,
    ) -> Result<Response<RecordFulfilmentResponse>, Status> {
        let resources = case_resource(&req.get_ref().case_id);
        self.face
            .unary(
                "RecordFulfilment",
                req,
                resources,
                |mut c, r| async move { c.record_fulfilment(r).await },
                one_case(|r: &mut RecordFulfilmentResponse| r.shortage_case.as_mut()),
            )
            .await
    }

    async fn close_case(
        &self,
        req: Request<CloseCaseRequest>,
    ) -> Result<Response<CloseCaseResponse>, Status> {
        let resources = case_resource(&req.get_ref().case_id);
        self.face
            .unary(
                "CloseCase",
                req,
                resources,
                |mut c, r| async move { c.close_case(r).await },
                one_case(|r: &mut CloseCaseResponse| r.shortage_case.as_mut()),
            )
            .await
    }

    type SubscribeCaseEventsStream = BoxStream<SubscribeCaseEventsResponse>;

    async fn subscribe_case_events(
        &self,
        req: Request<SubscribeCaseEventsRequest>,
    ) -> Result<Response<Self::SubscribeCaseEventsStream>, Status> {
        let method = format!("{SERVICE}SubscribeCaseEvents");
        let backend = self.streams_backend.clone();
        let (upstream, pass) = open_stream(
            &self.face.door,
            &method,
            "emergency",
            req,
            |out| async move { backend.clone().subscribe_case_events(out).await },
        )
        .await?;
        Ok(Response::new(relay_screened(
            upstream,
            pass,
            method,
            self.policy.clone(),
            self.streams,
            self.shutdown.clone(),
            |_, _, ev: &SubscribeCaseEventsResponse| ev.shortage_case.as_ref().map(touched_case),
        )))
    }
}

//! `orex.sharing.v1.SharingService` at the gateway: every call through the
//! [`Door`], forwarded to the sharing service over mutual TLS, and every
//! report in the answer screened again before it leaves.

use orex_kit::Shutdown;
use orex_kit::status::{self as kit_status, Reason};
use orex_kit::stream::{BoxStream, StreamConfig};
use orex_proto::sharing::v1::sharing_service_client::SharingServiceClient;
use orex_proto::sharing::v1::sharing_service_server::SharingService;
use orex_proto::sharing::v1::*;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

use crate::door::{Door, Pass, Touched};
use crate::forward::{Face, open_stream, relay_screened};
use crate::screen::{may_see, owner};

const SERVICE: &str = "/orex.sharing.v1.SharingService/";

pub use crate::backend::Backend;

/// The gateway's face of the sharing API.
#[derive(Debug, Clone)]
pub struct SharingGateway {
    policy: crate::policy::PolicyHandle,
    face: Face<SharingServiceClient<Channel>>,
    streams_backend: Channel,
    streams: StreamConfig,
    shutdown: Shutdown,
}

impl SharingGateway {
    /// Forwards to `backend` after the door admits a call.
    pub fn new(
        door: Door,
        policy: crate::policy::PolicyHandle,
        backend: Backend,
        streams: StreamConfig,
        shutdown: Shutdown,
    ) -> Self {
        Self {
            policy,
            face: Face {
                door,
                service: SERVICE,
                backend: SharingServiceClient::new(backend.unary),
            },
            streams_backend: backend.streams,
            streams,
            shutdown,
        }
    }
}

/// The resources an answer returned, with their owners, for the record.
fn touched(reports: &[Report]) -> Vec<Touched> {
    reports
        .iter()
        .map(|r| Touched {
            id: r.id.clone(),
            owner: owner(r).unwrap_or_default(),
        })
        .collect()
}

/// Keeps one report if the caller may see it; otherwise answers as if it did
/// not exist (and logs the backend's mistake).
fn screen_one(
    pass: &Pass,
    report: Option<Report>,
) -> Result<(Option<Report>, Vec<Touched>), Status> {
    match report {
        Some(r) if may_see(&pass.policy.partnership, &pass.caller.principal, &r) => {
            let t = touched(std::slice::from_ref(&r));
            Ok((Some(r), t))
        }
        Some(r) => {
            tracing::error!(report = %r.id, caller = %pass.caller.principal, "backend returned a report the caller may not see; withheld");
            // Exactly what the service says of a report that is absent.
            Err(kit_status::error(
                Code::NotFound,
                Reason::NotFound,
                format!("report {} not found", r.id),
            ))
        }
        None => Ok((None, vec![])),
    }
}

/// Answers that carry one report.
trait OneReport {
    fn report(&mut self) -> &mut Option<Report>;
}

macro_rules! one_report {
    ($($t:ty),*) => {$(
        impl OneReport for $t {
            fn report(&mut self) -> &mut Option<Report> {
                &mut self.report
            }
        }
    )*};
}

one_report!(
    PublishReportResponse,
    AmendReportResponse,
    ResolveReportResponse,
    RetractReportResponse,
    GetReportResponse
);

/// Screens a one-report answer with [`screen_one`].
fn screen_single<R: OneReport>(pass: &Pass, mut resp: R) -> Result<(R, Vec<Touched>), Status> {
    let (report, seen) = screen_one(pass, resp.report().take())?;
    *resp.report() = report;
    Ok((resp, seen))
}

/// Keeps the reports the caller may see; the count says how many were withheld.
fn screen_many(pass: &Pass, reports: Vec<Report>) -> (Vec<Report>, usize) {
    let before = reports.len();
    let kept: Vec<Report> = reports
        .into_iter()
        .filter(|r| may_see(&pass.policy.partnership, &pass.caller.principal, r))
        .collect();
    let withheld = before - kept.len();
    if withheld > 0 {
        tracing::error!(withheld, caller = %pass.caller.principal, "backend returned reports the caller may not see; withheld");
    }
    (kept, withheld)
}

#[tonic::async_trait]
impl SharingService for SharingGateway {
    async fn publish_report(
        &self,
        req: Request<PublishReportRequest>,
    ) -> Result<Response<PublishReportResponse>, Status> {
        let resources = vec![format!("request:{}", req.get_ref().request_id)];
        self.face
            .unary(
                "PublishReport",
                req,
                resources,
                |mut c, r| async move { c.publish_report(r).await },
                screen_single,
            )
            .await
    }

    async fn amend_report(
        &self,
        req: Request<AmendReportRequest>,
    ) -> Result<Response<AmendReportResponse>, Status> {
        let resources = vec![req.get_ref().report_id.clone()];
        self.face
            .unary(
                "AmendReport",
                req,
                resources,
                |mut c, r| async move { c.amend_report(r).await },
                screen_single,
            )
            .await
    }

    async fn resolve_report(
        &self,
        req: Request<ResolveReportRequest>,
    ) -> Result<Response<ResolveReportResponse>, Status> {
        let resources = vec![req.get_ref().report_id.clone()];
        self.face
            .unary(
                "ResolveReport",
                req,
                resources,
                |mut c, r| async move { c.resolve_report(r).await },
                screen_single,
            )
            .await
    }

    async fn retract_report(
        &self,
        req: Request<RetractReportRequest>,
    ) -> Result<Response<RetractReportResponse>, Status> {
        let resources = vec![req.get_ref().report_id.clone()];
        self.face
            .unary(
                "RetractReport",
                req,
                resources,
                |mut c, r| async move { c.retract_report(r).await },
                screen_single,
            )
            .await
    }

    async fn get_report(
        &self,
        req: Request<GetReportRequest>,
    ) -> Result<Response<GetReportResponse>, Status> {
        let resources = vec![req.get_ref().report_id.clone()];
        self.face
            .unary(
                "GetReport",
                req,
                resources,
                |mut c, r| async move { c.get_report(r).await },
                screen_single,
            )
            .await
    }

    async fn list_reports(
        &self,
        req: Request<ListReportsRequest>,
    ) -> Result<Response<ListReportsResponse>, Status> {
        self.face
            .unary(
                "ListReports",
                req,
                vec![],
                |mut c, r| async move { c.list_reports(r).await },
                |p, mut resp| {
                    let (kept, _) = screen_many(p, std::mem::take(&mut resp.reports));
                    let seen = touched(&kept);
                    resp.reports = kept;
                    Ok((resp, seen))
                },
            )
            .await
    }

    async fn list_report_versions(
        &self,
        req: Request<ListReportVersionsRequest>,
    ) -> Result<Response<ListReportVersionsResponse>, Status> {
        let resources = vec![req.get_ref().report_id.clone()];
        self.face
            .unary(
                "ListReportVersions",
                req,
                resources,
                |mut c, r| async move { c.list_report_versions(r).await },
                |p, mut resp| {
                    // Audiences only shrink, so a version the caller may not see
                    // means the report's latest is hidden too: the whole report is absent.
                    let (kept, withheld) = screen_many(p, std::mem::take(&mut resp.reports));
                    if withheld > 0 {
                        return Err(kit_status::error(
                            Code::NotFound,
                            Reason::NotFound,
                            "report not found",
                        ));
                    }
                    let seen = touched(&kept);
                    resp.reports = kept;
                    Ok((resp, seen))
                },
            )
            .await
    }

    type SubscribeReportsStream = BoxStream<SubscribeReportsResponse>;

    async fn subscribe_reports(
        &self,
        req: Request<SubscribeReportsRequest>,
    ) -> Result<Response<Self::SubscribeReportsStream>, Status> {
        let method = format!("{SERVICE}SubscribeReports");
        let backend = self.streams_backend.clone();
        let (upstream, pass) = open_stream(&self.face.door, &method, "sharing", req, |out| {
            relay_subscribe(backend, out)
        })
        .await?;
        Ok(Response::new(relay_screened(
            upstream,
            pass,
            method,
            self.policy.clone(),
            self.streams,
            self.shutdown.clone(),
            |live, pass, ev: &SubscribeReportsResponse| {
                ev.report.as_ref().and_then(|r| {
                    may_see(&live.partnership, &pass.caller.principal, r).then(|| Touched {
                        id: r.id.clone(),
                        owner: owner(r).unwrap_or_default(),
                    })
                })
            },
        )))
    }
}

/// The codec of relayed backend streams. tonic's default decode buffer is
/// 8 KiB per stream, allocated when the stream opens and held for its whole
/// life — the largest single cost of an idle subscriber at the gateway.
/// Events are a few hundred bytes to a few KB, so the buffer starts at 1 KiB
/// and grows only for larger ones.
struct RelayCodec<T, U>(std::marker::PhantomData<fn() -> (T, U)>);

impl<T, U> tonic::codec::Codec for RelayCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = <tonic_prost::ProstCodec<T, U> as tonic::codec::Codec>::Encoder;
    type Decoder = <tonic_prost::ProstCodec<T, U> as tonic::codec::Codec>::Decoder;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstCodec::<T, U>::raw_encoder(tonic::codec::BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstCodec::<T, U>::raw_decoder(tonic::codec::BufferSettings::new(
            1024,
            32 * 1024,
        ))
    }
}

/// `SubscribeReports` at the sharing service, with the [`RelayCodec`].
async fn relay_subscribe(
    channel: Channel,
    req: Request<SubscribeReportsRequest>,
) -> Result<Response<tonic::Streaming<SubscribeReportsResponse>>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| {
        tracing::warn!(error = %e, "sharing service not reachable for a stream");
        kit_status::error(
            Code::Unavailable,
            Reason::ServiceUnavailable,
            "the sharing service is unavailable; retry with your last sequence",
        )
    })?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/orex.sharing.v1.SharingService/SubscribeReports",
    );
    grpc.server_streaming(req, path, RelayCodec(std::marker::PhantomData))
        .await
}

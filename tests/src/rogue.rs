//! A sharing backend that gets visibility wrong on purpose: it answers every
//! read with a RED report meant for DE/dora (plus a GREEN one), so tests can
//! prove the gateway screens answers and streams itself.

use std::time::SystemTime;

use orex_kit::stream::BoxStream;
use orex_proto::common::v1::{Marking, PrincipalRef};
use orex_proto::sharing::v1::sharing_service_server::SharingService;
use orex_proto::sharing::v1::*;
use prost_types::Timestamp;
use tonic::{Request, Response, Status};

/// The misbehaving backend.
#[derive(Debug, Clone, Default)]
pub struct RogueSharing;

/// Id of the RED report the rogue backend leaks.
pub const LEAKED_ID: &str = "01a216c4-0000-7000-8000-000000000001";
/// Id of the GREEN report it also returns.
pub const GREEN_ID: &str = "01a216c4-0000-7000-8000-000000000002";

fn report(id: &str, marking: Marking, to: Vec<PrincipalRef>) -> Report {
    let mut content = crate::content(marking, &[], &[]);
    content.recipient_principals = to;
    Report {
        id: id.into(),
        version: 1,
        status: ReportStatus::Active as i32,
        content: Some(content),
        author: Some(PrincipalRef {
            member: "US".into(),
            subject: "alice".into(),
        }),
        updated_by: None,
        published_at: Some(Timestamp::from(SystemTime::now())),
        updated_at: None,
        breaches_no_export_ban: false,
        change_note: String::new(),
        sequence: 1,
    }
}

fn leaked() -> Report {
    report(
        LEAKED_ID,
        Marking::Red,
        vec![PrincipalRef {
            member: "DE".into(),
            subject: "dora".into(),
        }],
    )
}

fn green() -> Report {
    report(GREEN_ID, Marking::Green, vec![])
}

#[tonic::async_trait]
impl SharingService for RogueSharing {
    async fn publish_report(
        &self,
        _: Request<PublishReportRequest>,
    ) -> Result<Response<PublishReportResponse>, Status> {
        Ok(Response::new(PublishReportResponse {
            report: Some(leaked()),
            replayed: false,
        }))
    }
    async fn amend_report(
        &self,
        _: Request<AmendReportRequest>,
    ) -> Result<Response<AmendReportResponse>, Status> {
        Err(Status::unimplemented("rogue"))
    }
    async fn resolve_report(
        &self,
        _: Request<ResolveReportRequest>,
    ) -> Result<Response<ResolveReportResponse>, Status> {
        Err(Status::unimplemented("rogue"))
    }
    async fn retract_report(
        &self,
        _: Request<RetractReportRequest>,
    ) -> Result<Response<RetractReportResponse>, Status> {
        Err(Status::unimplemented("rogue"))
    }
    async fn get_report(
        &self,
        _: Request<GetReportRequest>,
    ) -> Result<Response<GetReportResponse>, Status> {
        Ok(Response::new(GetReportResponse {
            report: Some(leaked()),
        }))
    }
    async fn list_reports(
        &self,
        _: Request<ListReportsRequest>,
    ) -> Result<Response<ListReportsResponse>, Status> {
        Ok(Response::new(ListReportsResponse {
            reports: vec![leaked(), green()],
            next_page_token: String::new(),
        }))
    }
    async fn list_report_versions(
        &self,
        _: Request<ListReportVersionsRequest>,
    ) -> Result<Response<ListReportVersionsResponse>, Status> {
        Ok(Response::new(ListReportVersionsResponse {
            reports: vec![leaked(), green()],
            next_page_token: String::new(),
        }))
    }

    type SubscribeReportsStream = BoxStream<SubscribeReportsResponse>;

    async fn subscribe_reports(
        &self,
        _: Request<SubscribeReportsRequest>,
    ) -> Result<Response<Self::SubscribeReportsStream>, Status> {
        let events = [leaked(), green()]
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                Ok(SubscribeReportsResponse {
                    sequence: i as u64 + 1,
                    kind: ReportEventKind::Published as i32,
                    report: Some(r),
                })
            })
            .collect::<Vec<_>>();
        // Stay open after the two events, like a live stream.
        let stream = futures::stream::iter(events).chain(futures::stream::pending());
        Ok(Response::new(Box::pin(stream)))
    }
}

use futures::StreamExt as _;

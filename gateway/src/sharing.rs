//! `orex.sharing.v1.SharingService` at the gateway: every call authenticated,
//! then forwarded to the sharing service over mutual TLS.

use std::sync::Arc;

use orex_kit::Shutdown;
use orex_kit::stream::BoxStream;
use orex_proto::sharing::v1::sharing_service_client::SharingServiceClient;
use orex_proto::sharing::v1::sharing_service_server::SharingService;
use orex_proto::sharing::v1::*;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::authn::Authenticator;
use crate::forward::{outbound, relay};

/// The gateway's face of the sharing API.
#[derive(Debug, Clone)]
pub struct SharingGateway {
    auth: Arc<Authenticator>,
    backend: SharingServiceClient<Channel>,
    shutdown: Shutdown,
}

impl SharingGateway {
    /// Forwards to `backend` after authenticating with `auth`.
    pub fn new(auth: Arc<Authenticator>, backend: Channel, shutdown: Shutdown) -> Self {
        Self {
            auth,
            backend: SharingServiceClient::new(backend),
            shutdown,
        }
    }
}

#[tonic::async_trait]
impl SharingService for SharingGateway {
    async fn publish_report(
        &self,
        req: Request<PublishReportRequest>,
    ) -> Result<Response<PublishReportResponse>, Status> {
        let (_, out) = outbound(&self.auth, req)?;
        self.backend.clone().publish_report(out).await
    }

    async fn amend_report(
        &self,
        req: Request<AmendReportRequest>,
    ) -> Result<Response<AmendReportResponse>, Status> {
        let (_, out) = outbound(&self.auth, req)?;
        self.backend.clone().amend_report(out).await
    }

    async fn resolve_report(
        &self,
        req: Request<ResolveReportRequest>,
    ) -> Result<Response<ResolveReportResponse>, Status> {
        let (_, out) = outbound(&self.auth, req)?;
        self.backend.clone().resolve_report(out).await
    }

    async fn retract_report(
        &self,
        req: Request<RetractReportRequest>,
    ) -> Result<Response<RetractReportResponse>, Status> {
        let (_, out) = outbound(&self.auth, req)?;
        self.backend.clone().retract_report(out).await
    }

    async fn get_report(
        &self,
        req: Request<GetReportRequest>,
    ) -> Result<Response<GetReportResponse>, Status> {
        let (_, out) = outbound(&self.auth, req)?;
        self.backend.clone().get_report(out).await
    }

    async fn list_reports(
        &self,
        req: Request<ListReportsRequest>,
    ) -> Result<Response<ListReportsResponse>, Status> {
        let (_, out) = outbound(&self.auth, req)?;
        self.backend.clone().list_reports(out).await
    }

    async fn list_report_versions(
        &self,
        req: Request<ListReportVersionsRequest>,
    ) -> Result<Response<ListReportVersionsResponse>, Status> {
        let (_, out) = outbound(&self.auth, req)?;
        self.backend.clone().list_report_versions(out).await
    }

    type SubscribeReportsStream = BoxStream<SubscribeReportsResponse>;

    async fn subscribe_reports(
        &self,
        req: Request<SubscribeReportsRequest>,
    ) -> Result<Response<Self::SubscribeReportsStream>, Status> {
        let (caller, out) = outbound(&self.auth, req)?;
        let upstream = self.backend.clone().subscribe_reports(out).await?;
        Ok(Response::new(relay(
            upstream.into_inner(),
            self.shutdown.clone(),
            caller.expires_at,
        )))
    }
}

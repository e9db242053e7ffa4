//! `orex.risk.v1.RiskService` at the gateway: every call through the same
//! [`Door`] and [`forward_unary`] as the sharing face, forwarded to the risk
//! service over mutual TLS. Risk answers are computed from reference data
//! and from CLEAR and GREEN reports only, so there is nothing per-member to
//! screen out of them; the door's role check (analyst) is the gate.

use orex_kit::Shutdown;
use orex_kit::stream::{BoxStream, StreamConfig};
use orex_proto::risk::v1::risk_service_client::RiskServiceClient;
use orex_proto::risk::v1::risk_service_server::RiskService;
use orex_proto::risk::v1::*;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::backend::Backend;
use crate::door::{Door, Pass, Touched};
use crate::forward::{Face, Sequenced, open_stream, relay_screened};

const SERVICE: &str = "/orex.risk.v1.RiskService/";

impl Sequenced for SubscribeRiskAlertsResponse {
    fn sequence(&self) -> u64 {
        self.sequence
    }
}

/// The gateway's face of the risk API.
#[derive(Debug, Clone)]
pub struct RiskGateway {
    policy: crate::policy::PolicyHandle,
    face: Face<RiskServiceClient<Channel>>,
    streams_backend: RiskServiceClient<Channel>,
    streams: StreamConfig,
    shutdown: Shutdown,
}

/// Nothing in a risk answer belongs to one member: passed as is.
fn unscreened<T>(_: &Pass, resp: T) -> Result<(T, Vec<Touched>), Status> {
    Ok((resp, vec![]))
}

/// The resource a call is about, for the access record (`mineral:gallium`).
fn mineral_resource(mineral: i32) -> Vec<String> {
    orex_proto::common::v1::Mineral::try_from(mineral)
        .ok()
        .filter(|m| *m != orex_proto::common::v1::Mineral::Unspecified)
        .map(|m| vec![format!("mineral:{}", orex_proto::names::mineral(m))])
        .unwrap_or_default()
}

impl RiskGateway {
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
                backend: RiskServiceClient::new(backend.unary),
            },
            streams_backend: RiskServiceClient::new(backend.streams),
            streams,
            shutdown,
        }
    }
}

#[tonic::async_trait]
impl RiskService for RiskGateway {
    async fn get_supply_risk(
        &self,
        req: Request<GetSupplyRiskRequest>,
    ) -> Result<Response<GetSupplyRiskResponse>, Status> {
        let resources = mineral_resource(req.get_ref().mineral);
        self.face
            .unary(
                "GetSupplyRisk",
                req,
                resources,
                |mut c, r| async move { c.get_supply_risk(r).await },
                unscreened,
            )
            .await
    }

    async fn list_supply_risks(
        &self,
        req: Request<ListSupplyRisksRequest>,
    ) -> Result<Response<ListSupplyRisksResponse>, Status> {
        self.face
            .unary(
                "ListSupplyRisks",
                req,
                vec![],
                |mut c, r| async move { c.list_supply_risks(r).await },
                unscreened,
            )
            .await
    }

    async fn run_scenario(
        &self,
        req: Request<RunScenarioRequest>,
    ) -> Result<Response<RunScenarioResponse>, Status> {
        let resources = req
            .get_ref()
            .scenario
            .as_ref()
            .map(|s| mineral_resource(s.mineral))
            .unwrap_or_default();
        self.face
            .unary(
                "RunScenario",
                req,
                resources,
                |mut c, r| async move { c.run_scenario(r).await },
                unscreened,
            )
            .await
    }

    async fn get_reference_price(
        &self,
        req: Request<GetReferencePriceRequest>,
    ) -> Result<Response<GetReferencePriceResponse>, Status> {
        let resources = mineral_resource(req.get_ref().mineral);
        self.face
            .unary(
                "GetReferencePrice",
                req,
                resources,
                |mut c, r| async move { c.get_reference_price(r).await },
                unscreened,
            )
            .await
    }

    type SubscribeRiskAlertsStream = BoxStream<SubscribeRiskAlertsResponse>;

    async fn subscribe_risk_alerts(
        &self,
        req: Request<SubscribeRiskAlertsRequest>,
    ) -> Result<Response<Self::SubscribeRiskAlertsStream>, Status> {
        let method = format!("{SERVICE}SubscribeRiskAlerts");
        let backend = self.streams_backend.clone();
        let (upstream, pass) =
            open_stream(&self.face.door, &method, "risk", req, |out| async move {
                backend.clone().subscribe_risk_alerts(out).await
            })
            .await?;
        Ok(Response::new(relay_screened(
            upstream,
            pass,
            method,
            self.policy.clone(),
            self.streams,
            self.shutdown.clone(),
            |_, _, ev: &SubscribeRiskAlertsResponse| {
                Some(Touched {
                    id: ev.alert.as_ref().map(|a| a.id.clone()).unwrap_or_default(),
                    owner: String::new(),
                })
            },
        )))
    }

    async fn get_reference_data_version(
        &self,
        req: Request<GetReferenceDataVersionRequest>,
    ) -> Result<Response<GetReferenceDataVersionResponse>, Status> {
        self.face
            .unary(
                "GetReferenceDataVersion",
                req,
                vec![],
                |mut c, r| async move { c.get_reference_data_version(r).await },
                unscreened,
            )
            .await
    }
}

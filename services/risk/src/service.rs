//! The gRPC handlers of `orex.risk.v1.RiskService`. Built so far:
//! `GetReferenceDataVersion`. The other methods answer UNIMPLEMENTED with
//! the reason `METHOD_NOT_SERVED` until their slice lands.

use std::sync::Arc;

use arc_swap::ArcSwap;
use orex_kit::forwarded::principal_of;
use orex_kit::status::{self, Reason};
use orex_membership::Role;
use orex_proto::risk::v1::risk_service_server::RiskService;
use orex_proto::risk::v1::*;
use prost_types::Timestamp;
use tonic::{Code, Request, Response, Status};

use crate::reference::ReferenceData;

/// Reference data in force, with when it was loaded.
#[derive(Debug)]
pub struct Loaded {
    /// The validated data.
    pub data: ReferenceData,
    /// When this process loaded it.
    pub loaded_at: Timestamp,
}

/// The reference data in force; replaced whole when the file changes.
pub type SharedReference = Arc<ArcSwap<Loaded>>;

/// The risk service's state, shared by every call.
#[derive(Debug, Clone)]
pub struct Risk {
    reference: SharedReference,
}

impl Risk {
    /// A service computing with `reference`.
    pub fn new(reference: SharedReference) -> Self {
        Self { reference }
    }

    /// The caller's principal, which must hold the analyst role.
    fn analyst<T>(req: &Request<T>) -> Result<(), Status> {
        let who = principal_of(req)?;
        if who.has_role(Role::Analyst) {
            Ok(())
        } else {
            Err(status::error(
                Code::PermissionDenied,
                Reason::RoleMissing,
                "this call needs the analyst role",
            ))
        }
    }
}

fn not_yet() -> Status {
    status::error(
        Code::Unimplemented,
        Reason::MethodNotServed,
        "this method of the risk service is not built yet",
    )
}

/// The data set's identity and sources, as the contract describes them.
pub fn version_of(loaded: &Loaded) -> ReferenceDataVersion {
    let data = &loaded.data;
    ReferenceDataVersion {
        version: data.version.clone(),
        content_sha256: data.content_sha256.clone(),
        published_at: data.published_at.parse().ok(),
        loaded_at: Some(loaded.loaded_at),
        sources: data
            .sources
            .values()
            .map(|s| ReferenceSource {
                id: s.id.clone(),
                title: s.title.clone(),
                publisher: s.publisher.clone(),
                url: s.url.clone(),
                year: s.year,
                license: s.license.clone(),
                notes: s.notes.clone(),
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl RiskService for Risk {
    async fn get_supply_risk(
        &self,
        req: Request<GetSupplyRiskRequest>,
    ) -> Result<Response<GetSupplyRiskResponse>, Status> {
        Self::analyst(&req)?;
        Err(not_yet())
    }

    async fn list_supply_risks(
        &self,
        req: Request<ListSupplyRisksRequest>,
    ) -> Result<Response<ListSupplyRisksResponse>, Status> {
        Self::analyst(&req)?;
        Err(not_yet())
    }

    async fn run_scenario(
        &self,
        req: Request<RunScenarioRequest>,
    ) -> Result<Response<RunScenarioResponse>, Status> {
        Self::analyst(&req)?;
        Err(not_yet())
    }

    async fn get_reference_price(
        &self,
        req: Request<GetReferencePriceRequest>,
    ) -> Result<Response<GetReferencePriceResponse>, Status> {
        Self::analyst(&req)?;
        Err(not_yet())
    }

    type SubscribeRiskAlertsStream = orex_kit::stream::BoxStream<SubscribeRiskAlertsResponse>;

    async fn subscribe_risk_alerts(
        &self,
        req: Request<SubscribeRiskAlertsRequest>,
    ) -> Result<Response<Self::SubscribeRiskAlertsStream>, Status> {
        Self::analyst(&req)?;
        Err(not_yet())
    }

    async fn get_reference_data_version(
        &self,
        req: Request<GetReferenceDataVersionRequest>,
    ) -> Result<Response<GetReferenceDataVersionResponse>, Status> {
        Self::analyst(&req)?;
        Ok(Response::new(GetReferenceDataVersionResponse {
            reference_data: Some(version_of(&self.reference.load())),
        }))
    }
}

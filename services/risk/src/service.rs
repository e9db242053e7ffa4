//! The gRPC handlers of `orex.risk.v1.RiskService`: each checks the role,
//! validates the request (INVALID_ARGUMENT naming the field) and computes
//! from the reference data, the policy and the live disruptions in force;
//! `SubscribeRiskAlerts` streams the alert log like the report stream.

use std::sync::Arc;

use arc_swap::ArcSwap;
use orex_kit::forwarded::principal_of;
use orex_kit::page_token::PageTokens;

use orex_membership::{Partnership, Principal, Role};
use orex_proto::common::v1::Mineral;
use orex_proto::risk::v1::risk_service_server::RiskService;
use orex_proto::risk::v1::*;
use prost_types::Timestamp;
use tonic::{Request, Response, Status};

use crate::assess::{AssessError, Assessor, Settings};
use crate::error::RiskError;
use crate::live::SharedLive;
use crate::reference::Price;
use crate::reference::ReferenceData;
use crate::scenario;
use crate::validate;
use orex_kit::Shutdown;
use orex_kit::store::{EventLog, decode_value};
use orex_kit::stream::{StreamConfig, follow};

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

/// The partnership policy in force; replaced whole when the file changes.
pub type SharedPartnership = Arc<ArcSwap<Partnership>>;

/// The risk service's state, shared by every call.
#[derive(Debug, Clone)]
pub struct Risk {
    reference: SharedReference,
    partnership: SharedPartnership,
    live: SharedLive,
    settings: Settings,
    tokens: Arc<PageTokens>,
    alerts: Arc<EventLog>,
    streams: StreamConfig,
    shutdown: Shutdown,
    stockpiles: Option<crate::stockpiles::StockpileSource>,
}

/// What a risk service computes with and serves from, for [`Risk::new`].
#[derive(Debug, Clone)]
pub struct Parts {
    /// The reference data in force.
    pub reference: SharedReference,
    /// The policy in force.
    pub partnership: SharedPartnership,
    /// The live disruptions in force.
    pub live: SharedLive,
    /// Thresholds.
    pub settings: Settings,
    /// Page-token sealer.
    pub tokens: Arc<PageTokens>,
    /// The alert log.
    pub alerts: Arc<EventLog>,
    /// Alert stream settings.
    pub streams: StreamConfig,
    /// Ends streams at shutdown.
    pub shutdown: Shutdown,
    /// Where scenarios read stockpiles (none: every member UNAVAILABLE).
    pub stockpiles: Option<crate::stockpiles::StockpileSource>,
}

impl Risk {
    /// A service computing with `parts`.
    pub fn new(parts: Parts) -> Self {
        Self {
            reference: parts.reference,
            partnership: parts.partnership,
            live: parts.live,
            settings: parts.settings,
            tokens: parts.tokens,
            alerts: parts.alerts,
            streams: parts.streams,
            shutdown: parts.shutdown,
            stockpiles: parts.stockpiles,
        }
    }

    /// The caller's principal, which must hold the analyst role.
    fn analyst<T>(req: &Request<T>) -> Result<Principal, Status> {
        let who = principal_of(req)?;
        if who.has_role(Role::Analyst) {
            Ok(who)
        } else {
            Err(RiskError::RoleMissing("analyst").into())
        }
    }

    fn now() -> Timestamp {
        Timestamp::from(std::time::SystemTime::now())
    }

    /// An assessor over what is in force now, with the live disruptions.
    fn with_assessor<R>(
        &self,
        partnership: &Partnership,
        f: impl FnOnce(&Assessor<'_>) -> Result<R, RiskError>,
    ) -> Result<R, RiskError> {
        let reference = self.reference.load();
        let disruptions = self.live.load();
        let a = Assessor {
            data: &reference.data,
            partnership,
            disruptions: &disruptions,
            settings: self.settings,
            now: Self::now(),
        };
        f(&a)
    }
}

type OrderKey = (std::cmp::Reverse<u64>, i32, i32, String);

/// The key a list is ordered by: highest score first, then mineral, stage
/// and member, so equal scores keep a stable order across pages.
fn order_key(s: &SupplyRisk) -> OrderKey {
    // Non-negative finite f64s order like their bit patterns.
    (
        std::cmp::Reverse(s.supply_risk.to_bits()),
        s.mineral,
        s.stage,
        s.member.clone(),
    )
}

fn encode_cursor(s: &SupplyRisk) -> Vec<u8> {
    let mut c = Vec::with_capacity(16 + s.member.len());
    c.extend_from_slice(&s.supply_risk.to_bits().to_be_bytes());
    c.extend_from_slice(&s.mineral.to_be_bytes());
    c.extend_from_slice(&s.stage.to_be_bytes());
    c.extend_from_slice(s.member.as_bytes());
    c
}

fn decode_cursor(c: &[u8]) -> Option<OrderKey> {
    let bits = u64::from_be_bytes(c.get(0..8)?.try_into().ok()?);
    let mineral = i32::from_be_bytes(c.get(8..12)?.try_into().ok()?);
    let stage = i32::from_be_bytes(c.get(12..16)?.try_into().ok()?);
    let member = String::from_utf8(c.get(16..)?.to_vec()).ok()?;
    Some((std::cmp::Reverse(bits), mineral, stage, member))
}

/// A reference price as the contract describes it.
pub fn reference_price(mineral: Mineral, p: &Price, version: &str) -> ReferencePrice {
    ReferencePrice {
        mineral: mineral as i32,
        product_form: p.product_form.clone(),
        usd_per_tonne: p.usd_per_tonne,
        dumping_margin: p.dumping_margin,
        dumping_threshold_usd_per_tonne: p.usd_per_tonne * (1.0 - p.dumping_margin),
        effective_from: p.effective_from.parse().ok(),
        basis: if p.estimate {
            format!("{} (an estimate)", p.basis)
        } else {
            p.basis.clone()
        },
        source_ids: vec![p.source.clone()],
        reference_data_version: version.to_owned(),
    }
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

impl Risk {
    fn get_supply_risk_now(
        &self,
        who: &Principal,
        r: &GetSupplyRiskRequest,
    ) -> Result<SupplyRisk, RiskError> {
        let partnership = self.partnership.load();
        let q = validate::get_supply_risk_request(r, &partnership)?;
        let member = q.member.unwrap_or_else(|| who.member.clone());
        self.with_assessor(&partnership, |a| {
            Ok(match q.stage {
                Some(stage) => a.assess(&member, q.mineral, stage)?,
                None => a.bottleneck(&member, q.mineral)?,
            })
        })
    }

    fn list_supply_risks_now(
        &self,
        who: &Principal,
        r: &ListSupplyRisksRequest,
    ) -> Result<ListSupplyRisksResponse, RiskError> {
        let partnership = self.partnership.load();
        let q = validate::list_supply_risks_request(r, &partnership)?;
        let members = q.members.unwrap_or_else(|| vec![who.member.clone()]);
        // Tokens are bound to the caller and the filter.
        let context = orex_kit::page_token::context(&[
            who.member.as_bytes(),
            who.subject.as_bytes(),
            &prost::Message::encode_to_vec(&r.filter.clone().unwrap_or_default()),
        ]);
        let after = if r.page_token.is_empty() {
            None
        } else {
            let cursor = self.tokens.open(&context, &r.page_token).ok_or_else(|| {
                RiskError::invalid(
                    "page_token",
                    "is not a token this service issued to you for this filter",
                )
            })?;
            Some(
                decode_cursor(&cursor)
                    .ok_or_else(|| RiskError::invalid("page_token", "is damaged"))?,
            )
        };
        let mut scores = self.with_assessor(&partnership, |a| {
            let mut scores = Vec::new();
            for &(mineral, stage) in a.data.supply.keys() {
                if (!q.minerals.is_empty() && !q.minerals.contains(&mineral))
                    || (!q.stages.is_empty() && !q.stages.contains(&stage))
                {
                    continue;
                }
                for member in &members {
                    match a.assess(member, mineral, stage) {
                        Ok(s) => scores.push(s),
                        Err(AssessError::NotFound(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            Ok(scores)
        })?;
        scores.retain(|s| {
            s.supply_risk >= q.min_supply_risk && (!q.above_threshold_only || s.above_threshold)
        });
        scores.sort_by_key(order_key);
        // Scores are computed afresh for each page: one that moves across
        // the cursor between pages can show twice or not at all.
        if let Some(after) = &after {
            scores.retain(|s| order_key(s) > *after);
        }
        let page = q.page_size as usize;
        let more = scores.len() > page;
        scores.truncate(page);
        let next_page_token = match (more, scores.last()) {
            (true, Some(last)) => self.tokens.seal(&context, &encode_cursor(last)),
            _ => String::new(),
        };
        Ok(ListSupplyRisksResponse {
            supply_risks: scores,
            next_page_token,
        })
    }

    async fn run_scenario_now(
        &self,
        who: &Principal,
        r: &RunScenarioRequest,
    ) -> Result<ScenarioResult, RiskError> {
        let q = validate::run_scenario_request(r, &self.partnership.load())?;
        // Read before computing: the scores below use the policy, reference
        // data and disruptions in force once the stockpiles are in.
        let stockpiles = match &self.stockpiles {
            Some(source) => source.read(q.cut.mineral).await,
            None => crate::stockpiles::Stockpiles::Unavailable(
                "no emergency service is configured ([emergency] in risk.toml)".into(),
            ),
        };
        let partnership = self.partnership.load();
        let members = q.members.unwrap_or_else(|| {
            partnership
                .members()
                .filter(|m| m.is_active())
                .map(|m| m.code.clone())
                .collect()
        });
        let mut result = self.with_assessor(&partnership, |a| {
            scenario::run(a, &q.cut, &members, &who.member, &stockpiles)
        })?;
        let asked = r.scenario.clone().unwrap_or_default();
        result.scenario = Some(Scenario {
            start_time: Some(asked.start_time.or(result.computed_at).unwrap_or_default()),
            ..asked
        });
        Ok(result)
    }

    fn get_reference_price_now(
        &self,
        r: &GetReferencePriceRequest,
    ) -> Result<ReferencePrice, RiskError> {
        let mineral = validate::reference_price_request(r)?;
        let reference = self.reference.load();
        let p = reference.data.prices.get(&mineral).ok_or_else(|| {
            RiskError::NotFound(format!(
                "the reference data has no reference price for {}",
                crate::assess::mineral_name(mineral)
            ))
        })?;
        Ok(reference_price(mineral, p, &reference.data.version))
    }
}

#[tonic::async_trait]
impl RiskService for Risk {
    async fn get_supply_risk(
        &self,
        req: Request<GetSupplyRiskRequest>,
    ) -> Result<Response<GetSupplyRiskResponse>, Status> {
        let who = Self::analyst(&req)?;
        let s = self.get_supply_risk_now(&who, req.get_ref())?;
        Ok(Response::new(GetSupplyRiskResponse {
            supply_risk: Some(s),
        }))
    }

    async fn list_supply_risks(
        &self,
        req: Request<ListSupplyRisksRequest>,
    ) -> Result<Response<ListSupplyRisksResponse>, Status> {
        let who = Self::analyst(&req)?;
        Ok(Response::new(
            self.list_supply_risks_now(&who, req.get_ref())?,
        ))
    }

    async fn run_scenario(
        &self,
        req: Request<RunScenarioRequest>,
    ) -> Result<Response<RunScenarioResponse>, Status> {
        let who = Self::analyst(&req)?;
        Ok(Response::new(RunScenarioResponse {
            result: Some(self.run_scenario_now(&who, req.get_ref()).await?),
        }))
    }

    async fn get_reference_price(
        &self,
        req: Request<GetReferencePriceRequest>,
    ) -> Result<Response<GetReferencePriceResponse>, Status> {
        Self::analyst(&req)?;
        Ok(Response::new(GetReferencePriceResponse {
            price: Some(self.get_reference_price_now(req.get_ref())?),
        }))
    }

    type SubscribeRiskAlertsStream = orex_kit::stream::BoxStream<SubscribeRiskAlertsResponse>;

    async fn subscribe_risk_alerts(
        &self,
        req: Request<SubscribeRiskAlertsRequest>,
    ) -> Result<Response<Self::SubscribeRiskAlertsStream>, Status> {
        Self::analyst(&req)?;
        let req = req.into_inner();
        let filter = validate::subscribe_request(&req)?;
        let latest = self.alerts.published();
        let after = match req.after_sequence {
            Some(s) if s > latest => {
                return Err(RiskError::OutOfRange(format!(
                    "after_sequence {s} is beyond the end of the alert log ({latest}); resume from a sequence you received"
                ))
                .into());
            }
            Some(s) => s,
            None => latest,
        };
        Ok(Response::new(follow(
            self.alerts.clone(),
            after,
            self.streams,
            self.shutdown.clone(),
            move |seq, bytes| {
                let alert: RiskAlert = match decode_value(bytes) {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::error!(error = %e, sequence = seq, "undecodable risk alert");
                        return Some(Err(RiskError::Internal(e.to_string()).into()));
                    }
                };
                filter
                    .matches(&alert)
                    .then_some(Ok(SubscribeRiskAlertsResponse {
                        sequence: seq,
                        alert: Some(alert),
                    }))
            },
        )))
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

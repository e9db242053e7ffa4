//! The gRPC handlers of `orex.risk.v1.RiskService`: each checks the role,
//! validates the request (INVALID_ARGUMENT naming the field) and computes
//! from the reference data, the policy and the live disruptions in force;
//! `SubscribeRiskAlerts` streams the alert log like the report stream.

use std::sync::Arc;

use arc_swap::ArcSwap;
use orex_kit::forwarded::principal_of;
use orex_kit::page_token::PageTokens;

use orex_membership::{Partnership, Principal, Role};
use orex_proto::common::v1::{Mineral, Stage};
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
}

/// Largest page of `ListSupplyRisks`.
const MAX_PAGE_SIZE: u32 = 500;
/// Page size when the request gives none.
const DEFAULT_PAGE_SIZE: u32 = 50;

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

/// A validated alert filter.
#[derive(Debug, Clone)]
struct AlertFilter {
    kinds: Vec<i32>,
    minerals: Vec<i32>,
    stages: Vec<i32>,
    members: Vec<String>,
}

impl AlertFilter {
    fn matches(&self, a: &RiskAlert) -> bool {
        let price = a.kind == RiskAlertKind::PriceDumping as i32;
        (self.kinds.is_empty() || self.kinds.contains(&a.kind))
            && (self.minerals.is_empty() || self.minerals.contains(&a.mineral))
            && (price || self.stages.is_empty() || self.stages.contains(&a.stage))
            && (price || self.members.is_empty() || self.members.contains(&a.member))
    }
}

fn alert_filter(f: RiskAlertFilter) -> Result<AlertFilter, RiskError> {
    for (i, k) in f.kinds.iter().enumerate() {
        if !matches!(RiskAlertKind::try_from(*k), Ok(k) if k != RiskAlertKind::Unspecified) {
            return Err(RiskError::invalid(
                format!("filter.kinds[{i}]"),
                format!("{k} is not an alert kind"),
            ));
        }
    }
    for (i, m) in f.minerals.iter().enumerate() {
        mineral_field(&format!("filter.minerals[{i}]"), *m)?;
    }
    for (i, s) in f.stages.iter().enumerate() {
        stage_field(&format!("filter.stages[{i}]"), *s)?
            .ok_or_else(|| RiskError::invalid(format!("filter.stages[{i}]"), "is unspecified"))?;
    }
    for (i, m) in f.members.iter().enumerate() {
        if !orex_membership::policy::is_country_code(m) && !(2..=8).contains(&m.len()) {
            return Err(RiskError::invalid(
                format!("filter.members[{i}]"),
                "is not a member code",
            ));
        }
    }
    Ok(AlertFilter {
        kinds: f.kinds,
        minerals: f.minerals,
        stages: f.stages,
        members: f.members,
    })
}

/// A required mineral field.
fn mineral_field(field: &str, value: i32) -> Result<Mineral, RiskError> {
    match Mineral::try_from(value) {
        Ok(Mineral::Unspecified) => Err(RiskError::invalid(field, "is required")),
        Ok(m) => Ok(m),
        Err(_) => Err(RiskError::invalid(
            field,
            format!("{value} is not a mineral this service knows"),
        )),
    }
}

/// A stage field; `None` for STAGE_UNSPECIFIED.
fn stage_field(field: &str, value: i32) -> Result<Option<Stage>, RiskError> {
    match Stage::try_from(value) {
        Ok(Stage::Unspecified) => Ok(None),
        Ok(s) => Ok(Some(s)),
        Err(_) => Err(RiskError::invalid(
            field,
            format!("{value} is not a stage this service knows"),
        )),
    }
}

/// A member code that must name a configured member.
fn member_field(p: &Partnership, field: &str, code: &str) -> Result<String, RiskError> {
    if p.member(code).is_some() {
        Ok(code.to_owned())
    } else {
        Err(RiskError::invalid(
            field,
            format!("{code:?} is not a member of the partnership"),
        ))
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
        let mineral = mineral_field("mineral", r.mineral)?;
        let stage = stage_field("stage", r.stage)?;
        let partnership = self.partnership.load();
        let member = if r.member.is_empty() {
            who.member.clone()
        } else {
            member_field(&partnership, "member", &r.member)?
        };
        self.with_assessor(&partnership, |a| {
            Ok(match stage {
                Some(stage) => a.assess(&member, mineral, stage)?,
                None => a.bottleneck(&member, mineral)?,
            })
        })
    }

    fn list_supply_risks_now(
        &self,
        who: &Principal,
        r: &ListSupplyRisksRequest,
    ) -> Result<ListSupplyRisksResponse, RiskError> {
        let f = r.filter.clone().unwrap_or_default();
        let minerals = f
            .minerals
            .iter()
            .enumerate()
            .map(|(i, m)| mineral_field(&format!("filter.minerals[{i}]"), *m))
            .collect::<Result<Vec<_>, _>>()?;
        let stages = f
            .stages
            .iter()
            .enumerate()
            .map(|(i, s)| {
                stage_field(&format!("filter.stages[{i}]"), *s)?.ok_or_else(|| {
                    RiskError::invalid(format!("filter.stages[{i}]"), "is unspecified")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let partnership = self.partnership.load();
        let members = if f.members.is_empty() {
            vec![who.member.clone()]
        } else {
            f.members
                .iter()
                .enumerate()
                .map(|(i, m)| member_field(&partnership, &format!("filter.members[{i}]"), m))
                .collect::<Result<Vec<_>, _>>()?
        };
        if !(f.min_supply_risk.is_finite() && f.min_supply_risk >= 0.0) {
            return Err(RiskError::invalid(
                "filter.min_supply_risk",
                "must be a finite number, 0 or more",
            ));
        }
        let page_size = match r.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n <= MAX_PAGE_SIZE => n,
            n => {
                return Err(RiskError::invalid(
                    "page_size",
                    format!(
                        "must be from 1 to {MAX_PAGE_SIZE} (0 means {DEFAULT_PAGE_SIZE}), got {n}"
                    ),
                ));
            }
        };
        // Tokens are bound to the caller and the filter.
        let context = orex_kit::page_token::context(&[
            who.member.as_bytes(),
            who.subject.as_bytes(),
            &prost::Message::encode_to_vec(&f),
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
                if (!minerals.is_empty() && !minerals.contains(&mineral))
                    || (!stages.is_empty() && !stages.contains(&stage))
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
            s.supply_risk >= f.min_supply_risk && (!f.above_threshold_only || s.above_threshold)
        });
        scores.sort_by_key(order_key);
        // Scores are computed afresh for each page: one that moves across
        // the cursor between pages can show twice or not at all.
        if let Some(after) = &after {
            scores.retain(|s| order_key(s) > *after);
        }
        let more = scores.len() > page_size as usize;
        scores.truncate(page_size as usize);
        let next_page_token = match (more, scores.last()) {
            (true, Some(last)) => self.tokens.seal(&context, &encode_cursor(last)),
            _ => String::new(),
        };
        Ok(ListSupplyRisksResponse {
            supply_risks: scores,
            next_page_token,
        })
    }

    fn run_scenario_now(
        &self,
        who: &Principal,
        r: &RunScenarioRequest,
    ) -> Result<ScenarioResult, RiskError> {
        let sc = r
            .scenario
            .clone()
            .ok_or_else(|| RiskError::invalid("scenario", "is required"))?;
        if !orex_membership::policy::is_country_code(&sc.origin_country) {
            return Err(RiskError::invalid(
                "scenario.origin_country",
                "must be an ISO 3166-1 alpha-2 code such as \"CN\"",
            ));
        }
        let mineral = mineral_field("scenario.mineral", sc.mineral)?;
        let stage = stage_field("scenario.stage", sc.stage)?
            .ok_or_else(|| RiskError::invalid("scenario.stage", "is required"))?;
        if !(sc.cut_fraction > 0.0 && sc.cut_fraction <= 1.0) {
            return Err(RiskError::invalid(
                "scenario.cut_fraction",
                format!("must be above 0 and at most 1, got {}", sc.cut_fraction),
            ));
        }
        if !(1..=3650).contains(&sc.duration_days) {
            return Err(RiskError::invalid(
                "scenario.duration_days",
                format!("must be from 1 to 3650, got {}", sc.duration_days),
            ));
        }
        if let Some(t) = &sc.start_time
            && !(0..1_000_000_000).contains(&t.nanos)
        {
            return Err(RiskError::invalid(
                "scenario.start_time",
                "is not a valid timestamp",
            ));
        }
        let partnership = self.partnership.load();
        let members = if r.members.is_empty() {
            partnership
                .members()
                .filter(|m| m.is_active())
                .map(|m| m.code.clone())
                .collect()
        } else {
            r.members
                .iter()
                .enumerate()
                .map(|(i, m)| member_field(&partnership, &format!("members[{i}]"), m))
                .collect::<Result<Vec<_>, _>>()?
        };
        let cut = scenario::Cut {
            origin_country: sc.origin_country.clone(),
            mineral,
            stage,
            cut_fraction: sc.cut_fraction,
            duration_days: sc.duration_days,
        };
        let mut result = self.with_assessor(&partnership, |a| {
            scenario::run(a, &cut, &members, &who.member)
        })?;
        result.scenario = Some(Scenario {
            start_time: Some(sc.start_time.or(result.computed_at).unwrap_or_default()),
            ..sc
        });
        Ok(result)
    }

    fn get_reference_price_now(
        &self,
        r: &GetReferencePriceRequest,
    ) -> Result<ReferencePrice, RiskError> {
        let mineral = mineral_field("mineral", r.mineral)?;
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
            result: Some(self.run_scenario_now(&who, req.get_ref())?),
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
        let filter = alert_filter(req.filter.unwrap_or_default())?;
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

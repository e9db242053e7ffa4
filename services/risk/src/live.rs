//! Live disruptions: the risk service follows the sharing service's report
//! stream over mutual TLS as the workload `risk` (not through a member's
//! token), from the last sequence it processed. The sharing service shows a
//! reader workload only CLEAR and GREEN reports; this side checks again.
//!
//! Each event is turned into the change it makes (a disruption in force,
//! replaced or gone) and the alerts it raises (threshold crossings and
//! dependence ceilings, judged against what alerts last said about each
//! score — see [`judge`]; price dumping), and recorded in one transaction
//! with the sequence and the new judgements
//! ([`crate::store::RiskStore::record`]). A restart of either side resumes
//! from the recorded sequence; a replayed event is recognised by its
//! sequence and applied once. New reference data, a new policy and a start
//! are judged the same way ([`Follower::rejudge`]), so a crossing is
//! announced exactly once whatever brought it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::StreamExt;
use orex_kit::status::reason_of;
use orex_kit::tls::LoadedTls;
use orex_kit::{KitError, Shutdown};
use orex_proto::common::v1::{Mineral, Stage};
use orex_proto::risk::v1 as pb;
use orex_proto::sharing::v1::sharing_service_client::SharingServiceClient;
use orex_proto::sharing::v1::{
    Category, GetReportRequest, Report, ReportStatus, SubscribeReportsRequest,
    SubscribeReportsResponse,
};
use prost_types::Timestamp;

use crate::assess::{Assessor, Disruption, Settings};
use crate::reference::ReferenceData;
use crate::service::{Loaded, SharedPartnership, SharedReference};
use crate::store::{Change, Judged, Judgements, Processed, RiskStore, ScoreKey};

/// The disruptions in force, as every answer sees them.
pub type SharedLive = Arc<ArcSwap<Vec<Disruption>>>;

/// The first wait before reconnecting to the sharing service; doubled up
/// to [`MAX_BACKOFF`] while it stays unreachable.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How long the sharing service may take to confirm one report.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and as whom to follow the report stream.
#[derive(Debug, Clone)]
pub struct Source {
    /// `https://host:port` of the sharing service.
    pub address: String,
    /// The DNS name in its certificate.
    pub server_name: String,
    /// This service's own certificate (workload `risk`) and the CA.
    pub tls: LoadedTls,
    /// How often the reports in force are re-read (see [`Follower::recheck`]).
    pub recheck: Duration,
}

/// A report every member may see.
fn partnership_wide(r: &Report) -> bool {
    r.content
        .as_ref()
        .is_some_and(|c| orex_membership::partnership_wide(c.marking()))
}

/// The disruption a report version stands for, if it moves scores: an
/// active (or amended) CLEAR or GREEN export restriction or production
/// outage of a known mineral.
pub fn disruption_of(r: &Report) -> Option<Disruption> {
    let c = r.content.as_ref()?;
    if !partnership_wide(r) || !matches!(r.status(), ReportStatus::Active | ReportStatus::Amended) {
        return None;
    }
    let export_restriction = match c.category() {
        Category::ExportRestriction => true,
        Category::ProductionOutage => false,
        _ => return None,
    };
    let mineral = Mineral::try_from(c.mineral)
        .ok()
        .filter(|m| *m != Mineral::Unspecified)?;
    let stage = Stage::try_from(c.stage)
        .ok()
        .filter(|s| *s != Stage::Unspecified);
    Some(Disruption {
        report_id: r.id.clone(),
        report_version: r.version,
        mineral,
        stage,
        origin_country: c.origin_country.clone(),
        volume_impact_tonnes_per_month: c.volume_impact_tonnes_per_month,
        export_restriction,
        severity: c.severity,
        cut_fraction: 0.0,
    })
}

/// The disruptions of the reports in force, in a stable order.
pub fn disruptions(in_force: &BTreeMap<String, Report>) -> Vec<Disruption> {
    in_force.values().filter_map(disruption_of).collect()
}

fn new_alert(kind: pb::RiskAlertKind, now: Timestamp) -> pb::RiskAlert {
    pb::RiskAlert {
        id: uuid::Uuid::now_v7().hyphenated().to_string(),
        kind: kind as i32,
        raised_at: Some(now),
        ..Default::default()
    }
}

/// The alerts a change raises, and the judgements to record with them.
pub type Verdict = (Vec<pb::RiskAlert>, Vec<(ScoreKey, Judged)>);

/// Judges every score of `minerals` against what alerts last said about
/// it (`judged`): the alerts for each threshold crossed (either way) and
/// each dependence ceiling newly exceeded, and the judgements to record with
/// them. A score never judged before is recorded without an alert: there is
/// nothing it crossed from (a new member, mineral or stage, or a first start).
pub fn judge(
    now: &Assessor<'_>,
    minerals: &BTreeSet<Mineral>,
    judged: &Judgements,
    cause_report_ids: &[String],
) -> Verdict {
    let mut alerts = Vec::new();
    let mut updates = Vec::new();
    let members: Vec<String> = now
        .partnership
        .members()
        .filter(|m| m.is_active())
        .map(|m| m.code.clone())
        .collect();
    for &mineral in minerals {
        for stage in now.stages(mineral) {
            for member in &members {
                let Ok(a) = now.assess(member, mineral, stage) else {
                    continue;
                };
                let key = ScoreKey {
                    member: member.clone(),
                    mineral,
                    stage,
                };
                let j = Judged {
                    supply_risk: a.supply_risk,
                    above_threshold: a.above_threshold,
                    over_ceiling: a
                        .largest_supplier
                        .as_ref()
                        .is_some_and(|l| l.exceeds_ceiling),
                };
                let Some(before) = judged.get(&key) else {
                    updates.push((key, j));
                    continue;
                };
                if *before == j {
                    continue;
                }
                let mut kinds = Vec::new();
                match (before.above_threshold, j.above_threshold) {
                    (false, true) => kinds.push(pb::RiskAlertKind::ThresholdExceeded),
                    (true, false) => kinds.push(pb::RiskAlertKind::ThresholdCleared),
                    _ => {}
                }
                if !before.over_ceiling && j.over_ceiling {
                    kinds.push(pb::RiskAlertKind::DependenceCeilingExceeded);
                }
                for kind in kinds {
                    let mut alert = new_alert(kind, now.now);
                    alert.mineral = mineral as i32;
                    alert.stage = stage as i32;
                    alert.member = member.clone();
                    alert.detail = Some(pb::risk_alert::Detail::ThresholdCrossing(
                        pb::ThresholdCrossing {
                            previous_supply_risk: before.supply_risk,
                            supply_risk: Some(a.clone()),
                            cause_report_ids: cause_report_ids.to_vec(),
                        },
                    ));
                    alerts.push(alert);
                }
                updates.push((key, j));
            }
        }
    }
    (alerts, updates)
}

/// A price-dumping alert when a report in force carries an observed price
/// below its mineral's dumping threshold.
pub fn dumping(r: &Report, data: &ReferenceData, now: Timestamp) -> Option<pb::RiskAlert> {
    let c = r.content.as_ref()?;
    if !partnership_wide(r) || !matches!(r.status(), ReportStatus::Active | ReportStatus::Amended) {
        return None;
    }
    let observed = c.observed_price.as_ref()?;
    let mineral = Mineral::try_from(c.mineral).ok()?;
    let p = data.prices.get(&mineral)?;
    let threshold = p.usd_per_tonne * (1.0 - p.dumping_margin);
    if !observed.usd_per_tonne.is_finite() || observed.usd_per_tonne >= threshold {
        return None;
    }
    let mut alert = new_alert(pb::RiskAlertKind::PriceDumping, now);
    alert.mineral = mineral as i32;
    alert.detail = Some(pb::risk_alert::Detail::PriceDumping(pb::PriceDumping {
        mineral: mineral as i32,
        report_id: r.id.clone(),
        origin_country: c.origin_country.clone(),
        observed_usd_per_tonne: observed.usd_per_tonne,
        observed_at: observed.observed_at,
        reference_price: Some(crate::service::reference_price(mineral, p, &data.version)),
        discount: 1.0 - observed.usd_per_tonne / p.usd_per_tonne,
    }));
    Some(alert)
}

/// Follows the report stream and applies it, as one task per service.
#[derive(Debug, Clone)]
pub struct Follower {
    /// Where the stream comes from (none: no live disruptions).
    pub source: Option<Source>,
    /// The store (cursor, disruptions, alerts).
    pub store: RiskStore,
    /// The disruptions answers see; replaced after each recorded event.
    pub live: SharedLive,
    /// The reference data in force.
    pub reference: SharedReference,
    /// The policy in force.
    pub partnership: SharedPartnership,
    /// Thresholds.
    pub settings: Settings,
    /// Held while alerts are computed and recorded, so every change (report
    /// events, withdrawals, new reference data or policy) is judged against
    /// the judgements the one before it recorded.
    pub judging: Arc<tokio::sync::Mutex<()>>,
}

impl Follower {
    /// Judges every score anew, with no cause report: after new reference
    /// data or a new policy is in force, and at start (what changed while
    /// the service was down — including a change it had put in force but
    /// not yet judged when it stopped).
    pub async fn rejudge(&self, why: &str) -> Result<(), KitError> {
        let _judging = self.judging.lock().await;
        let reference = self.reference.load_full();
        let partnership = self.partnership.load_full();
        let live = self.live.load_full();
        let now = Assessor {
            data: &reference.data,
            partnership: &partnership,
            disruptions: &live,
            settings: self.settings,
            now: Timestamp::from(std::time::SystemTime::now()),
        };
        let minerals: BTreeSet<Mineral> = reference.data.supply.keys().map(|(m, _)| *m).collect();
        let (alerts, judged) = judge(&now, &minerals, &self.store.judgements()?, &[]);
        if !alerts.is_empty() {
            tracing::info!(alerts = alerts.len(), why, version = %reference.data.version, "scores crossed thresholds");
        }
        if !alerts.is_empty() || !judged.is_empty() {
            self.store
                .record(Processed {
                    change: Change::Rejudged,
                    alerts,
                    judged,
                })
                .await?;
        }
        Ok(())
    }

    /// Runs until `shutdown`: connects, resumes after the recorded
    /// sequence, applies events, and reconnects (with backoff) whenever the
    /// stream ends.
    pub async fn run(self, shutdown: Shutdown) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let outcome = tokio::select! {
                _ = shutdown.wait() => return,
                r = self.follow_once() => r,
            };
            match outcome {
                Ok(applied) if applied > 0 => backoff = FIRST_BACKOFF,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "report stream from the sharing service interrupted")
                }
            }
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One connection: returns how many events it applied before the stream
    /// ended, or why it failed.
    async fn follow_once(&self) -> Result<u64, KitError> {
        let Some(source) = &self.source else {
            return Ok(0);
        };
        let channel =
            orex_kit::transport::Dialer::new(&source.address, &source.server_name, &source.tls)
                .map_err(|e| KitError::Config(format!("sharing: {e}")))?
                .connect()
                .await
                .map_err(|e| KitError::Server(format!("cannot reach the sharing service: {e}")))?;
        let after = self.store.cursor()?;
        let mut client = SharingServiceClient::new(channel);
        let mut stream = client
            .clone()
            .subscribe_reports(SubscribeReportsRequest {
                filter: None,
                after_sequence: Some(after),
            })
            .await
            .map_err(|s| refused(&s))?
            .into_inner();
        tracing::info!(
            after_sequence = after,
            "following the sharing service's report stream"
        );
        let mut applied = 0;
        // The first tick is at once: what changed out of sight while this
        // service was away is caught on (re)connecting.
        let mut recheck = tokio::time::interval(source.recheck);
        loop {
            tokio::select! {
                item = stream.next() => match item {
                    Some(item) => {
                        let event = item.map_err(|s| refused(&s))?;
                        self.apply(&mut client, event).await?;
                        applied += 1;
                    }
                    None => return Ok(applied),
                },
                _ = recheck.tick() => self.recheck(&mut client).await?,
            }
        }
    }

    /// Re-reads every report in force. One that is gone for a reader
    /// workload (NOT_FOUND: narrowed below GREEN, and perhaps resolved out
    /// of sight since) no longer moves scores — exactly as it vanished for
    /// every member outside its new audience. The stream cannot say so: it
    /// carries only what every member may see.
    async fn recheck(
        &self,
        client: &mut SharingServiceClient<tonic::transport::Channel>,
    ) -> Result<(), KitError> {
        for id in self.store.in_force()?.into_keys() {
            let gone = match client
                .get_report(GetReportRequest {
                    report_id: id.clone(),
                    version: 0,
                })
                .await
            {
                Ok(_) => false,
                Err(s) if s.code() == tonic::Code::NotFound => true,
                // One report that cannot be read now must not stop the
                // stream: it is read again at the next recheck.
                Err(s) => {
                    tracing::warn!(report = %id, error = %refused(&s), "could not recheck a report in force");
                    false
                }
            };
            if gone {
                self.withdraw(&id).await?;
            }
        }
        Ok(())
    }

    /// Stops report `id` moving scores, with the alerts that raises.
    async fn withdraw(&self, id: &str) -> Result<(), KitError> {
        let _judging = self.judging.lock().await;
        let mut in_force = self.store.in_force()?;
        let Some(report) = in_force.remove(id) else {
            return Ok(());
        };
        tracing::info!(report = %id, "a report in force is no longer partnership-wide; it stops moving scores");
        let after = disruptions(&in_force);
        let minerals: BTreeSet<Mineral> = report
            .content
            .as_ref()
            .and_then(|c| Mineral::try_from(c.mineral).ok())
            .into_iter()
            .collect();
        let (alerts, judged) = self.judge(&after, &minerals, &[id.to_owned()])?;
        self.publish_then_record(
            after,
            Processed {
                change: Change::Withdrawn {
                    report_id: id.to_owned(),
                },
                alerts,
                judged,
            },
        )
        .await
    }

    /// Judges `minerals` with `disruptions` in force (see [`judge`]).
    fn judge(
        &self,
        disruptions: &[Disruption],
        minerals: &BTreeSet<Mineral>,
        cause_report_ids: &[String],
    ) -> Result<Verdict, KitError> {
        let reference = self.reference.load_full();
        let partnership = self.partnership.load_full();
        let now = Assessor {
            data: &reference.data,
            partnership: &partnership,
            disruptions,
            settings: self.settings,
            now: Timestamp::from(std::time::SystemTime::now()),
        };
        Ok(judge(
            &now,
            minerals,
            &self.store.judgements()?,
            cause_report_ids,
        ))
    }

    /// Lets answers see `after`, then records the change with its alerts:
    /// an alert is readable only once it is durable, and by then every
    /// score already shows what it announces. (Answers may see a change a
    /// moment before it is durable; if recording fails they return to the
    /// store's state, and the event is applied again on reconnecting.)
    async fn publish_then_record(
        &self,
        after: Vec<Disruption>,
        p: Processed,
    ) -> Result<(), KitError> {
        self.live.store(Arc::new(after));
        match self.store.record(p).await {
            Ok(true) => Ok(()),
            Ok(false) => self.reset_live(),
            Err(e) => {
                self.reset_live()?;
                Err(e)
            }
        }
    }

    /// Answers see what the store holds.
    fn reset_live(&self) -> Result<(), KitError> {
        self.live
            .store(Arc::new(disruptions(&self.store.in_force()?)));
        Ok(())
    }

    /// Whether report `id` is still visible to this workload. An event may
    /// be stale by the time it is applied: a report narrowed below GREEN
    /// since (while this service was away, or while the event was in
    /// flight) leaves no event on this stream, so a version that would put
    /// a report in force is confirmed first.
    async fn still_visible(
        &self,
        client: &mut SharingServiceClient<tonic::transport::Channel>,
        id: &str,
    ) -> Result<bool, KitError> {
        let call = client.get_report(GetReportRequest {
            report_id: id.to_owned(),
            version: 0,
        });
        match tokio::time::timeout(CONFIRM_TIMEOUT, call).await {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(s)) if s.code() == tonic::Code::NotFound => Ok(false),
            Ok(Err(s)) => Err(refused(&s)),
            Err(_) => Err(KitError::Server(format!(
                "the sharing service did not answer GetReport for {id} within {CONFIRM_TIMEOUT:?}"
            ))),
        }
    }

    /// Applies one event: lets answers see it, and records it with its
    /// alerts and judgements.
    async fn apply(
        &self,
        client: &mut SharingServiceClient<tonic::transport::Channel>,
        event: SubscribeReportsResponse,
    ) -> Result<(), KitError> {
        let Some(report) = event.report else {
            return Err(KitError::Corrupt(format!(
                "report event {} carries no report",
                event.sequence
            )));
        };
        let visible = !partnership_wide(&report)
            || disruption_of(&report).is_none()
            || self.still_visible(client, &report.id).await?;
        let _judging = self.judging.lock().await;
        if !partnership_wide(&report) {
            // The sharing service shows a reader workload nothing else. Only
            // the cursor moves: nothing of it may reach a score or an alert.
            tracing::error!(report = %report.id, "the sharing service sent a restricted report to the risk service; ignored");
            let in_force = self.store.in_force()?.remove(&report.id).map(Box::new);
            self.store
                .record(Processed {
                    change: Change::Report {
                        sequence: event.sequence,
                        report_id: report.id.clone(),
                        in_force,
                        observed_price: None,
                    },
                    alerts: vec![],
                    judged: vec![],
                })
                .await?;
            return Ok(());
        }
        let reference: Arc<Loaded> = self.reference.load_full();
        let mut in_force = self.store.in_force()?;
        let before = disruptions(&in_force);
        let previous_mineral = in_force
            .get(&report.id)
            .and_then(|r| r.content.as_ref())
            .map(|c| c.mineral);
        let now_in_force = (visible && disruption_of(&report).is_some()).then(|| report.clone());
        if !visible {
            tracing::info!(report = %report.id, sequence = event.sequence, "a report no longer partnership-wide: its stale event moves no score");
        }
        match &now_in_force {
            Some(r) => in_force.insert(report.id.clone(), r.clone()),
            None => in_force.remove(&report.id),
        };
        let after = disruptions(&in_force);
        let (mut alerts, judged) = if before == after {
            (Vec::new(), Vec::new())
        } else {
            let minerals: BTreeSet<Mineral> = previous_mineral
                .into_iter()
                .chain(report.content.as_ref().map(|c| c.mineral))
                .filter_map(|m| Mineral::try_from(m).ok())
                .collect();
            self.judge(&after, &minerals, std::slice::from_ref(&report.id))?
        };
        // A price alert once per observed price of a report, not again for
        // every amendment that repeats it; none for a stale event.
        let observed = report
            .content
            .as_ref()
            .and_then(|c| c.observed_price.as_ref())
            .map(|p| p.usd_per_tonne)
            .filter(|_| visible);
        if observed.is_some() && observed != self.store.last_price(&report.id)? {
            let now = Timestamp::from(std::time::SystemTime::now());
            alerts.extend(dumping(&report, &reference.data, now));
        }
        self.publish_then_record(
            after,
            Processed {
                change: Change::Report {
                    sequence: event.sequence,
                    report_id: report.id.clone(),
                    in_force: now_in_force.map(Box::new),
                    observed_price: observed,
                },
                alerts,
                judged,
            },
        )
        .await
    }
}

/// A stream status as the operator should read it.
fn refused(status: &tonic::Status) -> KitError {
    KitError::Server(format!(
        "sharing service answered {:?} ({}): {}",
        status.code(),
        reason_of(status).map_or("no reason", |r| r.as_str()),
        status.message()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assess::tests::{fixtures, restriction};
    use orex_membership::Partnership;
    use orex_proto::common::v1::Marking;
    use orex_proto::sharing::v1::{Price, ReportContent};

    fn report(marking: Marking, status: ReportStatus, category: Category) -> Report {
        Report {
            id: "r1".into(),
            version: 2,
            status: status as i32,
            content: Some(ReportContent {
                mineral: Mineral::Gallium as i32,
                stage: Stage::Unspecified as i32,
                category: category as i32,
                severity: 4,
                origin_country: "AA".into(),
                volume_impact_tonnes_per_month: -10.0,
                marking: marking as i32,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn only_active_partnership_wide_restrictions_and_outages_are_disruptions() {
        let d = disruption_of(&report(
            Marking::Green,
            ReportStatus::Amended,
            Category::ExportRestriction,
        ))
        .unwrap();
        assert_eq!(
            (d.report_version, d.stage, d.export_restriction),
            (2, None, true)
        );
        assert!(
            !disruption_of(&report(
                Marking::Clear,
                ReportStatus::Active,
                Category::ProductionOutage
            ))
            .unwrap()
            .export_restriction
        );
        for (m, s, c) in [
            (
                Marking::Amber,
                ReportStatus::Active,
                Category::ExportRestriction,
            ),
            (
                Marking::AmberStrict,
                ReportStatus::Active,
                Category::ExportRestriction,
            ),
            (
                Marking::Red,
                ReportStatus::Active,
                Category::ExportRestriction,
            ),
            (
                Marking::Green,
                ReportStatus::Resolved,
                Category::ExportRestriction,
            ),
            (
                Marking::Green,
                ReportStatus::Retracted,
                Category::ProductionOutage,
            ),
            (
                Marking::Green,
                ReportStatus::Active,
                Category::LogisticsDisruption,
            ),
            (Marking::Green, ReportStatus::Active, Category::PriceDumping),
        ] {
            assert!(
                disruption_of(&report(m, s, c)).is_none(),
                "{m:?} {s:?} {c:?}"
            );
        }
    }

    fn assessor<'a>(
        data: &'a ReferenceData,
        p: &'a Partnership,
        d: &'a [Disruption],
        settings: Settings,
    ) -> Assessor<'a> {
        Assessor {
            data,
            partnership: p,
            disruptions: d,
            settings,
            now: Timestamp::default(),
        }
    }

    #[test]
    fn judging_names_the_threshold_and_the_ceiling_crossed_since_last_judged() {
        let (data, p) = fixtures();
        // US gallium: 2.0655 before; the restriction lifts it over a
        // threshold of 2.5. AA's 0.5 of US sourcing is over a ceiling of
        // 0.45 before and after: no ceiling alert, as nothing crossed.
        let settings = Settings {
            threshold: 2.5,
            dependence_ceiling: 0.45,
        };
        let live = [restriction(5, 0.0)];
        let before = assessor(&data, &p, &[], settings);
        let after = assessor(&data, &p, &live, settings);
        let minerals = BTreeSet::from([Mineral::Gallium]);
        // Judged for the first time: recorded, nothing announced.
        let (first, recorded) = judge(&after, &minerals, &Judgements::new(), &[]);
        assert!(first.is_empty(), "{first:?}");
        assert!(!recorded.is_empty());
        // Judged again with nothing changed: nothing to record.
        let (again, unchanged) = judge(&after, &minerals, &baseline(&after, &minerals), &[]);
        assert!(again.is_empty() && unchanged.is_empty());
        let judged = baseline(&before, &minerals);
        let (alerts, _) = judge(&after, &minerals, &judged, &["r1".to_owned()]);
        let us: Vec<_> = alerts.iter().filter(|a| a.member == "US").collect();
        assert_eq!(us.len(), 1, "{alerts:?}");
        assert_eq!(us[0].kind(), pb::RiskAlertKind::ThresholdExceeded);
        // And back.
        let (back, _) = judge(
            &before,
            &minerals,
            &baseline(&after, &minerals),
            &["r1".to_owned()],
        );
        assert!(
            back.iter()
                .any(|a| a.member == "US" && a.kind() == pb::RiskAlertKind::ThresholdCleared)
        );
        // A ceiling crossed by a change: EU sourcing has AA at 0.7; a
        // ceiling of 0.75 is crossed once DE's share falls (an outage).
        let settings = Settings {
            threshold: 100.0,
            dependence_ceiling: 0.75,
        };
        let mut outage = restriction(1, 0.0);
        outage.origin_country = "DE".into();
        outage.export_restriction = false;
        outage.volume_impact_tonnes_per_month = -100.0 * 0.5 / 12.0; // half of DE's 100 t/y
        let live = [outage];
        let before = assessor(&data, &p, &[], settings);
        let after = assessor(&data, &p, &live, settings);
        let (alerts, _) = judge(&after, &minerals, &baseline(&before, &minerals), &[]);
        let eu: Vec<_> = alerts.iter().filter(|a| a.member == "EU").collect();
        assert_eq!(eu.len(), 1, "{alerts:?}");
        assert_eq!(eu[0].kind(), pb::RiskAlertKind::DependenceCeilingExceeded);
        match &eu[0].detail {
            Some(pb::risk_alert::Detail::ThresholdCrossing(c)) => {
                let l = c
                    .supply_risk
                    .as_ref()
                    .unwrap()
                    .largest_supplier
                    .as_ref()
                    .unwrap();
                assert_eq!(l.country, "AA");
                assert!(l.share > 0.75);
                assert!(c.cause_report_ids.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }

    /// What judging `now` for the first time records.
    fn baseline(now: &Assessor<'_>, minerals: &BTreeSet<Mineral>) -> Judgements {
        let (alerts, judged) = judge(now, minerals, &Judgements::new(), &[]);
        assert!(alerts.is_empty());
        judged.into_iter().collect()
    }

    #[test]
    fn dumping_is_below_the_reference_by_more_than_the_margin() {
        let (mut data, _) = fixtures();
        data.prices.insert(
            Mineral::Gallium,
            crate::reference::Price {
                mineral: "gallium".into(),
                product_form: "metal".into(),
                usd_per_tonne: 1000.0,
                dumping_margin: 0.2,
                effective_from: "2025-01-01T00:00:00Z".into(),
                basis: "test".into(),
                source: "s1".into(),
                estimate: false,
            },
        );
        let priced = |usd: f64, marking: Marking| {
            let mut r = report(marking, ReportStatus::Active, Category::PriceDumping);
            r.content.as_mut().unwrap().observed_price = Some(Price {
                usd_per_tonne: usd,
                observed_at: None,
            });
            dumping(&r, &data, Timestamp::default())
        };
        let a = priced(799.0, Marking::Green).expect("more than 20% below");
        match a.detail {
            Some(pb::risk_alert::Detail::PriceDumping(p)) => {
                assert!((p.discount - 0.201).abs() < 1e-9);
                assert_eq!(
                    p.reference_price.unwrap().dumping_threshold_usd_per_tonne,
                    800.0
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(
            priced(800.0, Marking::Green).is_none(),
            "exactly at the threshold"
        );
        assert!(
            priced(10.0, Marking::Amber).is_none(),
            "restricted reports never alert"
        );
        assert!(priced(f64::NAN, Marking::Green).is_none());
    }
}

//! The orex risk-assessment service: explainable EU-method supply-risk
//! scores that move with live reports, scenarios, reference prices and
//! alerts (method, data and limits: `services/risk/README.md`).
//!
//! - [`service`]: the gRPC handlers (`orex.risk.v1.RiskService`);
//!   [`validate`] checks every request first, [`error`] maps failures to
//!   statuses in one place.
//! - [`assess`]: one score with every component, from the reference data,
//!   the policy and the live disruptions; [`formula`] is the EU formula.
//! - [`scenario`]: what-if supply cuts; [`stockpiles`] reads the members'
//!   stockpiles from the emergency service for them.
//! - [`live`]: follows the sharing service's report stream as the workload
//!   `risk` and raises alerts; [`store`] keeps what it applied, the cursor
//!   and the alert log in sled.
//! - [`reference`]: the versioned reference data file, every figure citing
//!   its source, validated as a whole; [`config`]: `risk.toml`.
//!
//! [`prepare`] checks everything (policy, reference data, TLS files, store)
//! before a port is bound; [`Prepared::serve`] runs the service and reloads
//! the policy and the reference data when they change (a file that does not
//! validate is refused; what is in force stays).

pub mod assess;
pub mod config;
pub mod error;
pub mod formula;
pub mod live;
/// The reference data file (its own crate: the emergency service reads it too).
pub use orex_reference as reference;
pub mod scenario;
pub mod service;
pub mod stockpiles;
pub mod store;
pub mod validate;

use std::sync::Arc;

use orex_kit::forwarded::WorkloadGuard;
use orex_kit::page_token::PageTokens;
use orex_kit::reload::LiveFile;
use orex_kit::server::{Callers, Serving};
use orex_kit::store::Store;
use orex_kit::tls::LoadedTls;
use orex_kit::{KitError, Shutdown};
use orex_membership::Partnership;
use orex_proto::risk::v1::risk_service_server::RiskServiceServer;
use prost_types::Timestamp;
use store::RiskStore;
use tokio::net::TcpListener;
use tonic::service::Routes;

pub use config::RiskConfig;

/// The fully-qualified gRPC service name, as health checks know it.
pub const SERVICE_NAME: &str = "orex.risk.v1.RiskService";

/// A risk service whose configuration, policy, reference data, TLS material
/// and store have all been checked and opened, ready to serve.
#[derive(Debug)]
pub struct Prepared {
    config: RiskConfig,
    policy: LiveFile<Partnership>,
    reference: ReferenceReloader,
    hangups: [orex_kit::reload::HangupSignal; 2],
    tls: LoadedTls,
    store: RiskStore,
    /// The sled store under `store` (backups).
    sled: Store,
    live: live::SharedLive,
    tokens: Arc<PageTokens>,
}

/// The reference data file, reloaded when it changes (or on demand with
/// `reload()`): a file that does not validate is refused with the reason,
/// and the version in force stays.
pub type ReferenceReloader = LiveFile<service::Loaded>;

/// Reads and validates the reference data file's bytes.
fn load_reference(bytes: &[u8]) -> Result<service::Loaded, KitError> {
    Ok(service::Loaded {
        data: reference::ReferenceData::parse(bytes)
            .map_err(|e| KitError::Config(e.to_string()))?,
        loaded_at: Timestamp::from(std::time::SystemTime::now()),
    })
}

/// Whether a new reference data file may replace the one in force
/// ([`reference::ReferenceData::replacement`]).
fn reference_successor(
    in_force: &service::Loaded,
    new: &service::Loaded,
) -> Result<orex_kit::reload::Successor, KitError> {
    use orex_kit::reload::Successor;
    match in_force.data.replacement(&new.data) {
        Ok(reference::Replacement::Same) => Ok(Successor::Keep),
        Ok(reference::Replacement::Replace) => Ok(Successor::Replace),
        Err(e) => Err(KitError::Config(e.to_string())),
    }
}

/// Loads the policy and the reference data, checks the TLS files and opens
/// the store. Must run inside a Tokio runtime (the store starts its flusher).
pub fn prepare(config: RiskConfig) -> Result<Prepared, KitError> {
    let policy = LiveFile::policy(config.policy.clone())?;
    let reference = LiveFile::load(
        "reference_data",
        config.reference_data.clone(),
        load_reference,
    )?
    .with_successor_check(reference_successor);
    let hangups = [
        orex_kit::reload::HangupSignal::register()?,
        orex_kit::reload::HangupSignal::register()?,
    ];
    let tls = config.tls.load()?;
    let in_data_dir =
        |e: KitError| KitError::Config(format!("data_dir {}: {e}", config.data_dir.display()));
    let sled = Store::open(&config.data_dir, &config.store).map_err(in_data_dir)?;
    let tokens = Arc::new(PageTokens::open_or_create(&sled).map_err(in_data_dir)?);
    let store = RiskStore::open(&sled).map_err(in_data_dir)?;
    let kept = live::disruptions(&store.in_force().map_err(in_data_dir)?);
    // Without a report stream nothing could ever withdraw what was kept:
    // scores use the reference data alone until [sharing] is back.
    let live = if config.sharing.is_some() {
        kept
    } else {
        if !kept.is_empty() {
            tracing::warn!(
                disruptions = kept.len(),
                "no [sharing] source: disruptions kept in the store are set aside"
            );
        }
        Vec::new()
    };
    let live = Arc::new(arc_swap::ArcSwap::from_pointee(live));
    Ok(Prepared {
        config,
        policy,
        reference,
        hangups,
        tls,
        store,
        sled,
        live,
        tokens,
    })
}

impl Prepared {
    /// The reference data in force (tests and `orex up` read it).
    pub fn reference(&self) -> service::SharedReference {
        self.reference.shared()
    }

    /// A handle that reloads the reference data file on demand.
    pub fn reloader(&self) -> ReferenceReloader {
        self.reference.clone()
    }

    /// Serves on `listener` until `shutdown` fires, then flushes the store.
    pub async fn serve(self, listener: TcpListener, shutdown: Shutdown) -> Result<(), KitError> {
        let [policy_hangups, reference_hangups] = self.hangups;
        self.policy.watch(policy_hangups, &shutdown);
        self.reference.watch(reference_hangups, &shutdown);
        let follower = live::Follower {
            source: self.config.sharing.as_ref().map(|s| live::Source {
                address: s.address.clone(),
                server_name: s.server_name.clone(),
                tls: self.tls.clone(),
                recheck: std::time::Duration::from_secs(s.recheck_seconds),
            }),
            store: self.store.clone(),
            live: self.live.clone(),
            reference: self.reference.shared(),
            partnership: self.policy.shared(),
            settings: self.config.assessment.settings(),
            judging: Arc::default(),
        };
        // New reference data or a new policy can cross thresholds too, and
        // so can whatever changed while this service was down: each is
        // judged, in order with report events, by one task.
        let (changes, mut changed) = tokio::sync::mpsc::unbounded_channel();
        let _ = changes.send("start");
        let on_reference = changes.clone();
        self.reference.on_change(move |_, _| {
            let _ = on_reference.send("new reference data");
        })?;
        self.policy.on_change(move |_, _| {
            let _ = changes.send("new policy");
        })?;
        let judge = follower.clone();
        let until = shutdown.clone();
        shutdown.spawn(async move {
            loop {
                tokio::select! {
                    _ = until.wait() => return,
                    next = changed.recv() => match next {
                        Some(why) => {
                            // Tried until it is recorded: a crossing it would
                            // announce must not wait for some later change
                            // (and be credited to it).
                            let mut wait = std::time::Duration::from_millis(100);
                            while let Err(e) = judge.rejudge(why).await {
                                tracing::error!(error = %e, why, retry_in = ?wait, "could not judge the scores anew");
                                tokio::select! {
                                    _ = until.wait() => return,
                                    _ = tokio::time::sleep(wait) => {}
                                }
                                wait = (wait * 2).min(std::time::Duration::from_secs(5));
                            }
                        }
                        None => return,
                    },
                }
            }
        });
        if follower.source.is_some() {
            shutdown.spawn(follower.run(shutdown.clone()));
        } else {
            tracing::warn!(
                "no [sharing] source configured: scores use the reference data alone, and only reference data changes raise alerts"
            );
        }
        let risk = service::Risk::new(service::Parts {
            reference: self.reference.shared(),
            partnership: self.policy.shared(),
            live: self.live.clone(),
            settings: self.config.assessment.settings(),
            tokens: self.tokens,
            alerts: self.store.alerts(),
            streams: self.config.streams,
            shutdown: shutdown.clone(),
            stockpiles: self
                .config
                .emergency
                .as_ref()
                .map(|e| {
                    stockpiles::StockpileSource::new(
                        &e.address,
                        &e.server_name,
                        &self.tls,
                        std::time::Duration::from_millis(e.timeout_ms),
                    )
                })
                .transpose()?,
        });
        let guard = WorkloadGuard::new(self.config.allowed_workloads.clone());
        let svc = RiskServiceServer::with_interceptor(risk, guard.principals());
        let callers = Callers::Workloads(guard);
        tracing::info!(addr = %listener.local_addr().map_err(|e| KitError::Server(e.to_string()))?, "risk service listening");
        let result = orex_kit::server::serve(
            listener,
            Serving {
                tls: self.tls.clone(),
                callers,
                routes: Routes::new(svc),
                service_names: &[SERVICE_NAME],
                ops: self.config.ops.clone(),
                store: Some(self.sled.clone()),
                refused: None,
                admin_audit: None,
            },
            shutdown.clone(),
        )
        .await;
        shutdown.drained().await;
        self.store.flush_now()?;
        tracing::info!("risk service stopped; store flushed");
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const SHIPPED: &str = orex_reference::SHIPPED;

    /// The shipped file with its first reference price changed.
    fn other_price(text: &str) -> String {
        let at = text.find("usd_per_tonne = ").expect("a price");
        let end = at + text[at..].find('\n').expect("a line");
        format!("{}usd_per_tonne = 1.0{}", &text[..at], &text[end..])
    }

    #[test]
    fn a_reference_file_must_change_version_with_its_figures() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reference.toml");
        std::fs::write(&path, SHIPPED).unwrap();
        let file = ReferenceReloader::load("reference_data", path.clone(), load_reference)
            .unwrap()
            .with_successor_check(reference_successor);
        let changes = Arc::new(AtomicUsize::new(0));
        let seen = changes.clone();
        file.on_change(move |_, _| {
            seen.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        let in_force = || file.shared().load_full().data.clone();
        let original = in_force();

        // The same bytes again: nothing happens.
        file.reload().unwrap();
        assert_eq!(changes.load(Ordering::SeqCst), 0);

        // A comment added: same figures, same version, replaced quietly.
        std::fs::write(&path, format!("# reviewed\n{SHIPPED}")).unwrap();
        file.reload().unwrap();
        assert_eq!(changes.load(Ordering::SeqCst), 1);
        assert!(in_force().same_figures(&original));

        // A figure changed under the same version: refused, old kept.
        std::fs::write(&path, other_price(SHIPPED)).unwrap();
        let refused = file.reload().unwrap_err().to_string();
        assert!(refused.contains("must carry a new version"), "{refused}");
        assert!(in_force().same_figures(&original));
        assert_eq!(changes.load(Ordering::SeqCst), 1);

        // The same change with a new version: in force.
        let bumped = other_price(SHIPPED).replacen(
            &format!("version = {:?}", original.version),
            "version = \"test-next\"",
            1,
        );
        std::fs::write(&path, bumped).unwrap();
        file.reload().unwrap();
        assert_eq!(in_force().version, "test-next");
        assert_eq!(changes.load(Ordering::SeqCst), 2);
    }
}

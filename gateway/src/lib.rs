//! The orex gateway: the only door for members.
//!
//! Every call passes the [`door`]: authentication ([`authn`], [`tokens`]:
//! a client certificate from the partnership CA naming the member, plus a
//! JWT from that member's issuer bound to the certificate), authorisation by
//! method, member and role from the [`policy`], per-member [`ratelimit`]s,
//! and an access record written durably to the [`audit`] log before anything
//! is forwarded, with bounds on calls in flight ([`load`]) that shed excess
//! load at once. Answers and streamed events are screened again by marking
//! ([`screen`]) before they leave.
//!
//! [`prepare`] checks policy, keys, TLS files and the audit store before a
//! port is bound; [`Prepared::serve`] runs the gateway. `main.rs`, `orex up`
//! and the end-to-end tests all go through them.

pub mod audit;
pub mod authn;
pub mod backend;
pub mod config;
pub mod door;
pub mod emergency;
pub mod error;
pub mod forward;
pub mod load;
pub mod policy;
pub mod ratelimit;
pub mod risk;
pub mod screen;
pub mod sharing;
pub mod tokens;

use std::sync::Arc;
use std::time::Duration;

use orex_kit::server::{Callers, Serving};
use orex_kit::tls::LoadedTls;
use orex_kit::{KitError, Shutdown};
use orex_proto::audit::v1::audit_service_server::AuditServiceServer;
use orex_proto::emergency::v1::emergency_service_server::EmergencyServiceServer;
use orex_proto::risk::v1::risk_service_server::RiskServiceServer;
use orex_proto::sharing::v1::sharing_service_server::SharingServiceServer;
use tokio::net::TcpListener;
use tonic::service::Routes;

pub use config::GatewayConfig;

/// The longest a forwarded unary call may wait for its backend's answer.
pub const BACKEND_TIMEOUT: Duration = Duration::from_secs(30);

/// gRPC service names the gateway serves, as health checks know them.
pub const SERVICE_NAMES: [&str; 4] = [
    "orex.sharing.v1.SharingService",
    "orex.audit.v1.AuditService",
    "orex.risk.v1.RiskService",
    "orex.emergency.v1.EmergencyService",
];

/// Of [`SERVICE_NAMES`], the ones served with the optional backends that
/// are configured.
fn served_names(risk: bool, emergency: bool) -> Vec<&'static str> {
    SERVICE_NAMES
        .into_iter()
        .filter(|n| risk || *n != "orex.risk.v1.RiskService")
        .filter(|n| emergency || *n != "orex.emergency.v1.EmergencyService")
        .collect()
}

/// A gateway whose policy, issuer keys, TLS material and access log have
/// been checked and opened.
#[derive(Debug)]
pub struct Prepared {
    policy: policy::PolicyHandle,
    hangups: orex_kit::reload::HangupSignal,
    audit: audit::AuditLog,
    tls: LoadedTls,
    sharing: backend::Backend,
    risk: Option<backend::Backend>,
    emergency: Option<backend::Backend>,
    streams: orex_kit::stream::StreamConfig,
    load: config::LoadConfig,
    ops: orex_kit::ops::OpsConfig,
    log_id: String,
}

/// Loads and checks everything the gateway needs. Backends are connected
/// lazily, so the gateway starts even while a service restarts. Must run
/// inside a Tokio runtime (the audit store starts its flusher).
pub fn prepare(config: GatewayConfig) -> Result<Prepared, KitError> {
    let policy = policy::PolicyHandle::load(
        config.policy.clone(),
        &config.tokens.audience,
        config.tokens.leeway_seconds,
    )?;
    let hangups = orex_kit::reload::HangupSignal::register()?;
    let tls = config.tls.load()?;
    let audit = audit::AuditLog::open(&config.audit)?;
    let sharing = backend::Backend::connect("sharing", &config.backends.sharing, &tls)?;
    let risk = config
        .backends
        .risk
        .as_ref()
        .map(|b| backend::Backend::connect("risk", b, &tls))
        .transpose()?;
    let emergency = config
        .backends
        .emergency
        .as_ref()
        .map(|b| backend::Backend::connect("emergency", b, &tls))
        .transpose()?;
    Ok(Prepared {
        policy,
        hangups,
        audit,
        tls,
        sharing,
        risk,
        emergency,
        streams: config.streams,
        load: config.load,
        ops: config.ops,
        log_id: config.audit.log_id.clone(),
    })
}

impl Prepared {
    /// The policy in force; [`policy::PolicyHandle::reload`] changes it.
    pub fn policy(&self) -> policy::PolicyHandle {
        self.policy.clone()
    }

    /// The access log.
    pub fn audit(&self) -> audit::AuditLog {
        self.audit.clone()
    }

    /// Serves members on `listener` until `shutdown` fires, then finishes
    /// open streams' records, signs a last checkpoint and flushes the log.
    pub async fn serve(self, listener: TcpListener, shutdown: Shutdown) -> Result<(), KitError> {
        let tokens = Arc::new(self.audit.page_tokens()?);
        let door = door::Door::new(self.policy.clone(), self.audit.clone(), self.load);
        let sharing = sharing::SharingGateway::new(
            door.clone(),
            self.policy.clone(),
            self.sharing.clone(),
            self.streams,
            shutdown.clone(),
        );
        // A gateway without a risk (or emergency) backend does not serve its
        // methods: members are told UNIMPLEMENTED `METHOD_NOT_SERVED`.
        let names = served_names(self.risk.is_some(), self.emergency.is_some());
        let risk = self.risk.map(|b| {
            RiskServiceServer::new(risk::RiskGateway::new(
                door.clone(),
                self.policy.clone(),
                b,
                self.streams,
                shutdown.clone(),
            ))
        });
        let emergency = self.emergency.map(|b| {
            EmergencyServiceServer::new(emergency::EmergencyGateway::new(
                door.clone(),
                self.policy.clone(),
                b,
                &self.sharing,
                self.streams,
                shutdown.clone(),
            ))
        });
        shutdown.spawn(door.clone().record_shed_calls(shutdown.clone()));
        let audit_api = audit::service::AuditApi::new(door.clone(), tokens);
        // Requests that never reach a handler are recorded too.
        let admin_audit: orex_kit::admin::AdminAudit = {
            let door = door.clone();
            Arc::new(move |attempt| {
                let door = door.clone();
                Box::pin(async move { door.record_admin(attempt).await })
            })
        };
        let refused: orex_kit::request_errors::Observer = Arc::new(move |r| {
            let door = door.clone();
            Box::pin(async move { door.record_refused(r).await })
        });
        shutdown.spawn(self.policy.clone().watch(self.hangups, shutdown.clone()));
        shutdown.spawn(self.audit.clone().run_checkpoints(shutdown.clone()));
        shutdown.spawn(audit_metrics(
            self.audit.clone(),
            self.log_id.clone(),
            shutdown.clone(),
        ));
        tracing::info!(addr = %listener.local_addr().map_err(|e| KitError::Server(e.to_string()))?, "gateway listening");
        let result = orex_kit::server::serve(
            listener,
            Serving {
                tls: self.tls.clone(),
                // Members are authenticated per call by the door.
                callers: Callers::AnyCertified,
                routes: {
                    let mut routes = Routes::new(SharingServiceServer::new(sharing))
                        .add_service(AuditServiceServer::new(audit_api));
                    if let Some(risk) = risk {
                        routes = routes.add_service(risk);
                    }
                    if let Some(emergency) = emergency {
                        routes = routes.add_service(emergency);
                    }
                    routes
                },
                service_names: &names,
                ops: self.ops,
                store: Some(self.audit.store()),
                refused: Some(refused),
                admin_audit: Some(admin_audit),
            },
            shutdown.clone(),
        )
        .await;
        shutdown.drained().await;
        // Streams write their outcome records while draining: sign over them too.
        if let Err(e) = self.audit.checkpoint().await {
            tracing::error!(error = %e, "could not sign the final access log checkpoint");
        }
        self.audit.flush()?;
        tracing::info!("gateway stopped; access log flushed");
        result
    }
}

/// How often the access log's gauges are refreshed.
const AUDIT_METRICS_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Publishes the access log's length, signed length and the time of its
/// newest checkpoint until shutdown (the checkpoint's age is computed at
/// scrape time). The gauges vanish with this task, so a stopped gateway
/// leaves no stale values in a process that starts another.
async fn audit_metrics(audit: audit::AuditLog, log_id: String, shutdown: Shutdown) {
    use orex_kit::metrics::Sample;
    use std::sync::atomic::{AtomicU64, Ordering};
    #[derive(Default)]
    struct Seen {
        records: AtomicU64,
        signed: AtomicU64,
        signed_at: AtomicU64,
    }
    let seen = Arc::new(Seen::default());
    let metrics = orex_kit::metrics::global();
    let log = vec![("log_id", log_id)];
    let weak = Arc::downgrade(&seen);
    metrics.gauge_fn(
        "orex_access_log_records",
        "Records in the access log",
        log.clone(),
        move || match weak.upgrade() {
            Some(s) => Sample::Value(s.records.load(Ordering::Relaxed) as f64),
            None => Sample::Gone,
        },
    );
    let weak = Arc::downgrade(&seen);
    metrics.gauge_fn(
        "orex_access_log_unsigned_records",
        "Records not yet covered by a signed checkpoint",
        log.clone(),
        move || {
            let Some(s) = weak.upgrade() else {
                return Sample::Gone;
            };
            let unsigned = s
                .records
                .load(Ordering::Relaxed)
                .saturating_sub(s.signed.load(Ordering::Relaxed));
            Sample::Value(unsigned as f64)
        },
    );
    let weak = Arc::downgrade(&seen);
    metrics.gauge_fn(
        "orex_access_log_checkpoint_age_seconds",
        "Seconds since the newest signed checkpoint (absent before the first)",
        log,
        move || {
            let Some(s) = weak.upgrade() else {
                return Sample::Gone;
            };
            let at = s.signed_at.load(Ordering::Relaxed);
            if at == 0 {
                // No checkpoint yet: no age, but the gauge stays.
                return Sample::Absent;
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            Sample::Value(now.saturating_sub(at) as f64)
        },
    );
    loop {
        seen.records.store(audit.size(), Ordering::Relaxed);
        seen.signed.store(audit.signed_size(), Ordering::Relaxed);
        if let Ok(Some(c)) = audit.latest_checkpoint() {
            let at = c.signed_at.map_or(0, |t| t.seconds.max(0) as u64);
            seen.signed_at.store(at, Ordering::Relaxed);
        }
        tokio::select! {
            _ = tokio::time::sleep(AUDIT_METRICS_EVERY) => {}
            _ = shutdown.wait() => return,
        }
    }
}

/// [`prepare`] then [`Prepared::serve`].
pub async fn serve(
    config: GatewayConfig,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), KitError> {
    prepare(config)?.serve(listener, shutdown).await
}

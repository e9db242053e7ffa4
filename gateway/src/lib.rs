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

use orex_kit::server::Callers;
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
        let refused: orex_kit::request_errors::Observer = Arc::new(move |r| {
            let door = door.clone();
            Box::pin(async move { door.record_refused(r).await })
        });
        shutdown.spawn(self.policy.clone().watch(self.hangups, shutdown.clone()));
        shutdown.spawn(self.audit.clone().run_checkpoints(shutdown.clone()));
        tracing::info!(addr = %listener.local_addr().map_err(|e| KitError::Server(e.to_string()))?, "gateway listening");
        let result = orex_kit::server::serve_observed(
            listener,
            self.tls.server(),
            // Members are authenticated per call by the door.
            Callers::AnyCertified,
            {
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
            &names,
            shutdown.clone(),
            Some(refused),
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

/// [`prepare`] then [`Prepared::serve`].
pub async fn serve(
    config: GatewayConfig,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), KitError> {
    prepare(config)?.serve(listener, shutdown).await
}

//! The end-to-end harness: [`Stack::spawn`] starts the real sharing and
//! risk services and the gateway on 127.0.0.1 with a throwaway development PKI and sled stores
//! in a temporary folder — the same code path as `orex up` — and hands out
//! gRPC clients that connect as the demo principals.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use orex_cli::bundle::{
    BearerToken, BundleFile, Connection, EmergencyClient, RiskClient, SharingClient,
};
use orex_cli::devstack::{self, DevLayout, Ports};
use orex_cli::tokens::{TokenSpec, mint};
use orex_kit::{KitError, Shutdown};
use orex_proto::common::v1::{Marking, Mineral, PrincipalRef, Stage, TimeWindow};
use orex_proto::sharing::v1::sharing_service_client::SharingServiceClient;
use orex_proto::sharing::v1::{Category, PublishReportRequest, Report, ReportContent};
use prost_types::Timestamp;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

pub mod procs;
pub mod rogue;

type Task = JoinHandle<Result<(), KitError>>;

/// A running orex stack on local ports.
#[derive(Debug)]
pub struct Stack {
    _dir: tempfile::TempDir,
    /// The dev folder of this stack (PKI, bundles, configs, data).
    pub layout: DevLayout,
    /// Where members connect.
    pub gateway_addr: SocketAddr,
    /// The sharing service (gateway only).
    pub sharing_addr: SocketAddr,
    /// The risk service (gateway only).
    pub risk_addr: SocketAddr,
    /// The emergency service (gateway only).
    pub emergency_addr: SocketAddr,
    sharing: Option<(Shutdown, Task)>,
    risk: Option<(Shutdown, Task, orex_risk::ReferenceReloader)>,
    emergency: Option<(Shutdown, Task)>,
    gateway: Option<(Shutdown, Task)>,
    gateway_handles: Option<devstack::GatewayHandles>,
    second_gateway: Option<SecondGateway>,
}

/// The log id of the second gateway replica ([`Stack::start_second_gateway`]).
pub const SECOND_LOG_ID: &str = "orex-gateway/dev-2";

/// A second gateway replica in front of the same services, as a
/// StatefulSet's second pod: its own port, data folder, witness and log id;
/// the same certificate, policy, signing key and key id.
#[derive(Debug)]
struct SecondGateway {
    addr: SocketAddr,
    running: Option<(Shutdown, Task, devstack::GatewayHandles)>,
}

impl Stack {
    /// Starts a fresh stack: new CA, new stores, every service and the gateway.
    pub async fn spawn() -> Stack {
        Self::spawn_inner(false, |_| {}).await
    }

    /// Like [`spawn`](Self::spawn), but `configure` may edit the generated
    /// config files (`layout.config("gateway.toml")`, …) before anything starts.
    pub async fn spawn_configured(configure: impl FnOnce(&DevLayout)) -> Stack {
        Self::spawn_inner(false, configure).await
    }

    /// Like [`spawn`](Self::spawn), but the sharing port is served by
    /// [`rogue::RogueSharing`], which leaks reports; only the gateway's own
    /// screening stands between them and the caller.
    pub async fn spawn_with_rogue_sharing() -> Stack {
        Self::spawn_inner(true, |_| {}).await
    }

    async fn spawn_inner(rogue: bool, configure: impl FnOnce(&DevLayout)) -> Stack {
        orex_kit::install_crypto_provider();
        let dir = tempfile::tempdir().expect("temp dir");
        let layout = DevLayout::new(dir.path().join("orex"));
        let sharing_l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let gateway_l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let risk_l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let emergency_l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let sharing_addr = sharing_l.local_addr().unwrap();
        let gateway_addr = gateway_l.local_addr().unwrap();
        let risk_addr = risk_l.local_addr().unwrap();
        let emergency_addr = emergency_l.local_addr().unwrap();
        devstack::init(
            &layout,
            Ports {
                gateway: gateway_addr.port(),
                sharing: sharing_addr.port(),
                risk: risk_addr.port(),
                emergency: emergency_addr.port(),
            },
        )
        .expect("dev stack init");
        configure(&layout);
        let shutdown = Shutdown::new();
        let (task, gateway_handles) =
            devstack::spawn_gateway(&layout, gateway_l, shutdown.clone()).expect("gateway config");
        let mut stack = Stack {
            _dir: dir,
            layout,
            gateway_addr,
            sharing_addr,
            risk_addr,
            emergency_addr,
            sharing: None,
            risk: None,
            emergency: None,
            gateway: Some((shutdown, task)),
            gateway_handles: Some(gateway_handles),
            second_gateway: None,
        };
        if rogue {
            stack.start_rogue_sharing(sharing_l);
        } else {
            stack.start_sharing(sharing_l);
        }
        stack.start_risk_on(risk_l);
        stack.start_emergency_on(emergency_l);
        stack
    }

    fn start_emergency_on(&mut self, listener: TcpListener) {
        let shutdown = Shutdown::new();
        let task = devstack::spawn_emergency(&self.layout, listener, shutdown.clone())
            .expect("emergency config");
        self.emergency = Some((shutdown, task));
    }

    /// Stops the emergency service and waits until it has flushed and closed.
    pub async fn stop_emergency(&mut self) {
        if let Some((shutdown, task)) = self.emergency.take() {
            shutdown.trigger();
            task.await
                .expect("emergency task")
                .expect("emergency stopped cleanly");
        }
    }

    /// Starts the (stopped) emergency service again on the same port over
    /// the same store.
    pub async fn start_emergency(&mut self) {
        let listener = TcpListener::bind(self.emergency_addr)
            .await
            .expect("rebind");
        self.start_emergency_on(listener);
    }

    /// An emergency client through the gateway as a demo principal
    /// (`us-cole`, a coordinator).
    pub async fn emergency_client(&self, bundle: &str) -> EmergencyClient {
        Connection::open(&self.bundle(bundle))
            .await
            .expect("connect to gateway")
            .emergency()
    }

    fn start_risk_on(&mut self, listener: TcpListener) {
        let shutdown = Shutdown::new();
        let (task, reloader) =
            devstack::spawn_risk(&self.layout, listener, shutdown.clone()).expect("risk config");
        self.risk = Some((shutdown, task, reloader));
    }

    /// Stops the risk service and waits until it has flushed and closed.
    pub async fn stop_risk(&mut self) {
        if let Some((shutdown, task, _)) = self.risk.take() {
            shutdown.trigger();
            task.await
                .expect("risk task")
                .expect("risk stopped cleanly");
        }
    }

    /// Starts the (stopped) risk service again on the same port over the
    /// same store.
    pub async fn start_risk(&mut self) {
        let listener = TcpListener::bind(self.risk_addr).await.expect("rebind");
        self.start_risk_on(listener);
    }

    /// Stops the risk service gracefully, then starts it again.
    pub async fn restart_risk(&mut self) {
        self.stop_risk().await;
        self.start_risk().await;
    }

    /// Applies the risk service's reference data file now (as its watcher
    /// does when the file changes), or says why it was refused.
    pub fn reload_reference_data(&self) -> Result<(), KitError> {
        self.risk.as_ref().expect("risk running").2.reload()
    }

    /// A risk client through the gateway as a demo principal (`us-ana`).
    pub async fn risk_client(&self, bundle: &str) -> RiskClient {
        Connection::open(&self.bundle(bundle))
            .await
            .expect("connect to gateway")
            .risk()
    }

    fn start_rogue_sharing(&mut self, listener: TcpListener) {
        let shutdown = Shutdown::new();
        let (cert, key) = self.layout.workload("sharing");
        let tls = orex_kit::tls::TlsFiles {
            ca: self.layout.ca_cert(),
            cert,
            key,
        }
        .load()
        .expect("sharing TLS");
        let svc = orex_proto::sharing::v1::sharing_service_server::SharingServiceServer::new(
            rogue::RogueSharing,
        );
        let task = tokio::spawn(orex_kit::server::serve(
            listener,
            orex_kit::server::Serving {
                tls,
                callers: orex_kit::server::Callers::Workloads(
                    orex_kit::forwarded::WorkloadGuard::new(["gateway"]),
                ),
                routes: tonic::service::Routes::new(svc),
                service_names: &["orex.sharing.v1.SharingService"],
                ops: Default::default(),
                store: None,
                refused: None,
                admin_audit: None,
            },
            shutdown.clone(),
        ));
        self.sharing = Some((shutdown, task));
    }

    fn start_sharing(&mut self, listener: TcpListener) {
        let shutdown = Shutdown::new();
        let task = devstack::spawn_sharing(&self.layout, listener, shutdown.clone())
            .expect("sharing config");
        self.sharing = Some((shutdown, task));
    }

    /// Stops the sharing service gracefully (streams end, store flushed and
    /// closed), then starts it again on the same port over the same store.
    pub async fn restart_sharing(&mut self) {
        self.stop_sharing().await;
        let listener = TcpListener::bind(self.sharing_addr).await.expect("rebind");
        self.start_sharing(listener);
    }

    /// Stops the sharing service and waits until it has flushed and closed.
    pub async fn stop_sharing(&mut self) {
        if let Some((shutdown, task)) = self.sharing.take() {
            shutdown.trigger();
            task.await
                .expect("sharing task")
                .expect("sharing stopped cleanly");
        }
    }

    /// Stops everything.
    pub async fn stop(mut self) {
        // Front door first, so no member call is in flight when services stop.
        self.stop_second_gateway().await;
        self.stop_gateway().await;
        self.stop_emergency().await;
        self.stop_risk().await;
        self.stop_sharing().await;
    }

    /// The running gateway's policy (edit the file, then `reload()`).
    pub fn policy(&self) -> &orex_gateway::policy::PolicyHandle {
        &self
            .gateway_handles
            .as_ref()
            .expect("gateway running")
            .policy
    }

    /// The running gateway's access log.
    pub fn audit_log(&self) -> &orex_gateway::audit::AuditLog {
        &self
            .gateway_handles
            .as_ref()
            .expect("gateway running")
            .audit
    }

    /// Stops the gateway gracefully (last checkpoint signed, log flushed and
    /// closed: no handle on its store remains).
    pub async fn stop_gateway(&mut self) {
        self.gateway_handles = None;
        if let Some((shutdown, task)) = self.gateway.take() {
            shutdown.trigger();
            task.await
                .expect("gateway task")
                .expect("gateway stopped cleanly");
        }
    }

    /// Starts the gateway again on the same port over the same access log.
    pub async fn start_gateway(&mut self) {
        self.try_start_gateway().await.expect("gateway start");
    }

    /// [`start_gateway`](Self::start_gateway), or why the gateway refuses
    /// to start (its checks run before it serves).
    pub async fn try_start_gateway(&mut self) -> Result<(), orex_cli::CliError> {
        // A gateway that refused to start has dropped its store; the next
        // one waits for sled to let go of the folder (`Store::open`).
        let listener = TcpListener::bind(self.gateway_addr).await.expect("rebind");
        let shutdown = Shutdown::new();
        let (task, handles) = devstack::spawn_gateway(&self.layout, listener, shutdown.clone())?;
        self.gateway_handles = Some(handles);
        self.gateway = Some((shutdown, task));
        Ok(())
    }

    /// The stopped gateway's audit witness file (`audit::witness`).
    pub fn audit_witness(&self) -> PathBuf {
        self.layout.data("gateway").with_extension("witness")
    }

    /// Moves the audit witness aside, as an operator accepting lost records
    /// does — or as someone in control of the gateway's host could. The
    /// next start begins a new witness at the store's newest checkpoint.
    pub fn discard_audit_witness(&self) {
        discard_witness_of(&self.layout.data("gateway"));
    }

    /// Damages the stopped gateway's store the way sled's recovery does
    /// when record `from` is corrupted on disk: that record, every later one
    /// and every checkpoint are gone (sled keeps the longest intact prefix).
    pub fn lose_audit_tail(&self, from: u64) {
        lose_audit_tail_in(&self.layout.data("gateway"), from);
    }

    /// Starts a second gateway replica in front of the same services, as
    /// a StatefulSet's second pod: its own port, data folder
    /// (`data/gateway-2`, witness beside it) and log id ([`SECOND_LOG_ID`]),
    /// with the first one's certificate, policy and signing key. Started
    /// again after [`stop_second_gateway`](Self::stop_second_gateway), it
    /// serves the same port and log. Returns its address.
    pub async fn start_second_gateway(&mut self) -> SocketAddr {
        self.start_second_gateway_as(SECOND_LOG_ID).await
    }

    /// [`start_second_gateway`](Self::start_second_gateway) writing the log
    /// `log_id` (the first gateway's, to show what a shared id does).
    pub async fn start_second_gateway_as(&mut self, log_id: &str) -> SocketAddr {
        let listener = match &self.second_gateway {
            Some(second) => TcpListener::bind(second.addr).await.expect("rebind"),
            None => TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        };
        let addr = listener.local_addr().expect("address");
        // gateway.toml with this replica's own port, data folder and log id,
        // as the StatefulSet's per-pod volume and OREX_GATEWAY__AUDIT__LOG_ID
        // give each pod.
        let text = std::fs::read_to_string(self.layout.config("gateway.toml")).expect("config");
        let mut own = String::new();
        for line in text.lines() {
            let line = if line.starts_with("listen = ") {
                format!("listen = \"{addr}\"")
            } else if line.starts_with("data_dir = ") {
                "data_dir = \"../data/gateway-2\"".to_owned()
            } else if line.starts_with("log_id = ") {
                format!("log_id = \"{log_id}\"")
            } else {
                line.to_owned()
            };
            own.push_str(&line);
            own.push('\n');
        }
        let path = self.layout.config("gateway-2.toml");
        std::fs::write(&path, own).expect("write the second gateway's config");
        let config = orex_gateway::GatewayConfig::load(&path).expect("second gateway config");
        let prepared = orex_gateway::prepare(config).expect("second gateway start");
        let handles = devstack::GatewayHandles {
            policy: prepared.policy(),
            audit: prepared.audit(),
        };
        let shutdown = Shutdown::new();
        let task = tokio::spawn(prepared.serve(listener, shutdown.clone()));
        self.second_gateway = Some(SecondGateway {
            addr,
            running: Some((shutdown, task, handles)),
        });
        addr
    }

    /// The second gateway replica's address.
    pub fn second_gateway_addr(&self) -> SocketAddr {
        self.second_gateway.as_ref().expect("second gateway").addr
    }

    /// The running second gateway replica's access log.
    pub fn second_audit_log(&self) -> &orex_gateway::audit::AuditLog {
        &self
            .second_gateway
            .as_ref()
            .and_then(|g| g.running.as_ref())
            .expect("second gateway running")
            .2
            .audit
    }

    /// The second gateway replica's data folder (its access log).
    pub fn second_gateway_data(&self) -> PathBuf {
        self.layout.data("gateway-2")
    }

    /// Stops the second gateway replica gracefully (last checkpoint signed,
    /// log flushed and closed); its port stays reserved for a restart.
    pub async fn stop_second_gateway(&mut self) {
        if let Some((shutdown, task, handles)) =
            self.second_gateway.as_mut().and_then(|g| g.running.take())
        {
            drop(handles);
            shutdown.trigger();
            task.await
                .expect("second gateway task")
                .expect("second gateway stopped cleanly");
        }
    }

    /// A sharing client through the gateway replica at `addr` as a demo
    /// principal (its certificate and token, the `gateway` server name).
    pub async fn client_at(&self, addr: SocketAddr, bundle: &str) -> SharingClient {
        let token = self.bundle_file(bundle, "token.jwt");
        self.raw_client(
            addr,
            "gateway",
            Some(self.bundle_identity(bundle)),
            Some(&token),
        )
        .await
        .expect("connect to the gateway replica")
    }

    /// Rewrites the policy file with `edit` (the gateway notices by itself;
    /// call `policy().reload()` to apply it at once).
    pub fn edit_policy(&self, edit: impl FnOnce(String) -> String) {
        let path = self.layout.config("policy.toml");
        let text = std::fs::read_to_string(&path).expect("policy");
        std::fs::write(&path, edit(text)).expect("write policy");
    }

    /// Replaces `from` with `to` in the config file `file` (`"gateway.toml"`).
    pub fn edit_config(layout: &DevLayout, file: &str, from: &str, to: &str) {
        let path = layout.config(file);
        let text = std::fs::read_to_string(&path).expect("config");
        assert!(text.contains(from), "{file} has no {from:?}");
        std::fs::write(&path, text.replace(from, to)).expect("write config");
    }

    /// Downloads and verifies the access log as `bundle` would with
    /// `orex audit verify`, trusting only the dev audit public key.
    pub async fn verify_audit_log(
        &self,
        bundle: &str,
    ) -> orex_gateway::audit::verify::Verification {
        let mut client = Connection::open(&self.bundle(bundle))
            .await
            .expect("connect")
            .audit();
        let (records, checkpoints) = orex_cli::commands::audit::download(&mut client)
            .await
            .expect("download the log");
        let key = orex_cli::commands::audit::read_public_key(&self.layout.audit_keys().1)
            .expect("public key");
        orex_gateway::audit::verify::verify(&records, &checkpoints, &key)
    }

    /// The bundle folder of a demo principal (`us-alice`).
    pub fn bundle(&self, name: &str) -> PathBuf {
        self.layout.bundle(name)
    }

    /// A sharing client through the gateway as a demo principal.
    pub async fn client(&self, bundle: &str) -> SharingClient {
        Connection::open(&self.bundle(bundle))
            .await
            .expect("connect to gateway")
            .sharing()
    }

    /// Reads a file of a demo principal's bundle.
    pub fn bundle_file(&self, bundle: &str, file: &str) -> String {
        std::fs::read_to_string(self.bundle(bundle).join(file)).expect("bundle file")
    }

    /// Mints a token for a demo principal's certificate with chosen claims,
    /// signed by `signer`'s dev issuer key.
    pub fn token(&self, t: TokenParams<'_>) -> String {
        let file = BundleFile::read(&self.bundle(t.bundle)).expect("bundle.toml");
        let cert = self.bundle_file(t.cert_of.unwrap_or(t.bundle), "cert.pem");
        let signer = t.signer.unwrap_or(&file.member);
        let key = std::fs::read_to_string(self.layout.issuer_keys(signer).0).expect("issuer key");
        let issuer = t.issuer.map(str::to_owned).unwrap_or(file.issuer.clone());
        mint(
            &TokenSpec {
                issuer: &issuer,
                audience: t.audience.unwrap_or(&file.audience),
                subject: &file.subject,
                roles: &file.roles,
                cert_pem: &cert,
                ttl: t.ttl,
                not_before_offset: t.not_before_offset,
            },
            &key,
        )
        .expect("mint")
    }

    /// A client through the gateway with explicit TLS material and token.
    /// `identity` of `None` connects without a client certificate; `token`
    /// of `None` sends no authorization metadata.
    pub async fn raw_client(
        &self,
        addr: SocketAddr,
        server_name: &str,
        identity: Option<(String, String)>,
        token: Option<&str>,
    ) -> Result<SharingClient, tonic::transport::Error> {
        let channel = self.channel(addr, server_name, identity).await?;
        let token = match token {
            Some(t) => BearerToken::new(t).expect("token"),
            None => BearerToken::none(),
        };
        Ok(SharingServiceClient::with_interceptor(channel, token))
    }
}

impl Stack {
    /// A mutual-TLS channel to `addr` (trusting the dev CA, checking
    /// `server_name`), presenting `identity` (certificate and key PEM).
    pub async fn channel(
        &self,
        addr: SocketAddr,
        server_name: &str,
        identity: Option<(String, String)>,
    ) -> Result<Channel, tonic::transport::Error> {
        let ca = std::fs::read_to_string(self.layout.ca_cert()).expect("ca");
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .domain_name(server_name);
        if let Some((cert, key)) = identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        Endpoint::from_shared(format!("https://{addr}"))
            .expect("endpoint")
            .tls_config(tls)?
            .connect()
            .await
    }

    /// The certificate and key (PEM) of a member bundle.
    pub fn bundle_identity(&self, bundle: &str) -> (String, String) {
        (
            self.bundle_file(bundle, "cert.pem"),
            self.bundle_file(bundle, "key.pem"),
        )
    }

    /// The certificate and key (PEM) of a workload (`gateway`).
    pub fn workload_identity(&self, workload: &str) -> (String, String) {
        let (cert, key) = self.layout.workload(workload);
        (
            std::fs::read_to_string(cert).expect("workload cert"),
            std::fs::read_to_string(key).expect("workload key"),
        )
    }

    /// A sharing client to the gateway on `bundle`'s certificate, sending
    /// `token` (or none) instead of the bundle's own.
    pub async fn client_with_token(&self, bundle: &str, token: Option<&str>) -> SharingClient {
        self.raw_client(
            self.gateway_addr,
            "gateway",
            Some(self.bundle_identity(bundle)),
            token,
        )
        .await
        .expect("connect to the gateway")
    }
}

/// Claims for [`Stack::token`]; unset fields take the bundle's own values.
#[derive(Debug, Clone, Copy)]
pub struct TokenParams<'a> {
    /// Whose bundle (subject, roles, issuer, certificate).
    pub bundle: &'a str,
    /// Bind to another bundle's certificate instead.
    pub cert_of: Option<&'a str>,
    /// Sign with another member's issuer key.
    pub signer: Option<&'a str>,
    /// Another `iss`.
    pub issuer: Option<&'a str>,
    /// Another `aud`.
    pub audience: Option<&'a str>,
    /// Lifetime from `nbf`.
    pub ttl: Duration,
    /// Seconds from now to `nbf`.
    pub not_before_offset: i64,
}

impl<'a> TokenParams<'a> {
    /// A valid token of `bundle` for ten minutes.
    pub fn of(bundle: &'a str) -> Self {
        Self {
            bundle,
            cert_of: None,
            signer: None,
            issuer: None,
            audience: None,
            ttl: Duration::from_secs(600),
            not_before_offset: 0,
        }
    }
}

/// A valid report content with the given marking and recipients.
pub fn content(
    marking: Marking,
    to_members: &[&str],
    to_principals: &[(&str, &str)],
) -> ReportContent {
    ReportContent {
        mineral: Mineral::Gallium as i32,
        stage: Stage::Refining as i32,
        category: Category::ProductionOutage as i32,
        severity: 3,
        origin_country: "CN".into(),
        affected_members: vec!["US".into()],
        volume_impact_tonnes_per_month: -120.0,
        observed_price: None,
        effective_window: Some(TimeWindow {
            start: Some(Timestamp::from(SystemTime::now())),
            end: None,
        }),
        summary: "Refinery outage in Shandong".into(),
        marking: marking as i32,
        recipient_members: to_members.iter().map(|s| s.to_string()).collect(),
        recipient_principals: to_principals
            .iter()
            .map(|(m, s)| PrincipalRef {
                member: m.to_string(),
                subject: s.to_string(),
            })
            .collect(),
    }
}

/// A publish request with a fresh request id.
pub fn publish_request(content: ReportContent) -> PublishReportRequest {
    PublishReportRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        content: Some(content),
    }
}

/// Publishes `content` as a demo principal and returns the stored report.
pub async fn publish(client: &mut SharingClient, content: ReportContent) -> Report {
    client
        .publish_report(publish_request(content))
        .await
        .expect("publish")
        .into_inner()
        .report
        .expect("report")
}

/// Waits at most `secs` seconds for a future (so a broken stream fails the
/// test instead of hanging it).
pub async fn within<F: std::future::Future>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("timed out")
}

/// Moves the audit witness of the stopped gateway whose data folder is
/// `data` aside (see [`Stack::discard_audit_witness`]).
pub fn discard_witness_of(data: &std::path::Path) {
    let w = data.with_extension("witness");
    std::fs::rename(&w, w.with_extension("witness.discarded")).expect("move the witness");
}

/// Opens the sled store of a stopped gateway whose data folder is `data`.
pub fn open_stopped_gateway_store(data: &std::path::Path) -> sled::Db {
    // sled's background thread lets go of the folder's lock only at its
    // next tick after the gateway dropped the store: wait for the lock
    // (bounded), not for a time.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match sled::open(data) {
            Ok(db) => break db,
            Err(e) if std::time::Instant::now() < deadline && e.to_string().contains("lock") => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("open the stopped gateway's store: {e}"),
        }
    }
}

/// [`Stack::lose_audit_tail`] in the stopped gateway whose data folder is
/// `data`: record `from`, every later one and every checkpoint are gone.
pub fn lose_audit_tail_in(data: &std::path::Path, from: u64) {
    let db = open_stopped_gateway_store(data);
    let records = db.open_tree("audit_records").expect("records");
    for item in records.range((from + 1).to_be_bytes()..) {
        records.remove(item.expect("record").0).expect("remove");
    }
    db.open_tree("audit_checkpoints")
        .expect("checkpoints")
        .clear()
        .expect("clear");
    db.flush().expect("flush");
}

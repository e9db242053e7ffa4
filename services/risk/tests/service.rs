//! The risk service over real mutual TLS with a generated CA, a real sled
//! store in a temporary folder and a real gRPC client: who may call it,
//! `GetReferenceDataVersion`, and the reference data file reloaded without
//! a restart (an invalid file refused, the old version kept).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use orex_cli::devpki::DevCa;
use orex_kit::Shutdown;
use orex_kit::status::{Reason, reason_of};
use orex_proto::risk::v1::GetReferenceDataVersionRequest;
use orex_proto::risk::v1::risk_service_client::RiskServiceClient;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

const POLICY: &str = r#"
[[members]]
code = "US"
name = "United States"
kind = "state"
founding = true
"#;

/// Test figures only (countries AA and BB), not reference data.
fn reference(version: &str) -> String {
    format!(
        r#"
version = "{version}"
published_at = "2026-11-26T00:00:00Z"

[[sources]]
id = "s1"
title = "A test source"
publisher = "Nobody"
url = "https://example.invalid/s1"
year = 2026

[[countries]]
code = "AA"
governance_score = 6.0
source = "s1"

[[supply]]
mineral = "gallium"
stage = "refining"
substitution_index = 1.0
end_of_life_recycling_input_rate = 0.0
source = "s1"
shares = [{{ country = "AA", share = 1.0, source = "s1" }}]
"#
    )
}

fn write(path: &Path, text: &str, private: bool) {
    std::fs::write(path, text).unwrap();
    if private {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

struct Running {
    dir: tempfile::TempDir,
    ca: DevCa,
    addr: std::net::SocketAddr,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<Result<(), orex_kit::KitError>>,
    reloader: orex_risk::ReferenceReloader,
}

async fn start() -> Running {
    orex_kit::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let ca = DevCa::generate("risk test CA").unwrap();
    let risk = ca.workload("risk").unwrap();
    let d = dir.path();
    write(&d.join("ca.pem"), &ca.cert_pem, false);
    write(&d.join("risk.pem"), &risk.cert_pem, false);
    write(&d.join("risk.key.pem"), &risk.key_pem, true);
    write(&d.join("policy.toml"), POLICY, false);
    write(&d.join("reference.toml"), &reference("test.1"), false);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    write(
        &d.join("risk.toml"),
        &format!(
            r#"
listen = "{addr}"
data_dir = "data"
policy = "policy.toml"
reference_data = "reference.toml"
[tls]
ca = "ca.pem"
cert = "risk.pem"
key = "risk.key.pem"
"#
        ),
        false,
    );
    let config = orex_risk::RiskConfig::load(&d.join("risk.toml")).unwrap();
    let prepared = orex_risk::prepare(config).unwrap();
    let reloader = prepared.reloader();
    let shutdown = Shutdown::new();
    let task = tokio::spawn(prepared.serve(listener, shutdown.clone()));
    Running {
        dir,
        ca,
        addr,
        shutdown,
        task,
        reloader,
    }
}

impl Running {
    /// A client presenting `identity` (a workload or member certificate).
    async fn client(&self, cert: orex_cli::devpki::CertKey) -> RiskServiceClient<Channel> {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca.cert_pem))
            .identity(Identity::from_pem(cert.cert_pem, cert.key_pem))
            .domain_name("risk");
        let channel = Endpoint::from_shared(format!("https://{}", self.addr))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
        RiskServiceClient::new(channel)
    }

    async fn stop(self) {
        self.shutdown.trigger();
        self.task.await.unwrap().unwrap();
    }
}

/// A request as the gateway forwards it for US/ana with `roles`.
fn as_caller(roles: &str) -> tonic::Request<GetReferenceDataVersionRequest> {
    let mut req = tonic::Request::new(GetReferenceDataVersionRequest {});
    let md = req.metadata_mut();
    md.insert("x-orex-member", "US".parse().unwrap());
    md.insert("x-orex-subject", "ana".parse().unwrap());
    md.insert("x-orex-roles", roles.parse().unwrap());
    req
}

#[tokio::test]
async fn an_analyst_forwarded_by_the_gateway_gets_the_reference_data_version() {
    let running = start().await;
    let mut gateway = running
        .client(running.ca.workload("gateway").unwrap())
        .await;
    let version = gateway
        .get_reference_data_version(as_caller("analyst"))
        .await
        .unwrap()
        .into_inner()
        .reference_data
        .unwrap();
    assert_eq!(version.version, "test.1");
    assert_eq!(version.content_sha256.len(), 64);
    assert_eq!(version.sources.len(), 1);
    assert_eq!(version.sources[0].id, "s1");
    assert!(version.published_at.is_some() && version.loaded_at.is_some());

    // Another role: refused by name.
    let status = gateway
        .get_reference_data_version(as_caller("reader"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(reason_of(&status), Some(Reason::RoleMissing));

    // Members (and other workloads) cannot call the service directly.
    let mut member = running
        .client(running.ca.member_client("US", "ana").unwrap())
        .await;
    let status = member
        .get_reference_data_version(as_caller("analyst"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(reason_of(&status), Some(Reason::WorkloadNotAllowed));
    running.stop().await;
}

#[tokio::test]
async fn a_changed_reference_file_is_applied_and_an_invalid_one_refused() {
    let running = start().await;
    let mut gateway = running
        .client(running.ca.workload("gateway").unwrap())
        .await;
    let version = |gateway: &mut RiskServiceClient<Channel>| {
        let mut gateway = gateway.clone();
        async move {
            gateway
                .get_reference_data_version(as_caller("analyst"))
                .await
                .unwrap()
                .into_inner()
                .reference_data
                .unwrap()
        }
    };
    let file = running.dir.path().join("reference.toml");
    write(&file, &reference("test.2"), false);
    tokio::time::timeout(Duration::from_secs(20), async {
        while version(&mut gateway).await.version != "test.2" {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the changed file is applied without a restart");

    // A share over 1: refused with the reason (as the watcher would log
    // it), and test.2 stays in force.
    write(
        &file,
        &reference("test.3").replace("share = 1.0", "share = 1.5"),
        false,
    );
    let err = running.reloader.reload().unwrap_err();
    assert!(
        err.to_string().contains("share of AA must be from 0 to 1"),
        "{err}"
    );
    assert_eq!(version(&mut gateway).await.version, "test.2");
    // A valid file after it is applied again.
    write(&file, &reference("test.4"), false);
    running.reloader.reload().unwrap();
    assert_eq!(version(&mut gateway).await.version, "test.4");
    running.stop().await;
}

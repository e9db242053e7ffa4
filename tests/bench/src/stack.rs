//! The system under test and the clients that load it.
//!
//! [`Bench`] is the end-to-end harness's in-process stack (real sharing
//! service and gateway on 127.0.0.1, throwaway PKI, real sled) with the
//! development rate limits lifted, so the tool measures the system and not
//! the limiter. [`Api`] is one sharing client either through the gateway (a
//! member's certificate and token) or directly at the sharing service (the
//! gateway's workload certificate and a forwarded principal, exactly as the
//! gateway calls it) — the two sides of most comparisons.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use orex_cli::bundle::{BearerToken, BundleFile, SharingClient};
use orex_cli::devstack::DevLayout;
use orex_e2e::Stack;
use orex_membership::{MethodClass, Principal};
use orex_proto::common::v1::Marking;
use orex_proto::sharing::v1::sharing_service_client::SharingServiceClient;
use orex_proto::sharing::v1::{
    GetReportRequest, PublishReportRequest, PublishReportResponse, Report, ReportContent,
    SubscribeReportsRequest, SubscribeReportsResponse,
};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Status, Streaming};

/// Where a client sends its calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// Through the gateway, as a member.
    Gateway,
    /// Directly at the sharing service, as the gateway does.
    Direct,
}

impl Target {
    /// Short label for tables.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Target::Gateway => "gateway",
            Target::Direct => "direct",
        }
    }
}

/// Removes every `[rate_limits…]` table from a policy file, so members are
/// unlimited (an unset limit is no limit); everything else stays.
pub(crate) fn without_rate_limits(policy: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in policy.lines() {
        let t = line.trim_start();
        if t.starts_with('[') {
            skipping = t.starts_with("[rate_limits");
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The in-process stack with the bench policy in force.
#[derive(Debug)]
pub(crate) struct Bench {
    /// The harness's stack.
    pub(crate) stack: Stack,
}

impl Bench {
    /// Starts a fresh stack and lifts the rate limits (checked in force).
    pub(crate) async fn spawn() -> Bench {
        // The cases measure the exchange (gateway, sharing service, store).
        // On this 2-core machine the risk service following the report stream
        // would take its CPU from the service under test (every report the
        // bench publishes is GREEN), so it runs without its `[sharing]`
        // source: its scores then use the reference data alone.
        let stack = Stack::spawn_configured(|l| {
            let path = l.config("risk.toml");
            let text = std::fs::read_to_string(&path).expect("risk.toml");
            let start = text.find("[sharing]").expect("risk.toml has [sharing]");
            let end = start
                + text[start..]
                    .find("\n\n")
                    .expect("a blank line after [sharing]");
            std::fs::write(&path, format!("{}{}", &text[..start], &text[end..]))
                .expect("write risk.toml");
        })
        .await;
        stack.edit_policy(|p| without_rate_limits(&p));
        stack
            .policy()
            .reload()
            .expect("the bench policy (dev policy without rate limits) loads");
        let live = stack.policy().current();
        let limits = live.partnership.rate_limits();
        for m in ["US", "EU", "DE", "FR", "JP"] {
            for c in [MethodClass::Read, MethodClass::Write, MethodClass::Stream] {
                assert!(
                    limits.rate(m, c).is_none(),
                    "rate limit still in force for {m}"
                );
            }
            assert!(
                limits.open_streams(m).is_none(),
                "stream cap still in force"
            );
        }
        Bench { stack }
    }

    /// The dev folder.
    pub(crate) fn layout(&self) -> &DevLayout {
        &self.stack.layout
    }

    /// A new connection (its own TCP + TLS) for `bundle`'s principal.
    pub(crate) async fn api(&self, target: Target, bundle: &str) -> Api {
        match target {
            Target::Gateway => Api::Gateway(member_client(self.layout(), bundle).await),
            Target::Direct => {
                Api::Direct(direct_client(self.layout(), self.stack.sharing_addr, bundle).await)
            }
        }
    }

    /// `n` connections for `bundle`.
    pub(crate) async fn apis(&self, target: Target, bundle: &str, n: usize) -> Vec<Api> {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.api(target, bundle).await);
        }
        v
    }

    /// Stops the stack gracefully.
    pub(crate) async fn stop(self) {
        self.stack.stop().await;
    }
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn endpoint(addr: &str) -> Endpoint {
    Endpoint::from_shared(addr.to_owned())
        .expect("address")
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10))
}

/// Connects to the gateway with `bundle`'s certificate and token (as
/// `orex_cli::bundle::Connection` does, with `TCP_NODELAY` set explicitly).
pub(crate) async fn member_client(layout: &DevLayout, bundle: &str) -> SharingClient {
    let dir = layout.bundle(bundle);
    let file = BundleFile::read(&dir).expect("bundle.toml");
    let token = String::from_utf8(read(&dir.join("token.jwt"))).expect("token");
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(&dir.join("ca.pem"))))
        .identity(Identity::from_pem(
            read(&dir.join("cert.pem")),
            read(&dir.join("key.pem")),
        ))
        .domain_name(file.server_name.clone());
    let channel = endpoint(&file.gateway)
        .tls_config(tls)
        .expect("TLS config")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect to the gateway as {bundle}: {e:?}"));
    SharingServiceClient::with_interceptor(channel, BearerToken::new(&token).expect("token"))
        .max_decoding_message_size(64 << 20)
}

/// Sends the principal in `x-orex-*` metadata, as the gateway's door does.
#[derive(Debug, Clone)]
pub(crate) struct Forwarded(Arc<Principal>);

impl tonic::service::Interceptor for Forwarded {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        orex_kit::forwarded::attach(&self.0, req.metadata_mut())?;
        Ok(req)
    }
}

/// A sharing client straight at the service.
pub(crate) type DirectClient = SharingServiceClient<InterceptedService<Channel, Forwarded>>;

/// The principal a bundle stands for.
pub(crate) fn principal_of(layout: &DevLayout, bundle: &str) -> Principal {
    let file = BundleFile::read(&layout.bundle(bundle)).expect("bundle.toml");
    Principal {
        member: file.member,
        subject: file.subject,
        roles: file.roles.iter().filter_map(|r| r.parse().ok()).collect(),
    }
}

/// Connects to the sharing service with the gateway's workload certificate
/// and forwards `bundle`'s principal on every call.
pub(crate) async fn direct_client(
    layout: &DevLayout,
    sharing: SocketAddr,
    bundle: &str,
) -> DirectClient {
    let (cert, key) = layout.workload("gateway");
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(&layout.ca_cert())))
        .identity(Identity::from_pem(read(&cert), read(&key)))
        .domain_name("sharing");
    let channel = endpoint(&format!("https://{sharing}"))
        .tls_config(tls)
        .expect("TLS config")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect to the sharing service: {e:?}"));
    SharingServiceClient::with_interceptor(
        channel,
        Forwarded(Arc::new(principal_of(layout, bundle))),
    )
    .max_decoding_message_size(64 << 20)
}

/// One sharing client, through the gateway or direct.
#[derive(Debug, Clone)]
pub(crate) enum Api {
    /// Through the gateway.
    Gateway(SharingClient),
    /// At the sharing service.
    Direct(DirectClient),
}

impl Api {
    /// `PublishReport`.
    pub(crate) async fn publish(
        &mut self,
        req: PublishReportRequest,
    ) -> Result<PublishReportResponse, Status> {
        match self {
            Api::Gateway(c) => c.publish_report(req).await,
            Api::Direct(c) => c.publish_report(req).await,
        }
        .map(|r| r.into_inner())
    }

    /// Publishes `content` with a fresh request id; the stored report.
    pub(crate) async fn publish_content(
        &mut self,
        content: ReportContent,
    ) -> Result<Report, Status> {
        self.publish(orex_e2e::publish_request(content))
            .await?
            .report
            .ok_or_else(|| Status::internal("publish answered without a report"))
    }

    /// `GetReport` of the current version.
    pub(crate) async fn get(&mut self, id: &str) -> Result<Option<Report>, Status> {
        let req = GetReportRequest {
            report_id: id.to_owned(),
            version: 0,
        };
        match self {
            Api::Gateway(c) => c.get_report(req).await,
            Api::Direct(c) => c.get_report(req).await,
        }
        .map(|r| r.into_inner().report)
    }

    /// `SubscribeReports` from now (`None`) or after a sequence.
    pub(crate) async fn subscribe(
        &mut self,
        after: Option<u64>,
    ) -> Result<Streaming<SubscribeReportsResponse>, Status> {
        let req = SubscribeReportsRequest {
            filter: None,
            after_sequence: after,
        };
        match self {
            Api::Gateway(c) => c.subscribe_reports(req).await,
            Api::Direct(c) => c.subscribe_reports(req).await,
        }
        .map(|r| r.into_inner())
    }
}

/// A GREEN report (every member may see it) with a summary of about
/// `summary_bytes` bytes.
pub(crate) fn green(summary_bytes: usize) -> ReportContent {
    let mut c = orex_e2e::content(Marking::Green, &[], &[]);
    if summary_bytes > c.summary.len() {
        const WORDS: &str =
            "Refinery outage in Shandong; export licences delayed, inventories falling. ";
        let mut s = String::with_capacity(summary_bytes);
        while s.len() + WORDS.len() <= summary_bytes {
            s.push_str(WORDS);
        }
        c.summary = s.trim_end().to_owned();
    }
    c
}

/// Reader bundles of different members, for spreading subscribers.
pub(crate) const READERS: [&str; 5] = ["us-bob", "de-dieter", "fr-felix", "eu-eva", "jp-kenji"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_tables_are_removed_and_the_rest_kept() {
        let policy = "[roles]\nreader = []\n\n[rate_limits.default]\nread = { per_minute = 1, burst = 1 }\nopen_streams = 5\n\n[rate_limits.members.US]\nwrite = { per_minute = 1, burst = 1 }\n\n[audit]\npartnership_auditors = []\n";
        let out = without_rate_limits(policy);
        assert!(!out.contains("rate_limits") && !out.contains("per_minute"));
        assert!(out.contains("[roles]") && out.contains("reader = []"));
        assert!(out.contains("[audit]") && out.contains("partnership_auditors"));
    }

    #[test]
    fn the_dev_policy_without_rate_limits_has_none() {
        let out = without_rate_limits(&orex_cli::devstack::policy_text());
        assert!(!out.contains("rate_limits") && !out.contains("open_streams"));
        assert!(out.contains("[[members]]"));
    }
}

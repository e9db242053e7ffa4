//! The local development stack behind `orex up`: one folder holds a
//! generated PKI, issuer keys, client bundles for demo principals, the config
//! files, and every service's sled data; every service and the gateway run in
//! one process on local ports.
//!
//! ```text
//! .orex-dev/
//!   pki/ca.pem, pki/ca.key.pem               development partnership CA
//!   pki/workloads/<name>.pem, <name>.key.pem  gateway, sharing, risk, emergency
//!   pki/audit-signing.key.pem, .pub.pem       Ed25519 key signing access-log checkpoints
//!   issuers/<MEMBER>.key.pem, <MEMBER>.pub.pem  token issuer per member (Ed25519)
//!   bundles/<principal>/                      ca.pem cert.pem key.pem token.jwt bundle.toml
//!   config/policy.toml sharing.toml risk.toml emergency.toml gateway.toml
//!   config/reference.toml                     the reference data (a copy of
//!                                             services/reference/data/reference.toml)
//!   data/sharing/, data/risk/, data/emergency/, data/gateway/
//!                                             sled stores (reports; risk; cases; access log)
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use orex_kit::{KitError, Shutdown};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::CliError;
use crate::bundle::BundleFile;
use crate::devpki::{DevCa, IssuerKeys};
use crate::error::{read, write};
use crate::tokens::{TokenSpec, mint};

/// The audience every dev token carries and the dev gateway expects.
pub const DEV_AUDIENCE: &str = "orex-gateway";
/// Lifetime of tokens written into bundles.
pub const DEV_TOKEN_TTL: Duration = Duration::from_secs(8 * 3600);

/// A demo member of the development partnership.
#[derive(Debug, Clone, Copy)]
pub struct DemoMember {
    /// Member code.
    pub code: &'static str,
    /// Name.
    pub name: &'static str,
    /// `state` or `bloc`.
    pub kind: &'static str,
    /// The bloc of a state, if any.
    pub bloc: Option<&'static str>,
    /// Founding party.
    pub founding: bool,
}

/// The demo members: the US and the EU (a bloc with DE and FR) founded the
/// partnership; JP joined later.
pub const DEMO_MEMBERS: [DemoMember; 5] = [
    DemoMember {
        code: "US",
        name: "United States",
        kind: "state",
        bloc: None,
        founding: true,
    },
    DemoMember {
        code: "EU",
        name: "European Union",
        kind: "bloc",
        bloc: None,
        founding: true,
    },
    DemoMember {
        code: "DE",
        name: "Germany",
        kind: "state",
        bloc: Some("EU"),
        founding: false,
    },
    DemoMember {
        code: "FR",
        name: "France",
        kind: "state",
        bloc: Some("EU"),
        founding: false,
    },
    DemoMember {
        code: "JP",
        name: "Japan",
        kind: "state",
        bloc: None,
        founding: false,
    },
];

/// A demo principal with a client bundle.
#[derive(Debug, Clone, Copy)]
pub struct DemoPrincipal {
    /// Bundle folder name (`us-alice`).
    pub bundle: &'static str,
    /// Member code.
    pub member: &'static str,
    /// Token subject and certificate name.
    pub subject: &'static str,
    /// Roles granted by its token.
    pub roles: &'static [&'static str],
}

/// The demo principals, one bundle each.
pub const DEMO_PRINCIPALS: [DemoPrincipal; 17] = [
    DemoPrincipal {
        bundle: "us-alice",
        member: "US",
        subject: "alice",
        roles: &["reporter", "reader"],
    },
    DemoPrincipal {
        bundle: "us-bob",
        member: "US",
        subject: "bob",
        roles: &["reader"],
    },
    DemoPrincipal {
        bundle: "eu-eva",
        member: "EU",
        subject: "eva",
        roles: &["reporter", "reader"],
    },
    DemoPrincipal {
        bundle: "de-dora",
        member: "DE",
        subject: "dora",
        roles: &["reporter", "reader"],
    },
    DemoPrincipal {
        bundle: "de-dieter",
        member: "DE",
        subject: "dieter",
        roles: &["reader"],
    },
    DemoPrincipal {
        bundle: "fr-felix",
        member: "FR",
        subject: "felix",
        roles: &["reader"],
    },
    DemoPrincipal {
        bundle: "jp-kenji",
        member: "JP",
        subject: "kenji",
        roles: &["reporter", "reader"],
    },
    DemoPrincipal {
        bundle: "us-oversight",
        member: "US",
        subject: "oversight",
        roles: &["auditor"],
    },
    DemoPrincipal {
        bundle: "jp-audit",
        member: "JP",
        subject: "audit",
        roles: &["auditor"],
    },
    DemoPrincipal {
        bundle: "us-ana",
        member: "US",
        subject: "ana",
        roles: &["analyst"],
    },
    DemoPrincipal {
        bundle: "eu-erik",
        member: "EU",
        subject: "erik",
        roles: &["analyst"],
    },
    DemoPrincipal {
        bundle: "de-dana",
        member: "DE",
        subject: "dana",
        roles: &["analyst"],
    },
    DemoPrincipal {
        bundle: "jp-aiko",
        member: "JP",
        subject: "aiko",
        roles: &["analyst"],
    },
    DemoPrincipal {
        bundle: "us-cole",
        member: "US",
        subject: "cole",
        roles: &["coordinator"],
    },
    DemoPrincipal {
        bundle: "eu-clara",
        member: "EU",
        subject: "clara",
        roles: &["coordinator"],
    },
    DemoPrincipal {
        bundle: "de-carl",
        member: "DE",
        subject: "carl",
        roles: &["coordinator"],
    },
    DemoPrincipal {
        bundle: "jp-chika",
        member: "JP",
        subject: "chika",
        roles: &["coordinator"],
    },
];

/// Demo principals that audit the whole partnership (the rest audit only
/// their own member).
pub const PARTNERSHIP_AUDITORS: [&str; 1] = ["US/oversight"];

/// Local ports of the dev stack.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// Where members connect.
    pub gateway: u16,
    /// The sharing service (only the gateway and the risk service may connect).
    pub sharing: u16,
    /// The risk service (only the gateway may connect).
    pub risk: u16,
    /// The emergency service (the gateway, and the risk service for stockpiles).
    pub emergency: u16,
}

impl Default for Ports {
    fn default() -> Self {
        Self {
            gateway: 7100,
            sharing: 7101,
            risk: 7102,
            emergency: 7103,
        }
    }
}

/// Where the dev stack's processes listen, as its configs say.
#[derive(Debug, Clone, Copy)]
pub struct Addresses {
    /// The gateway.
    pub gateway: SocketAddr,
    /// The sharing service.
    pub sharing: SocketAddr,
    /// The risk service.
    pub risk: SocketAddr,
    /// The emergency service.
    pub emergency: SocketAddr,
}

/// The workloads of the dev stack, one certificate each.
pub const WORKLOADS: [&str; 4] = ["gateway", "sharing", "risk", "emergency"];

/// The reference data shipped with the repository, copied into a new dev
/// folder as `config/reference.toml`.
pub const SHIPPED_REFERENCE_DATA: &str = orex_reference::SHIPPED;

/// Paths inside a dev folder.
#[derive(Debug, Clone)]
pub struct DevLayout {
    root: PathBuf,
}

impl DevLayout {
    /// The layout rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The folder itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The CA certificate.
    pub fn ca_cert(&self) -> PathBuf {
        self.root.join("pki/ca.pem")
    }

    /// The CA's private key (development only).
    pub fn ca_key(&self) -> PathBuf {
        self.root.join("pki/ca.key.pem")
    }

    /// The development CA, to issue more certificates.
    pub fn ca(&self) -> Result<DevCa, CliError> {
        let cert = String::from_utf8_lossy(&read(&self.ca_cert())?).into_owned();
        let key = String::from_utf8_lossy(&read(&self.ca_key())?).into_owned();
        DevCa::load(&cert, &key)
    }

    /// The access-log signing key (private, public PEM).
    pub fn audit_keys(&self) -> (PathBuf, PathBuf) {
        (
            self.root.join("pki/audit-signing.key.pem"),
            self.root.join("pki/audit-signing.pub.pem"),
        )
    }

    /// A workload's certificate and key.
    pub fn workload(&self, name: &str) -> (PathBuf, PathBuf) {
        let dir = self.root.join("pki/workloads");
        (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key.pem")),
        )
    }

    /// A member issuer's private and public key.
    pub fn issuer_keys(&self, member: &str) -> (PathBuf, PathBuf) {
        let dir = self.root.join("issuers");
        (
            dir.join(format!("{member}.key.pem")),
            dir.join(format!("{member}.pub.pem")),
        )
    }

    /// The issuer name of a member in the dev policy.
    pub fn issuer_name(member: &str) -> String {
        format!("urn:orex:dev:issuer:{member}")
    }

    /// A demo principal's bundle folder.
    pub fn bundle(&self, name: &str) -> PathBuf {
        self.root.join("bundles").join(name)
    }

    /// A config file (`policy.toml`, `sharing.toml`, `gateway.toml`).
    pub fn config(&self, file: &str) -> PathBuf {
        self.root.join("config").join(file)
    }

    /// A service's data folder.
    pub fn data(&self, service: &str) -> PathBuf {
        self.root.join("data").join(service)
    }

    /// True once the PKI has been generated.
    pub fn has_pki(&self) -> bool {
        self.ca_cert().is_file()
    }
}

/// Generates the PKI and issuer keys if the folder has none, writes the
/// config files for `ports` that are missing, and (re)writes the client
/// bundles with fresh tokens. Existing certificates, keys, configs (with the
/// operator's edits) and data are kept, so `orex up` can be run again and
/// again; the ports in existing configs win over `ports`. A folder made by
/// an older `orex up` gains what it lacks (the risk service's certificate
/// and config, newer demo principals, the gateway's risk backend). Returns
/// the addresses the configs listen on.
pub fn init(layout: &DevLayout, ports: Ports) -> Result<Addresses, CliError> {
    if !layout.has_pki() {
        generate_pki(layout)?;
    }
    issue_missing_certificates(layout)?;
    write_missing_configs(layout, ports)?;
    let gateway = orex_gateway::GatewayConfig::load(&layout.config("gateway.toml"))?;
    let sharing = orex_sharing::SharingConfig::load(&layout.config("sharing.toml"))?;
    let risk = orex_risk::RiskConfig::load(&layout.config("risk.toml"))?;
    let emergency = orex_emergency::EmergencyConfig::load(&layout.config("emergency.toml"))?;
    write_bundles(layout, gateway.listen.port())?;
    Ok(Addresses {
        gateway: gateway.listen,
        sharing: sharing.listen,
        risk: risk.listen,
        emergency: emergency.listen,
    })
}

fn generate_pki(layout: &DevLayout) -> Result<(), CliError> {
    let ca = DevCa::generate("orex development CA")?;
    let audit = IssuerKeys::generate()?;
    let (private, public) = layout.audit_keys();
    write(&private, audit.private_pem.as_bytes(), true)?;
    write(&public, audit.public_pem.as_bytes(), false)?;
    for m in DEMO_MEMBERS {
        let keys = IssuerKeys::generate()?;
        let (private, public) = layout.issuer_keys(m.code);
        write(&private, keys.private_pem.as_bytes(), true)?;
        write(&public, keys.public_pem.as_bytes(), false)?;
    }
    write(&layout.ca_key(), ca.key_pem.as_bytes(), true)?;
    // Written last: its presence marks a complete CA (certificates follow).
    write(&layout.ca_cert(), ca.cert_pem.as_bytes(), false)?;
    Ok(())
}

/// Issues every workload and demo principal certificate the folder lacks.
fn issue_missing_certificates(layout: &DevLayout) -> Result<(), CliError> {
    let missing_workloads: Vec<&str> = WORKLOADS
        .into_iter()
        .filter(|w| !layout.workload(w).1.is_file())
        .collect();
    let missing_principals: Vec<&DemoPrincipal> = DEMO_PRINCIPALS
        .iter()
        .filter(|p| !layout.bundle(p.bundle).join("key.pem").is_file())
        .collect();
    if missing_workloads.is_empty() && missing_principals.is_empty() {
        return Ok(());
    }
    let ca = layout.ca()?;
    for name in missing_workloads {
        let wk = ca.workload(name)?;
        let (cert, key) = layout.workload(name);
        write(&cert, wk.cert_pem.as_bytes(), false)?;
        // The key last: its presence marks a complete pair.
        write(&key, wk.key_pem.as_bytes(), true)?;
    }
    for p in missing_principals {
        let ck = ca.member_client(p.member, p.subject)?;
        let dir = layout.bundle(p.bundle);
        write(&dir.join("cert.pem"), ck.cert_pem.as_bytes(), false)?;
        write(&dir.join("key.pem"), ck.key_pem.as_bytes(), true)?;
    }
    Ok(())
}

/// The `[roles]`, `[rate_limits]` and `[audit]` tables of the dev policy.
pub const DEV_POLICY_RULES: &str = r#"
# Which roles may call which RPCs ("package.Service/Method" or "package.Service/*").
[roles]
reporter = [
  "orex.sharing.v1.SharingService/PublishReport",
  "orex.sharing.v1.SharingService/AmendReport",
  "orex.sharing.v1.SharingService/ResolveReport",
  "orex.sharing.v1.SharingService/RetractReport",
]
reader = [
  "orex.sharing.v1.SharingService/GetReport",
  "orex.sharing.v1.SharingService/ListReports",
  "orex.sharing.v1.SharingService/ListReportVersions",
  "orex.sharing.v1.SharingService/SubscribeReports",
]
analyst = [
  "orex.risk.v1.RiskService/*",
  "orex.emergency.v1.EmergencyService/ListStockpiles",
  "orex.emergency.v1.EmergencyService/GetCase",
  "orex.emergency.v1.EmergencyService/ListCases",
  "orex.emergency.v1.EmergencyService/SubscribeCaseEvents",
]
coordinator = ["orex.emergency.v1.EmergencyService/*"]
auditor = ["orex.audit.v1.AuditService/*"]
admin = []

# Token buckets per member and class of call; members without an entry use the default.
[rate_limits.default]
read = { per_minute = 6000, burst = 1000 }
write = { per_minute = 1200, burst = 200 }
stream = { per_minute = 600, burst = 100 }
open_streams = 50

# Principals who audit the whole partnership; other auditors see their own member only.
[audit]
partnership_auditors = ["US/oversight"]
"#;

/// The policy text of the dev partnership.
pub fn policy_text() -> String {
    let mut s = String::from(
        "# The development partnership. The same format drives production and Kubernetes.\n",
    );
    s.push_str(DEV_POLICY_RULES);
    for m in DEMO_MEMBERS {
        s.push_str(&format!(
            "\n[[members]]\ncode = \"{}\"\nname = \"{}\"\nkind = \"{}\"\nfounding = {}\n",
            m.code, m.name, m.kind, m.founding
        ));
        if let Some(b) = m.bloc {
            s.push_str(&format!("bloc = \"{b}\"\n"));
        }
        s.push_str(&format!(
            "\n[[members.issuers]]\nissuer = \"{}\"\npublic_key = \"../issuers/{}.pub.pem\"\nalgorithms = [\"EdDSA\"]\n",
            DevLayout::issuer_name(m.code),
            m.code
        ));
    }
    s
}

/// The gateway's `[backends.risk]` table.
fn risk_backend(port: u16) -> String {
    format!(
        r#"
[backends.risk]
address = "https://127.0.0.1:{port}"
server_name = "risk"
"#
    )
}

/// The risk service's `[emergency]` table.
fn emergency_source(port: u16) -> String {
    format!(
        r#"
# Scenarios read stockpiles here as the workload `risk` (emergency.toml lists it in
# reader_workloads; figures of CLEAR and GREEN reports only), waiting at most timeout_ms.
[emergency]
address = "https://127.0.0.1:{port}"
server_name = "emergency"
timeout_ms = 2000
"#
    )
}

/// The gateway's `[backends.emergency]` table.
fn emergency_backend(port: u16) -> String {
    format!(
        r#"
[backends.emergency]
address = "https://127.0.0.1:{port}"
server_name = "emergency"
"#
    )
}

/// Writes each config file that is missing; a gateway.toml without a risk
/// or emergency backend (from an older `orex up`) gains one.
fn write_missing_configs(layout: &DevLayout, ports: Ports) -> Result<(), CliError> {
    let missing = |f: &str| !layout.config(f).is_file();
    if missing("policy.toml") {
        write(
            &layout.config("policy.toml"),
            policy_text().as_bytes(),
            false,
        )?;
    }
    if missing("reference.toml") {
        write(
            &layout.config("reference.toml"),
            SHIPPED_REFERENCE_DATA.as_bytes(),
            false,
        )?;
    }
    // The sharing port as the existing config says, for the risk service.
    let sharing_port = if missing("sharing.toml") {
        ports.sharing
    } else {
        orex_sharing::SharingConfig::load(&layout.config("sharing.toml"))?
            .listen
            .port()
    };
    let risk_port = if missing("risk.toml") {
        ports.risk
    } else {
        orex_risk::RiskConfig::load(&layout.config("risk.toml"))?
            .listen
            .port()
    };
    let emergency_port = if missing("emergency.toml") {
        ports.emergency
    } else {
        orex_emergency::EmergencyConfig::load(&layout.config("emergency.toml"))?
            .listen
            .port()
    };
    if missing("emergency.toml") {
        let emergency = format!(
            r#"# The emergency service of the dev stack (env overrides: OREX_EMERGENCY__<FIELD>).
listen = "127.0.0.1:{emergency_port}"
data_dir = "../data/emergency"
policy = "policy.toml"
# Consumption for members that withhold their figures; reloaded when it changes.
reference_data = "reference.toml"
allowed_workloads = ["gateway"]
# Workloads that list stockpiles as themselves (figures of CLEAR and GREEN reports only).
reader_workloads = ["risk"]

[tls]
ca = "../pki/ca.pem"
cert = "../pki/workloads/emergency.pem"
key = "../pki/workloads/emergency.key.pem"

# The activation rule: every founding party approves and a majority of the other voting
# parties do ("all", "majority", "none" or a fraction such as "2/3"); a declaration's voting
# deadline may be at most max_voting_hours away.
[voting]
founding = "all"
others = "majority"
max_voting_hours = 168

# Case event streams: events buffered per stream, and how long a full buffer may stay unread.
[streams]
buffer_events = 64
slow_consumer_seconds = 30

[store]
cache_mib = 16
"#
        );
        write(
            &layout.config("emergency.toml"),
            emergency.as_bytes(),
            false,
        )?;
    }
    if missing("risk.toml") {
        let risk = format!(
            r#"# The risk service of the dev stack (env overrides: OREX_RISK__<FIELD>).
listen = "127.0.0.1:{risk_port}"
data_dir = "../data/risk"
policy = "policy.toml"
# The partnership's reference data (sources cited in the file); reloaded when it changes.
reference_data = "reference.toml"
allowed_workloads = ["gateway"]

[tls]
ca = "../pki/ca.pem"
cert = "../pki/workloads/risk.pem"
key = "../pki/workloads/risk.key.pem"

# SR at or above `threshold` is high supply risk (the EU method's 1.0); dependence on one
# supplier outside the partnership above `dependence_ceiling` is flagged (CRMA's 0.65).
[assessment]
threshold = 1.0
dependence_ceiling = 0.65

# Live disruptions: the sharing service's report stream, followed as the workload `risk`
# (sharing.toml lists it in reader_workloads; it sees CLEAR and GREEN reports only).
[sharing]
address = "https://127.0.0.1:{sharing_port}"
server_name = "sharing"
# Reports in force are re-read this often: one narrowed below GREEN stops moving scores.
recheck_seconds = 60

{emergency_source}
# Alert streams: events buffered per stream, and how long a full buffer may stay unread.
[streams]
buffer_events = 64
slow_consumer_seconds = 30

[store]
cache_mib = 16
"#,
            emergency_source = emergency_source(emergency_port),
        );
        write(&layout.config("risk.toml"), risk.as_bytes(), false)?;
    } else {
        // Older folders: scenarios read stockpiles from the emergency service.
        let path = layout.config("risk.toml");
        let text = String::from_utf8_lossy(&read(&path)?).into_owned();
        if !text.contains("[emergency]") {
            write(
                &path,
                (text + &emergency_source(emergency_port)).as_bytes(),
                false,
            )?;
        }
    }
    if !missing("sharing.toml") {
        // Older folders: let the risk service read the report stream.
        let path = layout.config("sharing.toml");
        let text = String::from_utf8_lossy(&read(&path)?).into_owned();
        let line = "allowed_workloads = [\"gateway\"]\n";
        if !text.contains("reader_workloads") && text.contains(line) {
            let patched = text.replacen(line, &format!("{line}reader_workloads = [\"risk\"]\n"), 1);
            write(&path, patched.as_bytes(), false)?;
        }
    }
    if !missing("gateway.toml") {
        let path = layout.config("gateway.toml");
        let text = String::from_utf8_lossy(&read(&path)?).into_owned();
        let mut text = text;
        if !text.contains("[backends.risk]") {
            text += &risk_backend(risk_port);
            write(&path, text.as_bytes(), false)?;
        }
        if !text.contains("[backends.emergency]") {
            write(
                &path,
                (text + &emergency_backend(emergency_port)).as_bytes(),
                false,
            )?;
        }
    }
    if !missing("policy.toml") {
        // Older folders: analysts read stockpiles and cases too.
        let path = layout.config("policy.toml");
        let text = String::from_utf8_lossy(&read(&path)?).into_owned();
        let old = "analyst = [\"orex.risk.v1.RiskService/*\"]";
        if text.contains(old) {
            let new = DEV_POLICY_RULES
                .lines()
                .skip_while(|l| !l.starts_with("analyst = ["))
                .take_while(|l| !l.starts_with("coordinator"))
                .collect::<Vec<_>>()
                .join("\n");
            write(&path, text.replacen(old, &new, 1).as_bytes(), false)?;
        }
    }
    if !missing("sharing.toml") && !missing("gateway.toml") {
        return Ok(());
    }
    let sharing = format!(
        r#"# The sharing service of the dev stack (env overrides: OREX_SHARING__<FIELD>).
listen = "127.0.0.1:{sharing}"
data_dir = "../data/sharing"
policy = "policy.toml"
allowed_workloads = ["gateway"]
# Workloads that read the report stream as themselves (CLEAR and GREEN reports only).
reader_workloads = ["risk"]

[tls]
ca = "../pki/ca.pem"
cert = "../pki/workloads/sharing.pem"
key = "../pki/workloads/sharing.key.pem"

# Report streams: events buffered per stream, and how long a full buffer may
# stay unread before the stream ends with RESOURCE_EXHAUSTED (resumable).
[streams]
buffer_events = 64
slow_consumer_seconds = 30

# sled's page cache: the service's memory is bounded by this, not by its data.
[store]
cache_mib = 64
"#,
        sharing = sharing_port
    );
    if missing("sharing.toml") {
        write(&layout.config("sharing.toml"), sharing.as_bytes(), false)?;
    }
    let gateway = format!(
        r#"# The gateway of the dev stack (env overrides: OREX_GATEWAY__<FIELD>).
listen = "127.0.0.1:{gateway}"
policy = "policy.toml"

[tls]
ca = "../pki/ca.pem"
cert = "../pki/workloads/gateway.pem"
key = "../pki/workloads/gateway.key.pem"

[tokens]
audience = "{DEV_AUDIENCE}"
leeway_seconds = 30

[backends.sharing]
address = "https://127.0.0.1:{sharing}"
server_name = "sharing"
{risk_backend}{emergency_backend}
[audit]
data_dir = "../data/gateway"
signing_key = "../pki/audit-signing.key.pem"
key_id = "orex-dev-audit-1"
log_id = "orex-gateway/dev"
checkpoint_every_records = 1000
checkpoint_interval_seconds = 10
cache_mib = 16

# Member streams: events buffered per stream, and how long a full buffer may
# stay unread before the stream ends with RESOURCE_EXHAUSTED (resumable).
[streams]
buffer_events = 64
slow_consumer_seconds = 30

# Load shedding: calls in flight at once (open streams excluded); above these
# a call is refused at once with RESOURCE_EXHAUSTED and recorded.
[load]
max_in_flight = 512
max_in_flight_per_member = 256
"#,
        gateway = ports.gateway,
        sharing = sharing_port,
        risk_backend = risk_backend(risk_port),
        emergency_backend = emergency_backend(emergency_port),
    );
    if missing("gateway.toml") {
        write(&layout.config("gateway.toml"), gateway.as_bytes(), false)?;
    }
    Ok(())
}

fn write_bundles(layout: &DevLayout, gateway_port: u16) -> Result<(), CliError> {
    let ca = read(&layout.ca_cert())?;
    for p in DEMO_PRINCIPALS {
        let dir = layout.bundle(p.bundle);
        write(&dir.join("ca.pem"), &ca, false)?;
        let file = BundleFile {
            gateway: format!("https://127.0.0.1:{gateway_port}"),
            server_name: "gateway".into(),
            member: p.member.into(),
            subject: p.subject.into(),
            roles: p.roles.iter().map(|r| r.to_string()).collect(),
            issuer: DevLayout::issuer_name(p.member),
            audience: DEV_AUDIENCE.into(),
        };
        file.write(&dir)?;
        refresh_token(layout, &dir, DEV_TOKEN_TTL)?;
    }
    Ok(())
}

/// Mints a fresh token for the bundle in `dir` with its member's dev issuer
/// key and writes it to `token.jwt`. Returns the token.
pub fn refresh_token(layout: &DevLayout, dir: &Path, ttl: Duration) -> Result<String, CliError> {
    let file = BundleFile::read(dir)?;
    let cert = String::from_utf8_lossy(&read(&dir.join("cert.pem"))?).into_owned();
    let (issuer_key, _) = layout.issuer_keys(&file.member);
    let issuer_key = String::from_utf8_lossy(&read(&issuer_key)?).into_owned();
    let token = mint(
        &TokenSpec {
            issuer: &file.issuer,
            audience: &file.audience,
            subject: &file.subject,
            roles: &file.roles,
            cert_pem: &cert,
            ttl,
            not_before_offset: 0,
        },
        &issuer_key,
    )?;
    write(&dir.join("token.jwt"), token.as_bytes(), true)?;
    Ok(token)
}

/// Checks the sharing service's config, policy, TLS files and store, then
/// starts it on `listener`. A bad setup is an error here, not in the task.
pub fn spawn_sharing(
    layout: &DevLayout,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<JoinHandle<Result<(), KitError>>, CliError> {
    let config = orex_sharing::SharingConfig::load(&layout.config("sharing.toml"))?;
    let prepared = orex_sharing::prepare(config)?;
    Ok(tokio::spawn(prepared.serve(listener, shutdown)))
}

/// Checks the risk service's config, policy, reference data, TLS files and
/// store, then starts it on `listener`.
pub fn spawn_risk(
    layout: &DevLayout,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<
    (
        JoinHandle<Result<(), KitError>>,
        orex_risk::ReferenceReloader,
    ),
    CliError,
> {
    let config = orex_risk::RiskConfig::load(&layout.config("risk.toml"))?;
    let prepared = orex_risk::prepare(config)?;
    let reloader = prepared.reloader();
    Ok((tokio::spawn(prepared.serve(listener, shutdown)), reloader))
}

/// Checks the emergency service's config, policy, reference data, TLS
/// files and store, then starts it on `listener`.
pub fn spawn_emergency(
    layout: &DevLayout,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<JoinHandle<Result<(), KitError>>, CliError> {
    let config = orex_emergency::EmergencyConfig::load(&layout.config("emergency.toml"))?;
    let prepared = orex_emergency::prepare(config)?;
    Ok(tokio::spawn(prepared.serve(listener, shutdown)))
}

/// A running gateway's handles on its policy and access log.
#[derive(Debug, Clone)]
pub struct GatewayHandles {
    /// The policy in force (reload it after editing `policy.toml`).
    pub policy: orex_gateway::policy::PolicyHandle,
    /// The access log.
    pub audit: orex_gateway::audit::AuditLog,
}

/// Checks the gateway's config, policy, issuer keys, TLS files and access
/// log, then starts it on `listener`.
pub fn spawn_gateway(
    layout: &DevLayout,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(JoinHandle<Result<(), KitError>>, GatewayHandles), CliError> {
    let config = orex_gateway::GatewayConfig::load(&layout.config("gateway.toml"))?;
    let prepared = orex_gateway::prepare(config)?;
    let handles = GatewayHandles {
        policy: prepared.policy(),
        audit: prepared.audit(),
    };
    Ok((tokio::spawn(prepared.serve(listener, shutdown)), handles))
}

/// Binds a local port, naming it on failure.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, CliError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| CliError::Io {
            path: PathBuf::from(addr.to_string()),
            source,
        })
}

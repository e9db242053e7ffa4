//! The Kubernetes manifests run: the dev overlay is rendered with `kubectl
//! kustomize`, and the real binaries start on the config files of its
//! ConfigMaps, each in a folder laid out like its pod's filesystem (every
//! volume mounted where the StatefulSet mounts it, with the files and modes
//! the ConfigMaps, cert-manager's Secrets and the PVCs give it) and with the
//! environment the StatefulSet sets. Only what cannot be the same on a test
//! machine is overridden, through the documented `OREX_<BINARY>__<KEY>`
//! variables: listen addresses (127.0.0.1, free ports), backend addresses
//! (the Service they name, resolved to the local port of the pod behind
//! it), and absolute paths (to the same path under the pod's folder, and
//! only when a volume of the pod is mounted there).
//!
//! Workload certificates are issued exactly as the Certificate resources
//! describe them (DNS names, URI SANs, usages, PKCS#8 ECDSA P-256) from a
//! development CA; member bundles, issuer keys and the access-log signing
//! key come from `orex up`'s dev folder, as k8s/README.md tells operators
//! to do in dev. Then a member publishes and reads back a report through
//! the gateway, the risk service's score moves with it (risk → sharing), a
//! scenario reads a stockpile (risk → emergency), and every ops port
//! answers SERVING — so the manifests and the code cannot drift apart.
//!
//! The same run checks the rest of what operators apply: every `orex_*`
//! metric (and label) the Grafana dashboard and the alert rules of
//! `k8s/monitoring` name is one the running binaries export on `GET
//! /metrics`, and each container of the backup CronJob (`k8s/backup`) takes
//! a real backup of its server with its own arguments and the `backup`
//! certificate its Certificate describes, which then restores (and, for the
//! gateway, verifies). Beside it, for every overlay: the ServiceMonitor
//! reaches each pod once, and the CronJob backs up each pod's store once,
//! as a workload every server admits, through the NetworkPolicies.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use orex_cli::bundle::Connection;
use orex_cli::commands::admin;
use orex_cli::devstack::{self, DEMO_MEMBERS, DevLayout, Ports};
use orex_e2e::procs::{Proc, free_port, scrape};
use orex_e2e::{content, publish, within};
use orex_proto::common::v1::{Marking, Mineral, Stage};
use orex_proto::emergency::v1::{
    ReportStockpileRequest, StockpileContent, StockpileFigures, stockpile_content,
};
use orex_proto::risk::v1::{
    GetSupplyRiskRequest, RunScenarioRequest, Scenario, StockpileAvailability,
};
use orex_proto::sharing::v1::{Category, GetReportRequest, ReportContent, SubscribeReportsRequest};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use yaml_rust2::{Yaml, YamlLoader};

/// The overlay whose ConfigMaps the binaries run on.
const OVERLAY: &str = "k8s/overlays/dev";

/// Objects the overlay expects the operator to create (k8s/README.md,
/// "Manifests"), and what this test puts in them.
const OPERATOR_CONFIGMAP_ISSUERS: &str = "orex-member-issuers";
const OPERATOR_SECRET_SIGNING_KEY: &str = "orex-audit-signing";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

/// The rendered overlay: every object, as kubectl would be handed it.
struct Manifests {
    docs: Vec<Yaml>,
}

impl Manifests {
    fn render(overlay: &str) -> Manifests {
        let out = std::process::Command::new("kubectl")
            .arg("kustomize")
            .arg(repo_root().join(overlay))
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run `kubectl kustomize {overlay}` ({e}): this test renders the \
                     manifests with kubectl (kustomize built in, works offline); install kubectl"
                )
            });
        assert!(
            out.status.success(),
            "kubectl kustomize {overlay} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).expect("UTF-8 YAML");
        let docs = YamlLoader::load_from_str(&text)
            .expect("kubectl kustomize printed YAML")
            .into_iter()
            .filter(|d| !d.is_null())
            .collect();
        Manifests { docs }
    }

    fn all(&self, kind: &str) -> impl Iterator<Item = &Yaml> + use<'_> {
        let kind = kind.to_owned();
        self.docs.iter().filter(move |d| str_of(&d["kind"]) == kind)
    }

    fn get(&self, kind: &str, name: &str) -> Option<&Yaml> {
        self.all(kind)
            .find(|d| str_of(&d["metadata"]["name"]) == name)
    }

    /// A ConfigMap's files.
    fn config_map(&self, name: &str) -> Option<BTreeMap<String, String>> {
        let cm = self.get("ConfigMap", name)?;
        Some(
            hash(&cm["data"])
                .map(|(k, v)| (k.to_owned(), str_of(v).to_owned()))
                .collect(),
        )
    }

    /// The ConfigMap generated as `prefix` (its name may carry a hash).
    fn config_map_named(&self, prefix: &str) -> BTreeMap<String, String> {
        let name = self
            .all("ConfigMap")
            .map(|d| str_of(&d["metadata"]["name"]))
            .find(|n| *n == prefix || n.strip_prefix(prefix).is_some_and(|r| r.starts_with('-')))
            .unwrap_or_else(|| panic!("no ConfigMap {prefix} in {OVERLAY}"));
        self.config_map(name).unwrap()
    }

    /// The Certificate whose Secret is `secret`.
    fn certificate_for(&self, secret: &str) -> Option<&Yaml> {
        self.all("Certificate")
            .find(|c| str_of(&c["spec"]["secretName"]) == secret)
    }
}

fn str_of(y: &Yaml) -> &str {
    y.as_str().unwrap_or("")
}

fn vec_of(y: &Yaml) -> &[Yaml] {
    y.as_vec().map(Vec::as_slice).unwrap_or(&[])
}

fn hash(y: &Yaml) -> impl Iterator<Item = (&str, &Yaml)> {
    y.as_hash()
        .into_iter()
        .flat_map(|h| h.iter())
        .map(|(k, v)| (str_of(k), v))
}

fn strings(y: &Yaml) -> Vec<String> {
    vec_of(y).iter().map(|s| str_of(s).to_owned()).collect()
}

fn port_of(y: &Yaml) -> u16 {
    y.as_i64()
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or_else(|| panic!("not a port: {y:?}"))
}

/// What each binary's pod is, read from its StatefulSet.
struct Pod {
    /// The StatefulSet's name (`gateway`); the pod is `<name>-0`.
    name: String,
    /// `orex-gateway`.
    binary: String,
    /// The config file as the pod sees it (`/etc/orex/config/gateway.toml`).
    config: String,
    /// The parsed config (from the ConfigMap behind that path).
    toml: toml::Table,
    /// The container's port numbers by name (`grpc`, `ops`).
    ports: BTreeMap<String, u16>,
    /// The pod template's labels.
    labels: BTreeMap<String, String>,
    /// The readiness probe's gRPC health service ("" for the whole server).
    ready_service: String,
    /// This test's stand-ins for its listen and ops addresses.
    local_listen: SocketAddr,
    local_ops: SocketAddr,
    /// The folder standing for the pod's filesystem root.
    root: PathBuf,
    sts: Yaml,
}

impl Pod {
    fn container(&self) -> &Yaml {
        let containers = vec_of(&self.sts["spec"]["template"]["spec"]["containers"]);
        assert_eq!(containers.len(), 1, "{}: one container", self.name);
        &containers[0]
    }

    /// The volume mounted at the longest mount path that contains `path`,
    /// with that mount path.
    fn volume_at(&self, path: &str) -> Option<(String, &Yaml)> {
        let mounts = vec_of(&self.container()["volumeMounts"]);
        let mount = mounts
            .iter()
            .filter(|m| {
                let at = str_of(&m["mountPath"]);
                path == at || path.starts_with(&format!("{}/", at.trim_end_matches('/')))
            })
            .max_by_key(|m| str_of(&m["mountPath"]).len())?;
        let name = str_of(&mount["name"]);
        let volume = vec_of(&self.sts["spec"]["template"]["spec"]["volumes"])
            .iter()
            .find(|v| str_of(&v["name"]) == name);
        let volume = volume.unwrap_or_else(|| {
            // A volumeClaimTemplate: `{ persistentVolumeClaim: template }`.
            vec_of(&self.sts["spec"]["volumeClaimTemplates"])
                .iter()
                .find(|t| str_of(&t["metadata"]["name"]) == name)
                .unwrap_or_else(|| panic!("{}: volume {name} is not defined", self.name))
        });
        Some((str_of(&mount["mountPath"]).to_owned(), volume))
    }

    fn is_claim(&self, volume: &Yaml) -> bool {
        volume["spec"]["accessModes"].as_vec().is_some()
    }

    /// Where `path` (absolute, as the pod sees it) is in the pod's folder.
    fn local(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }
}

fn pod(m: &Manifests, sts: &Yaml, base: &Path) -> Pod {
    let name = str_of(&sts["metadata"]["name"]).to_owned();
    let container = &vec_of(&sts["spec"]["template"]["spec"]["containers"])[0];
    let command = strings(&container["command"]);
    let args = [command, strings(&container["args"])].concat();
    let binary = Path::new(&args[0])
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_else(|| panic!("{name}: command {args:?}"))
        .to_owned();
    assert!(
        args[0].starts_with("/usr/local/bin/"),
        "{name}: the image holds the binaries in /usr/local/bin, not {}",
        args[0]
    );
    let config = match args.iter().position(|a| a == "--config") {
        Some(i) => args[i + 1].clone(),
        None => panic!("{name}: no --config in {args:?}"),
    };
    let ports = vec_of(&container["ports"])
        .iter()
        .map(|p| (str_of(&p["name"]).to_owned(), port_of(&p["containerPort"])))
        .collect();
    let labels = hash(&sts["spec"]["template"]["metadata"]["labels"])
        .map(|(k, v)| (k.to_owned(), str_of(v).to_owned()))
        .collect();
    let mut p = Pod {
        ready_service: str_of(&container["readinessProbe"]["grpc"]["service"]).to_owned(),
        name: name.clone(),
        binary,
        config: config.clone(),
        toml: toml::Table::new(),
        ports,
        labels,
        local_listen: SocketAddr::from(([127, 0, 0, 1], free_port())),
        local_ops: SocketAddr::from(([127, 0, 0, 1], free_port())),
        root: base.join("pods").join(&name),
        sts: sts.clone(),
    };
    // The config file comes from the ConfigMap mounted over its folder.
    let (at, volume) = p
        .volume_at(&config)
        .unwrap_or_else(|| panic!("{name}: --config {config} is on no volume"));
    let cm = str_of(&volume["configMap"]["name"]);
    let file = config[at.len()..].trim_start_matches('/');
    let text = m
        .config_map(cm)
        .and_then(|d| d.get(file).cloned())
        .unwrap_or_else(|| panic!("{name}: ConfigMap {cm} (at {at}) has no {file}"));
    p.toml = text
        .parse()
        .unwrap_or_else(|e| panic!("{name}: {file} is not TOML: {e}"));
    p
}

/// One issued workload certificate: the Secret's files.
fn issue(
    cert: &Yaml,
    ca: &rcgen::Issuer<'_, rcgen::KeyPair>,
    ca_pem: &str,
) -> Vec<(String, String)> {
    let name = str_of(&cert["metadata"]["name"]);
    let spec = &cert["spec"];
    let key = &spec["privateKey"];
    assert_eq!(
        (
            str_of(&key["algorithm"]),
            key["size"].as_i64(),
            str_of(&key["encoding"])
        ),
        ("ECDSA", Some(256), "PKCS8"),
        "Certificate {name}: the kit reads PKCS#8 keys; the dev PKI is ECDSA P-256"
    );
    let mut params = rcgen::CertificateParams::new(strings(&spec["dnsNames"])).unwrap();
    for uri in strings(&spec["uris"]) {
        params
            .subject_alt_names
            .push(rcgen::SanType::URI(uri.as_str().try_into().unwrap()));
    }
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    for usage in strings(&spec["usages"]) {
        match usage.as_str() {
            "digital signature" => params
                .key_usages
                .push(rcgen::KeyUsagePurpose::DigitalSignature),
            "server auth" => params
                .extended_key_usages
                .push(rcgen::ExtendedKeyUsagePurpose::ServerAuth),
            "client auth" => params
                .extended_key_usages
                .push(rcgen::ExtendedKeyUsagePurpose::ClientAuth),
            other => panic!("Certificate {name}: usage {other:?} unknown to this test"),
        }
    }
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = params.signed_by(&key, ca).unwrap();
    vec![
        ("tls.crt".into(), cert.pem()),
        ("tls.key".into(), key.serialize_pem()),
        ("ca.crt".into(), ca_pem.to_owned()),
    ]
}

/// Writes a ConfigMap or Secret volume's files as the kubelet does: the
/// listed items (or every key) with their modes (or the default mode).
fn project(dir: &Path, files: &[(String, String)], source: &Yaml) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    let default_mode = source["defaultMode"].as_i64().unwrap_or(0o644) as u32;
    let items = vec_of(&source["items"]);
    let chosen: Vec<(String, String, u32)> = if items.is_empty() {
        files
            .iter()
            .map(|(k, v)| (k.clone(), v.clone(), default_mode))
            .collect()
    } else {
        items
            .iter()
            .map(|i| {
                let key = str_of(&i["key"]);
                let text = files
                    .iter()
                    .find(|(k, _)| k == key)
                    .unwrap_or_else(|| panic!("volume item {key} is not in its source"))
                    .1
                    .clone();
                let mode = i["mode"].as_i64().map(|m| m as u32).unwrap_or(default_mode);
                (str_of(&i["path"]).to_owned(), text, mode)
            })
            .collect()
    };
    for (path, text, mode) in chosen {
        let file = dir.join(path);
        std::fs::write(&file, text).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

/// Expands `$(VAR)` references as the kubelet does, from earlier variables.
fn expand(value: &str, env: &[(String, String)]) -> String {
    let mut out = value.to_owned();
    for (k, v) in env {
        out = out.replace(&format!("$({k})"), v);
    }
    out
}

/// `OREX_GATEWAY__AUDIT__SIGNING_KEY` for `audit.signing_key` of orex-gateway.
fn env_key(binary: &str, key: &[String]) -> String {
    let prefix = binary.trim_start_matches("orex-").to_uppercase();
    format!("OREX_{prefix}__{}", key.join("__").to_uppercase())
}

/// A report that moves US gallium's score: a GREEN severity-5 Chinese
/// export restriction on gallium processing.
fn restriction() -> ReportContent {
    ReportContent {
        mineral: Mineral::Gallium as i32,
        stage: Stage::Processing as i32,
        category: Category::ExportRestriction as i32,
        severity: 5,
        volume_impact_tonnes_per_month: 0.0,
        summary: "Export licensing of primary gallium".into(),
        ..content(Marking::Green, &[], &[])
    }
}

async fn wait_serving(pod: &Pod, proc: &mut Proc) {
    let services = [String::new(), pod.ready_service.clone()];
    within(60, async {
        'retry: loop {
            proc.assert_running();
            tokio::time::sleep(Duration::from_millis(100)).await;
            let Ok(channel) =
                tonic::transport::Endpoint::from_shared(format!("http://{}", pod.local_ops))
                    .unwrap()
                    .connect()
                    .await
            else {
                continue;
            };
            let mut health = HealthClient::new(channel);
            for service in &services {
                let answer = health
                    .check(HealthCheckRequest {
                        service: service.clone(),
                    })
                    .await;
                if !answer.is_ok_and(|a| a.into_inner().status() == ServingStatus::Serving) {
                    continue 'retry;
                }
            }
            return;
        }
    })
    .await
}

/// The metric names a `/metrics` answer exports, as a query names them:
/// every sample's name, and for each declared family the names its samples
/// take (a counter `x` as `x_total`, a histogram as `x_bucket`, `x_sum`,
/// `x_count`), so a family without samples yet (no refusal so far) counts.
/// Also every label name seen.
fn exported(exposition: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut names = BTreeSet::new();
    let mut labels = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(declared) = line.strip_prefix("# TYPE ") {
            let mut words = declared.split_whitespace();
            let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                continue;
            };
            names.insert(name.to_owned());
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                "summary" => &["_sum", "_count"],
                _ => &[],
            };
            names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
        } else if line.starts_with("orex_") {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_owned());
            if let Some(set) = line[end..].strip_prefix('{') {
                let set = &set[..set.rfind('}').unwrap_or(set.len())];
                labels.extend(label_names_matched(set));
            }
        }
    }
    (names, labels)
}

/// The label names in a selector or label set (`a="x", b=~"y"`).
fn label_names_matched(set: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_string = false;
    let mut escaped = false;
    let mut word = String::new();
    for c in set.chars() {
        if in_string {
            match (escaped, c) {
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => escaped = false,
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                word.clear();
            }
            '=' | '!' | '~' => {
                if !word.trim().is_empty() {
                    names.push(word.trim().to_owned());
                }
                word.clear();
            }
            ',' => word.clear(),
            c => word.push(c),
        }
    }
    names
}

/// The `orex_*` metric names a text refers to (PromQL, JSON, YAML).
fn orex_metrics_named(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let bytes = text.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while let Some(at) = text[i..].find("orex_") {
        let start = i + at;
        let mut end = start + "orex_".len();
        while end < bytes.len() && ident(bytes[end]) {
            end += 1;
        }
        if (start == 0 || !ident(bytes[start - 1])) && end > start + "orex_".len() {
            found.insert(text[start..end].to_owned());
        }
        i = end;
    }
    found
}

/// The label names PromQL text groups by, matches on, or prints in a
/// legend (`by (a, b)`, `{a="x"}`, `{{a}}`).
fn labels_used(promql: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for keyword in ["by (", "by(", "on (", "on(", "without ("] {
        for part in promql.split(keyword).skip(1) {
            let list = &part[..part.find(')').unwrap_or(part.len())];
            used.extend(
                list.split(',')
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned),
            );
        }
    }
    for part in promql.split("{{").skip(1) {
        if let Some(end) = part.find("}}") {
            used.insert(part[..end].trim().to_owned());
        }
    }
    let mut rest = promql;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        if let Some(legend) = after.strip_prefix('{') {
            rest = legend;
            continue;
        }
        let close = after.find('}').unwrap_or(after.len());
        used.extend(label_names_matched(&after[..close]));
        rest = &after[close..];
    }
    used
}

/// Labels Prometheus adds to every scraped series (the ServiceMonitor's
/// targets and its `workload` relabeling), rather than the binaries.
const TARGET_LABELS: [&str; 8] = [
    "namespace",
    "pod",
    "service",
    "job",
    "instance",
    "endpoint",
    "container",
    "workload",
];

/// The monitoring examples (not an overlay: they need the Prometheus
/// operator's CRDs).
const MONITORING: &str = "k8s/monitoring";

/// Every PromQL expression of the monitoring examples: the dashboard's
/// queries and variables, and the alert rules.
fn monitoring_queries(monitoring: &Manifests) -> Vec<(String, String)> {
    let mut queries = Vec::new();
    let dashboard = monitoring
        .all("ConfigMap")
        .find_map(|cm| cm["data"]["grafana-dashboard.json"].as_str())
        .expect("the dashboard's ConfigMap");
    let dashboard: serde_json::Value =
        serde_json::from_str(dashboard).expect("the dashboard is JSON");
    // Each query with the title of the panel (or the name of the
    // variable) it belongs to.
    let mut stack = vec![(&dashboard, String::new())];
    while let Some((v, within)) = stack.pop() {
        match v {
            serde_json::Value::Object(o) => {
                let within = match o.get("title").or(o.get("name")).and_then(|t| t.as_str()) {
                    Some(title) => title.to_owned(),
                    None => within,
                };
                for key in ["expr", "definition", "legendFormat"] {
                    if let Some(q) = o.get(key).and_then(|q| q.as_str()) {
                        queries.push((format!("dashboard {key} in {within:?}"), q.to_owned()));
                    }
                }
                stack.extend(o.values().map(|v| (v, within.clone())));
            }
            serde_json::Value::Array(a) => stack.extend(a.iter().map(|v| (v, within.clone()))),
            _ => {}
        }
    }
    for rule in monitoring.all("PrometheusRule") {
        for group in vec_of(&rule["spec"]["groups"]) {
            for r in vec_of(&group["rules"]) {
                let name = str_of(&r["alert"]);
                queries.push((format!("alert {name}"), str_of(&r["expr"]).to_owned()));
            }
        }
    }
    queries
}

/// One container of the backup CronJob: `orex admin backup …`.
#[derive(Debug)]
struct BackupRun {
    container: String,
    address: String,
    server_name: String,
    tls: String,
    out: String,
}

impl BackupRun {
    fn of(container: &Yaml) -> BackupRun {
        let name = str_of(&container["name"]).to_owned();
        assert_eq!(
            strings(&container["command"]),
            ["/usr/local/bin/orex"],
            "backup container {name}: the image's CLI"
        );
        let args = strings(&container["args"]);
        assert_eq!(
            args.get(..2),
            Some(&["admin".to_owned(), "backup".to_owned()][..]),
            "backup container {name}: {args:?}"
        );
        let mut flags: BTreeMap<&str, String> = BTreeMap::new();
        for pair in args[2..].chunks(2) {
            let [flag, value] = pair else {
                panic!("backup container {name}: {args:?} is not --flag value pairs");
            };
            let known = ["--address", "--server-name", "--tls", "--out"];
            assert!(
                known.contains(&flag.as_str()),
                "backup container {name}: {flag} is not a flag of `orex admin backup`"
            );
            assert!(
                flags.insert(flag, value.clone()).is_none(),
                "backup container {name}: {flag} twice"
            );
        }
        let mut get = |flag: &str| {
            flags
                .remove(flag)
                .unwrap_or_else(|| panic!("backup container {name}: no {flag}"))
        };
        BackupRun {
            address: get("--address"),
            server_name: get("--server-name"),
            tls: get("--tls"),
            out: get("--out"),
            container: name,
        }
    }

    /// The pod it backs up (`gateway-0`) and the StatefulSet that runs it,
    /// resolved as cluster DNS would: a Service name leads to the one pod
    /// of a one-replica StatefulSet, `<pod>.<headless Service>` to that pod.
    fn target<'m>(&self, m: &'m Manifests) -> (String, &'m Yaml) {
        let rest = self
            .address
            .strip_prefix("https://")
            .unwrap_or_else(|| panic!("{}: {} is not https://", self.container, self.address));
        let (host, port) = rest.rsplit_once(':').expect("host:port");
        let port: u16 = port.parse().unwrap();
        let host = host.strip_suffix(".cluster.local").unwrap_or(host);
        let host = host.strip_suffix(".orex.svc").unwrap_or(host);
        let (pod, service) = match host.split_once('.') {
            Some((pod, service)) => (Some(pod), service),
            None => (None, host),
        };
        let svc = m
            .get("Service", service)
            .unwrap_or_else(|| panic!("{}: no Service {service}", self.container));
        let svc_port = vec_of(&svc["spec"]["ports"])
            .iter()
            .find(|p| p["port"].as_i64() == Some(i64::from(port)))
            .unwrap_or_else(|| panic!("{}: Service {service} has no port {port}", self.container));
        assert_eq!(
            str_of(&svc_port["targetPort"]),
            "grpc",
            "{}: {} is not a service port",
            self.container,
            self.address
        );
        let selector: BTreeMap<&str, &str> = hash(&svc["spec"]["selector"])
            .map(|(k, v)| (k, str_of(v)))
            .collect();
        let selected: Vec<&Yaml> = m
            .all("StatefulSet")
            .filter(|s| {
                let labels = &s["spec"]["template"]["metadata"]["labels"];
                selector.iter().all(|(k, v)| str_of(&labels[*k]) == *v)
            })
            .collect();
        assert_eq!(
            selected.len(),
            1,
            "{}: Service {service} must select one StatefulSet",
            self.container
        );
        let sts = selected[0];
        let name = str_of(&sts["metadata"]["name"]);
        let replicas = sts["spec"]["replicas"].as_i64().unwrap_or(1);
        let pod = match pod {
            Some(pod) => {
                assert_eq!(
                    str_of(&sts["spec"]["serviceName"]),
                    service,
                    "{}: {pod}.{service} resolves only through the StatefulSet's serviceName",
                    self.container
                );
                assert_eq!(svc["spec"]["clusterIP"].as_str(), Some("None"));
                let index: i64 = pod
                    .strip_prefix(&format!("{name}-"))
                    .and_then(|i| i.parse().ok())
                    .unwrap_or_else(|| panic!("{}: {pod} is not a pod of {name}", self.container));
                assert!(
                    index < replicas,
                    "{}: {name} runs {replicas} replicas, not {pod}",
                    self.container
                );
                pod.to_owned()
            }
            None => {
                assert_eq!(
                    replicas,
                    1,
                    "{}: Service {service} leads to any of {name}'s {replicas} replicas; name one \
                     (<pod>.{}) — each keeps its own store",
                    self.container,
                    str_of(&sts["spec"]["serviceName"])
                );
                format!("{name}-0")
            }
        };
        // The name the CLI checks is one the server's certificate carries.
        let secret = vec_of(&sts["spec"]["template"]["spec"]["volumes"])
            .iter()
            .filter_map(|v| v["secret"]["secretName"].as_str())
            .find(|s| m.certificate_for(s).is_some())
            .unwrap_or_else(|| panic!("{name}: no Secret from a Certificate"));
        let cert = m.certificate_for(secret).unwrap();
        assert!(
            strings(&cert["spec"]["dnsNames"]).contains(&self.server_name),
            "{}: --server-name {} is not in {name}'s certificate",
            self.container,
            self.server_name
        );
        (pod, sts)
    }
}

/// The backup CronJob's pod template and its containers' runs.
fn backup_cronjob(m: &Manifests) -> (&Yaml, Vec<BackupRun>) {
    let cron = m
        .get("CronJob", "orex-backup")
        .expect("the CronJob orex-backup (k8s/backup, a component of every overlay)");
    assert_eq!(str_of(&cron["spec"]["concurrencyPolicy"]), "Forbid");
    let template = &cron["spec"]["jobTemplate"]["spec"]["template"];
    let spec = &template["spec"];
    assert_eq!(
        str_of(&spec["restartPolicy"]),
        "Never",
        "a retry must be a new pod: a new name, so new files"
    );
    assert!(
        vec_of(&spec["initContainers"]).is_empty(),
        "one container per store, side by side"
    );
    let runs = vec_of(&spec["containers"])
        .iter()
        .map(BackupRun::of)
        .collect();
    (template, runs)
}

/// A pod template's labels.
fn labels_of(template: &Yaml) -> BTreeMap<String, String> {
    hash(&template["metadata"]["labels"])
        .map(|(k, v)| (k.to_owned(), str_of(v).to_owned()))
        .collect()
}

/// Whether a label selector (matchLabels only) selects pods with `labels`.
fn selects(selector: &Yaml, labels: &BTreeMap<String, String>) -> bool {
    assert!(
        selector["matchExpressions"].is_badvalue(),
        "this test reads matchLabels only"
    );
    hash(&selector["matchLabels"])
        .all(|(k, v)| labels.get(k).map(String::as_str) == Some(str_of(v)))
}

/// Whether some NetworkPolicy of the namespace lets `subject`'s pods make
/// (`egress`) or take (`ingress`) a TCP connection to or from `peer`'s
/// pods in the same namespace on `port`.
fn network_allows(
    m: &Manifests,
    direction: &str,
    subject: &BTreeMap<String, String>,
    peer: &BTreeMap<String, String>,
    port: u16,
) -> bool {
    let peers_key = if direction == "ingress" { "from" } else { "to" };
    m.all("NetworkPolicy").any(|np| {
        let spec = &np["spec"];
        selects(&spec["podSelector"], subject)
            && vec_of(&spec["policyTypes"])
                .iter()
                .any(|t| str_of(t).eq_ignore_ascii_case(direction))
            && vec_of(&spec[direction]).iter().any(|rule| {
                let peers = vec_of(&rule[peers_key]);
                let peer_ok = peers.is_empty()
                    || peers.iter().any(|p| {
                        p["namespaceSelector"].is_badvalue()
                            && p["ipBlock"].is_badvalue()
                            && selects(&p["podSelector"], peer)
                    });
                let ports = vec_of(&rule["ports"]);
                let port_ok = ports.is_empty()
                    || ports.iter().any(|p| {
                        p["port"].as_i64() == Some(i64::from(port))
                            && str_of(&p["protocol"]) != "UDP"
                    });
                peer_ok && port_ok
            })
    })
}

/// The volume mounted at the longest mount path of `container` that
/// contains `path`, with that mount path, among the pod spec's volumes.
fn mount_for<'y>(spec: &'y Yaml, container: &'y Yaml, path: &str) -> Option<(String, &'y Yaml)> {
    let mount = vec_of(&container["volumeMounts"])
        .iter()
        .filter(|m| {
            let at = str_of(&m["mountPath"]);
            path == at || path.starts_with(&format!("{}/", at.trim_end_matches('/')))
        })
        .max_by_key(|m| str_of(&m["mountPath"]).len())?;
    let name = str_of(&mount["name"]);
    let volume = vec_of(&spec["volumes"])
        .iter()
        .find(|v| str_of(&v["name"]) == name)?;
    Some((str_of(&mount["mountPath"]).to_owned(), volume))
}

#[test]
fn the_dev_overlay_carries_the_shipped_reference_data_and_orex_ups_policy() {
    // kustomize reads nothing outside the kustomization's folder: the copy
    // must stay the shipped file, byte for byte.
    let copy = std::fs::read(repo_root().join("k8s/base/config/reference.toml")).unwrap();
    assert!(
        copy == devstack::SHIPPED_REFERENCE_DATA.as_bytes(),
        "k8s/base/config/reference.toml differs from services/reference/data/reference.toml: \
         cp services/reference/data/reference.toml k8s/base/config/reference.toml"
    );
    let m = Manifests::render(OVERLAY);
    let partnership = m
        .config_map("orex-partnership")
        .expect("ConfigMap orex-partnership (fixed name: hot-reloaded in place)");
    assert!(
        partnership["reference.toml"] == devstack::SHIPPED_REFERENCE_DATA,
        "the rendered reference data differs from the shipped file"
    );
    assert!(
        partnership["policy.toml"] == devstack::policy_text(),
        "k8s/overlays/dev/config/policy.toml differs from the policy `orex up` writes \
         (cli/src/devstack.rs, policy_text)"
    );
    for name in ["gateway", "sharing", "risk", "emergency"] {
        let files = m.config_map_named(&format!("orex-{name}-config"));
        assert!(
            files.contains_key(&format!("{name}.toml")),
            "{name}: {files:?}"
        );
    }
}

/// The prod overlay's policy is a template with placeholders, but one the
/// gateway accepts as it stands once the issuer keys it names exist: an
/// operator replaces values, not the format.
#[test]
fn the_prod_overlays_policy_loads_in_the_gateway() {
    let m = Manifests::render("k8s/overlays/prod");
    let partnership = m
        .config_map("orex-partnership")
        .expect("ConfigMap orex-partnership");
    assert!(partnership["reference.toml"] == devstack::SHIPPED_REFERENCE_DATA);
    let dir = tempfile::tempdir().unwrap();
    // The pod's layout: /etc/orex/partnership/policy.toml, /etc/orex/issuers/.
    let policy = dir.path().join("partnership/policy.toml");
    std::fs::create_dir_all(policy.parent().unwrap()).unwrap();
    std::fs::create_dir_all(dir.path().join("issuers")).unwrap();
    std::fs::write(&policy, &partnership["policy.toml"]).unwrap();
    let table: toml::Table = partnership["policy.toml"].parse().unwrap();
    let members = table["members"].as_array().expect("[[members]]");
    assert!(!members.is_empty());
    for member in members {
        for issuer in member["issuers"].as_array().into_iter().flatten() {
            let key = issuer["public_key"].as_str().unwrap();
            assert!(
                key.starts_with("../issuers/"),
                "{key}: issuer keys come from the ConfigMap {OPERATOR_CONFIGMAP_ISSUERS}"
            );
            let pem = orex_cli::devpki::IssuerKeys::generate().unwrap().public_pem;
            std::fs::write(dir.path().join("partnership").join(key), pem).unwrap();
        }
    }
    let gateway: toml::Table = m.config_map_named("orex-gateway-config")["gateway.toml"]
        .parse()
        .unwrap();
    let audience = gateway["tokens"]["audience"].as_str().unwrap();
    orex_gateway::policy::PolicyHandle::load(policy, audience, 30)
        .unwrap_or_else(|e| panic!("k8s/overlays/prod/config/policy.toml: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binaries_serve_together_on_the_dev_overlays_configmaps() {
    let m = Manifests::render(OVERLAY);
    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();

    // Everything the dev overlay leaves to the operator comes from `orex
    // up`'s folder, as k8s/README.md says to do in dev.
    let pods: Vec<Pod> = m
        .all("StatefulSet")
        .map(|s| pod(&m, s, dir.path()))
        .collect();
    let gateway_port = pods
        .iter()
        .find(|p| p.binary == "orex-gateway")
        .expect("a gateway StatefulSet")
        .local_listen
        .port();
    let layout = DevLayout::new(dir.path().join("orex-dev"));
    devstack::init(
        &layout,
        Ports {
            gateway: gateway_port,
            sharing: free_port(),
            risk: free_port(),
            emergency: free_port(),
        },
    )
    .expect("dev folder");
    let ca = layout.ca().unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(
        &ca.cert_pem,
        rcgen::KeyPair::from_pem(&ca.key_pem).unwrap(),
    )
    .unwrap();
    let issuer_keys: Vec<(String, String)> = DEMO_MEMBERS
        .iter()
        .map(|mb| {
            let key = std::fs::read_to_string(layout.issuer_keys(mb.code).1).unwrap();
            (format!("{}.pub.pem", mb.code), key)
        })
        .collect();
    let signing_key = vec![(
        "signing.key.pem".to_owned(),
        std::fs::read_to_string(layout.audit_keys().0).unwrap(),
    )];

    // Services by name and port → the local address of the pod behind it.
    let mut services: BTreeMap<(String, u16), SocketAddr> = BTreeMap::new();
    for svc in m.all("Service") {
        let name = str_of(&svc["metadata"]["name"]);
        let selector: BTreeMap<&str, &str> = hash(&svc["spec"]["selector"])
            .map(|(k, v)| (k, str_of(v)))
            .collect();
        let Some(target) = pods.iter().find(|p| {
            selector
                .iter()
                .all(|(k, v)| p.labels.get(*k).map(String::as_str) == Some(*v))
        }) else {
            panic!("Service {name} selects no StatefulSet's pods");
        };
        for port in vec_of(&svc["spec"]["ports"]) {
            let target_port = match &port["targetPort"] {
                Yaml::String(named) => *target
                    .ports
                    .get(named)
                    .unwrap_or_else(|| panic!("Service {name}: no container port {named}")),
                other => port_of(other),
            };
            // A port named `ops` is for Prometheus (k8s/monitoring); every
            // other leads to the service port.
            let (to, local) = match str_of(&port["name"]) {
                "ops" => ("ops", target.local_ops),
                _ => ("grpc", target.local_listen),
            };
            assert_eq!(
                Some(&target_port),
                target.ports.get(to),
                "Service {name} port {}: must lead to {}'s {to} port",
                str_of(&port["name"]),
                target.name
            );
            services.insert((name.to_owned(), port_of(&port["port"])), local);
        }
    }

    // Each pod's filesystem, environment and overrides.
    let mut issued: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut plans = Vec::new();
    for p in &pods {
        let spec = &p.sts["spec"]["template"]["spec"];
        for mount in vec_of(&p.container()["volumeMounts"]) {
            let at = str_of(&mount["mountPath"]);
            let (_, volume) = p.volume_at(at).unwrap();
            let local = p.local(at);
            if let Some(cm) = volume["configMap"]["name"].as_str() {
                let files: Vec<(String, String)> = match m.config_map(cm) {
                    Some(d) => d.into_iter().collect(),
                    None if cm == OPERATOR_CONFIGMAP_ISSUERS => issuer_keys.clone(),
                    None => panic!(
                        "{}: ConfigMap {cm} is neither rendered nor documented",
                        p.name
                    ),
                };
                project(&local, &files, &volume["configMap"]);
            } else if let Some(secret) = volume["secret"]["secretName"].as_str() {
                let files = match m.certificate_for(secret) {
                    Some(cert) => issued
                        .entry(secret.to_owned())
                        .or_insert_with(|| issue(cert, &issuer, &ca.cert_pem))
                        .clone(),
                    None if secret == OPERATOR_SECRET_SIGNING_KEY => signing_key.clone(),
                    None => panic!(
                        "{}: Secret {secret} is neither issued nor documented",
                        p.name
                    ),
                };
                project(&local, &files, &volume["secret"]);
            } else if p.is_claim(volume) || volume["emptyDir"].as_hash().is_some() {
                std::fs::create_dir_all(&local).unwrap();
            } else {
                panic!(
                    "{}: volume at {at} of a kind this test does not know",
                    p.name
                );
            }
        }
        // The pod's own environment, as the kubelet resolves it.
        let pod_name = format!("{}-0", p.name);
        let mut env: Vec<(String, String)> = Vec::new();
        for var in vec_of(&p.container()["env"]) {
            let name = str_of(&var["name"]).to_owned();
            let value = if let Some(v) = var["value"].as_str() {
                expand(v, &env)
            } else {
                match str_of(&var["valueFrom"]["fieldRef"]["fieldPath"]) {
                    "metadata.name" => pod_name.clone(),
                    "metadata.namespace" => "orex".to_owned(),
                    other => panic!("{}: env {name} from {other:?}", p.name),
                }
            };
            env.push((name, value));
        }
        // Overrides for what differs on a test machine, found by walking
        // the config: listen addresses, backend addresses, absolute paths.
        let mut overrides = Vec::new();
        let mut stack: Vec<(Vec<String>, &toml::Value)> =
            p.toml.iter().map(|(k, v)| (vec![k.clone()], v)).collect();
        while let Some((key, value)) = stack.pop() {
            match value {
                toml::Value::Table(t) => stack.extend(t.iter().map(|(k, v)| {
                    let mut key = key.clone();
                    key.push(k.clone());
                    (key, v)
                })),
                toml::Value::String(s) => {
                    let last = key.last().unwrap().as_str();
                    let local = if last == "listen" {
                        let addr: SocketAddr = s.parse().unwrap();
                        let (port_name, local) = if key.len() == 1 {
                            ("grpc", p.local_listen)
                        } else {
                            assert_eq!(key, ["ops", "listen"], "{}: {key:?}", p.name);
                            ("ops", p.local_ops)
                        };
                        assert_eq!(
                            Some(&addr.port()),
                            p.ports.get(port_name),
                            "{}: {} listens on {addr}, the container port {port_name} differs",
                            p.name,
                            key.join(".")
                        );
                        local.to_string()
                    } else if last == "address" {
                        let rest = s.strip_prefix("https://").expect("https address");
                        let (host, port) = rest.rsplit_once(':').expect("host:port");
                        let target = services
                            .get(&(host.to_owned(), port.parse().unwrap()))
                            .unwrap_or_else(|| {
                                panic!("{}: {} = {s} names no Service port", p.name, key.join("."))
                            });
                        format!("https://{target}")
                    } else if s.starts_with('/') {
                        let (at, volume) = p.volume_at(s).unwrap_or_else(|| {
                            panic!(
                                "{}: {} = {s} is on no volume (the root filesystem is read-only \
                                 and holds only the binaries)",
                                p.name,
                                key.join(".")
                            )
                        });
                        if last == "data_dir" {
                            assert!(
                                p.is_claim(volume),
                                "{}: {} = {s} must be on the pod's PersistentVolumeClaim, not {at}",
                                p.name,
                                key.join(".")
                            );
                        }
                        p.local(s).display().to_string()
                    } else {
                        continue;
                    };
                    overrides.push((env_key(&p.binary, &key), local));
                }
                _ => {}
            }
        }
        if p.binary == "orex-gateway" {
            // Not a difference of the test machine: the test cannot wait the
            // configured 60 s for the first checkpoint, whose age the
            // dashboard and the alerts read.
            overrides.push((
                env_key(
                    &p.binary,
                    &["audit".into(), "checkpoint_interval_seconds".into()],
                ),
                "1".into(),
            ));
        }
        for (k, _) in &overrides {
            assert!(
                !env.iter().any(|(e, _)| e == k),
                "{}: the pod sets {k} itself",
                p.name
            );
        }
        // Probes read the ops port.
        let ops = p.ports.get("ops").copied();
        for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
            assert_eq!(
                p.container()[probe]["grpc"]["port"]
                    .as_i64()
                    .map(|v| v as u16),
                ops,
                "{}: {probe} must ask the ops port over gRPC",
                p.name
            );
        }
        assert_eq!(
            spec["securityContext"]["fsGroup"].as_i64(),
            Some(65532),
            "{}: the Secrets are 0440 for group 65532",
            p.name
        );
        env.extend(overrides);
        plans.push(env);
    }

    // Start them: services first, the gateway last (it dials lazily anyway).
    let order = |p: &Pod| usize::from(p.binary == "orex-gateway");
    let mut started: Vec<(usize, Proc)> = Vec::new();
    let mut indices: Vec<usize> = (0..pods.len()).collect();
    indices.sort_by_key(|i| order(&pods[*i]));
    for i in indices {
        let p = &pods[i];
        let env: Vec<(&str, String)> = plans[i]
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        let proc = Proc::start(&p.binary, &p.local(&p.config), &env, logs.path());
        started.push((i, proc));
    }
    for (i, proc) in &mut started {
        wait_serving(&pods[*i], proc).await;
    }
    let names: Vec<&str> = pods.iter().map(|p| p.binary.as_str()).collect();
    for b in [
        "orex-gateway",
        "orex-sharing",
        "orex-risk",
        "orex-emergency",
    ] {
        assert!(names.contains(&b), "{b} missing from {OVERLAY}: {names:?}");
    }

    within(90, async {
        // A member publishes through the gateway and reads the report back.
        let alice = Connection::open(&layout.bundle("us-alice"))
            .await
            .expect("us-alice connects to the gateway");
        let mut sharing = alice.sharing();
        let report = publish(&mut sharing, restriction()).await;
        let back = sharing
            .get_report(GetReportRequest {
                report_id: report.id.clone(),
                version: 0,
            })
            .await
            .expect("get the report back")
            .into_inner()
            .report
            .unwrap();
        assert_eq!(back.id, report.id);
        assert_eq!(back.content, report.content);

        // The risk service follows the sharing service's stream (risk →
        // sharing, server name "sharing"): the score moves with the report.
        let mut ana = Connection::open(&layout.bundle("us-ana"))
            .await
            .unwrap()
            .risk();
        loop {
            let score = ana
                .get_supply_risk(GetSupplyRiskRequest {
                    mineral: Mineral::Gallium as i32,
                    stage: Stage::Processing as i32,
                    member: String::new(),
                })
                .await
                .expect("the risk service answers through the gateway")
                .into_inner()
                .supply_risk
                .unwrap();
            if score
                .applied_disruptions
                .iter()
                .any(|d| d.report_id == report.id)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        // A coordinator reports a stockpile (gateway → emergency), and a
        // scenario reads it (risk → emergency, server name "emergency").
        let mut cole = Connection::open(&layout.bundle("us-cole"))
            .await
            .unwrap()
            .emergency();
        let mut as_of = prost_types::Timestamp::from(std::time::SystemTime::now());
        as_of.seconds -= 86_400;
        cole.report_stockpile(ReportStockpileRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            content: Some(StockpileContent {
                mineral: Mineral::Gallium as i32,
                as_of: Some(as_of),
                disclosure: Some(stockpile_content::Disclosure::Figures(StockpileFigures {
                    stockpile_tonnes: 10.0,
                    consumption_tonnes_per_year: 19.0,
                    net_imports_tonnes_per_year: 19.0,
                })),
                marking: Marking::Green as i32,
                recipient_members: vec![],
            }),
        })
        .await
        .expect("the emergency service answers through the gateway");
        let result = ana
            .run_scenario(RunScenarioRequest {
                scenario: Some(Scenario {
                    origin_country: "CN".into(),
                    mineral: Mineral::Gallium as i32,
                    stage: Stage::Processing as i32,
                    cut_fraction: 0.5,
                    duration_days: 90,
                    start_time: None,
                }),
                members: vec!["US".into()],
            })
            .await
            .expect("scenario")
            .into_inner()
            .result
            .unwrap();
        let us = &result.member_impacts[0];
        assert_eq!(
            us.stockpile_availability(),
            StockpileAvailability::Reported,
            "{}",
            result.stockpiles_note
        );
        assert_eq!(us.stockpile_tonnes, Some(10.0));
    })
    .await;

    // Some signals exist only once they happen. A member at its cap of
    // open streams (the policy's open_streams) is refused another: the
    // gateway counts the refusal by reason.
    let alice = Connection::open(&layout.bundle("us-alice")).await.unwrap();
    let mut sharing = alice.sharing();
    let mut open = Vec::new();
    let refused = within(60, async {
        loop {
            let request = SubscribeReportsRequest {
                filter: None,
                after_sequence: None,
            };
            match sharing.subscribe_reports(request).await {
                Ok(stream) => open.push(stream.into_inner()),
                Err(status) => break status,
            }
            assert!(open.len() <= 500, "no cap on a member's open streams");
        }
    })
    .await;
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    drop(open);
    // cert-manager renews the sharing service's certificate: the process
    // puts it in force (and counts the reload).
    let renewed = pods.iter().find(|p| p.binary == "orex-sharing").unwrap();
    let tls_at = renewed.toml["tls"]["cert"].as_str().unwrap();
    let (at, volume) = renewed.volume_at(tls_at).unwrap();
    let secret = str_of(&volume["secret"]["secretName"]);
    let files = issue(m.certificate_for(secret).unwrap(), &issuer, &ca.cert_pem);
    project(&renewed.local(&at), &files, &volume["secret"]);
    within(30, async {
        while !scrape(renewed.local_ops)
            .await
            .contains("orex_tls_reloads_total{outcome=\"applied\"}")
        {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;

    // Scrape once the gateway has signed a checkpoint (its witness file has
    // a line) and refreshed its access-log gauges (every 2 s): the
    // checkpoint age exists only from then on. (A scrape before then loses
    // that gauge for the life of the process today: audit_metrics in
    // gateway/src/lib.rs answers None before the first checkpoint, which
    // Metrics::gauge_fn takes for "gone".)
    let gateway = pods.iter().find(|p| p.binary == "orex-gateway").unwrap();
    let audit_dir = gateway.toml["audit"]["data_dir"].as_str().unwrap();
    let witness = gateway.local(&format!("{audit_dir}.witness"));
    within(30, async {
        while std::fs::metadata(&witness).map_or(true, |w| w.len() == 0) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut exposed = BTreeSet::new();
    let mut exposed_labels = BTreeSet::new();
    for p in &pods {
        let text = scrape(p.local_ops).await;
        // The gateway pod's access log is named after the pod (downward API).
        if p.binary == "orex-gateway" {
            assert!(
                text.contains("log_id=\"orex-gateway/gateway-0\""),
                "the gateway's log id is not orex-gateway/<pod name>:\n{text}"
            );
        }
        let (names, labels) = exported(&text);
        exposed.extend(names);
        exposed_labels.extend(labels);
    }

    // Every orex_* metric the dashboard and the alert rules name is one the
    // binaries export, under the name Prometheus stores (counters with
    // _total, histograms with _bucket/_sum/_count), and every label they
    // group, match or print by is one the binaries or the scrape set.
    let monitoring = Manifests::render(MONITORING);
    let mut named = BTreeSet::new();
    let mut unknown = Vec::new();
    for (place, query) in monitoring_queries(&monitoring) {
        for metric in orex_metrics_named(&query) {
            if !exposed.contains(&metric) {
                unknown.push(format!("metric {metric} in {place}"));
            }
            named.insert(metric);
        }
        for label in labels_used(&query) {
            let known = exposed_labels.contains(&label)
                || TARGET_LABELS.contains(&label.as_str())
                // The kubelet's and kube-state-metrics' labels, in the rules
                // on volumes and on the backup CronJob.
                || (place.starts_with("alert ")
                    && ["persistentvolumeclaim", "cronjob"].contains(&label.as_str()));
            if !known {
                unknown.push(format!("label {label} in {place}"));
            }
        }
    }
    // The descriptions and comments too: they name metrics for people.
    for file in ["grafana-dashboard.json", "prometheusrule.yaml"] {
        let text = std::fs::read_to_string(repo_root().join(MONITORING).join(file)).unwrap();
        for metric in orex_metrics_named(&text) {
            if !exposed.contains(&metric) {
                unknown.push(format!("metric {metric} in {MONITORING}/{file}"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "k8s/monitoring names what the binaries do not export: {unknown:#?}\n\
         exported: {exposed:#?}\nlabels: {exposed_labels:#?}"
    );
    // The dashboard shows the main signals (docs/operations.md, "Read the
    // metrics").
    for signal in [
        "orex_grpc_requests_total",
        "orex_grpc_request_duration_seconds_bucket",
        "orex_grpc_open_streams",
        "orex_stream_events_delivered_total",
        "orex_stream_dropped_total",
        "orex_rejected_requests_total",
        "orex_store_size_bytes",
        "orex_access_log_records",
        "orex_access_log_unsigned_records",
        "orex_access_log_checkpoint_age_seconds",
        "orex_tls_reloads_total",
    ] {
        assert!(named.contains(signal), "no panel or rule shows {signal}");
    }

    // The backup CronJob's containers, run as in their pod: the CLI's
    // library with the containers' arguments (`orex admin backup`), the
    // `backup` workload's certificate issued as its Certificate says and
    // mounted as its Secret volume is, files on the backups volume. Each
    // server admits `backup` because its ConfigMap says so.
    let (template, runs) = backup_cronjob(&m);
    let spec = &template["spec"];
    let job_pod = "orex-backup-29390000-q7x2k";
    let job_root = dir.path().join("pods").join("orex-backup");
    let mut taken = Vec::new();
    for run in &runs {
        let container = vec_of(&spec["containers"])
            .iter()
            .find(|c| str_of(&c["name"]) == run.container)
            .unwrap();
        let (pod_name, _) = run.target(&m);
        let target = pods
            .iter()
            .find(|p| format!("{}-0", p.name) == pod_name)
            .unwrap_or_else(|| panic!("{}: {pod_name} is not a pod of {OVERLAY}", run.container));
        let local = |path: &str| job_root.join(path.trim_start_matches('/'));

        let (at, volume) = mount_for(spec, container, &run.tls)
            .unwrap_or_else(|| panic!("{}: --tls {} is on no volume", run.container, run.tls));
        assert_eq!(
            at, run.tls,
            "{}: --tls is the Secret's folder",
            run.container
        );
        let secret = volume["secret"]["secretName"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: --tls {at} is not a Secret", run.container));
        let files = issued
            .entry(secret.to_owned())
            .or_insert_with(|| {
                let cert = m
                    .certificate_for(secret)
                    .unwrap_or_else(|| panic!("no Certificate issues {secret}"));
                issue(cert, &issuer, &ca.cert_pem)
            })
            .clone();
        if !local(&at).exists() {
            project(&local(&at), &files, &volume["secret"]);
        }

        let mut env = Vec::new();
        for var in vec_of(&container["env"]) {
            let value = match str_of(&var["valueFrom"]["fieldRef"]["fieldPath"]) {
                "metadata.name" => job_pod.to_owned(),
                "" => expand(str_of(&var["value"]), &env),
                other => panic!("{}: env from {other:?}", run.container),
            };
            env.push((str_of(&var["name"]).to_owned(), value));
        }
        let out = expand(&run.out, &env);
        assert!(
            !out.contains("$("),
            "{}: --out {} names a variable the container lacks",
            run.container,
            run.out
        );
        let (at, volume) = mount_for(spec, container, &out).unwrap_or_else(|| {
            panic!(
                "{}: --out {out} is on no volume (the root filesystem is read-only)",
                run.container
            )
        });
        let claim = str_of(&volume["persistentVolumeClaim"]["claimName"]);
        assert!(
            m.get("PersistentVolumeClaim", claim).is_some(),
            "{}: --out {out} must be on the backups PersistentVolumeClaim",
            run.container
        );
        // The volume exists, as mounted; nothing creates folders inside
        // it (the CLI writes the file where it is told).
        std::fs::create_dir_all(local(&at)).unwrap();

        let address = format!("https://{}", target.local_listen);
        let tls = admin::tls_files(&local(&run.tls));
        let summary = admin::backup(&address, &run.server_name, &tls, &local(&out))
            .await
            .unwrap_or_else(|e| panic!("{}: orex admin backup: {e}", run.container));
        let restored = dir.path().join("restored").join(&run.container);
        let back = orex_kit::backup::restore(&local(&out), &restored)
            .unwrap_or_else(|e| panic!("{}: restore of {out}: {e}", run.container));
        assert_eq!(back.sha256, summary.sha256);
        if target.binary == "orex-gateway" {
            let records = admin::verify_restored_log(&restored, &layout.audit_keys().1)
                .unwrap_or_else(|e| panic!("{}: the restored access log: {e}", run.container));
            assert!(records > 0, "the gateway's log holds the calls above");
        }
        taken.push((target.binary.clone(), summary.entries));
    }
    let mut binaries: Vec<&str> = taken.iter().map(|(b, _)| b.as_str()).collect();
    binaries.sort_unstable();
    assert_eq!(
        binaries,
        [
            "orex-emergency",
            "orex-gateway",
            "orex-risk",
            "orex-sharing"
        ],
        "one backup of each store"
    );

    // Still SERVING on every ops port after the traffic and the backups.
    for (i, proc) in &mut started {
        wait_serving(&pods[*i], proc).await;
    }
    // Every child is killed as `started` drops.
}

/// Prometheus finds every orex pod through the ServiceMonitor of
/// k8s/monitoring, once each, on the port the process serves metrics on
/// — in every overlay (the prod overlay runs two gateways).
#[test]
fn the_service_monitor_scrapes_every_pod_once_on_its_ops_port() {
    let monitoring = Manifests::render(MONITORING);
    let monitors: Vec<&Yaml> = monitoring.all("ServiceMonitor").collect();
    assert_eq!(monitors.len(), 1, "one ServiceMonitor");
    let spec = &monitors[0]["spec"];
    assert!(
        strings(&spec["namespaceSelector"]["matchNames"]).contains(&"orex".to_owned()),
        "the ServiceMonitor looks in the namespace orex"
    );
    let endpoints = vec_of(&spec["endpoints"]);
    assert_eq!(endpoints.len(), 1);
    let endpoint = &endpoints[0];
    assert_eq!(
        (
            str_of(&endpoint["port"]),
            str_of(&endpoint["path"]),
            str_of(&endpoint["scheme"])
        ),
        ("ops", "/metrics", "http"),
        "the ops port serves GET /metrics in plain text"
    );
    // The dashboard and the alerts group by `workload`.
    assert!(
        vec_of(&endpoint["relabelings"]).iter().any(|r| {
            str_of(&r["targetLabel"]) == "workload"
                && strings(&r["sourceLabels"])
                    == ["__meta_kubernetes_pod_label_app_kubernetes_io_name"]
        }),
        "the ServiceMonitor sets `workload` from the pod's app.kubernetes.io/name"
    );
    // The namespace the base's NetworkPolicy admits to the ops port.
    let scraper_namespace = str_of(&monitors[0]["metadata"]["namespace"]);

    for overlay in [OVERLAY, "k8s/overlays/prod"] {
        let m = Manifests::render(overlay);
        let dir = tempfile::tempdir().unwrap();
        let monitored: Vec<&Yaml> = m
            .all("Service")
            .filter(|s| {
                let labels = hash(&s["metadata"]["labels"])
                    .map(|(k, v)| (k.to_owned(), str_of(v).to_owned()))
                    .collect();
                selects(&spec["selector"], &labels)
            })
            .collect();
        for sts in m.all("StatefulSet") {
            let p = pod(&m, sts, dir.path());
            let labels = labels_of(&sts["spec"]["template"]);
            assert!(
                labels.contains_key("app.kubernetes.io/name"),
                "{overlay}: {}: pods need app.kubernetes.io/name (the `workload` label)",
                p.name
            );
            let ops: SocketAddr = p.toml["ops"]["listen"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: no [ops] listen", p.name))
                .parse()
                .unwrap();
            assert_eq!(p.ports.get("ops"), Some(&ops.port()), "{}", p.name);
            let scraping: Vec<&str> = monitored
                .iter()
                .filter(|s| {
                    let selector = &s["spec"]["selector"];
                    hash(selector)
                        .all(|(k, v)| labels.get(k).map(String::as_str) == Some(str_of(v)))
                        && vec_of(&s["spec"]["ports"]).iter().any(|port| {
                            str_of(&port["name"]) == "ops"
                                && match &port["targetPort"] {
                                    Yaml::String(named) => named == "ops",
                                    other => port_of(other) == ops.port(),
                                }
                        })
                })
                .map(|s| str_of(&s["metadata"]["name"]))
                .collect();
            assert_eq!(
                scraping.len(),
                1,
                "{overlay}: {}'s pods must be scraped through exactly one Service port `ops`, \
                 not {scraping:?}",
                p.name
            );
            let svc = m.get("Service", scraping[0]).unwrap();
            let replicas = sts["spec"]["replicas"].as_i64().unwrap_or(1);
            assert!(
                replicas == 1 || svc["spec"]["publishNotReadyAddresses"].as_bool() == Some(true),
                "{overlay}: each of {}'s {replicas} replicas is scraped, ready or not",
                p.name
            );
            // The base admits the scraper's namespace to the ops port.
            assert!(
                m.all("NetworkPolicy").any(|np| {
                    selects(&np["spec"]["podSelector"], &labels)
                        && vec_of(&np["spec"]["ingress"]).iter().any(|rule| {
                            vec_of(&rule["from"]).iter().any(|f| {
                                str_of(&f["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"])
                                    == scraper_namespace
                            }) && vec_of(&rule["ports"])
                                .iter()
                                .any(|port| port["port"].as_i64() == Some(i64::from(ops.port())))
                        })
                }),
                "{overlay}: no NetworkPolicy admits namespace {scraper_namespace} to {}'s ops port",
                p.name
            );
        }
        // The members' Service never carries the ops port (a LoadBalancer
        // in prod).
        let members = m.get("Service", "gateway").unwrap();
        assert!(
            vec_of(&members["spec"]["ports"])
                .iter()
                .all(|port| str_of(&port["name"]) != "ops"),
            "{overlay}: the members' Service gateway must not expose the ops port"
        );
    }
}

/// The backup CronJob (k8s/backup, in every overlay) backs up every store
/// once — each gateway replica's too — as a workload every server admits to
/// its admin service, through the network the NetworkPolicies open, into
/// one file per store per run.
#[test]
fn the_backup_cronjob_backs_up_every_store_in_each_overlay() {
    for overlay in [OVERLAY, "k8s/overlays/prod"] {
        let m = Manifests::render(overlay);
        let dir = tempfile::tempdir().unwrap();
        let (template, runs) = backup_cronjob(&m);
        let spec = &template["spec"];
        let job_labels = labels_of(template);
        assert_eq!(spec["automountServiceAccountToken"].as_bool(), Some(false));
        assert_eq!(
            spec["securityContext"]["runAsNonRoot"].as_bool(),
            Some(true)
        );
        assert_eq!(
            spec["securityContext"]["fsGroup"].as_i64(),
            Some(65532),
            "the backup Secret is 0440 for group 65532"
        );

        // The identity the containers present, from the Secret at --tls.
        let mut workloads = BTreeSet::new();
        let mut backed_up: BTreeMap<String, String> = BTreeMap::new();
        let mut files = BTreeSet::new();
        for run in &runs {
            let container = vec_of(&spec["containers"])
                .iter()
                .find(|c| str_of(&c["name"]) == run.container)
                .unwrap();
            assert_eq!(
                container["securityContext"]["readOnlyRootFilesystem"].as_bool(),
                Some(true),
                "{overlay}: {}",
                run.container
            );
            let (_, volume) = mount_for(spec, container, &run.tls).unwrap();
            let secret = str_of(&volume["secret"]["secretName"]);
            let cert = m
                .certificate_for(secret)
                .unwrap_or_else(|| panic!("{overlay}: no Certificate issues {secret}"));
            for uri in strings(&cert["spec"]["uris"]) {
                let workload = uri
                    .strip_prefix("spiffe://orex/workload/")
                    .unwrap_or_else(|| panic!("{overlay}: {uri} is not a workload identity"));
                workloads.insert(workload.to_owned());
            }
            assert!(
                files.insert(run.out.clone()),
                "{overlay}: two containers write {}",
                run.out
            );
            assert!(
                run.out.contains("$(POD_NAME)"),
                "{overlay}: {}: --out {} must differ from run to run (the CLI never overwrites)",
                run.container,
                run.out
            );

            let (pod_name, sts) = run.target(&m);
            if let Some(other) = backed_up.insert(pod_name.clone(), run.container.clone()) {
                panic!(
                    "{overlay}: {pod_name} backed up by {other} and {}",
                    run.container
                );
            }
            // The server admits the workload to its admin service...
            let p = pod(&m, sts, dir.path());
            let admins: Vec<String> = p.toml["ops"]
                .get("admin_workloads")
                .and_then(|a| a.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|w| w.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            for workload in &workloads {
                assert!(
                    admins.contains(workload),
                    "{overlay}: {} does not list {workload} in [ops] admin_workloads",
                    p.name
                );
            }
            // ...and the network lets it through, both ways.
            let port = p.ports["grpc"];
            let server_labels = labels_of(&sts["spec"]["template"]);
            assert!(
                network_allows(&m, "egress", &job_labels, &server_labels, port),
                "{overlay}: no NetworkPolicy lets the backup pods reach {pod_name}:{port}"
            );
            assert!(
                network_allows(&m, "ingress", &server_labels, &job_labels, port),
                "{overlay}: no NetworkPolicy lets {pod_name} take the backup pods' calls on {port}"
            );
        }
        assert_eq!(workloads.len(), 1, "{overlay}: one backup identity");

        let mut every_pod = BTreeSet::new();
        for sts in m.all("StatefulSet") {
            let name = str_of(&sts["metadata"]["name"]);
            for i in 0..sts["spec"]["replicas"].as_i64().unwrap_or(1) {
                every_pod.insert(format!("{name}-{i}"));
            }
        }
        let covered: BTreeSet<String> = backed_up.keys().cloned().collect();
        assert_eq!(
            covered, every_pod,
            "{overlay}: the backup CronJob must back up each pod's store once \
             (one container per gateway replica)"
        );
    }
}

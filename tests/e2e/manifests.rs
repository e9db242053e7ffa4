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

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use orex_cli::bundle::Connection;
use orex_cli::devstack::{self, DEMO_MEMBERS, DevLayout, Ports};
use orex_e2e::procs::{Proc, free_port};
use orex_e2e::{content, publish, within};
use orex_proto::common::v1::{Marking, Mineral, Stage};
use orex_proto::emergency::v1::{
    ReportStockpileRequest, StockpileContent, StockpileFigures, stockpile_content,
};
use orex_proto::risk::v1::{
    GetSupplyRiskRequest, RunScenarioRequest, Scenario, StockpileAvailability,
};
use orex_proto::sharing::v1::{Category, GetReportRequest, ReportContent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

/// `GET /metrics` over HTTP/1.1, as Prometheus scrapes it.
async fn scrape(ops: SocketAddr) -> String {
    let mut conn = tokio::net::TcpStream::connect(ops).await.unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: ops\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    within(10, conn.read_to_string(&mut answer)).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    answer
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
            assert_eq!(
                Some(&target_port),
                target.ports.get("grpc"),
                "Service {name} must lead to {}'s service port",
                target.name
            );
            services.insert(
                (name.to_owned(), port_of(&port["port"])),
                target.local_listen,
            );
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

    // The gateway pod's access log is named after the pod (downward API).
    let gateway = pods.iter().find(|p| p.binary == "orex-gateway").unwrap();
    let metrics = scrape(gateway.local_ops).await;
    assert!(
        metrics.contains("log_id=\"orex-gateway/gateway-0\""),
        "the gateway's log id is not orex-gateway/<pod name>:\n{metrics}"
    );
    // Still SERVING on every ops port after the traffic.
    for (i, proc) in &mut started {
        wait_serving(&pods[*i], proc).await;
    }
    // Every child is killed as `started` drops.
}

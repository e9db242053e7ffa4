//! The `orex-sharing` binary fails fast, naming the problem, on a bad config
//! file, a bad environment override, an unsafe key, a missing CA or a bad
//! policy — before it binds a port.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

const POLICY: &str = r#"
[[members]]
code = "US"
name = "United States"
kind = "state"
"#;

/// Writes a config folder with placeholder PEM files (startup checks run
/// before any TLS handshake, so shape is enough) and returns the config path.
fn setup(dir: &Path, extra: &str) -> std::path::PathBuf {
    let pem = |name: &str, label: &str, mode: u32| {
        let p = dir.join(name);
        std::fs::write(
            &p,
            format!("-----BEGIN {label}-----\nAA==\n-----END {label}-----\n"),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    pem("ca.pem", "CERTIFICATE", 0o644);
    pem("cert.pem", "CERTIFICATE", 0o644);
    pem("key.pem", "PRIVATE KEY", 0o600);
    std::fs::write(dir.join("policy.toml"), POLICY).unwrap();
    let config = dir.join("sharing.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\npolicy = \"policy.toml\"\n{extra}\n\
             [tls]\nca = \"ca.pem\"\ncert = \"cert.pem\"\nkey = \"key.pem\"\n"
        ),
    )
    .unwrap();
    config
}

/// Runs the binary and returns its stderr; it must exit with failure.
fn fails(config: &Path, env: &[(&str, &str)]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_orex-sharing"))
        .arg("--config")
        .arg(config)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(!out.status.success(), "the service must refuse to start");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_unknown_config_field_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), "listen_port = 7101");
    assert!(fails(&config, &[]).contains("listen_port"));
}

#[test]
fn environment_overrides_are_applied_and_checked_like_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), "");
    let err = fails(&config, &[("OREX_SHARING__LISTEN", "not-an-address")]);
    assert!(
        err.contains("LISTEN") && err.contains("OREX_SHARING__"),
        "{err}"
    );
    let err = fails(&config, &[("OREX_SHARING__BOGUS", "1")]);
    assert!(err.to_lowercase().contains("bogus"), "{err}");
}

#[test]
fn a_world_readable_private_key_refuses_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), "");
    std::fs::set_permissions(
        dir.path().join("key.pem"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let err = fails(&config, &[]);
    assert!(
        err.contains("key.pem") && err.contains("chmod 600"),
        "{err}"
    );
}

#[test]
fn a_missing_ca_refuses_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), "");
    std::fs::remove_file(dir.path().join("ca.pem")).unwrap();
    let err = fails(&config, &[]);
    assert!(err.contains("ca.pem"), "{err}");
}

#[test]
fn an_unknown_bloc_in_the_policy_refuses_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), "");
    std::fs::write(
        dir.path().join("policy.toml"),
        format!("{POLICY}\n[[members]]\ncode = \"DE\"\nname = \"Germany\"\nkind = \"state\"\nbloc = \"EU\"\n"),
    )
    .unwrap();
    let err = fails(&config, &[]);
    assert!(err.contains("unknown bloc EU"), "{err}");
}

#[test]
fn an_admin_workload_must_be_a_name_of_its_own() {
    for (value, expected) in [
        (r#"["gateway"]"#, "also calls this server's API"),
        (
            r#"["spiffe://orex/workload/backup"]"#,
            "not a workload name",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = setup(dir.path(), &format!("[ops]\nadmin_workloads = {value}"));
        let err = fails(&config, &[]);
        assert!(err.contains(expected), "{value}: {err}");
    }
}

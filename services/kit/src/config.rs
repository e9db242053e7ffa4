//! Typed configuration: a TOML file, then environment overrides.
//!
//! Every binary has its own prefix: `OREX_SHARING__LISTEN=127.0.0.1:7001`
//! overrides `listen` in the sharing service's file, and a double underscore
//! goes one table deeper (`OREX_SHARING__TLS__CERT`). Config structs use
//! `deny_unknown_fields`, so a typo fails the start with the field's name.

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::de::DeserializeOwned;

use crate::KitError;

/// Loads `T` from `path` with overrides from `OREX_<PREFIX>__*` variables.
pub fn load<T: DeserializeOwned>(path: &Path, prefix: &str) -> Result<T, KitError> {
    if !path.is_file() {
        return Err(KitError::Config(format!(
            "config file {} does not exist",
            path.display()
        )));
    }
    Figment::new()
        .merge(Toml::file_exact(path))
        .merge(Env::prefixed(&format!("OREX_{}__", prefix.to_uppercase())).split("__"))
        .extract()
        .map_err(|e| KitError::Config(format!("{}: {e}", path.display())))
}

/// Makes relative paths in a config absolute, against the config file's folder,
/// so a config works from whatever directory the binary is started in.
pub fn resolve(base: &Path, p: &Path) -> std::path::PathBuf {
    if p.is_absolute() {
        p.to_owned()
    } else {
        base.join(p)
    }
}

/// Checks a service's workload lists: at least one forwarder
/// (`allowed_workloads`, which forward member principals), each name a
/// workload name, and no name also among `readers` (workloads that call as
/// themselves): a name on both lists would be trusted two ways, so the
/// service refuses to start. Then `[ops] admin_workloads` against both
/// ([`OpsConfig::validate`](crate::ops::OpsConfig::validate)).
pub fn check_workloads(
    allowed: &[String],
    readers: &[String],
    ops: &crate::ops::OpsConfig,
) -> Result<(), KitError> {
    if allowed.is_empty() {
        return Err(KitError::Config(
            "allowed_workloads: at least one workload must be allowed".into(),
        ));
    }
    if let Some(w) = readers.iter().find(|w| allowed.contains(w)) {
        return Err(KitError::Config(format!(
            "{w:?} is in both allowed_workloads (forwards member principals) and reader_workloads (reads as itself); list it in one"
        )));
    }
    for w in allowed.iter().chain(readers) {
        let uri = format!("{}workload/{w}", crate::identity::SPIFFE_PREFIX);
        if crate::identity::parse_identity(&uri).is_none() {
            return Err(KitError::Config(format!(
                "allowed_workloads/reader_workloads: {w:?} is not a workload name (write \"gateway\", not a URI)"
            )));
        }
    }
    ops.validate(&allowed.iter().chain(readers).collect::<Vec<_>>())
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        listen: String,
        data_dir: String,
    }

    #[test]
    fn unknown_field_names_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "listen = \"x\"\ndata_dir = \"d\"\nlisten_port = 3\n").unwrap();
        let err = load::<Sample>(&path, "kittest").unwrap_err().to_string();
        assert!(err.contains("listen_port"), "{err}");
    }

    #[test]
    fn missing_field_names_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "listen = \"x\"\n").unwrap();
        let err = load::<Sample>(&path, "kittest2").unwrap_err().to_string();
        assert!(err.contains("data_dir"), "{err}");
    }
}

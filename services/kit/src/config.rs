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

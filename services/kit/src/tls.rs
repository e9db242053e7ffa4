//! Mutual TLS from PEM files, for servers and for clients.
//!
//! Every hop in orex is mutual TLS with certificates from the partnership CA.
//! Startup refuses a missing CA, an unreadable certificate, or a private key
//! file that other users of the machine can read.

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::KitError;

/// Paths of the PEM files a server or client presents and trusts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The partnership CA certificate: peers must chain to it.
    pub ca: PathBuf,
    /// This process's certificate chain (leaf first).
    pub cert: PathBuf,
    /// The private key of `cert` (PKCS#8 PEM). Must not be readable by others.
    pub key: PathBuf,
}

impl TlsFiles {
    /// The same files with relative paths resolved against `base`.
    pub fn resolved(&self, base: &Path) -> Self {
        Self {
            ca: crate::config::resolve(base, &self.ca),
            cert: crate::config::resolve(base, &self.cert),
            key: crate::config::resolve(base, &self.key),
        }
    }

    /// Reads and checks every file: present, parseable PEM, a private key
    /// that is not world-readable and that belongs to the certificate.
    pub fn load(&self) -> Result<LoadedTls, KitError> {
        let ca = read_pem(&self.ca, "CERTIFICATE")?;
        parse_certs(&self.ca, &ca)?;
        let cert = read_pem(&self.cert, "CERTIFICATE")?;
        let chain = parse_certs(&self.cert, &cert)?;
        check_key_permissions(&self.key)?;
        let key = read_pem(&self.key, "PRIVATE KEY")?;
        let key_der = PrivateKeyDer::from_pem_slice(&key).map_err(|e| KitError::TlsFile {
            path: self.key.clone(),
            message: format!("not a PEM private key: {e}"),
        })?;
        // rustls checks the key against the certificate's public key.
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key_der)
            .map_err(|e| KitError::TlsFile {
                path: self.key.clone(),
                message: format!("does not fit certificate {}: {e}", self.cert.display()),
            })?;
        Ok(LoadedTls { ca, cert, key })
    }
}

/// The PEM contents of a [`TlsFiles`], checked.
#[derive(Clone)]
pub struct LoadedTls {
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl std::fmt::Debug for LoadedTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("LoadedTls").finish_non_exhaustive()
    }
}

impl LoadedTls {
    /// A server config that requires a client certificate from the CA.
    pub fn server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert, &self.key))
            .client_ca_root(Certificate::from_pem(&self.ca))
            .client_auth_optional(false)
    }

    /// A client config that presents our certificate and trusts only the CA;
    /// `server_name` must be a DNS name in the server's certificate.
    pub fn client(&self, server_name: &str) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca))
            .identity(Identity::from_pem(&self.cert, &self.key))
            .domain_name(server_name)
    }
}

fn parse_certs(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, KitError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| KitError::TlsFile {
            path: path.to_owned(),
            message: format!("not a valid PEM certificate: {e}"),
        })?;
    if certs.is_empty() {
        return Err(KitError::TlsFile {
            path: path.to_owned(),
            message: "holds no certificate".into(),
        });
    }
    Ok(certs)
}

fn read_pem(path: &Path, label: &str) -> Result<Vec<u8>, KitError> {
    let bytes = std::fs::read(path).map_err(|e| KitError::TlsFile {
        path: path.to_owned(),
        message: format!("cannot read: {e}"),
    })?;
    let text = String::from_utf8_lossy(&bytes);
    if !text.contains(&format!("-----BEGIN {label}-----")) {
        return Err(KitError::TlsFile {
            path: path.to_owned(),
            message: format!("not a PEM file with a {label} block"),
        });
    }
    Ok(bytes)
}

/// Refuses a private key that any user of the machine may read or write.
/// Group access is allowed: Kubernetes mounts secrets 0440 with an `fsGroup`.
pub fn check_key_permissions(path: &Path) -> Result<(), KitError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| KitError::TlsFile {
            path: path.to_owned(),
            message: format!("cannot read: {e}"),
        })?;
        let mode = meta.permissions().mode();
        if mode & 0o007 != 0 {
            return Err(KitError::TlsFile {
                path: path.to_owned(),
                message: format!(
                    "private key is accessible to other users (mode {:o}); run `chmod 600 {}`",
                    mode & 0o777,
                    path.display()
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn world_readable_key_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.pem");
        std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\n").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = check_key_permissions(&key).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        check_key_permissions(&key).unwrap();
    }

    #[test]
    fn a_key_that_does_not_fit_the_certificate_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        crate::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let a = rcgen::generate_simple_self_signed(vec!["a".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b".into()]).unwrap();
        let write = |name: &str, text: String| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            p
        };
        let files = TlsFiles {
            ca: write("ca.pem", a.cert.pem()),
            cert: write("cert.pem", a.cert.pem()),
            key: write("key.pem", b.signing_key.serialize_pem()),
        };
        let err = files.load().unwrap_err().to_string();
        assert!(err.contains("does not fit"), "{err}");
        let files = TlsFiles {
            key: write("key-a.pem", a.signing_key.serialize_pem()),
            ..files
        };
        files.load().unwrap();
    }

    #[test]
    fn missing_ca_is_refused_by_path() {
        let files = TlsFiles {
            ca: "/nonexistent/ca.pem".into(),
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
        };
        let err = files.load().unwrap_err().to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    }
}

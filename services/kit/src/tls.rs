//! Mutual TLS from PEM files, for servers and for clients.
//!
//! Every hop in orex is mutual TLS with certificates from the partnership CA.
//! Startup refuses a missing CA, an unreadable certificate, or a private key
//! file that other users of the machine can read.
//!
//! Certificates rotate without a restart: the loaded material is shared and
//! swapped when the files change ([`LoadedTls::watch`], started by
//! `server::serve`); each new connection, accepted or dialled, uses what is
//! in force, and open connections and their streams are left alone. Files
//! that fail a check (unreadable, corrupt, a key that does not fit) leave
//! the old material in force and are logged.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::{KitError, Shutdown};

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
        let (material, digest) = self.read()?;
        Ok(LoadedTls {
            files: self.clone(),
            current: Arc::new(ArcSwap::from_pointee(material)),
            seen: Arc::new(Mutex::new(digest)),
        })
    }

    /// The checked material and the digest of the bytes it came from.
    fn read(&self) -> Result<(Material, [u8; 32]), KitError> {
        let ca = read_pem(&self.ca, "CERTIFICATE")?;
        let roots_der = parse_certs(&self.ca, &ca)?;
        let cert = read_pem(&self.cert, "CERTIFICATE")?;
        let chain = parse_certs(&self.cert, &cert)?;
        check_key_permissions(&self.key)?;
        let key = read_pem(&self.key, "PRIVATE KEY")?;
        let digest = digest_of(&ca, &cert, &key, key_mode(&self.key));
        let key_der = PrivateKeyDer::from_pem_slice(&key).map_err(|e| KitError::TlsFile {
            path: self.key.clone(),
            message: format!("not a PEM private key: {e}"),
        })?;
        let mut roots = RootCertStore::empty();
        for root in roots_der {
            roots.add(root).map_err(|e| KitError::TlsFile {
                path: self.ca.clone(),
                message: format!("not a usable CA certificate: {e}"),
            })?;
        }
        let roots = Arc::new(roots);
        let verifier = WebPkiClientVerifier::builder(roots.clone())
            .build()
            .map_err(|e| KitError::Tls(format!("client verifier: {e}")))?;
        // rustls checks the key against the certificate's public key.
        let mut server = rustls::ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key_der.clone_key())
            .map_err(|e| KitError::TlsFile {
                path: self.key.clone(),
                message: format!("does not fit certificate {}: {e}", self.cert.display()),
            })?;
        server.alpn_protocols = vec![ALPN_H2.to_vec()];
        let mut client = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key_der)
            .map_err(|e| KitError::TlsFile {
                path: self.key.clone(),
                message: format!("does not fit certificate {}: {e}", self.cert.display()),
            })?;
        client.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok((
            Material {
                server: Arc::new(server),
                client: Arc::new(client),
            },
            digest,
        ))
    }
}

/// HTTP/2, the only protocol orex speaks, negotiated by ALPN.
const ALPN_H2: &[u8] = b"h2";

/// The key file's permission bits: part of what is "seen", so that fixing
/// a refused key's mode (`chmod 600`) is noticed like a new file.
fn key_mode(path: &Path) -> u32 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).map_or(0, |m| m.permissions().mode())
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        0
    }
}

fn digest_of(ca: &[u8], cert: &[u8], key: &[u8], key_mode: u32) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(key_mode.to_be_bytes());
    for part in [ca, cert, key] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}

/// The rustls configurations built from one set of files.
#[derive(Debug)]
struct Material {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
}

/// The TLS material in force, shared by every clone: servers accept and
/// clients dial each new connection with whatever is current, and
/// [`watch`](Self::watch) replaces it when the files change (cert-manager
/// renewing a certificate). Connections already open keep the certificate
/// they were made with; nothing is restarted or dropped.
#[derive(Clone)]
pub struct LoadedTls {
    files: TlsFiles,
    current: Arc<ArcSwap<Material>>,
    /// Digest of the files last applied or refused, so a refused set is
    /// reported once, not at every poll.
    seen: Arc<Mutex<[u8; 32]>>,
}

impl std::fmt::Debug for LoadedTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("LoadedTls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl LoadedTls {
    /// The server configuration in force: the certificate, and a client
    /// certificate from the CA required.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.current.load().server.clone()
    }

    /// The client configuration in force: the certificate presented, and
    /// only the CA trusted.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        self.current.load().client.clone()
    }

    /// Checks the files once: if their bytes changed since they were last
    /// seen, loads and checks them and puts them in force. A set that fails
    /// a check leaves the material in force as it is, and says why.
    /// Returns whether new material was put in force.
    pub fn reload(&self) -> Result<bool, KitError> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let bytes = [&self.files.ca, &self.files.cert, &self.files.key]
            .map(|p| std::fs::read(p).unwrap_or_default());
        let digest = digest_of(&bytes[0], &bytes[1], &bytes[2], key_mode(&self.files.key));
        if digest == *seen {
            return Ok(false);
        }
        *seen = digest;
        let (material, applied) = self.files.read()?;
        // What is in force is what was read, should the files have changed
        // again in between.
        *seen = applied;
        self.current.store(Arc::new(material));
        Ok(true)
    }

    /// Polls the files every [`crate::reload::POLL_INTERVAL`] until
    /// `shutdown`, putting new material in force (see [`reload`](Self::reload)).
    pub fn watch(&self, shutdown: &Shutdown) {
        let this = self.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(crate::reload::POLL_INTERVAL) => {}
                    _ = shutdown.wait() => return,
                }
                match this.reload() {
                    Ok(true) => {
                        crate::metrics::global().tls_reload("applied");
                        tracing::info!(
                            cert = %this.files.cert.display(),
                            "TLS certificate replaced; new connections use it, open ones keep theirs"
                        );
                    }
                    Ok(false) => {}
                    Err(e) => {
                        crate::metrics::global().tls_reload("refused");
                        tracing::warn!(
                            error = %e,
                            "new TLS files refused; keeping the certificate in use"
                        );
                    }
                }
            }
        });
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
    fn a_refused_key_is_applied_once_its_mode_is_fixed_and_a_bad_set_keeps_the_old() {
        use std::os::unix::fs::PermissionsExt;
        crate::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: String, mode: u32| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            p
        };
        let a = rcgen::generate_simple_self_signed(vec!["a".into()]).unwrap();
        let files = TlsFiles {
            ca: write("ca.pem", a.cert.pem(), 0o644),
            cert: write("cert.pem", a.cert.pem(), 0o644),
            key: write("key.pem", a.signing_key.serialize_pem(), 0o600),
        };
        let tls = files.load().unwrap();
        assert!(!tls.reload().unwrap(), "nothing changed");
        let first = tls.server_config();

        // A renewed certificate whose key others may read: refused, once.
        let b = rcgen::generate_simple_self_signed(vec!["a".into()]).unwrap();
        write("key.pem", b.signing_key.serialize_pem(), 0o644);
        write("cert.pem", b.cert.pem(), 0o644);
        let err = tls.reload().unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        assert!(!tls.reload().unwrap(), "a refused set is reported once");
        assert!(Arc::ptr_eq(&first, &tls.server_config()));

        // The operator fixes the mode: the same bytes are now applied.
        std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(tls.reload().unwrap());
        assert!(!Arc::ptr_eq(&first, &tls.server_config()));

        // A corrupt certificate keeps what is in force.
        let applied = tls.server_config();
        write(
            "cert.pem",
            "-----BEGIN CERTIFICATE-----\nAA==\n".into(),
            0o644,
        );
        assert!(tls.reload().is_err());
        assert!(Arc::ptr_eq(&applied, &tls.server_config()));
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

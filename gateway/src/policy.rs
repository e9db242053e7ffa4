//! The policy in force, and changing it without a restart.
//!
//! The gateway holds one [`Policy`] (members, issuers' keys, permissions,
//! rate limits) behind an atomic pointer. SIGHUP, or a change of the policy
//! file (polled every [`POLL_INTERVAL`]), loads the file again; a file that
//! does not validate is refused and the old policy stays in force. Unary
//! calls in flight keep the policy they started with; streams screen each
//! event under the policy in force.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use orex_kit::{KitError, Shutdown};
use orex_membership::Partnership;
use sha2::{Digest, Sha256};

use crate::authn::Authenticator;
use crate::ratelimit::Limiter;
use crate::tokens::TokenVerifier;

/// How often the policy file is checked for changes.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// One consistent policy.
#[derive(Debug)]
pub struct Policy {
    /// Members, blocs, permissions, rate limits, auditors.
    pub partnership: Arc<Partnership>,
    /// Certificate + token checks with this policy's issuers.
    pub authenticator: Authenticator,
}

/// The policy in force and where it comes from. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PolicyHandle {
    inner: Arc<HandleInner>,
}

#[derive(Debug)]
struct HandleInner {
    path: PathBuf,
    audience: String,
    leeway: u64,
    current: ArcSwap<Policy>,
    limiter: Limiter,
    /// SHA-256 of the file content last applied or refused; held while
    /// reloading, so reloads are serialised and policy and digest change together.
    digest: Mutex<[u8; 32]>,
}

impl PolicyHandle {
    /// Loads the policy file; every problem is an error naming it.
    pub fn load(path: PathBuf, audience: &str, leeway: u64) -> Result<Self, KitError> {
        let bytes = read(&path)?;
        let policy = build(&path, &bytes, audience, leeway)?;
        Ok(Self {
            inner: Arc::new(HandleInner {
                path,
                audience: audience.to_owned(),
                leeway,
                current: ArcSwap::from_pointee(policy),
                limiter: Limiter::default(),
                digest: Mutex::new(Sha256::digest(&bytes).into()),
            }),
        })
    }

    /// The policy in force now.
    pub fn current(&self) -> Arc<Policy> {
        self.inner.current.load_full()
    }

    /// The rate-limit buckets (they outlive reloads).
    pub fn limiter(&self) -> &Limiter {
        &self.inner.limiter
    }

    /// Loads the file again and puts it in force if it validates; otherwise
    /// the old policy stays and the error says why.
    pub fn reload(&self) -> Result<(), KitError> {
        let bytes = read(&self.inner.path)?;
        self.apply(&bytes)
    }

    /// Validates exactly `bytes` (one read of the file) and applies them.
    fn apply(&self, bytes: &[u8]) -> Result<(), KitError> {
        let mut digest = self.inner.digest.lock().unwrap_or_else(|e| e.into_inner());
        // Remembered even when refused, so a bad file is not retried every poll.
        *digest = Sha256::digest(bytes).into();
        let policy = build(
            &self.inner.path,
            bytes,
            &self.inner.audience,
            self.inner.leeway,
        )?;
        self.inner.current.store(Arc::new(policy));
        tracing::info!(path = %self.inner.path.display(), "policy reloaded");
        Ok(())
    }

    /// The file's content if it differs from what was last applied or refused.
    fn changed_on_disk(&self) -> Option<Vec<u8>> {
        let bytes = std::fs::read(&self.inner.path).ok()?;
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        (digest != *self.inner.digest.lock().unwrap_or_else(|e| e.into_inner())).then_some(bytes)
    }

    /// Reloads on SIGHUP and when the file changes, until shutdown. The
    /// signal stream is registered by the caller before serving, so a SIGHUP
    /// never arrives unhandled.
    pub async fn watch(self, mut hangups: HangupSignal, shutdown: Shutdown) {
        loop {
            let outcome = tokio::select! {
                _ = shutdown.wait() => return,
                _ = hangups.recv() => ("SIGHUP", self.reload()),
                _ = tokio::time::sleep(POLL_INTERVAL) => match self.changed_on_disk() {
                    Some(bytes) => ("file changed", self.apply(&bytes)),
                    None => continue,
                },
            };
            if let (reason, Err(e)) = outcome {
                tracing::error!(reason, error = %e, "new policy refused; the previous policy stays in force");
            }
        }
    }
}

/// SIGHUP, registered once at start (a SIGHUP before registration would
/// terminate the process).
#[derive(Debug)]
pub struct HangupSignal {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl HangupSignal {
    /// Registers the handler; fails if the OS refuses.
    pub fn register() -> Result<Self, KitError> {
        Ok(Self {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .map_err(|e| KitError::Config(format!("cannot handle SIGHUP: {e}")))?,
        })
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        {
            if self.signal.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        #[cfg(not(unix))]
        std::future::pending::<()>().await;
    }
}

fn read(path: &Path) -> Result<Vec<u8>, KitError> {
    std::fs::read(path).map_err(|e| KitError::Config(format!("policy {}: {e}", path.display())))
}

fn build(path: &Path, bytes: &[u8], audience: &str, leeway: u64) -> Result<Policy, KitError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| KitError::Config(format!("policy {}: not UTF-8", path.display())))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let partnership = Arc::new(
        Partnership::parse(text, base)
            .map_err(|e| KitError::Config(format!("policy {}: {e}", path.display())))?,
    );
    if partnership.permissions().is_empty() {
        return Err(KitError::Config(format!(
            "policy {}: [roles] grants no role any method; every call would be refused",
            path.display()
        )));
    }
    let tokens = TokenVerifier::new(&partnership, audience, leeway)?;
    Ok(Policy {
        authenticator: Authenticator::new(partnership.clone(), tokens),
        partnership,
    })
}

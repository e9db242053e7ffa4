//! The policy in force, and changing it without a restart.
//!
//! The gateway holds one [`Policy`] (members, issuers' keys, permissions,
//! rate limits) behind an atomic pointer. SIGHUP, or a change of the policy
//! file (polled every [`POLL_INTERVAL`]), loads the file again; a file that
//! does not validate is refused and the old policy stays in force. Calls in
//! flight keep the policy they started with.

use std::path::PathBuf;
use std::sync::Arc;
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
    /// Rate-limit buckets (fresh for each policy).
    pub limiter: Limiter,
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
    digest: std::sync::Mutex<[u8; 32]>,
}

impl PolicyHandle {
    /// Loads the policy file; every problem is an error naming it.
    pub fn load(path: PathBuf, audience: &str, leeway: u64) -> Result<Self, KitError> {
        let (policy, digest) = build(&path, audience, leeway)?;
        Ok(Self {
            inner: Arc::new(HandleInner {
                path,
                audience: audience.to_owned(),
                leeway,
                current: ArcSwap::from_pointee(policy),
                digest: std::sync::Mutex::new(digest),
            }),
        })
    }

    /// The policy in force now.
    pub fn current(&self) -> Arc<Policy> {
        self.inner.current.load_full()
    }

    /// Loads the file again and puts it in force if it validates; otherwise
    /// the old policy stays and the error says why.
    pub fn reload(&self) -> Result<(), KitError> {
        let (policy, digest) = build(&self.inner.path, &self.inner.audience, self.inner.leeway)?;
        self.inner.current.store(Arc::new(policy));
        *self.inner.digest.lock().unwrap_or_else(|e| e.into_inner()) = digest;
        tracing::info!(path = %self.inner.path.display(), "policy reloaded");
        Ok(())
    }

    fn changed_on_disk(&self) -> bool {
        match std::fs::read(&self.inner.path) {
            Ok(bytes) => {
                let digest: [u8; 32] = Sha256::digest(&bytes).into();
                digest != *self.inner.digest.lock().unwrap_or_else(|e| e.into_inner())
            }
            Err(_) => false,
        }
    }

    /// Reloads on SIGHUP and when the file changes, until shutdown.
    pub async fn watch(self, shutdown: Shutdown) {
        #[cfg(unix)]
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            #[cfg(unix)]
            let signalled = async {
                match hangup.as_mut() {
                    Some(h) => {
                        h.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let signalled = std::future::pending::<()>();
            let reason = tokio::select! {
                _ = shutdown.wait() => return,
                _ = signalled => "SIGHUP",
                _ = tokio::time::sleep(POLL_INTERVAL) => {
                    if !self.changed_on_disk() {
                        continue;
                    }
                    "file changed"
                }
            };
            if let Err(e) = self.reload() {
                tracing::error!(reason, error = %e, "new policy refused; the previous policy stays in force");
                // Remember the refused content so it is not retried every poll.
                if let Ok(bytes) = std::fs::read(&self.inner.path) {
                    *self.inner.digest.lock().unwrap_or_else(|e| e.into_inner()) =
                        Sha256::digest(&bytes).into();
                }
            }
        }
    }
}

fn build(path: &PathBuf, audience: &str, leeway: u64) -> Result<(Policy, [u8; 32]), KitError> {
    let bytes = std::fs::read(path)
        .map_err(|e| KitError::Config(format!("policy {}: {e}", path.display())))?;
    let partnership =
        Arc::new(Partnership::load(path).map_err(|e| KitError::Config(e.to_string()))?);
    if partnership.permissions().is_empty() {
        return Err(KitError::Config(format!(
            "policy {}: [roles] grants no role any method; every call would be refused",
            path.display()
        )));
    }
    let tokens = TokenVerifier::new(&partnership, audience, leeway)?;
    let policy = Policy {
        limiter: Limiter::new(partnership.rate_limits().clone()),
        authenticator: Authenticator::new(partnership.clone(), tokens),
        partnership,
    };
    Ok((policy, Sha256::digest(&bytes).into()))
}

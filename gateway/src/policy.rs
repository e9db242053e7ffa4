//! The policy in force, and changing it without a restart.
//!
//! The gateway holds one [`Policy`] (members, issuers' keys, permissions,
//! rate limits) behind an atomic pointer. SIGHUP, or a change of the policy
//! file, loads it again ([`orex_kit::reload`]); a file that does not
//! validate is refused and the old policy stays in force. Unary calls in
//! flight keep the policy they started with; streams screen each event
//! under the policy in force.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use orex_kit::reload::{HangupSignal, WatchedFile};
use orex_kit::{KitError, Shutdown};
use orex_membership::Partnership;

use crate::authn::Authenticator;
use crate::ratelimit::Limiter;
use crate::tokens::TokenVerifier;

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
    file: WatchedFile,
    audience: String,
    leeway: u64,
    current: ArcSwap<Policy>,
    limiter: Limiter,
}

impl PolicyHandle {
    /// Loads the policy file; every problem is an error naming it.
    pub fn load(path: PathBuf, audience: &str, leeway: u64) -> Result<Self, KitError> {
        let bytes = std::fs::read(&path)
            .map_err(|e| KitError::Config(format!("policy {}: {e}", path.display())))?;
        let policy = build(&path, &bytes, audience, leeway)?;
        Ok(Self {
            inner: Arc::new(HandleInner {
                file: WatchedFile::new(path, &bytes),
                audience: audience.to_owned(),
                leeway,
                current: ArcSwap::from_pointee(policy),
                limiter: Limiter::default(),
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
        self.inner.file.reload(|bytes| self.apply(bytes))
    }

    fn apply(&self, bytes: &[u8]) -> Result<(), KitError> {
        let inner = &self.inner;
        let policy = build(inner.file.path(), bytes, &inner.audience, inner.leeway)?;
        inner.current.store(Arc::new(policy));
        Ok(())
    }

    /// Reloads on SIGHUP and when the file changes, until shutdown.
    pub async fn watch(self, hangups: HangupSignal, shutdown: Shutdown) {
        self.inner
            .file
            .watch(hangups, shutdown, |bytes| self.apply(bytes))
            .await
    }
}

fn build(path: &Path, bytes: &[u8], audience: &str, leeway: u64) -> Result<Policy, KitError> {
    let partnership = Arc::new(
        Partnership::from_bytes(path, bytes).map_err(|e| KitError::Config(e.to_string()))?,
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

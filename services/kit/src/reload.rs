//! Reloading a configuration file without a restart: on SIGHUP, and when
//! its content changes (polled every [`POLL_INTERVAL`]). Each attempt reads
//! the file once and hands exactly those bytes to the caller's `apply`; a
//! refused file is remembered, so it is not retried until it changes again.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::{KitError, Shutdown};

/// How often a watched file is checked for changes.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// SIGHUP, registered once at start (a SIGHUP before registration would
/// terminate the process).
#[derive(Debug)]
pub struct HangupSignal {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl HangupSignal {
    /// Registers the handler; fails if the OS refuses. Call it inside a
    /// Tokio runtime, before serving.
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

/// A file whose content is applied on change.
#[derive(Debug)]
pub struct WatchedFile {
    path: PathBuf,
    /// SHA-256 of the content last applied or refused; held while applying,
    /// so applications are serialised.
    digest: Mutex<[u8; 32]>,
}

impl WatchedFile {
    /// Watches `path`, whose `current` content is already in force.
    pub fn new(path: PathBuf, current: &[u8]) -> Self {
        Self {
            path,
            digest: Mutex::new(Sha256::digest(current).into()),
        }
    }

    /// The watched path.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Reads the file and applies it with `apply`.
    pub fn reload(
        &self,
        apply: impl FnOnce(&[u8]) -> Result<(), KitError>,
    ) -> Result<(), KitError> {
        let bytes = std::fs::read(&self.path)
            .map_err(|e| KitError::Config(format!("{}: {e}", self.path.display())))?;
        self.apply(&bytes, apply)
    }

    fn apply(
        &self,
        bytes: &[u8],
        apply: impl FnOnce(&[u8]) -> Result<(), KitError>,
    ) -> Result<(), KitError> {
        let mut digest = self.digest.lock().unwrap_or_else(|e| e.into_inner());
        *digest = Sha256::digest(bytes).into();
        apply(bytes)
    }

    fn changed(&self) -> Option<Vec<u8>> {
        let bytes = std::fs::read(&self.path).ok()?;
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        (digest != *self.digest.lock().unwrap_or_else(|e| e.into_inner())).then_some(bytes)
    }

    /// Applies the file on SIGHUP and whenever its content changes, until
    /// shutdown. A refusal is logged; what is in force stays in force.
    pub async fn watch(
        &self,
        mut hangups: HangupSignal,
        shutdown: Shutdown,
        apply: impl Fn(&[u8]) -> Result<(), KitError>,
    ) {
        loop {
            let outcome = tokio::select! {
                _ = shutdown.wait() => return,
                _ = hangups.recv() => ("SIGHUP", self.reload(&apply)),
                _ = tokio::time::sleep(POLL_INTERVAL) => match self.changed() {
                    Some(bytes) => ("file changed", self.apply(&bytes, &apply)),
                    None => continue,
                },
            };
            match outcome {
                (reason, Ok(())) => tracing::info!(reason, path = %self.path.display(), "reloaded"),
                (reason, Err(e)) => tracing::error!(
                    reason,
                    path = %self.path.display(),
                    error = %e,
                    "new content refused; the previous one stays in force"
                ),
            }
        }
    }
}

/// How a [`LiveFile`] turns bytes into its value.
type Parse<T> = dyn Fn(&[u8]) -> Result<T, KitError> + Send + Sync;

/// A file parsed into a `T` that callers share and that is replaced whole
/// when the file changes (or on SIGHUP): the policy, the reference data.
/// A new content that does not parse is refused with its reason, and the
/// value in force stays — so every service that watches a file does it the
/// same way.
pub struct LiveFile<T> {
    file: std::sync::Arc<WatchedFile>,
    value: std::sync::Arc<arc_swap::ArcSwap<T>>,
    parse: std::sync::Arc<Parse<T>>,
    successor: Option<std::sync::Arc<SuccessorCheck<T>>>,
    on_change: std::sync::Arc<std::sync::OnceLock<Box<OnChange<T>>>>,
}

/// Called with the value replaced and its replacement.
type OnChange<T> = dyn Fn(std::sync::Arc<T>, std::sync::Arc<T>) + Send + Sync;

/// Judges a parsed new value against the one in force.
type SuccessorCheck<T> = dyn Fn(&T, &T) -> Result<Successor, KitError> + Send + Sync;

/// What to do with a new value that parsed, once compared with the value in
/// force (see [`LiveFile::with_successor_check`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Successor {
    /// Put it in force.
    Replace,
    /// It says nothing new: keep the value in force, and call no change
    /// handler (an explicit reload of an unchanged file is not a change).
    Keep,
}

impl<T> Clone for LiveFile<T> {
    fn clone(&self) -> Self {
        Self {
            file: self.file.clone(),
            value: self.value.clone(),
            parse: self.parse.clone(),
            successor: self.successor.clone(),
            on_change: self.on_change.clone(),
        }
    }
}

impl<T> std::fmt::Debug for LiveFile<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveFile")
            .field("path", &self.file.path)
            .finish_non_exhaustive()
    }
}

impl<T: Send + Sync + 'static> LiveFile<T> {
    /// Reads and parses `path` now; `what` names the setting in errors
    /// (`policy`, `reference_data`).
    pub fn load(
        what: &str,
        path: PathBuf,
        parse: impl Fn(&[u8]) -> Result<T, KitError> + Send + Sync + 'static,
    ) -> Result<Self, KitError> {
        let bytes = std::fs::read(&path)
            .map_err(|e| KitError::Config(format!("{what} {}: {e}", path.display())))?;
        let value = parse(&bytes)
            .map_err(|e| KitError::Config(format!("{what} {}: {e}", path.display())))?;
        Ok(Self {
            file: std::sync::Arc::new(WatchedFile::new(path, &bytes)),
            value: std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(value)),
            parse: std::sync::Arc::new(parse),
            successor: None,
            on_change: std::sync::Arc::new(std::sync::OnceLock::new()),
        })
    }

    /// Compares every new value that parsed with the value in force before
    /// it replaces it: `check(in_force, new)` may keep the old one or refuse
    /// the new one with its reason (the reference data refuses a changed
    /// file that kept its version). Without a check every parsed value
    /// replaces the one in force.
    pub fn with_successor_check(
        mut self,
        check: impl Fn(&T, &T) -> Result<Successor, KitError> + Send + Sync + 'static,
    ) -> Self {
        self.successor = Some(std::sync::Arc::new(check));
        self
    }

    /// The shared value; `load()` on it gives the one in force.
    pub fn shared(&self) -> std::sync::Arc<arc_swap::ArcSwap<T>> {
        self.value.clone()
    }

    /// Reads the file now and applies it, or says why not (the value in
    /// force then stays).
    pub fn reload(&self) -> Result<(), KitError> {
        self.file.reload(|bytes| self.install(bytes))
    }

    fn install(&self, bytes: &[u8]) -> Result<(), KitError> {
        let new = std::sync::Arc::new((self.parse)(bytes)?);
        if let Some(check) = &self.successor
            && check(&self.value.load(), &new)? == Successor::Keep
        {
            return Ok(());
        }
        let old = self.value.swap(new.clone());
        if let Some(f) = self.on_change.get() {
            f(old, new);
        }
        Ok(())
    }

    /// Calls `f` with the old and the new value after each change applied
    /// (by the watcher or by [`reload`](Self::reload)); set once.
    pub fn on_change(
        &self,
        f: impl Fn(std::sync::Arc<T>, std::sync::Arc<T>) + Send + Sync + 'static,
    ) -> Result<(), KitError> {
        self.on_change
            .set(Box::new(f))
            .map_err(|_| KitError::Config("a change handler is already set".into()))
    }

    /// Watches the file until `shutdown`, applying each change.
    pub fn watch(&self, hangups: HangupSignal, shutdown: &Shutdown) {
        let me = self.clone();
        let until = shutdown.clone();
        shutdown.spawn(async move {
            me.file
                .watch(hangups, until, |bytes| me.install(bytes))
                .await;
        });
    }
}

impl LiveFile<orex_membership::Partnership> {
    /// The partnership policy file: members, blocs and suspensions apply
    /// without a restart.
    pub fn policy(path: PathBuf) -> Result<Self, KitError> {
        let base = path.clone();
        Self::load("policy", path, move |bytes| {
            orex_membership::Partnership::from_bytes(&base, bytes)
                .map_err(|e| KitError::Config(e.to_string()))
        })
    }
}

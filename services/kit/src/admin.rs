//! `orex.admin.v1.AdminService` on every server: what operators' tooling
//! calls (`orex admin backup`). Closed unless `[ops] admin_workloads` names
//! the workloads that may call it; [`AdminGate`], around every server, lets
//! those workloads reach this service and nothing else, and keeps everyone
//! else out of it.

use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use orex_proto::admin::v1::admin_service_server::AdminService;
use orex_proto::admin::v1::{BackupRequest, BackupResponse};
use tokio::io::AsyncReadExt;
use tonic::body::Body;
use tonic::codegen::Service;
use tonic::codegen::http;
use tonic::transport::CertificateDer;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::{Code, Request, Response, Status};

use crate::identity::PeerIdentity;
use crate::status::{self, Reason};
use crate::store::Store;

/// The path prefix of the admin service's methods.
const PREFIX: &str = "/orex.admin.v1.AdminService/";

/// Bytes per streamed backup message.
const CHUNK: usize = 64 * 1024;

/// An admin call as the gate decided it, for a server that records calls
/// (the gateway writes each in its access log).
#[derive(Debug)]
pub struct AdminAttempt {
    /// The method path.
    pub method: String,
    /// The caller's certificate chain (leaf first), if it presented one.
    pub peer_certs: Option<Arc<Vec<CertificateDer<'static>>>>,
    /// `Ok(workload)` when admitted, else the refusal the gate would answer.
    pub decision: Result<String, Status>,
}

/// Told of every admin call before it runs or is refused. For an admitted
/// call, `Err` refuses it after all (its record could not be written: fail
/// closed); for a refused one, the `Err` is the answer given.
pub type AdminAudit =
    Arc<dyn Fn(AdminAttempt) -> BoxFuture<'static, Result<(), Status>> + Send + Sync>;

/// The workload an admin call was admitted for (set by [`AdminGate`]).
#[derive(Debug, Clone)]
pub struct AdminCaller(pub String);

/// The admin service of one server.
#[derive(Debug, Clone)]
pub struct Admin {
    store: Store,
    server: String,
}

impl Admin {
    /// Serves backups of `store` for the binary `server` (`orex-sharing`).
    /// Snapshot files a crash left behind are removed now.
    pub fn new(store: Store, server: impl Into<String>) -> Self {
        let admin = Self {
            store,
            server: server.into(),
        };
        if let Ok(entries) = std::fs::read_dir(admin.snapshot_folder()) {
            for e in entries.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                if name.starts_with(SNAPSHOT_PREFIX) && name.ends_with(".partial") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        admin
    }

    /// Where snapshots are written: beside the store, on its volume (a
    /// pod's root filesystem is read-only, and the volume is sized for the
    /// store anyway).
    fn snapshot_folder(&self) -> PathBuf {
        self.store
            .path()
            .parent()
            .map_or_else(std::env::temp_dir, std::path::Path::to_path_buf)
    }
}

/// How snapshot files are named (`.orex-backup-<uuid>.partial`).
const SNAPSHOT_PREFIX: &str = ".orex-backup-";

/// A temporary snapshot file, removed when the stream that sends it ends or
/// is dropped.
struct Snapshot(PathBuf);

impl Drop for Snapshot {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

type BackupStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<BackupResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl AdminService for Admin {
    type BackupStream = BackupStream;

    async fn backup(
        &self,
        request: Request<BackupRequest>,
    ) -> Result<Response<BackupStream>, Status> {
        let Some(AdminCaller(caller)) = request.extensions().get::<AdminCaller>().cloned() else {
            return Err(refused("this caller"));
        };
        // Writes wait from here until the snapshot has read all but the
        // event logs (`backup`).
        let gate = self.store.gate().clone().write_owned().await;
        let path = self
            .snapshot_folder()
            .join(format!("{SNAPSHOT_PREFIX}{}.partial", uuid::Uuid::new_v4()));
        let (store, server) = (self.store.clone(), self.server.clone());
        // The task owns the file's guard: if this call is cancelled while
        // it runs, the file is still removed when it ends.
        let taken = tokio::task::spawn_blocking(move || {
            let snapshot = Snapshot(path);
            let mut file = private_file(&snapshot.0)?;
            let summary = crate::backup::write_snapshot(&store, &server, &mut file, gate)?;
            file.flush()
                .and_then(|()| file.sync_all())
                .map_err(|e| crate::KitError::Backup(e.to_string()))?;
            Ok::<_, crate::KitError>((summary, snapshot))
        })
        .await
        .map_err(|e| {
            status::error(
                Code::Internal,
                Reason::Internal,
                format!("backup task: {e}"),
            )
        })?
        .map_err(|e| {
            tracing::error!(error = %e, "backup failed");
            status::error(
                Code::Unavailable,
                Reason::Internal,
                format!("the snapshot could not be written: {e}"),
            )
        })?;
        let (summary, snapshot) = taken;
        tracing::info!(
            %caller,
            entries = summary.entries,
            sha256 = %summary.sha256,
            "backup snapshot taken"
        );
        let file = tokio::fs::File::open(&snapshot.0).await.map_err(|e| {
            status::error(
                Code::Internal,
                Reason::Internal,
                format!("snapshot file: {e}"),
            )
        })?;
        let stream = futures::stream::unfold(Some((file, snapshot)), |state| async move {
            let (mut file, snapshot) = state?;
            let mut buf = vec![0u8; CHUNK];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(BackupResponse { data: buf }), Some((file, snapshot))))
                }
                Err(e) => Some((
                    Err(status::error(
                        Code::Internal,
                        Reason::Internal,
                        format!("reading the snapshot: {e}"),
                    )),
                    None,
                )),
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// Creates `path` readable by this user only: it holds the whole store.
fn private_file(path: &std::path::Path) -> Result<std::fs::File, crate::KitError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(path)
        .map_err(|e| crate::KitError::Backup(format!("{}: {e}", path.display())))
}

fn refused(who: &str) -> Status {
    status::error(
        Code::PermissionDenied,
        Reason::WorkloadNotAllowed,
        format!("{who} may not call the admin service (see [ops] admin_workloads)"),
    )
}

/// Keeps the admin service to the workloads in `[ops] admin_workloads`, and
/// those workloads to the admin service; see the module documentation.
#[derive(Clone, Default)]
pub struct AdminGate {
    allowed: Arc<Vec<String>>,
    audit: Option<AdminAudit>,
}

impl fmt::Debug for AdminGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminGate")
            .field("allowed", &self.allowed)
            .field("audited", &self.audit.is_some())
            .finish()
    }
}

impl AdminGate {
    /// Admits `allowed` workloads to the admin service (none: closed),
    /// telling `audit` (if any) of every admin call.
    pub fn new(allowed: Vec<String>, audit: Option<AdminAudit>) -> Self {
        Self {
            allowed: Arc::new(allowed),
            audit,
        }
    }
}

impl<S> tower_layer::Layer<S> for AdminGate {
    type Service = Gated<S>;

    fn layer(&self, inner: S) -> Gated<S> {
        Gated {
            inner,
            allowed: self.allowed.clone(),
            audit: self.audit.clone(),
        }
    }
}

/// The service [`AdminGate`] wraps around a server's routes.
#[derive(Clone)]
pub struct Gated<S> {
    inner: S,
    allowed: Arc<Vec<String>>,
    audit: Option<AdminAudit>,
}

impl<S> fmt::Debug for Gated<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gated")
            .field("allowed", &self.allowed)
            .finish_non_exhaustive()
    }
}

impl<S, B, R> Service<http::Request<B>> for Gated<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    B: Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    R::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<http::Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let to_admin = req.uri().path().starts_with(PREFIX);
        // Closed and not asked for: nothing to check (the common case).
        if !to_admin && self.allowed.is_empty() {
            let answered = self.inner.call(req);
            return Box::pin(async move { Ok(answered.await?.map(Body::new)) });
        }
        let certs = req
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(|i| i.peer_certs());
        let peer = certs
            .as_ref()
            .and_then(|certs| {
                let leaf = certs.first()?;
                crate::identity::peer_from_der(leaf.as_ref()).ok()
            })
            .map(|p| p.identity);
        let admin_workload = match &peer {
            Some(PeerIdentity::Workload(name)) if self.allowed.contains(name) => Some(name.clone()),
            _ => None,
        };
        let decision = match (to_admin, admin_workload) {
            (true, Some(name)) => Ok(name),
            (false, None) => {
                let answered = self.inner.call(req);
                return Box::pin(async move { Ok(answered.await?.map(Body::new)) });
            }
            (true, None) => {
                let who =
                    peer.map_or_else(|| "a caller without an identity".into(), |p| p.to_string());
                tracing::warn!(peer = %who, "refused an admin call");
                Err(refused(&who))
            }
            // An admin workload may call the admin service only.
            (false, Some(name)) => Err(status::error(
                Code::PermissionDenied,
                Reason::WorkloadNotAllowed,
                format!("the admin workload {name} may call only the admin service"),
            )),
        };
        // The service is called from the future (after the audit hook), so
        // it takes a ready clone, leaving a fresh one here.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let audit = self.audit.clone();
        let method = req.uri().path().to_owned();
        Box::pin(async move {
            let verdict = match &audit {
                Some(audit) => {
                    audit(AdminAttempt {
                        method,
                        peer_certs: certs,
                        decision: decision.clone(),
                    })
                    .await
                }
                None => decision.clone().map(|_| ()),
            };
            match (decision, verdict) {
                (Ok(name), Ok(())) => {
                    req.extensions_mut().insert(AdminCaller(name));
                    Ok(inner.call(req).await?.map(Body::new))
                }
                (Ok(_), Err(status)) | (Err(_), Err(status)) => Ok(status.into_http()),
                // A refusal stays one, whatever the hook says.
                (Err(status), Ok(())) => Ok(status.into_http()),
            }
        })
    }
}

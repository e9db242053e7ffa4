//! Forwarding a member's call to a backend: authenticate, then pass the
//! message on with the verified principal and the caller's deadline.

use futures::StreamExt;
use orex_kit::Shutdown;
use orex_kit::stream::BoxStream;
use tonic::{Request, Status, Streaming};

use crate::authn::{Authenticator, Caller};

/// Authenticates `req` and builds the request to send to the backend. Only
/// the message and the deadline cross: member metadata is never forwarded, so
/// a member cannot smuggle in the `x-orex-*` principal headers.
pub fn outbound<T>(auth: &Authenticator, req: Request<T>) -> Result<(Caller, Request<T>), Status> {
    let caller = auth.authenticate(&req)?;
    let deadline = req.metadata().get("grpc-timeout").cloned();
    let mut out = Request::new(req.into_inner());
    if let Some(d) = deadline {
        out.metadata_mut().insert("grpc-timeout", d);
    }
    orex_kit::forwarded::attach(&caller.principal, out.metadata_mut())?;
    Ok((caller, out))
}

/// Relays a backend stream to the member. It ends with UNAVAILABLE when the
/// gateway shuts down, and with UNAUTHENTICATED when the member's token
/// expires: a stream is never longer-lived than the token that opened it.
pub fn relay<T: Send + 'static>(
    upstream: Streaming<T>,
    shutdown: Shutdown,
    token_expires_at: u64,
) -> BoxStream<T> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let expiry = tokio::time::Instant::now()
        + std::time::Duration::from_secs(token_expires_at.saturating_sub(now));
    Box::pin(futures::stream::unfold(
        Some((upstream, shutdown)),
        move |state| async move {
            let (mut upstream, shutdown) = state?;
            tokio::select! {
                item = upstream.next() => item.map(|i| (i, Some((upstream, shutdown)))),
                _ = shutdown.wait() => Some((
                    Err(Status::unavailable(
                        "gateway is shutting down; reconnect with the last sequence you received to resume",
                    )),
                    None,
                )),
                _ = tokio::time::sleep_until(expiry) => Some((
                    Err(Status::unauthenticated(
                        "token expired; reconnect with a fresh token and the last sequence you received",
                    )),
                    None,
                )),
            }
        },
    ))
}

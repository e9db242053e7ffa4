//! Relaying a backend stream to a member: every event screened again, the
//! stream ended when the gateway shuts down or the member's token expires,
//! and one outcome record summarising what was delivered and withheld.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use orex_kit::Shutdown;
use orex_kit::stream::{BoxStream, STREAM_BUFFER};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming};

use crate::door::Pass;
use crate::policy::{Policy, PolicyHandle};

/// How long a final status may wait for a client that is not reading.
const FINAL_STATUS_WAIT: Duration = Duration::from_secs(1);

/// Relays `upstream` to the member. Each event is screened under the policy
/// in force when it arrives (not when the stream opened): `screen` returns
/// the owning member of an event the caller may see, or `None` to withhold
/// it; a member suspended meanwhile has its stream ended.
pub fn relay_screened<T, F>(
    mut upstream: Streaming<T>,
    pass: Pass,
    policy: PolicyHandle,
    shutdown: Shutdown,
    screen: F,
) -> BoxStream<T>
where
    T: Send + 'static,
    F: Fn(&Policy, &Pass, &T) -> Option<String> + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Result<T, Status>>(STREAM_BUFFER);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let expiry = tokio::time::Instant::now()
        + Duration::from_secs(pass.caller.expires_at.saturating_sub(now));
    let tracker = shutdown.clone();
    tracker.spawn(async move {
        let (mut delivered, mut withheld) = (0u64, 0u64);
        let mut owners = BTreeSet::new();
        let final_status = |status: Status| {
            let tx = tx.clone();
            async move {
                let code = status.code();
                let _ = tokio::time::timeout(FINAL_STATUS_WAIT, tx.send(Err(status))).await;
                code
            }
        };
        let end = loop {
            tokio::select! {
                item = upstream.next() => match item {
                    Some(Ok(event)) => {
                        let live = policy.current();
                        if !live.partnership.is_active_member(&pass.caller.principal.member) {
                            break final_status(Status::permission_denied(format!(
                                "member {} is suspended",
                                pass.caller.principal.member
                            )))
                            .await;
                        }
                        match screen(&live, &pass, &event) {
                        Some(owner) => {
                            if tx.send(Ok(event)).await.is_err() {
                                break Code::Cancelled;
                            }
                            delivered += 1;
                            owners.insert(owner);
                        }
                        None => {
                            withheld += 1;
                            tracing::error!(caller = %pass.caller.principal, "backend streamed an event the caller may not see; withheld");
                        }
                        }
                    }
                    Some(Err(status)) => break final_status(status).await,
                    None => break Code::Ok,
                },
                _ = shutdown.wait() => break final_status(Status::unavailable(
                    "gateway is shutting down; reconnect with the last sequence you received to resume",
                )).await,
                _ = tokio::time::sleep_until(expiry) => break final_status(Status::unauthenticated(
                    "token expired; reconnect with a fresh token and the last sequence you received",
                )).await,
                _ = tx.closed() => break Code::Cancelled,
            }
        };
        pass.finish(
            end,
            vec![],
            owners.into_iter().collect(),
            format!("stream delivered {delivered} events, withheld {withheld}"),
        )
        .await;
    });
    Box::pin(ReceiverStream::new(rx))
}

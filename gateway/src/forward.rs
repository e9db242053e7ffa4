//! Relaying a backend stream to a member: every event screened again under
//! the policy in force, the stream ended when the gateway shuts down, the
//! member's token expires, the member is suspended or loses the permission,
//! and outcome records summarising what was delivered and withheld.

use std::time::Duration;

use futures::StreamExt;
use orex_kit::Shutdown;
use orex_kit::stream::{BoxStream, SLOW_CONSUMER_TIMEOUT, STREAM_BUFFER};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming};

use crate::door::{Pass, Touched, authorise};
use crate::policy::{Policy, PolicyHandle};
use crate::tokens::unix_now;

/// How long a final status may wait for a client that is not reading.
const FINAL_STATUS_WAIT: Duration = Duration::from_secs(1);
/// How often an idle stream re-checks that its member may still have it.
const RECHECK_INTERVAL: Duration = Duration::from_secs(5);
/// Most delivered report ids kept for the outcome records of one stream.
const MAX_RECORDED_IDS: usize = 1000;

/// A backend's error as the member may see it: only the code and a bounded
/// message; internal failures get a generic text (details are in the
/// service's log), and no backend metadata passes.
pub fn sanitized(status: Status) -> Status {
    const MAX: usize = 512;
    match status.code() {
        Code::Internal | Code::Unknown | Code::DataLoss => Status::new(
            status.code(),
            "the service failed; operators have the details",
        ),
        code => {
            let mut message: String = status
                .message()
                .chars()
                .filter(|c| !c.is_control())
                .collect();
            if message.len() > MAX {
                let mut end = MAX;
                while !message.is_char_boundary(end) {
                    end -= 1;
                }
                message.truncate(end);
            }
            Status::new(code, message)
        }
    }
}

/// Relays `upstream` (a stream of `method`) to the member. `screen` returns
/// the report an event carries if the caller may see it under the live
/// policy, or `None` to withhold the event.
pub fn relay_screened<T, F>(
    mut upstream: Streaming<T>,
    pass: Pass,
    method: String,
    policy: PolicyHandle,
    shutdown: Shutdown,
    screen: F,
) -> BoxStream<T>
where
    T: Send + 'static,
    F: Fn(&Policy, &Pass, &T) -> Option<Touched> + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Result<T, Status>>(STREAM_BUFFER);
    let expiry = tokio::time::Instant::now()
        + Duration::from_secs(pass.caller.expires_at.saturating_sub(unix_now()));
    let tracker = shutdown.clone();
    tracker.spawn(async move {
        let (mut delivered, mut withheld) = (0u64, 0u64);
        let mut touched: Vec<Touched> = Vec::new();
        let shutting_down = || {
            Status::unavailable(
                "gateway is shutting down; reconnect with the last sequence you received to resume",
            )
        };
        let expired = || {
            Status::unauthenticated(
                "token expired; reconnect with a fresh token and the last sequence you received",
            )
        };
        let mut recheck = tokio::time::interval(RECHECK_INTERVAL);
        let end: Result<(), Status> = loop {
            tokio::select! {
                item = upstream.next() => match item {
                    Some(Ok(event)) => {
                        let live = policy.current();
                        if let Err(s) = authorise(&live.partnership, &pass.caller.principal, &method).map_err(Status::from) {
                            break Err(s);
                        }
                        let Some(report) = screen(&live, &pass, &event) else {
                            withheld += 1;
                            tracing::error!(caller = %pass.caller.principal, "backend streamed an event the caller may not see; withheld");
                            continue;
                        };
                        // The send waits for the client, but never past
                        // shutdown, expiry or the slow-consumer limit.
                        tokio::select! {
                            sent = tokio::time::timeout(SLOW_CONSUMER_TIMEOUT, tx.send(Ok(event))) => match sent {
                                Ok(Ok(())) => {}
                                Ok(Err(_)) => break Err(Status::cancelled("client left")),
                                Err(_) => break Err(Status::resource_exhausted(
                                    "client read too slowly and was dropped; reconnect with the last sequence you received",
                                )),
                            },
                            _ = shutdown.wait() => break Err(shutting_down()),
                            _ = tokio::time::sleep_until(expiry) => break Err(expired()),
                        }
                        delivered += 1;
                        if touched.len() < MAX_RECORDED_IDS {
                            touched.push(report);
                        }
                    }
                    Some(Err(status)) => break Err(sanitized(status)),
                    None => break Ok(()),
                },
                _ = recheck.tick() => {
                    if let Err(s) = authorise(&policy.current().partnership, &pass.caller.principal, &method).map_err(Status::from) {
                        break Err(s);
                    }
                }
                _ = shutdown.wait() => break Err(shutting_down()),
                _ = tokio::time::sleep_until(expiry) => break Err(expired()),
                _ = tx.closed() => break Err(Status::cancelled("client left")),
            }
        };
        let code = match end {
            Ok(()) => Code::Ok,
            Err(status) => {
                let code = status.code();
                if code != Code::Cancelled {
                    let _ = tokio::time::timeout(FINAL_STATUS_WAIT, tx.send(Err(status))).await;
                }
                code
            }
        };
        pass.finish(
            code,
            touched,
            format!("stream delivered {delivered} events, withheld {withheld}"),
        )
        .await;
    });
    Box::pin(ReceiverStream::new(rx))
}

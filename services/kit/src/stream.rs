//! Server streams over an [`EventLog`]: replay from a sequence, then follow
//! live events, through a bounded channel.
//!
//! The follower reads the durable log at its own pace, so a slow client never
//! makes the server buffer more than the channel holds. A client that stops
//! reading for [`SLOW_CONSUMER_TIMEOUT`] is dropped with RESOURCE_EXHAUSTED,
//! and at shutdown every stream ends with UNAVAILABLE; both statuses say which
//! sequence to resume after, and resuming loses and repeats nothing.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::Shutdown;
use crate::store::EventLog;

/// Events buffered per stream before the follower waits for the client.
pub const STREAM_BUFFER: usize = 64;
/// How long a client may leave a full buffer unread before it is dropped.
pub const SLOW_CONSUMER_TIMEOUT: Duration = Duration::from_secs(30);
/// Events read from the log per batch.
const READ_BATCH: usize = 256;

/// A boxed response stream, as tonic's generated traits want it.
pub type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Streams events after `after`, mapped by `map` (which decodes and filters:
/// `None` skips an event the caller must not see or did not ask for).
pub fn follow<T, F>(log: Arc<EventLog>, after: u64, shutdown: Shutdown, mut map: F) -> BoxStream<T>
where
    T: Send + 'static,
    F: FnMut(u64, &[u8]) -> Option<Result<T, Status>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Result<T, Status>>(STREAM_BUFFER);
    let (end_tx, end_rx) = oneshot::channel::<Status>();
    let stop_signal = shutdown.clone();
    stop_signal.spawn(async move {
        let mut cursor = after;
        let mut changes = log.watch();
        let end = loop {
            // Mark the current value seen *before* reading, so an event
            // published during the read wakes us up instead of being missed.
            changes.borrow_and_update();
            let batch = match log.read_after(cursor, READ_BATCH) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "event log read failed");
                    break Some(Status::internal("event log unavailable"));
                }
            };
            if batch.is_empty() {
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { break None },
                    _ = shutdown.wait() => break Some(resume_status(Status::unavailable, "server is shutting down", cursor)),
                    _ = tx.closed() => break None,
                }
                continue;
            }
            let mut stop = None;
            for (seq, bytes) in batch {
                if let Some(item) = map(seq, &bytes) {
                    let failed = item.is_err();
                    let sent = tokio::select! {
                        sent = tokio::time::timeout(SLOW_CONSUMER_TIMEOUT, tx.send(item)) => sent,
                        _ = shutdown.wait() => {
                            stop = Some(Some(resume_status(Status::unavailable, "server is shutting down", cursor)));
                            break;
                        }
                    };
                    match sent {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => {
                            stop = Some(None);
                            break;
                        }
                        Err(_) => {
                            stop = Some(Some(resume_status(
                                Status::resource_exhausted,
                                "client read too slowly and was dropped",
                                cursor,
                            )));
                            break;
                        }
                    }
                    if failed {
                        stop = Some(None);
                        break;
                    }
                }
                cursor = seq;
            }
            if let Some(end) = stop {
                break end;
            }
            if shutdown.is_triggered() {
                break Some(resume_status(Status::unavailable, "server is shutting down", cursor));
            }
        };
        if let Some(status) = end {
            let _ = end_tx.send(status);
        }
    });
    let tail = futures::stream::once(end_rx).filter_map(|r| async move { r.ok().map(Err) });
    Box::pin(ReceiverStream::new(rx).chain(tail))
}

fn resume_status(code: fn(String) -> Status, why: &str, cursor: u64) -> Status {
    code(format!(
        "{why}; reconnect with after_sequence={cursor} to resume"
    ))
}

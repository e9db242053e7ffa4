//! Server streams over an [`EventLog`]: replay from a sequence, then follow
//! live events, through a bounded channel.
//!
//! The follower reads the durable log at its own pace, so a slow client never
//! makes the server buffer more than the channel holds. A client that leaves
//! a full buffer unread for [`StreamConfig::slow_consumer_seconds`] is dropped
//! with RESOURCE_EXHAUSTED, and at shutdown every stream ends with
//! UNAVAILABLE; both statuses say which sequence to resume after, and
//! resuming loses and repeats nothing.
//!
//! The final status never waits for room in the buffer: it follows the
//! buffered events on a side channel ([`with_final_status`]), so a client
//! whose buffer is full still learns why its stream ended instead of seeing
//! a clean end and silently missing what came after.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::Shutdown;
use crate::store::EventLog;

/// How server streams treat their clients (`[streams]` in a server's config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// Events buffered per stream before the server waits for the client
    /// (default 64). Bounds a stream's memory with the message size limit.
    #[serde(default = "default_buffer_events")]
    pub buffer_events: usize,
    /// Seconds a client may leave a full buffer unread before its stream is
    /// ended with RESOURCE_EXHAUSTED (default 30, at least 1).
    #[serde(default = "default_slow_consumer_seconds")]
    pub slow_consumer_seconds: u64,
}

fn default_buffer_events() -> usize {
    64
}

fn default_slow_consumer_seconds() -> u64 {
    30
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            buffer_events: default_buffer_events(),
            slow_consumer_seconds: default_slow_consumer_seconds(),
        }
    }
}

impl StreamConfig {
    /// How long a full buffer may stay unread.
    pub fn slow_consumer_timeout(&self) -> Duration {
        Duration::from_secs(self.slow_consumer_seconds)
    }

    /// Checks the values (`field` names the config table in messages).
    pub fn validate(&self, field: &str) -> Result<(), crate::KitError> {
        if self.buffer_events == 0 || self.buffer_events > 65_536 {
            return Err(crate::KitError::Config(format!(
                "{field}.buffer_events must be 1 to 65536, got {}",
                self.buffer_events
            )));
        }
        if self.slow_consumer_seconds == 0 {
            return Err(crate::KitError::Config(format!(
                "{field}.slow_consumer_seconds must be at least 1"
            )));
        }
        Ok(())
    }
}

/// The sending half of a stream's bounded buffer.
///
/// Events travel boxed: a channel allocates its first block of slots up
/// front, and with full-size messages in the slots an idle stream would cost
/// ~15 KB; boxed, it costs a few hundred bytes, which is what lets a gateway
/// hold thousands of idle subscribers.
#[derive(Debug)]
pub struct EventSender<T> {
    tx: mpsc::Sender<Result<Box<T>, Box<Status>>>,
}

/// The client is gone: its end of the stream was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientGone;

impl<T> EventSender<T> {
    /// Waits for room in the buffer, then queues `item`.
    pub async fn send(&self, item: Result<T, Status>) -> Result<(), ClientGone> {
        self.tx
            .send(item.map(Box::new).map_err(Box::new))
            .await
            .map_err(|_| ClientGone)
    }

    /// Resolves when the client is gone.
    pub async fn closed(&self) {
        self.tx.closed().await
    }
}

/// A bounded event buffer whose receiving end, as a response stream, ends
/// with the status sent on the returned [`oneshot::Sender`] (if any) after
/// the buffered events — however full the buffer was when it was sent.
pub fn with_final_status<T: Send + 'static>(
    buffer: usize,
) -> (EventSender<T>, oneshot::Sender<Status>, BoxStream<T>) {
    let (tx, rx) = mpsc::channel::<Result<Box<T>, Box<Status>>>(buffer);
    let (end_tx, end_rx) = oneshot::channel::<Status>();
    let events = ReceiverStream::new(rx).map(|item| item.map(|t| *t).map_err(|s| *s));
    let tail = futures::stream::once(end_rx).filter_map(|r| async move { r.ok().map(Err) });
    (EventSender { tx }, end_tx, Box::pin(events.chain(tail)))
}

/// Events read from the log per batch.
const READ_BATCH: usize = 256;

/// A boxed response stream, as tonic's generated traits want it.
pub type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Streams events after `after`, mapped by `map` (which decodes and filters:
/// `None` skips an event the caller must not see or did not ask for).
pub fn follow<T, F>(
    log: Arc<EventLog>,
    after: u64,
    config: StreamConfig,
    shutdown: Shutdown,
    mut map: F,
) -> BoxStream<T>
where
    T: Send + 'static,
    F: FnMut(u64, &[u8]) -> Option<Result<T, Status>> + Send + 'static,
{
    let (tx, end_tx, stream) = with_final_status::<T>(config.buffer_events);
    let slow = config.slow_consumer_timeout();
    let stop_signal = shutdown.clone();
    stop_signal.spawn(async move {
        // `cursor`: last sequence read; `delivered`: last sequence sent. A
        // resume point names only what the client received, so a status never
        // reveals events it was not allowed to see.
        let mut cursor = after;
        let mut delivered = after;
        let mut changes = log.watch();
        let end = loop {
            // Mark the current value seen *before* reading, so an event
            // published during the read wakes us up instead of being missed.
            changes.borrow_and_update();
            let batch = match log.read_after(cursor, READ_BATCH) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "event log read failed");
                    break Some(StreamEnd::Internal);
                }
            };
            if batch.is_empty() {
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { break None },
                    _ = shutdown.wait() => break Some(StreamEnd::ShuttingDown { delivered }),
                    _ = tx.closed() => break None,
                }
                continue;
            }
            let mut stop = None;
            for (seq, bytes) in batch {
                cursor = seq;
                let Some(item) = map(seq, &bytes) else {
                    continue;
                };
                let failed = item.is_err();
                let sent = tokio::select! {
                    sent = tokio::time::timeout(slow, tx.send(item)) => sent,
                    _ = shutdown.wait() => {
                        stop = Some(Some(StreamEnd::ShuttingDown { delivered }));
                        break;
                    }
                };
                match sent {
                    Ok(Ok(())) if failed => {
                        stop = Some(None);
                        break;
                    }
                    Ok(Ok(())) => {
                        delivered = seq;
                        crate::metrics::global().event_delivered();
                    }
                    Ok(Err(_)) => {
                        stop = Some(None);
                        break;
                    }
                    Err(_) => {
                        crate::metrics::global().stream_dropped();
                        stop = Some(Some(StreamEnd::TooSlow { delivered }));
                        break;
                    }
                }
            }
            if let Some(end) = stop {
                break end;
            }
            if shutdown.is_triggered() {
                break Some(StreamEnd::ShuttingDown { delivered });
            }
            // A replay that filters out most events never awaits above; let
            // other tasks run between batches.
            tokio::task::yield_now().await;
        };
        if let Some(end) = end {
            let _ = end_tx.send(end.into());
        }
    });
    stream
}

/// Why a stream ended, and the one place that becomes a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// The server is shutting down.
    ShuttingDown {
        /// Last sequence sent to the client.
        delivered: u64,
    },
    /// The client left a full buffer unread for too long.
    TooSlow {
        /// Last sequence sent to the client.
        delivered: u64,
    },
    /// The event log could not be read.
    Internal,
}

impl From<StreamEnd> for Status {
    fn from(end: StreamEnd) -> Self {
        match end {
            // The resume point is also ErrorInfo metadata, for programs.
            StreamEnd::ShuttingDown { delivered } => crate::status::error_with(
                tonic::Code::Unavailable,
                crate::status::Reason::ShuttingDown,
                format!(
                    "server is shutting down; reconnect with after_sequence={delivered} to resume"
                ),
                &[("after_sequence", &delivered.to_string())],
            ),
            StreamEnd::TooSlow { delivered } => crate::status::error_with(
                tonic::Code::ResourceExhausted,
                crate::status::Reason::SlowConsumer,
                format!(
                    "client read too slowly and was dropped; reconnect with after_sequence={delivered} to resume"
                ),
                &[("after_sequence", &delivered.to_string())],
            ),
            StreamEnd::Internal => crate::status::error(
                tonic::Code::Internal,
                crate::status::Reason::Internal,
                "event log unavailable",
            ),
        }
    }
}

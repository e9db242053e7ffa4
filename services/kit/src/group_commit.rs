//! Group commit of whole writes, not only of flushes: the writes of
//! concurrent callers are applied together (one sled transaction or batch
//! for many callers), flushed once, and then made visible to readers.
//!
//! [`EventLog::commit`](crate::store::EventLog::commit) serialises callers
//! one transaction at a time and shares only the fsync; under many
//! concurrent writers the transactions themselves become the limit. Here
//! callers queue their operation; one writer drains the queue, hands every
//! queued operation to the service's `apply` at once with the first free
//! sequence number, waits for one flush, publishes the new sequences and
//! answers everyone.
//!
//! The writer is a task that exists only while there is work: when the queue
//! is empty it ends and drops its handles on the store, so a service that
//! stops and reopens its folder is never locked out by an idle writer.

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::KitError;
use crate::store::{EventLog, Store};

/// Most operations applied together; a bound on one batch's latency.
pub const MAX_BATCH: usize = 512;

/// What `apply` returns for one operation: its answer, and whether it
/// appended an event (and so used the next sequence number).
#[derive(Debug)]
pub struct Applied<Out> {
    /// The operation's answer.
    pub out: Out,
    /// True if it appended one event.
    pub appended: bool,
}

type Pending<Op, Out> = (
    Op,
    oneshot::Sender<Result<Out, KitError>>,
    oneshot::Sender<Result<(), KitError>>,
);

fn stopped() -> KitError {
    KitError::Flush("the writer stopped".into())
}

/// An applied operation whose flush may still be under way.
#[derive(Debug)]
pub struct Staged<Out> {
    /// The operation's answer.
    pub out: Out,
    /// Resolves once the operation is on disk.
    pub durable: Durable,
}

/// Resolves once a staged operation is on disk (and visible to readers).
#[derive(Debug)]
pub struct Durable(oneshot::Receiver<Result<(), KitError>>);

impl std::future::Future for Durable {
    type Output = Result<(), KitError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or_else(|_| Err(stopped())))
    }
}

/// Applies a batch: given the sequence number of the first event it may
/// append and the queued operations in order, writes them (appended events
/// numbered consecutively in operation order) and answers each. It may be
/// called again for the same batch only if it returned an error; it must
/// have no side effects beyond the store.
pub type ApplyFn<Op, Out> = dyn Fn(u64, &[Op]) -> Result<Vec<Applied<Out>>, KitError> + Send + Sync;

struct Queue<Op, Out> {
    pending: Vec<Pending<Op, Out>>,
    writing: bool,
}

/// A queue of operations on one event log, written in groups.
pub struct GroupCommit<Op, Out> {
    store: Store,
    log: Arc<EventLog>,
    apply: Arc<ApplyFn<Op, Out>>,
    queue: Arc<Mutex<Queue<Op, Out>>>,
}

impl<Op, Out> std::fmt::Debug for GroupCommit<Op, Out> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

impl<Op, Out> Clone for GroupCommit<Op, Out> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            log: self.log.clone(),
            apply: self.apply.clone(),
            queue: self.queue.clone(),
        }
    }
}

impl<Op: Send + 'static, Out: Send + 'static> GroupCommit<Op, Out> {
    /// Group commit onto `log` in `store`, writing with `apply`.
    pub fn new(store: Store, log: Arc<EventLog>, apply: Arc<ApplyFn<Op, Out>>) -> Self {
        Self {
            store,
            log,
            apply,
            queue: Arc::new(Mutex::new(Queue {
                pending: Vec::new(),
                writing: false,
            })),
        }
    }

    /// Queues `op` and resolves once it is applied, durable and visible to
    /// readers (or failed). Must be called inside a Tokio runtime.
    pub async fn submit(&self, op: Op) -> Result<Out, KitError> {
        let staged = self.stage(op).await?;
        staged.durable.await?;
        Ok(staged.out)
    }

    /// Queues `op` and resolves once it is applied (in the store, not yet
    /// durable): the answer, and a [`Durable`] that resolves once it is on
    /// disk. For callers that can overlap other work with the flush.
    pub async fn stage(&self, op: Op) -> Result<Staged<Out>, KitError> {
        let (applied_tx, applied_rx) = oneshot::channel();
        let (durable_tx, durable_rx) = oneshot::channel();
        let start_writer = {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.pending.push((op, applied_tx, durable_tx));
            !std::mem::replace(&mut q.writing, true)
        };
        if start_writer {
            // A task, not this caller's future: a caller that goes away
            // (a cancelled RPC) must not strand the others' writes.
            tokio::spawn(self.clone().write_until_empty());
        }
        let out = applied_rx.await.map_err(|_| stopped())??;
        Ok(Staged {
            out,
            durable: Durable(durable_rx),
        })
    }

    async fn write_until_empty(self) {
        let mut writer = Some(self);
        while let Some(w) = writer.take() {
            let batch: Vec<Pending<Op, Out>> = {
                let mut q = w.queue.lock().unwrap_or_else(|e| e.into_inner());
                let n = q.pending.len().min(MAX_BATCH);
                q.pending.drain(..n).collect()
            };
            let mut ops = Vec::with_capacity(batch.len());
            let mut durables = Vec::with_capacity(batch.len());
            let mut applied_replies = Vec::with_capacity(batch.len());
            for (op, applied, durable) in batch {
                ops.push(op);
                applied_replies.push(applied);
                durables.push(durable);
            }
            let flushed = match w.apply(ops) {
                Ok((upto, outs)) => {
                    for (reply, out) in applied_replies.into_iter().zip(outs) {
                        let _ = reply.send(Ok(out));
                    }
                    let flushed = w.store.durable().await;
                    if flushed.is_ok() {
                        w.log.publish(upto);
                    }
                    flushed
                }
                Err(e) => {
                    for reply in applied_replies {
                        let _ = reply.send(Err(e.for_each_caller()));
                    }
                    Err(e)
                }
            };
            let more = {
                let mut q = w.queue.lock().unwrap_or_else(|e| e.into_inner());
                q.writing = !q.pending.is_empty();
                q.writing
            };
            // Stop before answering if nothing is queued, so no idle task
            // holds the store once the last caller has its answer.
            if more {
                writer = Some(w);
            } else {
                drop(w);
            }
            for reply in durables {
                let _ = reply.send(match &flushed {
                    Ok(()) => Ok(()),
                    Err(e) => Err(e.for_each_caller()),
                });
            }
        }
    }

    /// Applies one batch; returns the last sequence it used and the answers.
    fn apply(&self, ops: Vec<Op>) -> Result<(u64, Vec<Out>), KitError> {
        let mut assigned = self.log.lock_assigned();
        let applied = (self.apply)(*assigned + 1, &ops)?;
        if applied.len() != ops.len() {
            return Err(KitError::Corrupt(format!(
                "a batch of {} operations produced {} answers",
                ops.len(),
                applied.len()
            )));
        }
        *assigned += applied.iter().filter(|a| a.appended).count() as u64;
        Ok((*assigned, applied.into_iter().map(|a| a.out).collect()))
    }
}

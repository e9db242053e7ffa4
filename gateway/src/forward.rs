//! Forwarding member calls to a backend service, shared by every service
//! face of the gateway: [`forward_unary`] for unary calls (door, forward,
//! screen, record), and [`relay_screened`] for streams.
//!
//! Relaying a backend stream to a member: every event screened again under
//! the policy in force, the stream ended when the gateway shuts down, the
//! member's token expires, the member is suspended or loses the permission,
//! and outcome records summarising what was delivered and withheld.
//!
//! A member that stops reading holds only its own stream: the relay stops
//! pulling from the backend, which holds at most one HTTP/2 stream window on
//! the shared backend connection (see `orex_kit::transport`), and after
//! `slow_consumer_seconds` the stream ends with RESOURCE_EXHAUSTED naming the
//! sequence to resume after. That status is delivered after the buffered
//! events whatever the state of the buffer.

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use orex_kit::Shutdown;
use orex_kit::stream::{BoxStream, EventSender, StreamConfig, with_final_status};
use orex_membership::MethodClass;
use tonic::{Code, Request, Response, Status, Streaming};

use crate::door::{Door, Pass, Touched, authorise};
use crate::policy::{Policy, PolicyHandle};
use crate::ratelimit::class_of;
use crate::tokens::unix_now;
use orex_kit::status::{self as kit_status, Reason};

/// How often an idle stream re-checks that its member may still have it.
const RECHECK_INTERVAL: Duration = Duration::from_secs(5);
/// Most delivered report ids kept for the outcome records of one stream.
const MAX_RECORDED_IDS: usize = 1000;

/// A unary member call, the way every service face handles one: the door
/// admits it (recording the DECISION), `call` forwards the outbound request
/// (message, deadline and verified principal only) to the backend, `screen`
/// checks the answer against what the caller may see and names the
/// resources it touched, and the OUTCOME is recorded with the status the
/// member is told (backend errors sanitised once). Reads overlap the
/// decision's flush with the backend call and are released only once both
/// records are durable; writes are forwarded only once their decision is.
pub async fn forward_unary<Req, Resp, Call, Fut>(
    door: &Door,
    method: &str,
    req: Request<Req>,
    resources: Vec<String>,
    call: Call,
    screen: impl FnOnce(&Pass, Resp) -> Result<(Resp, Vec<Touched>), Status>,
) -> Result<Response<Resp>, Status>
where
    Call: FnOnce(Request<Req>) -> Fut,
    Fut: Future<Output = Result<Response<Resp>, Status>>,
{
    let read = class_of(method) == MethodClass::Read;
    let pass = if read {
        door.admit_read(&req, method, resources).await?
    } else {
        door.admit(&req, method, resources).await?
    };
    let out = pass.outbound(req)?;
    let answer = call(out)
        .await
        .and_then(|resp| screen(&pass, resp.into_inner()));
    // Sanitised once: the record says what the member is told.
    let (answer, code, touched, reason) = match answer {
        Ok((resp, touched)) => (Ok(resp), Code::Ok, touched, "completed".to_owned()),
        Err(status) => {
            let status = sanitized(status);
            let (code, reason) = (status.code(), status.message().to_owned());
            (Err(status), code, vec![], reason)
        }
    };
    if read {
        pass.release(code, touched, reason).await?;
    } else {
        pass.finish(code, touched, reason).await;
    }
    answer.map(Response::new)
}

/// One service face's unary path: its door, the fully-qualified service
/// name its methods are recorded under, and the backend client calls are
/// forwarded with. Each face (sharing, risk, …) holds one, so a new
/// service's face is its handlers and its screening, nothing more.
#[derive(Debug, Clone)]
pub struct Face<C> {
    /// The door every call goes through.
    pub door: Door,
    /// `/orex.x.v1.XService/`, the prefix of every method name.
    pub service: &'static str,
    /// The backend client; cloned per call (it shares one connection).
    pub backend: C,
}

impl<C: Clone> Face<C> {
    /// [`forward_unary`] for method `name` of this face's service, calling
    /// `call` with a clone of the backend client.
    pub async fn unary<Req, Resp, Call, Fut>(
        &self,
        name: &str,
        req: Request<Req>,
        resources: Vec<String>,
        call: Call,
        screen: impl FnOnce(&Pass, Resp) -> Result<(Resp, Vec<Touched>), Status>,
    ) -> Result<Response<Resp>, Status>
    where
        Call: FnOnce(C, Request<Req>) -> Fut,
        Fut: Future<Output = Result<Response<Resp>, Status>>,
    {
        let method = format!("{}{name}", self.service);
        forward_unary(
            &self.door,
            &method,
            req,
            resources,
            |out| call(self.backend.clone(), out),
            screen,
        )
        .await
    }
}

/// Opens a member's stream on a backend, the way every face does: the door
/// admits the call (recording the DECISION), `call` opens the backend
/// stream with the outbound request, and a refusal is recorded and told to
/// the member sanitised — a backend that cannot be reached as
/// `SERVICE_UNAVAILABLE` naming `service`, so clients know to resume. The
/// [`Pass`] goes on to [`relay_screened`].
pub async fn open_stream<Req, T, Call, Fut>(
    door: &Door,
    method: &str,
    service: &str,
    req: Request<Req>,
    call: Call,
) -> Result<(Streaming<T>, Pass), Status>
where
    Call: FnOnce(Request<Req>) -> Fut,
    Fut: Future<Output = Result<Response<Streaming<T>>, Status>>,
{
    let pass = door.admit(&req, method, vec![]).await?;
    let out = pass.outbound(req)?;
    match call(out).await {
        Ok(s) => Ok((s.into_inner(), pass)),
        Err(status) => {
            let status = if status.code() == Code::Unavailable {
                kit_status::error(
                    Code::Unavailable,
                    Reason::ServiceUnavailable,
                    format!("the {service} service is unavailable; retry with your last sequence"),
                )
            } else {
                sanitized(status)
            };
            pass.finish(status.code(), vec![], status.message().to_owned())
                .await;
            Err(status)
        }
    }
}

/// A backend's error as the member may see it: its code, a bounded message
/// and only the `google.rpc` details that are safe to pass on
/// (`orex_kit::status::relayable_details`); internal failures get a generic
/// text (details are in the service's log), and no other backend metadata
/// passes.
pub fn sanitized(status: Status) -> Status {
    const MAX: usize = 512;
    match status.code() {
        Code::Internal | Code::Unknown => kit_status::error(
            status.code(),
            Reason::Internal,
            "the service failed; operators have the details",
        ),
        Code::DataLoss => kit_status::error(
            Code::DataLoss,
            Reason::DataDamaged,
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
            let details = kit_status::relayable_details(&status, fallback_reason(code));
            kit_status::rebuilt(code, message, details)
        }
    }
}

/// The reason a backend status without a known one is given.
fn fallback_reason(code: Code) -> Reason {
    match code {
        Code::InvalidArgument => Reason::InvalidField,
        Code::NotFound => Reason::NotFound,
        Code::OutOfRange => Reason::OutOfRange,
        Code::FailedPrecondition => Reason::ReportStatusConflict,
        Code::Aborted => Reason::VersionConflict,
        Code::ResourceExhausted => Reason::Overloaded,
        Code::Unauthenticated => Reason::PrincipalMissing,
        Code::PermissionDenied => Reason::RoleMissing,
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => Reason::ServiceUnavailable,
        _ => Reason::Internal,
    }
}

/// An event of a resumable stream: it carries the sequence a client resumes after.
pub trait Sequenced {
    /// The event's sequence number.
    fn sequence(&self) -> u64;
}

impl Sequenced for orex_proto::sharing::v1::SubscribeReportsResponse {
    fn sequence(&self) -> u64 {
        self.sequence
    }
}

/// A backend's end of a stream as the member sees it: sanitised, and for
/// the resumable ends, the resume point is the last event *this member*
/// received — the service's own count may name an event the gateway held
/// back, which would reveal another member's activity.
fn ended_upstream(status: Status, last: Option<u64>) -> Status {
    match status.code() {
        Code::ResourceExhausted => stream_end(
            Code::ResourceExhausted,
            Reason::SlowConsumer,
            format!("the service dropped the stream; {}", resume_hint(last)),
            last,
        ),
        Code::Unavailable => stream_end(
            Code::Unavailable,
            Reason::ServiceUnavailable,
            format!("the service is unavailable; {}", resume_hint(last)),
            last,
        ),
        _ => sanitized(status),
    }
}

/// A stream's end status; the resume point, when there is one, is also in
/// `ErrorInfo.metadata["after_sequence"]`.
fn stream_end(code: Code, reason: Reason, message: String, last: Option<u64>) -> Status {
    match last {
        Some(seq) => kit_status::error_with(
            code,
            reason,
            message,
            &[("after_sequence", &seq.to_string())],
        ),
        None => kit_status::error(code, reason, message),
    }
}

/// How a relayed stream ended, as the member sees it.
fn resume_hint(delivered: Option<u64>) -> String {
    match delivered {
        Some(seq) => format!("reconnect with after_sequence={seq} to resume"),
        None => "reconnect with the after_sequence you subscribed with to resume".to_owned(),
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
    config: StreamConfig,
    shutdown: Shutdown,
    screen: F,
) -> BoxStream<T>
where
    T: Sequenced + Send + 'static,
    F: Fn(&Policy, &Pass, &T) -> Option<Touched> + Send + 'static,
{
    let (tx, end_tx, stream) = with_final_status::<T>(config.buffer_events);
    let slow = config.slow_consumer_timeout();
    let expiry = tokio::time::Instant::now()
        + Duration::from_secs(pass.caller.expires_at.saturating_sub(unix_now()));
    let tracker = shutdown.clone();
    tracker.spawn(async move {
        let (mut delivered, mut withheld) = (0u64, 0u64);
        // The last sequence handed to the member: every earlier event it may
        // see is ahead of the final status in its stream.
        let mut last: Option<u64> = None;
        let mut touched: Vec<Touched> = Vec::new();
        let shutting_down = |last| {
            stream_end(
                Code::Unavailable,
                Reason::ShuttingDown,
                format!("gateway is shutting down; {}", resume_hint(last)),
                last,
            )
        };
        let expired = |last| {
            stream_end(
                Code::Unauthenticated,
                Reason::TokenExpired,
                format!(
                    "token expired; reconnect with a fresh token; {}",
                    resume_hint(last)
                ),
                last,
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
                        let seq = event.sequence();
                        // Boxed: the send's state is large and only alive
                        // while an event is in hand; an idle stream's task
                        // should not carry it (heap profile, BENCHMARKS.md).
                        match Box::pin(deliver(&tx, event, slow, &shutdown, expiry)).await {
                            Ok(()) => orex_kit::metrics::global().event_delivered(),
                            Err(Undelivered::Left) => break Err(Status::cancelled("client left")),
                            Err(Undelivered::TooSlow) => {
                                orex_kit::metrics::global().stream_dropped();
                                tracing::info!(caller = %pass.caller.principal, after_sequence = ?last, "stream dropped: client read too slowly");
                                break Err(stream_end(
                                    Code::ResourceExhausted,
                                    Reason::SlowConsumer,
                                    format!(
                                        "client read too slowly and was dropped; {}",
                                        resume_hint(last)
                                    ),
                                    last,
                                ));
                            }
                            Err(Undelivered::ShuttingDown) => break Err(shutting_down(last)),
                            Err(Undelivered::Expired) => break Err(expired(last)),
                        }
                        last = Some(seq);
                        delivered += 1;
                        if touched.len() < MAX_RECORDED_IDS {
                            touched.push(report);
                        }
                    }
                    Some(Err(status)) => break Err(ended_upstream(status, last)),
                    None => break Ok(()),
                },
                _ = recheck.tick() => {
                    if let Err(s) = authorise(&policy.current().partnership, &pass.caller.principal, &method).map_err(Status::from) {
                        break Err(s);
                    }
                }
                _ = shutdown.wait() => break Err(shutting_down(last)),
                _ = tokio::time::sleep_until(expiry) => break Err(expired(last)),
                _ = tx.closed() => break Err(Status::cancelled("client left")),
            }
        };
        let code = match end {
            Ok(()) => Code::Ok,
            Err(status) => {
                let code = status.code();
                if code != Code::Cancelled {
                    // Follows the buffered events, never waits for room.
                    let _ = end_tx.send(status);
                }
                code
            }
        };
        // Closing the channel lets the member read the final status now,
        // while the outcome is being recorded.
        drop(tx);
        // Boxed for the same reason: recording is large and happens once.
        Box::pin(pass.finish(
            code,
            touched,
            format!("stream delivered {delivered} events, withheld {withheld}"),
        ))
        .await;
    });
    stream
}

/// Why an event was not handed to the member.
enum Undelivered {
    /// The client went away.
    Left,
    /// The client left a full buffer unread for the slow-consumer limit.
    TooSlow,
    /// The gateway is shutting down.
    ShuttingDown,
    /// The token that opened the stream expired.
    Expired,
}

/// Hands `event` to the member's buffer: waits for room, but never past
/// shutdown, the token's expiry or the slow-consumer limit.
async fn deliver<T: Send + 'static>(
    tx: &EventSender<T>,
    event: T,
    slow: Duration,
    shutdown: &Shutdown,
    expiry: tokio::time::Instant,
) -> Result<(), Undelivered> {
    tokio::select! {
        sent = tokio::time::timeout(slow, tx.send(Ok(event))) => match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Undelivered::Left),
            Err(_) => Err(Undelivered::TooSlow),
        },
        _ = shutdown.wait() => Err(Undelivered::ShuttingDown),
        _ = tokio::time::sleep_until(expiry) => Err(Undelivered::Expired),
    }
}

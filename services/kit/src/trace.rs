//! One trace id per call, in every log line the call writes and carried to
//! the services the gateway calls, so an operator can follow one member's
//! call through the gateway and the service in JSON logs
//! (`OREX_LOG_FORMAT=json`: the id is the span field `trace_id`).
//!
//! The id comes from the caller's W3C `traceparent` header when it sends a
//! valid one (tracing systems, the gateway), else it is new. Handlers run
//! inside the call's span; `forwarded::attach` writes the id into the
//! outgoing `traceparent`. Lines logged by a stream's follower task after
//! the handler returned are outside the span.

use std::fmt;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::codegen::Service;
use tonic::codegen::http;
use tracing::Instrument;

tokio::task_local! {
    static CURRENT: TraceId;
}

/// A 128-bit W3C trace id.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TraceId([u8; 16]);

impl TraceId {
    /// A new random id.
    pub fn random() -> Self {
        Self(*uuid::Uuid::new_v4().as_bytes())
    }

    /// The trace id of a `traceparent` value (`00-<32 hex>-<16 hex>-<2 hex>`),
    /// if it is well formed and not all zeros.
    pub fn from_traceparent(value: &str) -> Option<Self> {
        let mut parts = value.split('-');
        let (version, trace, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version.len() != 2 || trace.len() != 32 || parent.len() != 16 || flags.len() != 2 {
            return None;
        }
        let mut id = [0u8; 16];
        hex::decode_to_slice(trace, &mut id).ok()?;
        (id != [0; 16]).then_some(Self(id))
    }

    /// A `traceparent` value naming this trace (a new parent id each time).
    pub fn traceparent(&self) -> String {
        let parent = uuid::Uuid::new_v4();
        format!("00-{self}-{}-01", hex::encode(&parent.as_bytes()[..8]))
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

/// The trace id of the call being handled, if any.
pub fn current() -> Option<TraceId> {
    CURRENT.try_with(|id| *id).ok()
}

/// Gives every call its trace id and span; see the module documentation.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceLayer;

impl<S> tower_layer::Layer<S> for TraceLayer {
    type Service = Traced<S>;

    fn layer(&self, inner: S) -> Traced<S> {
        Traced { inner }
    }
}

/// The service [`TraceLayer`] wraps around a server's routes.
#[derive(Debug, Clone)]
pub struct Traced<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for Traced<S>
where
    S: Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let id = req
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(TraceId::from_traceparent)
            .unwrap_or_else(TraceId::random);
        let span = tracing::info_span!("call", trace_id = %id, method = %req.uri().path());
        let answered = span.in_scope(|| CURRENT.sync_scope(id, || self.inner.call(req)));
        Box::pin(
            CURRENT
                .scope(id, async move {
                    let answer = answered.await;
                    tracing::debug!("call answered");
                    answer
                })
                .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_bad_values_are_ignored() {
        let id = TraceId::random();
        let header = id.traceparent();
        assert_eq!(TraceId::from_traceparent(&header), Some(id));
        for bad in [
            "",
            "00-abc-def-01",
            "00-00000000000000000000000000000000-0000000000000001-01",
            "00-zz0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
        ] {
            assert_eq!(TraceId::from_traceparent(bad), None, "{bad}");
        }
        assert!(
            TraceId::from_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
                .is_some()
        );
    }
}

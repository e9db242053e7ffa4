//! Requests the server cannot decode are the caller's fault, and say so.
//!
//! tonic answers a request whose bytes are not a valid message of the
//! method's type — invalid UTF-8 in a string, a wrong wire type, truncated
//! or random bytes, a group nested past prost's recursion limit — with
//! INTERNAL, and a message over the size limit with OUT_OF_RANGE, before
//! any handler runs. Both are the client's doing: this layer, around every
//! orex server (`server::serve`), turns them into INVALID_ARGUMENT
//! (`MALFORMED_REQUEST`) and RESOURCE_EXHAUSTED (`REQUEST_TOO_LARGE`) with
//! `google.rpc` details (a method no route serves: UNIMPLEMENTED
//! `METHOD_NOT_SERVED`), and hands each to an optional observer — the
//! gateway records it in the access log (the method is known from the path,
//! the caller from its certificate) and may answer otherwise (rate limited,
//! or UNAVAILABLE when the record cannot be written).
//!
//! The layer recognises tonic's own texts for these failures; a test
//! (`tests/e2e/malformed.rs`) sends each kind of bad request, so a tonic
//! upgrade that changes them fails there instead of silently answering
//! INTERNAL again.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::body::Body;
use tonic::codegen::Service;
use tonic::codegen::http;
use tonic::transport::CertificateDer;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::{Code, Status};

use crate::status::{self, Reason};

/// A request refused before any handler ran, as the observer sees it.
#[derive(Debug)]
pub struct RefusedRequest {
    /// The method path, `/package.Service/Method`.
    pub method: String,
    /// The client's certificate chain (leaf first), if it presented one.
    pub peer_certs: Option<Arc<Vec<CertificateDer<'static>>>>,
    /// The answer the layer would give.
    pub status: Status,
}

/// Told of every refused request; returns the status to answer with.
pub type Observer = Arc<dyn Fn(RefusedRequest) -> BoxFuture<'static, Status> + Send + Sync>;

/// The layer; see the module documentation.
#[derive(Clone, Default)]
pub struct RequestErrorsLayer {
    observer: Option<Observer>,
}

impl fmt::Debug for RequestErrorsLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestErrorsLayer")
            .field("observed", &self.observer.is_some())
            .finish()
    }
}

impl RequestErrorsLayer {
    /// A layer that tells `observer` (if any) of every refused request.
    pub fn new(observer: Option<Observer>) -> Self {
        Self { observer }
    }
}

impl<S> tower_layer::Layer<S> for RequestErrorsLayer {
    type Service = RequestErrors<S>;

    fn layer(&self, inner: S) -> RequestErrors<S> {
        RequestErrors {
            inner,
            observer: self.observer.clone(),
        }
    }
}

/// The service [`RequestErrorsLayer`] wraps around a server's routes.
#[derive(Clone)]
pub struct RequestErrors<S> {
    inner: S,
    observer: Option<Observer>,
}

impl<S> fmt::Debug for RequestErrors<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestErrors").finish_non_exhaustive()
    }
}

impl<S, B> Service<http::Request<B>> for RequestErrors<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<http::Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // Cheap clones (an Arc, a shared URI); the path and the certificate
        // matter only if the request turns out to be refused.
        let peer_certs = req
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(|i| i.peer_certs());
        let uri = req.uri().clone();
        let observer = self.observer.clone();
        let answered = self.inner.call(req);
        Box::pin(async move {
            let response = answered.await?;
            // Early refusals are "trailers-only": the status is in the headers.
            let Some(mapped) = Status::from_header_map(response.headers())
                .as_ref()
                .and_then(client_fault)
            else {
                return Ok(response);
            };
            let status = match observer {
                Some(observe) => {
                    observe(RefusedRequest {
                        method: uri.path().to_owned(),
                        peer_certs,
                        status: mapped,
                    })
                    .await
                }
                None => mapped,
            };
            Ok(status.into_http())
        })
    }
}

/// tonic's texts for a request it could not decode (`tonic-prost`'s decode
/// error is prost's `DecodeError`, which starts with the first).
const MALFORMED: [&str; 4] = [
    "failed to decode Protobuf message",
    "Unexpected EOF decoding stream",
    "Missing request message",
    "protocol error: received message with invalid compression flag",
];
/// tonic's text for a message over the decoding limit.
const TOO_LARGE: &str = "Error, decoded message length too large";

/// The status a request refused by tonic itself deserves — the client's
/// fault, or a method not served; `None` leaves every other answer as it is.
pub fn client_fault(status: &Status) -> Option<Status> {
    let message = status.message();
    match status.code() {
        Code::Internal if MALFORMED.iter().any(|m| message.starts_with(m)) => {
            let detail = message.trim_start_matches("failed to decode Protobuf message: ");
            Some(status::error(
                Code::InvalidArgument,
                Reason::MalformedRequest,
                format!("the request is not a valid message of this method's type: {detail}"),
            ))
        }
        // tonic's router for a path no service serves (handlers never
        // answer UNIMPLEMENTED): a refusal like any other, with its reason.
        Code::Unimplemented if status.details().is_empty() => Some(status::error(
            Code::Unimplemented,
            Reason::MethodNotServed,
            "this method is not served here",
        )),
        Code::OutOfRange if message.starts_with(TOO_LARGE) => Some(status::error(
            Code::ResourceExhausted,
            Reason::RequestTooLarge,
            format!(
                "the request is larger than this server accepts ({})",
                message.trim_start_matches("Error, decoded message length too large: ")
            ),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tonic_decode_failures_become_the_clients_fault() {
        let bad = Status::internal(
            "failed to decode Protobuf message: GetReportRequest.report_id: invalid string value: data is not UTF-8 encoded",
        );
        let s = client_fault(&bad).unwrap();
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().contains("GetReportRequest.report_id"), "{s:?}");
        assert_eq!(status::reason_of(&s), Some(Reason::MalformedRequest));

        let big = Status::out_of_range(
            "Error, decoded message length too large: found 5000000 bytes, the limit is: 4194304 bytes",
        );
        let s = client_fault(&big).unwrap();
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(status::reason_of(&s), Some(Reason::RequestTooLarge));
    }

    #[test]
    fn handler_answers_are_left_alone() {
        for s in [
            Status::internal("event log unavailable"),
            Status::out_of_range("after_sequence: beyond the end"),
            Status::invalid_argument("x: bad"),
        ] {
            assert!(client_fault(&s).is_none(), "{s:?}");
        }
    }
}

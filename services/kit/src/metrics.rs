//! Prometheus metrics, one registry per process, served on the ops port
//! (`ops::serve`, `GET /metrics`).
//!
//! Every gRPC call any orex server answers is counted by [`MetricsLayer`]
//! (around every server, in `server::serve`): calls by method and status
//! code, unary latency, open streams. Streams count the events they deliver
//! and the streams dropped for reading too slowly (`stream::follow`; no event
//! is ever skipped: a slow stream is ended with its resume point instead).
//! The gateway counts refusals by reason. Values that live elsewhere (store
//! sizes, the access log's length and checkpoint age) are read at scrape
//! time through [`Metrics::gauge_fn`].
//!
//! Method labels are bounded: a path that is not one of the methods in the
//! served descriptor sets is counted as `unknown`, so a client sending random
//! paths cannot grow the registry.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use prost::Message;
use tonic::body::Body;
use tonic::codegen::Service;
use tonic::codegen::http;

type Labels1 = [(&'static str, String); 1];
type Labels2 = [(&'static str, String); 2];

/// The process's metrics; see the module documentation.
pub struct Metrics {
    registry: Registry,
    calls: Family<Labels2, Counter>,
    latency: Family<Labels1, Histogram>,
    open_streams: Family<Labels1, Gauge>,
    events_delivered: Counter,
    streams_dropped: Counter,
    rejected: Family<Labels1, Counter>,
    tls_reloads: Family<Labels1, Counter>,
    methods: Methods,
    sampled: Arc<Sampled>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let calls = Family::<Labels2, Counter>::default();
        registry.register(
            "orex_grpc_requests",
            "gRPC calls answered, by method and status code",
            calls.clone(),
        );
        // 0.25 ms to ~8 s: an in-memory read to a call stuck behind a full disk.
        let latency = Family::<Labels1, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
        });
        registry.register(
            "orex_grpc_request_duration_seconds",
            "Time to answer a unary gRPC call, from its headers to its status",
            latency.clone(),
        );
        let open_streams = Family::<Labels1, Gauge>::default();
        registry.register(
            "orex_grpc_open_streams",
            "Server-streaming calls open now, by method",
            open_streams.clone(),
        );
        let events_delivered = Counter::default();
        registry.register(
            "orex_stream_events_delivered",
            "Events sent to stream clients",
            events_delivered.clone(),
        );
        let streams_dropped = Counter::default();
        registry.register(
            "orex_stream_dropped",
            "Streams ended because the client read too slowly (it resumes from its last event; no event is skipped)",
            streams_dropped.clone(),
        );
        let rejected = Family::<Labels1, Counter>::default();
        registry.register(
            "orex_rejected_requests",
            "Calls refused before any work, by reason (rate_limited, overloaded)",
            rejected.clone(),
        );
        let tls_reloads = Family::<Labels1, Counter>::default();
        registry.register(
            "orex_tls_reloads",
            "Changed certificate files seen, by outcome (applied, refused: the old certificate stays in force)",
            tls_reloads.clone(),
        );
        let sampled = Arc::new(Sampled::default());
        registry.register_collector(Box::new(sampled.clone()));
        Self {
            registry,
            calls,
            latency,
            open_streams,
            events_delivered,
            streams_dropped,
            rejected,
            tls_reloads,
            methods: Methods::from_descriptors(),
            sampled,
        }
    }

    /// The registry in the Prometheus/OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Counts an event sent to a stream client.
    pub fn event_delivered(&self) {
        self.events_delivered.inc();
    }

    /// Counts a stream ended for reading too slowly.
    pub fn stream_dropped(&self) {
        self.streams_dropped.inc();
    }

    /// Counts a call refused for `reason` (`rate_limited`, `overloaded`).
    pub fn rejected(&self, reason: &'static str) {
        self.rejected
            .get_or_create(&[("reason", reason.into())])
            .inc();
    }

    /// Counts changed certificate files, `applied` or `refused`.
    pub fn tls_reload(&self, outcome: &'static str) {
        self.tls_reloads
            .get_or_create(&[("outcome", outcome.into())])
            .inc();
    }

    /// Registers a gauge read at every scrape: `read` returns its value,
    /// [`Sample::Absent`] to leave it out of this scrape, or
    /// [`Sample::Gone`] once what it measures is gone (the gauge is then
    /// forgotten). `labels` tell apart several sources of one metric in a
    /// process.
    pub fn gauge_fn(
        &self,
        name: &'static str,
        help: &'static str,
        labels: Vec<(&'static str, String)>,
        read: impl Fn() -> Sample + Send + Sync + 'static,
    ) {
        let mut gauges = self
            .sampled
            .gauges
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        gauges.push(SampledGauge {
            name,
            help,
            labels,
            read: Box::new(read),
        });
    }

    fn call_started(&self, path: &str) -> CallRecord {
        let method = self.methods.label(path);
        let streaming = self.methods.is_streaming(path);
        let stream_gauge = streaming.then(|| {
            let g = self
                .open_streams
                .get_or_create(&[("method", method.clone())]);
            g.inc();
            g.clone()
        });
        CallRecord {
            method,
            started: Instant::now(),
            stream_gauge,
            done: false,
        }
    }

    fn call_ended(&self, record: &mut CallRecord, code: &str) {
        if record.done {
            return;
        }
        record.done = true;
        self.calls
            .get_or_create(&[("method", record.method.clone()), ("code", code.into())])
            .inc();
        match &record.stream_gauge {
            Some(g) => {
                g.dec();
            }
            None => self
                .latency
                .get_or_create(&[("method", record.method.clone())])
                .observe(record.started.elapsed().as_secs_f64()),
        }
    }
}

/// The gRPC methods this process may serve, from every descriptor set the
/// servers register (orex's, health, reflection).
#[derive(Debug, Default)]
struct Methods {
    known: HashSet<String>,
    streaming: HashSet<String>,
}

impl Methods {
    fn from_descriptors() -> Self {
        let mut m = Self::default();
        for set in [
            orex_proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ] {
            let Ok(set) = prost_types::FileDescriptorSet::decode(set) else {
                continue;
            };
            for file in set.file {
                for service in &file.service {
                    for method in &service.method {
                        let path =
                            format!("/{}.{}/{}", file.package(), service.name(), method.name());
                        if method.server_streaming() {
                            m.streaming.insert(path.clone());
                        }
                        m.known.insert(path);
                    }
                }
            }
        }
        m
    }

    fn label(&self, path: &str) -> String {
        if self.known.contains(path) {
            path.to_owned()
        } else {
            "unknown".to_owned()
        }
    }

    fn is_streaming(&self, path: &str) -> bool {
        self.streaming.contains(path)
    }
}

/// One call being answered; counted once, when its status is known or when
/// it is dropped unanswered (`CANCELLED`: the client went away).
struct CallRecord {
    method: String,
    started: Instant,
    stream_gauge: Option<Gauge>,
    done: bool,
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        global().call_ended(self, "CANCELLED");
    }
}

/// One reading of a gauge registered with [`Metrics::gauge_fn`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sample {
    /// Its value now.
    Value(f64),
    /// No value yet (an access log before its first checkpoint has no
    /// checkpoint age); asked again at the next scrape.
    Absent,
    /// What it measured is gone; the gauge is forgotten.
    Gone,
}

#[derive(Debug, Default)]
struct Sampled {
    gauges: Mutex<Vec<SampledGauge>>,
}

struct SampledGauge {
    name: &'static str,
    help: &'static str,
    labels: Vec<(&'static str, String)>,
    read: Box<dyn Fn() -> Sample + Send + Sync>,
}

impl fmt::Debug for SampledGauge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SampledGauge")
            .field("name", &self.name)
            .field("labels", &self.labels)
            .finish_non_exhaustive()
    }
}

impl Collector for Sampled {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let mut gauges = self.gauges.lock().unwrap_or_else(|e| e.into_inner());
        // Read every value first, forgetting gauges whose source is gone;
        // then write each metric's samples under one descriptor.
        let mut values: Vec<(usize, f64)> = Vec::new();
        let mut index = 0;
        gauges.retain(|g| {
            let kept = match (g.read)() {
                Sample::Value(v) => {
                    values.push((index, v));
                    true
                }
                Sample::Absent => true,
                Sample::Gone => false,
            };
            if kept {
                index += 1;
            }
            kept
        });
        let mut by_name: HashMap<&'static str, Vec<(usize, f64)>> = HashMap::new();
        let mut order = Vec::new();
        for (i, v) in values {
            let name = gauges[i].name;
            by_name
                .entry(name)
                .or_insert_with(|| {
                    order.push(name);
                    Vec::new()
                })
                .push((i, v));
        }
        for name in order {
            let samples = &by_name[name];
            let help = gauges[samples[0].0].help;
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for &(i, v) in samples {
                let labels = gauges[i].labels.as_slice();
                let family = metric.encode_family(&labels)?;
                ConstGauge::new(v).encode(family)?;
            }
        }
        Ok(())
    }
}

/// Counts every call a server answers; see the module documentation.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetricsLayer;

impl<S> tower_layer::Layer<S> for MetricsLayer {
    type Service = Measured<S>;

    fn layer(&self, inner: S) -> Measured<S> {
        Measured { inner }
    }
}

/// The service [`MetricsLayer`] wraps around a server's routes.
#[derive(Debug, Clone)]
pub struct Measured<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for Measured<S>
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
        let mut record = global().call_started(req.uri().path());
        let answered = self.inner.call(req);
        Box::pin(async move {
            let response = answered.await?;
            // A status in the headers ("trailers-only") ends the call now;
            // otherwise it comes in the trailers at the end of the body.
            if let Some(code) = grpc_status(response.headers()) {
                global().call_ended(&mut record, code);
                return Ok(response);
            }
            let (parts, body) = response.into_parts();
            Ok(http::Response::from_parts(
                parts,
                Body::new(MeasuredBody {
                    inner: body,
                    record,
                }),
            ))
        })
    }
}

/// A response body that counts its call when the status trailer passes.
struct MeasuredBody {
    inner: Body,
    record: CallRecord,
}

impl http_body::Body for MeasuredBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(grpc_status) {
                    global().call_ended(&mut this.record, code);
                }
            }
            Poll::Ready(Some(Err(_))) => global().call_ended(&mut this.record, "INTERNAL"),
            Poll::Ready(None) => global().call_ended(&mut this.record, "OK"),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The status code name in `grpc-status`, if the map has one.
fn grpc_status(headers: &http::HeaderMap) -> Option<&'static str> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    let code = tonic::Code::from_bytes(value.as_bytes());
    Some(code_name(code))
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_served_methods_become_labels() {
        let m = Methods::from_descriptors();
        assert_eq!(
            m.label("/grpc.health.v1.Health/Check"),
            "/grpc.health.v1.Health/Check"
        );
        assert_eq!(m.label("/made.up/Path"), "unknown");
        assert!(m.is_streaming("/grpc.health.v1.Health/Watch"));
        assert!(!m.is_streaming("/grpc.health.v1.Health/Check"));
    }

    #[test]
    fn sampled_gauges_are_rendered_and_forgotten_when_gone() {
        let m = Metrics::new();
        let alive = Arc::new(());
        let weak = Arc::downgrade(&alive);
        m.gauge_fn(
            "orex_test_size_bytes",
            "a test gauge",
            vec![("store", "a".into())],
            move || weak.upgrade().map_or(Sample::Gone, |_| Sample::Value(42.0)),
        );
        m.gauge_fn(
            "orex_test_size_bytes",
            "a test gauge",
            vec![("store", "b".into())],
            || Sample::Value(7.0),
        );
        let later = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let shown = later.clone();
        m.gauge_fn(
            "orex_test_size_bytes",
            "a test gauge",
            vec![("store", "c".into())],
            move || {
                if shown.load(std::sync::atomic::Ordering::Relaxed) {
                    Sample::Value(1.0)
                } else {
                    Sample::Absent
                }
            },
        );
        assert!(!m.render().contains("store=\"c\""), "absent for now");
        later.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(
            m.render().contains("orex_test_size_bytes{store=\"c\"} 1.0"),
            "then present"
        );
        let text = m.render();
        assert!(
            text.contains("orex_test_size_bytes{store=\"a\"} 42.0"),
            "{text}"
        );
        assert!(
            text.contains("orex_test_size_bytes{store=\"b\"} 7.0"),
            "{text}"
        );
        assert_eq!(text.matches("# TYPE orex_test_size_bytes gauge").count(), 1);
        drop(alive);
        let text = m.render();
        assert!(!text.contains("store=\"a\""), "{text}");
        assert!(text.contains("store=\"b\""), "{text}");
    }
}

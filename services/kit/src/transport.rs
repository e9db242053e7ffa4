//! TCP and HTTP/2 settings of every orex connection, accepted or dialled,
//! chosen on purpose and kept in one place so every service inherits them.
//!
//! - **TCP_NODELAY** on every socket. gRPC answers and stream events are
//!   small writes; with Nagle's algorithm they wait for the peer's delayed
//!   ACK (~40 ms on Linux). That was the whole of a publish's 44 ms median
//!   delivery time.
//! - **Keepalive** (TCP and HTTP/2 PING) finds dead peers of long-lived
//!   streams, which otherwise hold their slots until the OS gives up.
//! - **Flow-control windows.** Streams multiplexed on one HTTP/2 connection
//!   share its connection window: bytes a receiver does not consume hold it
//!   for every other stream. The gateway multiplexes every member's
//!   subscription onto one connection per backend, so a member that stops
//!   reading must only ever hold its own *stream* window. Dialled
//!   connections therefore pair a small stream window ([`STREAM_WINDOW`]) with
//!   a connection window large enough for [`CONNECTION_WINDOW`] /
//!   [`STREAM_WINDOW`] stalled streams at once; adaptive (BDP) windows are off
//!   because they grow the stream window of exactly the streams that pile up.
//!   Servers receive only requests, which are read as they arrive, so their
//!   windows stay near hyper's defaults.
//! - **Concurrent streams.** hyper's default of 200 streams per connection
//!   would queue every further call behind 200 open subscriptions; services
//!   accept [`MAX_CONCURRENT_STREAMS`], and the gateway bounds what it lets
//!   in with its own load limits rather than with an HTTP/2 refusal the
//!   caller cannot tell from a failure.

use std::time::Duration;

use std::task::{Context, Poll};

use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::codegen::http;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};

use crate::KitError;
use crate::tls::LoadedTls;

/// Per-stream receive window of dialled connections: what one stalled
/// stream may leave unread.
pub const STREAM_WINDOW: u32 = 64 * 1024;
/// Per-connection receive window of dialled connections: room for 16,384
/// stalled streams of [`STREAM_WINDOW`] before the connection stalls (the
/// HTTP/2 maximum is 2^31-1).
pub const CONNECTION_WINDOW: u32 = 1024 * 1024 * 1024;
/// Per-stream receive window of servers (requests are read as they arrive).
pub const SERVER_STREAM_WINDOW: u32 = 1024 * 1024;
/// Per-connection receive window of servers. Kept moderate: a peer may send
/// this much unread, and h2 allows half of it as small-frame overhead before
/// it closes the connection with ENHANCE_YOUR_CALM.
pub const SERVER_CONNECTION_WINDOW: u32 = 8 * 1024 * 1024;
/// Streams a server accepts at once on one connection.
pub const MAX_CONCURRENT_STREAMS: u32 = 16_384;
/// Idle time after which a connection is probed.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a probe may go unanswered before the connection is closed.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long dialling a service may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The accepted sockets of `listener`, each with TCP_NODELAY and keepalive.
pub fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(KEEPALIVE_INTERVAL))
}

/// How long a client may take to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The mutual-TLS connections accepted on `listener`, each with TCP_NODELAY
/// and keepalive, each handshaken with the certificate in force when it
/// arrived (`tls::LoadedTls`: rotation without a restart). Handshakes run
/// concurrently, bounded by [`HANDSHAKE_TIMEOUT`], so a client that stalls
/// in its handshake delays no one else. The stream owns the listener and
/// the handshakes: when the server drops it (at shutdown) the port is
/// released at once and unfinished handshakes are abandoned.
pub fn tls_incoming(
    listener: TcpListener,
    tls: LoadedTls,
) -> impl Stream<Item = Result<TlsStream<TcpStream>, std::io::Error>> {
    type Handshake = Option<TlsStream<TcpStream>>;
    let state = (incoming(listener), JoinSet::<Handshake>::new(), tls);
    futures::stream::unfold(state, |(mut accepted, mut handshakes, tls)| async move {
        loop {
            tokio::select! {
                next = accepted.next() => match next {
                    Some(Ok(socket)) => {
                        let acceptor = TlsAcceptor::from(tls.server_config());
                        handshakes.spawn(async move {
                            let peer = socket.peer_addr().ok();
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
                                Ok(Ok(stream)) => Some(stream),
                                Ok(Err(e)) => {
                                    tracing::debug!(?peer, error = %e, "TLS handshake failed");
                                    None
                                }
                                Err(_) => {
                                    tracing::debug!(?peer, "TLS handshake timed out");
                                    None
                                }
                            }
                        });
                    }
                    Some(Err(e)) => tracing::warn!(error = %e, "accept failed"),
                    None => return None,
                },
                Some(done) = handshakes.join_next(), if !handshakes.is_empty() => {
                    if let Ok(Some(stream)) = done {
                        return Some((Ok(stream), (accepted, handshakes, tls)));
                    }
                }
            }
        }
    })
}

/// Where orex dials a service: an endpoint with orex's transport settings
/// whose every connection is made with mutual TLS from the material in force
/// at that moment, so a reconnect after a certificate rotation presents the
/// new certificate.
#[derive(Debug, Clone)]
pub struct Dialer {
    endpoint: Endpoint,
    connector: TlsConnector,
}

impl Dialer {
    /// Dials `address` (`https://host:port`), checking that the server's
    /// certificate names `server_name`. Only `https` addresses are accepted:
    /// every hop is mutual TLS.
    pub fn new(address: &str, server_name: &str, tls: &LoadedTls) -> Result<Self, KitError> {
        let uri: http::Uri = address
            .parse()
            .map_err(|e| KitError::Config(format!("address {address:?}: {e}")))?;
        if uri.scheme_str() != Some("https") {
            return Err(KitError::Config(format!(
                "address {address:?}: must start with https:// (every hop is mutual TLS)"
            )));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| KitError::Config(format!("address {address:?}: no host")))?;
        if authority.port_u16().is_none() {
            return Err(KitError::Config(format!(
                "address {address:?}: name the port (`https://sharing:7101`)"
            )));
        }
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|e| KitError::Config(format!("server name {server_name:?}: {e}")))?;
        // tonic sees a plain URI: the connector below does the TLS itself.
        let endpoint = dial(
            Endpoint::from_shared(format!("http://{authority}"))
                .map_err(|e| KitError::Config(format!("address {address:?}: {e}")))?,
        );
        Ok(Self {
            endpoint,
            connector: TlsConnector {
                tls: tls.clone(),
                server_name: name,
            },
        })
    }

    /// Changes endpoint settings (timeouts).
    pub fn map(mut self, f: impl FnOnce(Endpoint) -> Endpoint) -> Self {
        self.endpoint = f(self.endpoint);
        self
    }

    /// A channel that connects on first use and reconnects as needed.
    pub fn connect_lazy(&self) -> Channel {
        self.endpoint
            .connect_with_connector_lazy(self.connector.clone())
    }

    /// A channel connected now.
    pub async fn connect(&self) -> Result<Channel, tonic::transport::Error> {
        self.endpoint
            .connect_with_connector(self.connector.clone())
            .await
    }
}

/// Makes one TCP connection and its TLS handshake, with the client
/// material in force.
#[derive(Clone)]
struct TlsConnector {
    tls: LoadedTls,
    server_name: ServerName<'static>,
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnector")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl tonic::codegen::Service<http::Uri> for TlsConnector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.tls.client_config());
        let name = self.server_name.clone();
        Box::pin(async move {
            let host = uri.host().ok_or("address without a host")?;
            let port = uri.port_u16().ok_or("address without a port")?;
            let tcp = TcpStream::connect((host.trim_matches(['[', ']']), port)).await?;
            // What tonic's own connector would set (it does not for ours).
            tcp.set_nodelay(true)?;
            socket2::SockRef::from(&tcp)
                .set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(KEEPALIVE_INTERVAL))?;
            let tls = connector.connect(name, tcp).await?;
            Ok(TokioIo::new(tls))
        })
    }
}

/// A server builder with orex's HTTP/2 settings (add TLS and routes).
pub fn server() -> Server {
    Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .http2_adaptive_window(Some(false))
        .initial_stream_window_size(SERVER_STREAM_WINDOW)
        .initial_connection_window_size(SERVER_CONNECTION_WINDOW)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
}

/// Applies orex's TCP and HTTP/2 settings to an endpoint orex dials.
pub fn dial(endpoint: Endpoint) -> Endpoint {
    endpoint
        .tcp_nodelay(true)
        .tcp_keepalive(Some(KEEPALIVE_INTERVAL))
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .http2_adaptive_window(false)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .connect_timeout(CONNECT_TIMEOUT)
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    #[test]
    fn a_service_address_must_be_https() {
        crate::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let a = rcgen::generate_simple_self_signed(vec!["sharing".into()]).unwrap();
        let write = |name: &str, text: String| {
            use std::os::unix::fs::PermissionsExt;
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            p
        };
        let tls = crate::tls::TlsFiles {
            ca: write("ca.pem", a.cert.pem()),
            cert: write("cert.pem", a.cert.pem()),
            key: write("key.pem", a.signing_key.serialize_pem()),
        }
        .load()
        .unwrap();
        let err = Dialer::new("http://sharing:7101", "sharing", &tls).unwrap_err();
        assert!(err.to_string().contains("https://"), "{err}");
        Dialer::new("https://sharing:7101", "sharing", &tls).unwrap();
        let err = Dialer::new("https://sharing", "sharing", &tls).unwrap_err();
        assert!(err.to_string().contains("port"), "{err}");
        Dialer::new("https://[::1]:7101", "sharing", &tls).unwrap();
    }

    #[tokio::test]
    async fn accepted_sockets_have_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut accepted = incoming(listener);
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let socket = accepted.next().await.unwrap().unwrap();
        assert!(socket.nodelay().unwrap());
    }
}

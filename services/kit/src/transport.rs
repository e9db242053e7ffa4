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

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Endpoint, Server};

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

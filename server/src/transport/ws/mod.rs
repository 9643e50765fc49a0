//! The WebSocket transport: TCP (optionally TLS) listeners, the upgrade with its access checks,
//! and a per-connection driver that turns frames into the connection core's messages and back,
//! with ping keepalive and an idle timeout.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, Stream, StreamExt};
use pixl_ipc_protocol::quote::bounded;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{
    ErrorResponse, Request as Upgrade, Response,
};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig as WireConfig;
use tokio_util::sync::PollSender;

mod driver;

use driver::Driver;

use super::{too_many_connections_line, Transport};
use crate::config::{TlsFiles, WebSocketConfig};
use crate::connection::{self, Inbound};
use crate::error::ServerError;
use crate::handler::ConnectionInfo;
use crate::outbound::Outbound;
use crate::server::Shared;

/// How long a peer may take over the TLS handshake and the HTTP upgrade.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Decoded messages a connection may have waiting for the core before the driver stops
/// reading frames.
const INBOUND_DEPTH: usize = 256;
/// Replies the core may hand the driver before it waits for the driver to catch up.
const REPLY_DEPTH: usize = 64;

/// What every WebSocket connection of this server shares: TLS, access rules, limits.
pub(crate) struct WsSetup {
    tls: Option<TlsAcceptor>,
    token: Option<String>,
    allowed_origins: Vec<String>,
    ping_interval: Duration,
    idle_timeout: Duration,
    wire: WireConfig,
    max_message_bytes: usize,
}

/// Bytes tungstenite offers each socket read. It zeroes that much before every read, so its
/// 128 KiB default cost more than the rest of a small message's handling (11% of the
/// server's CPU in perf); a large message's frame still reserves its full length.
const WS_READ_BUFFER: usize = 16 * 1024;

impl WsSetup {
    /// Loads the TLS files (if any), so a bad file fails the start, not the first connection.
    pub(crate) fn new(
        config: &WebSocketConfig,
        max_message_bytes: usize,
    ) -> Result<Self, ServerError> {
        let tls = config.tls.as_ref().map(load_tls).transpose()?;
        Ok(WsSetup {
            tls,
            token: config.token.clone(),
            allowed_origins: config.allowed_origins.clone(),
            ping_interval: config.ping_interval,
            idle_timeout: config.idle_timeout,
            wire: WireConfig::default()
                .read_buffer_size(WS_READ_BUFFER)
                .max_message_size(Some(max_message_bytes))
                .max_frame_size(Some(max_message_bytes)),
            max_message_bytes,
        })
    }

    /// The URL clients use for a listener on `addr`.
    pub(crate) fn url_for(&self, addr: SocketAddr) -> String {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        format!("{scheme}://{addr}/")
    }

    /// The upgrade's access rules: token (401), then Origin (403). `None` lets it through.
    fn check(&self, upgrade: &Upgrade) -> Option<(StatusCode, &'static str)> {
        if let Some(token) = &self.token {
            if !presented_tokens(upgrade).any(|given| same_secret(given, token)) {
                return Some((StatusCode::UNAUTHORIZED, "missing or wrong bearer token"));
            }
        }
        if !self.allowed_origins.is_empty() {
            if let Some(origin) = upgrade.headers().get("origin") {
                let allowed = origin
                    .to_str()
                    .is_ok_and(|origin| self.allowed_origins.iter().any(|ok| ok == origin));
                if !allowed {
                    return Some((StatusCode::FORBIDDEN, "origin not allowed"));
                }
            }
        }
        None
    }
}

fn load_tls(files: &TlsFiles) -> Result<TlsAcceptor, ServerError> {
    let tls_error = |path: &std::path::Path, reason: String| ServerError::Tls {
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|err| tls_error(&files.cert, err.to_string()))?;
    if certs.is_empty() {
        return Err(tls_error(&files.cert, "no certificate in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|err| tls_error(&files.key, err.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|err| tls_error(&files.key, err.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Binds every configured address with the configured backlog.
pub(crate) async fn bind_all(config: &WebSocketConfig) -> Result<Vec<TcpListener>, ServerError> {
    config
        .listen
        .iter()
        .map(|address| {
            let bind_error = |source| ServerError::WebSocketBind {
                address: *address,
                source,
            };
            let socket = if address.is_ipv4() {
                TcpSocket::new_v4()
            } else {
                TcpSocket::new_v6()
            }
            .map_err(bind_error)?;
            socket.set_reuseaddr(true).map_err(bind_error)?;
            socket.bind(*address).map_err(bind_error)?;
            socket.listen(config.backlog).map_err(bind_error)
        })
        .collect()
}

/// Says plainly what a listener off the loopback interface exposes.
pub(crate) fn warn_if_exposed(addr: SocketAddr, config: &WebSocketConfig) {
    if addr.ip().is_loopback() {
        return;
    }
    match (config.tls.is_some(), config.token.is_some()) {
        (true, true) => {}
        (false, false) => {
            tracing::warn!(%addr, "WebSocket listener is reachable from the network with neither TLS nor a token: anyone who can reach this address can call every handler and read every reply in clear text")
        }
        (false, true) => {
            tracing::warn!(%addr, "WebSocket listener is reachable from the network without TLS: the token, requests and replies travel in clear text")
        }
        (true, false) => {
            tracing::warn!(%addr, "WebSocket listener is reachable from the network without a token: anyone who can reach this address can call every handler")
        }
    }
}

/// The tokens an upgrade request presents: the bearer header and any `token=` query value.
fn presented_tokens(upgrade: &Upgrade) -> impl Iterator<Item = &str> {
    let header = upgrade
        .headers()
        .get_all("authorization")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| value.strip_prefix("Bearer "));
    let query = upgrade
        .uri()
        .query()
        .into_iter()
        .flat_map(|query| query.split('&'))
        .filter_map(|pair| pair.strip_prefix("token="));
    header.chain(query)
}

/// Compares without stopping at the first difference, so timing does not reveal the token.
fn same_secret(given: &str, expected: &str) -> bool {
    let (given, expected) = (given.as_bytes(), expected.as_bytes());
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

fn refusal(status: StatusCode, reason: &str) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(format!("{reason}\n")));
    *response.status_mut() = status;
    if status == StatusCode::UNAUTHORIZED {
        if let Ok(value) = "Bearer".parse() {
            response.headers_mut().insert("www-authenticate", value);
        }
    }
    response
}

/// One WebSocket listener.
pub(crate) struct WsTransport(pub(crate) TcpListener);

impl Transport for WsTransport {
    type Io = (TcpStream, SocketAddr);

    async fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, peer) = self.0.accept().await?;
        let _ = stream.set_nodelay(true);
        Ok((stream, peer))
    }

    async fn serve(
        shared: Arc<Shared>,
        id: u64,
        (tcp, peer): Self::Io,
        _permit: OwnedSemaphorePermit,
    ) {
        // The listener's runtime registered the socket; register it with this connection's
        // own (worker) runtime instead, or every event would hop threads to reach it.
        let tcp = match tcp.into_std().and_then(TcpStream::from_std) {
            Ok(tcp) => tcp,
            Err(err) => {
                tracing::warn!(conn = id, %peer, error = %err, "cannot set up the connection");
                return;
            }
        };
        let local = tcp.local_addr().unwrap_or(peer);
        match &shared.ws.tls {
            None => upgrade_and_serve(shared.clone(), id, tcp, local, peer, false).await,
            Some(acceptor) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
                .await
            {
                Ok(Ok(tls)) => upgrade_and_serve(shared.clone(), id, tls, local, peer, true).await,
                Ok(Err(err)) => {
                    tracing::info!(%peer, error = %bounded(&err.to_string()), "TLS handshake failed")
                }
                Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
            },
        }
    }

    async fn refuse(shared: Arc<Shared>, (tcp, _peer): Self::Io) {
        let body = too_many_connections_line(shared.config.max_connections);
        let response = format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let answer = async {
            match &shared.ws.tls {
                None => write_all_then_close(tcp, &response, &body).await,
                Some(acceptor) => {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        write_all_then_close(tls, &response, &body).await;
                    }
                }
            }
        };
        let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, answer).await;
    }
}

async fn write_all_then_close<S: AsyncWrite + Unpin>(mut stream: S, head: &str, body: &[u8]) {
    if stream.write_all(head.as_bytes()).await.is_ok() && stream.write_all(body).await.is_ok() {
        let _ = stream.shutdown().await;
    }
}

/// Runs the upgrade with its checks, then the connection.
async fn upgrade_and_serve<S>(
    shared: Arc<Shared>,
    id: u64,
    stream: S,
    local: SocketAddr,
    peer: SocketAddr,
    tls: bool,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut path = String::new();
    let setup = &shared.ws;
    // The callback's error type is tungstenite's HTTP response, large or not.
    #[allow(clippy::result_large_err)]
    let callback = |upgrade: &Upgrade, response: Response| {
        path = upgrade.uri().path().to_owned();
        match setup.check(upgrade) {
            None => Ok(response),
            Some((status, reason)) => {
                tracing::info!(peer = %peer, status = status.as_u16(), reason, "WebSocket upgrade refused");
                Err(refusal(status, reason))
            }
        }
    };
    let upgrade =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(setup.wire));
    let ws = match tokio::time::timeout(HANDSHAKE_TIMEOUT, upgrade).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(err)) => {
            // Its message may quote the peer's request (a header name, for one).
            tracing::info!(%peer, error = %bounded(&err.to_string()), "WebSocket upgrade refused or failed");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "WebSocket upgrade timed out");
            return;
        }
    };
    let info = Arc::new(ConnectionInfo {
        id,
        transport: crate::handler::Transport::WebSocket {
            local,
            peer,
            tls,
            path,
        },
        peer: None,
    });
    tracing::debug!(conn = id, %peer, "WebSocket connection opened");

    let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_DEPTH);
    let (frames_tx, frames_rx) = mpsc::channel(REPLY_DEPTH);
    let driver = Driver {
        ws,
        inbound: inbound_tx,
        replies: frames_rx,
        ping_interval: shared.ws.ping_interval,
        idle_timeout: shared.ws.idle_timeout,
        max_message_bytes: shared.ws.max_message_bytes,
        going_away: shared.env.shutdown.clone(),
    };
    let driver = tokio::spawn(driver.run(id));
    let requests = tokio_stream_from(inbound_rx);
    let sink =
        PollSender::new(frames_tx).sink_map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe));
    let (outbound, queue) = Outbound::new(shared.config.max_outbound_bytes_per_connection);
    shared.register(&info, &outbound);
    connection::serve(info, &shared.env, requests, Box::pin(sink), outbound, queue).await;
    shared.unregister(id);
    tokio::select! {
        _ = driver => {}
        () = shared.env.abort.cancelled() => {}
    }
    tracing::debug!(conn = id, "WebSocket connection closed");
}

/// A receiver as a `Stream`, without pulling in tokio-stream for one adapter.
fn tokio_stream_from(
    receiver: mpsc::Receiver<Inbound>,
) -> impl Stream<Item = Inbound> + Unpin + Send {
    futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    })
    .boxed()
}

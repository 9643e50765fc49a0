//! The WebSocket transport: one message per frame (several newline-separated lines allowed in
//! one frame, as tremor sends them), plain or (feature `tls`) over TLS.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use pixl_ipc_io::sink_queue::poll_drain;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::{Dialer, Incoming};
use crate::error::Error;

/// Bytes tungstenite offers each socket read. It zeroes that much before every read, so its
/// 128 KiB default costs more than the rest of a small reply's handling.
const WS_READ_BUFFER: usize = 16 * 1024;

/// How to reach a WebSocket server: TLS trust, certificate name, token.
#[derive(Debug, Clone, Default)]
pub(crate) struct WsOptions {
    #[cfg(feature = "tls")]
    pub(crate) ca_file: Option<std::path::PathBuf>,
    #[cfg(feature = "tls")]
    pub(crate) domain: Option<String>,
    pub(crate) token: Option<String>,
}

/// Pings the server may send while it does not read our pongs before the connection is cut:
/// each unsent pong is held in memory, so a server that floods pings without reading could
/// otherwise grow it without bound. The `ws` package cuts such a peer after a few dozen too.
pub(crate) const MAX_UNANSWERED_PINGS: u32 = 32;

/// What the WebSocket's byte stream saw: bytes written (so the reader can tell whether pongs
/// still leave), and the last bytes read (so a close frame tungstenite replaced can be named).
#[derive(Debug, Default)]
pub(crate) struct IoStats {
    written: std::sync::atomic::AtomicU64,
    tail: std::sync::Mutex<Vec<u8>>,
}

/// Longest WebSocket close frame from a server: 2 header bytes and up to 125 payload bytes.
const CLOSE_FRAME_MAX: usize = 127;

impl IoStats {
    fn written(&self) -> u64 {
        self.written.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn record_read(&self, bytes: &[u8]) {
        let mut tail = self
            .tail
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let bytes = &bytes[bytes.len().saturating_sub(CLOSE_FRAME_MAX)..];
        let keep = CLOSE_FRAME_MAX - bytes.len();
        let drop = tail.len().saturating_sub(keep);
        tail.drain(..drop);
        tail.extend_from_slice(bytes);
    }

    /// The close code of the server's last frame, if the last bytes read are a close frame.
    /// tungstenite replaces an invalid code with 1002 (the code it answers with) before the
    /// client sees it; this recovers what the server actually sent.
    fn sent_close_code(&self) -> Option<u16> {
        let tail = self
            .tail
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (2..=125usize).rev().find_map(|len| {
            let start = tail.len().checked_sub(2 + len)?;
            // FIN + close opcode, unmasked (a server's frames are never masked), this length.
            (tail[start] == 0x88 && usize::from(tail[start + 1]) == len)
                .then(|| u16::from_be_bytes([tail[start + 2], tail[start + 3]]))
        })
    }
}

/// Connects, upgrades and splits a WebSocket connection.
pub(super) async fn open(
    dialer: &Dialer,
    url: &str,
    tls: bool,
    host: &str,
    port: u16,
) -> Result<(WsReader, WsWriter), Error> {
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(|err| dialer.connect_error(err))?;
    let _ = tcp.set_nodelay(true);
    let stream = if tls {
        tls_stream(dialer, tcp, host).await?
    } else {
        WsStream::Plain(tcp)
    };
    let stats = Arc::new(IoStats::default());
    let io = WsIo {
        stream,
        stats: Arc::clone(&stats),
    };
    let mut request = url
        .into_client_request()
        .map_err(|err| ws_error(dialer, err))?;
    if let Some(token) = &dialer.ws.token {
        let value = format!("Bearer {token}").parse().map_err(|_| {
            dialer.connect_error(io::Error::other("the token is not a valid header value"))
        })?;
        request.headers_mut().insert("authorization", value);
    }
    let config = WebSocketConfig::default()
        .read_buffer_size(WS_READ_BUFFER)
        .max_message_size(Some(dialer.max_message_bytes))
        .max_frame_size(Some(dialer.max_message_bytes));
    let (ws, _response) = tokio_tungstenite::client_async_with_config(request, io, Some(config))
        .await
        .map_err(|err| ws_error(dialer, err))?;
    let (sink, frames) = ws.split();
    Ok((
        WsReader {
            frames,
            rest: None,
            stats,
            unanswered_pings: 0,
            written_at_last_ping: 0,
        },
        WsWriter {
            sink,
            unsent: VecDeque::new(),
            unsent_bytes: 0,
        },
    ))
}

#[cfg(feature = "tls")]
async fn tls_stream(dialer: &Dialer, tcp: TcpStream, host: &str) -> Result<WsStream, Error> {
    Ok(WsStream::Tls(Box::new(
        super::tls::handshake(dialer, tcp, host).await?,
    )))
}

#[cfg(not(feature = "tls"))]
async fn tls_stream(dialer: &Dialer, _tcp: TcpStream, _host: &str) -> Result<WsStream, Error> {
    Err(dialer.connect_error(io::Error::other(crate::address::NO_TLS_SUPPORT)))
}

/// A refused upgrade (401, 403) or a failed handshake, as a connect error with its reason.
fn ws_error(dialer: &Dialer, err: WsError) -> Error {
    let reason = match err {
        WsError::Http(response) => {
            let body = response
                .body()
                .as_deref()
                .map(|body| String::from_utf8_lossy(body).trim().to_owned())
                .unwrap_or_default();
            format!(
                "the server refused the upgrade with HTTP {}: {body}",
                response.status()
            )
        }
        other => other.to_string(),
    };
    dialer.connect_error(io::Error::other(reason))
}

/// The byte stream under a WebSocket: plain TCP or TLS.
pub(crate) enum WsStream {
    Plain(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// The byte stream under a WebSocket, counting what it writes and keeping what it last read.
pub(crate) struct WsIo {
    stream: WsStream,
    stats: Arc<IoStats>,
}

impl AsyncRead for WsIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = match &mut this.stream {
            WsStream::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            #[cfg(feature = "tls")]
            WsStream::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        };
        if let Poll::Ready(Ok(())) = polled {
            this.stats.record_read(&buf.filled()[before..]);
        }
        polled
    }
}

impl AsyncWrite for WsIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = match &mut this.stream {
            WsStream::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            #[cfg(feature = "tls")]
            WsStream::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        };
        if let Poll::Ready(Ok(written)) = polled {
            this.stats
                .written
                .fetch_add(written as u64, std::sync::atomic::Ordering::Relaxed);
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            WsStream::Plain(stream) => Pin::new(stream).poll_flush(cx),
            #[cfg(feature = "tls")]
            WsStream::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            WsStream::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            #[cfg(feature = "tls")]
            WsStream::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The receiving half of a WebSocket.
pub(crate) struct WsReader {
    frames: SplitStream<WebSocketStream<WsIo>>,
    /// What is left of the current frame: its lines are handed out one at a time, as the
    /// task asks for them, never all decoded up front.
    rest: Option<Bytes>,
    stats: Arc<IoStats>,
    /// Pings received in a row while nothing we wrote left (pongs pile up unsent).
    unanswered_pings: u32,
    written_at_last_ping: u64,
}

impl WsReader {
    /// The next line, or why the connection ended. Cancel-safe.
    pub(super) async fn next(&mut self) -> Incoming {
        loop {
            if let Some(line) = next_frame_line(&mut self.rest) {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Ok(Ok(line));
            }
            let payload = match self.frames.next().await {
                Some(Ok(Message::Text(text))) => Bytes::from(text),
                Some(Ok(Message::Binary(bytes))) => bytes,
                Some(Ok(Message::Close(frame))) => {
                    return Err(close_reason(frame.as_ref(), &self.stats));
                }
                Some(Ok(Message::Ping(_))) => {
                    let written = self.stats.written();
                    if written == self.written_at_last_ping {
                        self.unanswered_pings += 1;
                        if self.unanswered_pings > MAX_UNANSWERED_PINGS {
                            return Err(format!(
                                "the server sent more than {MAX_UNANSWERED_PINGS} pings \
                                 while not reading our pongs"
                            ));
                        }
                    } else {
                        self.unanswered_pings = 0;
                        self.written_at_last_ping = written;
                    }
                    continue;
                }
                Some(Ok(_)) => continue,
                Some(Err(err)) => return Err(err.to_string()),
                None => return Err("the server closed the connection".into()),
            };
            self.rest = Some(payload);
        }
    }
}

/// The next newline-separated line of a frame (tremor's `separate`); a frame without a newline
/// is one line.
fn next_frame_line(rest: &mut Option<Bytes>) -> Option<Bytes> {
    let remaining = rest.as_mut()?;
    match memchr::memchr(b'\n', remaining) {
        Some(end) => {
            let line = remaining.split_to(end + 1);
            Some(line.slice(..end))
        }
        None => rest.take(),
    }
}

/// Why the server's close frame ended the connection, with the code the server sent.
fn close_reason(
    frame: Option<&tokio_tungstenite::tungstenite::protocol::CloseFrame>,
    stats: &IoStats,
) -> String {
    let Some(frame) = frame else {
        return "the server closed the connection".into();
    };
    let code = u16::from(frame.code);
    if code == 1002 {
        // tungstenite answers an invalid close code with 1002 and reports its own answer.
        if let Some(sent) = stats.sent_close_code().filter(|sent| *sent != 1002) {
            return format!(
                "the server closed the connection with close code {sent}, which is not a valid \
                 close code (the client answered 1002 protocol error)"
            );
        }
    }
    format!("the server closed the connection ({code} {})", frame.reason)
}

/// The sending half of a WebSocket, with the frames queued but not yet written.
pub(crate) struct WsWriter {
    sink: SplitSink<WebSocketStream<WsIo>, Message>,
    unsent: VecDeque<Message>,
    unsent_bytes: usize,
}

impl WsWriter {
    /// Queues one encoded line (with its `\n`) as one frame.
    pub(super) fn queue(&mut self, line: &Bytes) {
        let payload = line.slice(..line.len().saturating_sub(1));
        self.unsent_bytes += payload.len();
        // Encoded JSON is always UTF-8; a binary frame would still be accepted.
        self.unsent.push_back(match payload.clone().try_into() {
            Ok(text) => Message::Text(text),
            Err(_) => Message::Binary(payload),
        });
    }

    /// Bytes queued and not yet written.
    pub(super) fn unsent(&self) -> usize {
        self.unsent_bytes
    }

    /// Writes as much as the connection takes; cancel-safe.
    pub(super) async fn write_some(&mut self) -> Result<(), String> {
        let Self {
            sink,
            unsent,
            unsent_bytes,
        } = self;
        std::future::poll_fn(|cx| {
            poll_drain(Pin::new(&mut *sink), unsent, cx, |frame| {
                *unsent_bytes = unsent_bytes.saturating_sub(frame.len());
            })
        })
        .await
        .map_err(|err| format!("write failed: {err}"))
    }

    /// Sends a close frame, waiting at most a second.
    pub(super) async fn shutdown(&mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.sink.close()).await;
    }
}

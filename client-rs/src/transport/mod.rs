//! The client's transports behind one reader/writer pair: newline-delimited JSON on a UNIX
//! socket, or (feature `ws`) one message per frame on a WebSocket, over TLS with feature `tls`.

#[cfg(feature = "tls")]
mod tls;
#[cfg(feature = "ws")]
mod ws;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use pixl_ipc_io::unix::{split_tokio, UnixReader, UnixWriter, WriteQueue};
use pixl_ipc_protocol::{FrameError, LineSplitter};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio_util::codec::FramedRead;

use crate::address::Address;
use crate::error::Error;

#[cfg(feature = "ws")]
pub(crate) use ws::WsOptions;

/// Everything needed to open a connection.
#[derive(Debug, Clone)]
pub(crate) struct Dialer {
    pub(crate) address: Address,
    pub(crate) timeout: Duration,
    pub(crate) max_message_bytes: usize,
    #[cfg(feature = "ws")]
    pub(crate) ws: WsOptions,
}

/// An open connection, split into the halves the task drives separately.
pub(crate) struct Connection {
    pub(crate) reader: Reader,
    pub(crate) writer: Writer,
}

/// One line (not decoded), a line too long to take, or (`Err`) the reason the connection ended.
pub(crate) type Incoming = Result<Result<Bytes, FrameError>, String>;

impl Dialer {
    /// Opens a connection within the timeout.
    pub(crate) async fn connect(&self) -> Result<Connection, Error> {
        match tokio::time::timeout(self.timeout, self.open()).await {
            Ok(result) => result,
            Err(_) => Err(self.connect_error(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no connection within {:?}", self.timeout),
            ))),
        }
    }

    pub(super) fn connect_error(&self, source: io::Error) -> Error {
        Error::Connect {
            address: self.address.to_string(),
            source: source.into(),
        }
    }

    async fn open(&self) -> Result<Connection, Error> {
        match &self.address {
            Address::Unix(path) => {
                let stream = UnixStream::connect(path)
                    .await
                    .map_err(|err| self.connect_error(err))?;
                self.unix_connection(stream)
            }
            Address::Abstract(name) => {
                let stream = connect_abstract(name)
                    .await
                    .map_err(|err| self.connect_error(err))?;
                self.unix_connection(stream)
            }
            #[cfg(feature = "ws")]
            Address::WebSocket {
                url,
                tls,
                host,
                port,
            } => {
                let (reader, writer) = ws::open(self, url, *tls, host, *port).await?;
                Ok(Connection {
                    reader: Reader::WebSocket(reader),
                    writer: Writer::WebSocket(writer),
                })
            }
            #[cfg(not(feature = "ws"))]
            Address::WebSocket { .. } => {
                Err(self.connect_error(io::Error::other(crate::address::NO_WS_SUPPORT)))
            }
        }
    }
}

impl Dialer {
    fn unix_connection(&self, stream: UnixStream) -> Result<Connection, Error> {
        let (read, write) = split_tokio(stream).map_err(|err| self.connect_error(err))?;
        Ok(Connection {
            reader: Reader::Unix(FramedRead::new(
                read,
                LineSplitter::new(self.max_message_bytes),
            )),
            writer: Writer::Unix {
                half: write,
                unsent: WriteQueue::default(),
            },
        })
    }
}

/// Connects to the Linux abstract socket `name`.
#[cfg(any(target_os = "linux", target_os = "android"))]
async fn connect_abstract(name: &str) -> io::Result<UnixStream> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;

    let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    UnixStream::connect_addr(&address.into()).await
}

/// Abstract sockets exist only on Linux.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
async fn connect_abstract(_name: &str) -> io::Result<UnixStream> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract sockets (@name) exist only on Linux",
    ))
}

/// A UNIX connection's receiving half: its lines, cut as they arrive.
pub(crate) type UnixLines = FramedRead<UnixReader, LineSplitter>;

/// The next line of a UNIX connection, or why it ended; see [`Reader::next`].
pub(crate) fn poll_unix_line(lines: &mut UnixLines, cx: &mut Context<'_>) -> Poll<Incoming> {
    match lines.poll_next_unpin(cx) {
        Poll::Pending => Poll::Pending,
        Poll::Ready(Some(Ok(item))) => Poll::Ready(Ok(item)),
        Poll::Ready(Some(Err(err))) => Poll::Ready(Err(err.to_string())),
        Poll::Ready(None) => Poll::Ready(Err("the server closed the connection".into())),
    }
}

/// The receiving half.
pub(crate) enum Reader {
    Unix(UnixLines),
    #[cfg(feature = "ws")]
    WebSocket(ws::WsReader),
}

impl Reader {
    /// The next line, or why the connection ended. Cancel-safe.
    pub(crate) async fn next(&mut self) -> Incoming {
        match self {
            Reader::Unix(lines) => std::future::poll_fn(|cx| poll_unix_line(lines, cx)).await,
            #[cfg(feature = "ws")]
            Reader::WebSocket(reader) => reader.next().await,
        }
    }
}

/// The sending half, with what has been queued but not yet written.
pub(crate) enum Writer {
    Unix {
        half: UnixWriter,
        unsent: WriteQueue,
    },
    #[cfg(feature = "ws")]
    WebSocket(ws::WsWriter),
}

impl Writer {
    /// Queues one encoded line (with its `\n`).
    pub(crate) fn queue(&mut self, line: &Bytes) {
        match self {
            Writer::Unix { unsent, .. } => unsent.push(line.clone()),
            #[cfg(feature = "ws")]
            Writer::WebSocket(writer) => writer.queue(line),
        }
    }

    /// Bytes queued and not yet written.
    pub(crate) fn unsent(&self) -> usize {
        match self {
            Writer::Unix { unsent, .. } => unsent.len(),
            #[cfg(feature = "ws")]
            Writer::WebSocket(writer) => writer.unsent(),
        }
    }

    /// Writes as much as the connection takes. Cancel-safe: nothing leaves the queue until the
    /// connection has accepted it.
    pub(crate) async fn write_some(&mut self) -> Result<(), String> {
        match self {
            Writer::Unix { half, unsent } => {
                std::future::poll_fn(|cx| unsent.poll_write_some(Pin::new(&mut *half), cx))
                    .await
                    .map(drop)
                    .map_err(|err| format!("write failed: {err}"))
            }
            #[cfg(feature = "ws")]
            Writer::WebSocket(writer) => writer.write_some().await,
        }
    }

    /// Writes what the connection takes right now, without waiting: `None` when that needs a
    /// wait (or, on a WebSocket, is always left to [`write_some`](Self::write_some)), else how
    /// the write went.
    ///
    /// Only a UNIX socket's queue keeps its bytes until the kernel has them, so a write that
    /// could not finish stays visible in [`unsent`](Self::unsent) and is finished by
    /// `write_some` with the task's waker. A WebSocket sink takes frames into its own buffer
    /// before flushing them: a flush left pending here (with no waker) would be seen by nobody.
    pub(crate) fn try_write_now(&mut self) -> Option<Result<(), String>> {
        match self {
            Writer::Unix { .. } => self.write_some().now_or_never(),
            #[cfg(feature = "ws")]
            Writer::WebSocket(_) => None,
        }
    }

    /// Ends the connection politely.
    pub(crate) async fn shutdown(&mut self) {
        match self {
            Writer::Unix { half, .. } => {
                let _ = half.shutdown().await;
            }
            #[cfg(feature = "ws")]
            Writer::WebSocket(writer) => writer.shutdown().await,
        }
    }
}

//! The per-connection WebSocket driver: frames in, the core's messages out (decoded one at a
//! time, as the core asks for them), replies back as frames of the request's type, pings, the
//! idle timeout, and noticing a peer that leaves while its frames are not being read.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Sink, SinkExt, StreamExt};
use pixl_ipc_io::sink_queue::poll_drain;
use pixl_ipc_protocol::quote::bounded;
use pixl_ipc_protocol::{decode_line, ErrorCode, ErrorReply, FrameError, RawRequest};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::frames::{with_tracker, FrameTracker};
use crate::connection::{Inbound, Received};
use crate::outbound::{Line, OutboundReceiver};

/// Frames taken from the reply queue before the driver waits for the socket to take them. They
/// stay counted by the connection's outbound gauge until written, so this bounds a count of
/// frames, not memory.
const OUTBOUND_DEPTH: usize = 64;

/// How long the driver tries to get its close frame (and what is queued before it) out to a
/// peer once it has decided to close; a peer that does not read is dropped after that.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Owns the socket: reads frames into decoded messages for the core, writes the core's replies
/// as frames, pings, and drops a silent or departed peer.
pub(super) struct Driver<S> {
    pub(super) ws: WebSocketStream<S>,
    /// The socket's descriptor, owned by `ws` for as long as the driver runs.
    pub(super) fd: RawFd,
    pub(super) inbound: mpsc::Sender<Inbound>,
    pub(super) replies: OutboundReceiver,
    pub(super) ping_interval: Duration,
    pub(super) idle_timeout: Duration,
    /// What the peer's frames say: whether a data message is left incomplete.
    pub(super) frames: Arc<Mutex<FrameTracker>>,
    /// How long a data message may stay incomplete without progress while frames are read.
    pub(super) partial_timeout: Duration,
    pub(super) max_message_bytes: usize,
    pub(super) going_away: tokio_util::sync::CancellationToken,
}

/// One received data frame whose messages the core has not all taken yet.
struct PendingFrame {
    payload: Bytes,
    /// Where the next line starts; past the end once every line was taken.
    next: usize,
    binary: bool,
}

impl PendingFrame {
    /// The frame's next message, decoding no further than that one line. Lines are separated by
    /// `\n` (tremor's `separate`); a frame without a newline is one message; blank lines and
    /// lines not starting with `{` are skipped, as on the byte stream.
    fn next_message(&mut self) -> Option<Received> {
        while self.next <= self.payload.len() {
            let rest = &self.payload[self.next..];
            let (line, taken) = match memchr::memchr(b'\n', rest) {
                Some(end) => (&rest[..end], end + 1),
                None => (rest, rest.len() + 1),
            };
            self.next += taken;
            if let Some(message) = decode_line::<RawRequest>(line) {
                return Some(Received {
                    message,
                    binary: self.binary,
                });
            }
        }
        None
    }

    fn is_done(&self) -> bool {
        self.next > self.payload.len()
    }
}

/// One thing the driver's loop reacts to.
enum Event<'a> {
    Slot(Option<mpsc::Permit<'a, Inbound>>),
    Frame(Option<Result<Message, WsError>>),
    Reply(Option<Line>),
    Written(Result<(), WsError>),
    PeerFinished,
    Ping,
    Idle,
    PartialTimeout,
    CloseGraceOver,
}

/// Why the driver decided to close, and so what it reports to the connection core.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Closing {
    /// The core finished: every reply was queued before the close frame.
    Done,
    /// The driver gave up on the peer (idle, too large, protocol error).
    Dropped,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Driver<S> {
    /// Runs the connection's socket. `Ok` when it closed after the core's last reply; an error
    /// when the peer left, failed, or was dropped first (the core then cancels what still runs).
    pub(super) async fn run(self, id: u64) -> io::Result<()> {
        let Driver {
            ws,
            fd,
            inbound,
            mut replies,
            ping_interval,
            idle_timeout,
            frames: tracker,
            partial_timeout,
            max_message_bytes,
            going_away,
        } = self;
        let (mut sink, mut frames) = ws.split();
        // Dropping this sender ends the core's request stream.
        let mut inbound = Some(inbound);
        let mut pending: Option<PendingFrame> = None;
        let mut unsent = Outgoing::default();
        let mut closing: Option<Closing> = None;
        // A second descriptor watching for the peer's FIN, only while frames are not read.
        let mut watch: Option<AsyncFd<OwnedFd>> = None;
        let start = tokio::time::Instant::now();
        let mut ping = tokio::time::interval_at(start + ping_interval, ping_interval);
        let idle = tokio::time::sleep(idle_timeout);
        tokio::pin!(idle);
        let close_grace = tokio::time::sleep(Duration::MAX);
        tokio::pin!(close_grace);
        // Armed while frames are read and a data message is incomplete; any data-frame byte
        // restarts it, control frames (pings, pongs) do not.
        let partial = tokio::time::sleep(Duration::MAX);
        tokio::pin!(partial);
        let mut partial_armed = false;
        let mut partial_mark = 0u64;

        let outcome = loop {
            if let Some(how) = closing {
                if unsent.is_empty() {
                    break match how {
                        Closing::Done => Ok(()),
                        Closing::Dropped => Err(io::ErrorKind::ConnectionAborted.into()),
                    };
                }
            }
            // Hand the pending frame's messages over while the core has room, without a trip
            // through the select (and without setting up the watch below for a wait that is
            // not happening).
            while let (Some(frame), Some(sender)) = (pending.as_mut(), inbound.as_ref()) {
                match sender.try_reserve() {
                    Ok(slot) => {
                        if let Some(message) = frame.next_message() {
                            slot.send(Ok(message));
                        }
                        if frame.is_done() {
                            pending = None;
                        }
                    }
                    Err(mpsc::error::TrySendError::Full(())) => break,
                    Err(mpsc::error::TrySendError::Closed(())) => pending = None,
                }
            }
            let reading = inbound.is_some() && closing.is_none();
            let reading_frames = reading && pending.is_none();
            if reading && !reading_frames && watch.is_none() {
                watch = watch_descriptor(fd)
                    .inspect_err(|err| tracing::debug!(conn = id, error = %err, "cannot watch for the peer leaving"))
                    .ok();
            } else if reading_frames {
                watch = None;
            }
            let (incomplete, progress) = with_tracker(&tracker, |frames| {
                (frames.partial(), frames.data_progress())
            });
            if reading_frames && incomplete {
                if !partial_armed || progress != partial_mark {
                    partial
                        .as_mut()
                        .reset(tokio::time::Instant::now() + partial_timeout);
                    partial_armed = true;
                    partial_mark = progress;
                }
            } else {
                partial_armed = false;
            }
            let mut stop_reading = false;
            // In its own block, so the event (which may borrow `inbound`) is gone before
            // `inbound` is dropped below.
            {
                let event = tokio::select! {
                    // Hand decoded messages to the core one slot at a time: the loop never blocks.
                    slot = reserve(&inbound), if pending.is_some() => Event::Slot(slot),
                    frame = frames.next(), if reading_frames => Event::Frame(frame),
                    () = peer_finished(watch.as_ref()), if reading && !reading_frames => Event::PeerFinished,
                    line = replies.recv(), if unsent.frames.len() < OUTBOUND_DEPTH && closing.is_none() => Event::Reply(line),
                    written = unsent.write_some(&mut sink), if !unsent.is_empty() => Event::Written(written),
                    _ = ping.tick(), if closing.is_none() => Event::Ping,
                    () = &mut idle, if closing.is_none() => Event::Idle,
                    () = &mut close_grace, if closing.is_some() => Event::CloseGraceOver,
                    () = &mut partial, if partial_armed && closing.is_none() => Event::PartialTimeout,
                };
                let mut close_with =
                    |unsent: &mut Outgoing, code: CloseCode, reason: &str, how: Closing| {
                        unsent.push(close(code, reason), 0);
                        closing = Some(how);
                        close_grace
                            .as_mut()
                            .reset(tokio::time::Instant::now() + CLOSE_GRACE);
                    };
                match event {
                    Event::Slot(Some(slot)) => {
                        if let Some(frame) = pending.as_mut() {
                            if let Some(message) = frame.next_message() {
                                slot.send(Ok(message));
                            }
                            if frame.is_done() {
                                pending = None;
                            }
                        }
                    }
                    Event::Slot(None) => pending = None,
                    Event::Frame(frame) => {
                        idle.as_mut()
                            .reset(tokio::time::Instant::now() + idle_timeout);
                        match frame {
                            Some(Ok(Message::Text(text))) => {
                                pending = Some(PendingFrame {
                                    payload: text.into(),
                                    next: 0,
                                    binary: false,
                                });
                            }
                            Some(Ok(Message::Binary(bytes))) => {
                                pending = Some(PendingFrame {
                                    payload: bytes,
                                    next: 0,
                                    binary: true,
                                });
                            }
                            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                            // The peer is leaving or gone: nothing more can be sent to it.
                            Some(Ok(Message::Close(_))) | None => {
                                break Err(io::ErrorKind::ConnectionReset.into())
                            }
                            Some(Err(WsError::Capacity(err))) => {
                                tracing::warn!(conn = id, error = %err, "WebSocket message over the limit; closing with 1009");
                                unsent.push(too_large_reply(max_message_bytes), 0);
                                let reason = format!(
                                    "message exceeds the maximum of {max_message_bytes} bytes"
                                );
                                close_with(&mut unsent, CloseCode::Size, &reason, Closing::Dropped);
                                stop_reading = true;
                            }
                            Some(Err(WsError::Protocol(err))) => {
                                tracing::info!(conn = id, error = %bounded(&err.to_string()), "WebSocket protocol error; closing with 1002");
                                close_with(
                                    &mut unsent,
                                    CloseCode::Protocol,
                                    "protocol error",
                                    Closing::Dropped,
                                );
                                stop_reading = true;
                            }
                            Some(Err(WsError::Utf8(_))) => {
                                tracing::info!(
                                    conn = id,
                                    "WebSocket text frame is not UTF-8; closing with 1007"
                                );
                                close_with(
                                    &mut unsent,
                                    CloseCode::Invalid,
                                    "text frame is not valid UTF-8",
                                    Closing::Dropped,
                                );
                                stop_reading = true;
                            }
                            Some(Err(err)) => {
                                tracing::debug!(conn = id, error = %bounded(&err.to_string()), "WebSocket read ended");
                                break Err(io::ErrorKind::ConnectionReset.into());
                            }
                        }
                    }
                    Event::PeerFinished => {
                        tracing::debug!(
                            conn = id,
                            "peer closed its connection while its requests were waiting"
                        );
                        break Err(io::ErrorKind::ConnectionReset.into());
                    }
                    Event::Reply(Some(line)) => {
                        let counted = line.len();
                        unsent.push(frame_for(line), counted);
                    }
                    Event::Reply(None) => {
                        // The core is done (drained, or asked to close): say goodbye.
                        let (code, reason) = if going_away.is_cancelled() {
                            (CloseCode::Away, "server shutting down")
                        } else {
                            (CloseCode::Normal, "closing")
                        };
                        close_with(&mut unsent, code, reason, Closing::Done);
                    }
                    Event::Written(Ok(())) => {
                        replies.written(std::mem::take(&mut unsent.in_flight));
                    }
                    Event::Written(Err(err)) => {
                        tracing::debug!(conn = id, error = %err, "WebSocket write failed");
                        break Err(io::ErrorKind::BrokenPipe.into());
                    }
                    Event::Ping => {
                        unsent.push(Message::Ping(Bytes::new()), 0);
                    }
                    Event::Idle => {
                        tracing::info!(
                            conn = id,
                            idle_timeout_ms = idle_timeout.as_millis() as u64,
                            "WebSocket peer silent past the idle timeout; closing"
                        );
                        close_with(
                            &mut unsent,
                            CloseCode::Away,
                            "idle timeout",
                            Closing::Dropped,
                        );
                        stop_reading = true;
                    }
                    Event::PartialTimeout => {
                        // Bytes may have arrived inside the frame poll since the last check.
                        let progress = with_tracker(&tracker, FrameTracker::data_progress);
                        if progress == partial_mark {
                            tracing::info!(
                                conn = id,
                                waited_ms = partial_timeout.as_millis() as u64,
                                "WebSocket message left incomplete; closing with 1008"
                            );
                            let waited =
                                u64::try_from(partial_timeout.as_millis()).unwrap_or(u64::MAX);
                            unsent.push(stalled_reply(waited), 0);
                            close_with(
                                &mut unsent,
                                CloseCode::Policy,
                                "incomplete message timed out",
                                Closing::Dropped,
                            );
                            stop_reading = true;
                        }
                        partial_armed = false;
                    }
                    Event::CloseGraceOver => {
                        tracing::debug!(
                            conn = id,
                            "peer did not take the close frame in time; dropping it"
                        );
                        break Err(io::ErrorKind::TimedOut.into());
                    }
                }
            }
            if stop_reading {
                inbound = None;
                pending = None;
            }
        };
        if outcome.is_ok() {
            let _ = tokio::time::timeout(CLOSE_GRACE, sink.close()).await;
        }
        outcome
    }
}

/// A slot in the core's request queue; `None` when the queue is closed on either side.
async fn reserve(inbound: &Option<mpsc::Sender<Inbound>>) -> Option<mpsc::Permit<'_, Inbound>> {
    match inbound {
        Some(sender) => sender.reserve().await.ok(),
        None => None,
    }
}

/// A second descriptor for the connection's socket, registered for readability only: the
/// driver watches it for the peer's FIN while it is not reading frames (the core is not taking
/// them), so a peer that leaves then is still noticed. Made only for those times, so an idle or
/// busy connection costs one descriptor.
#[allow(unsafe_code)]
fn watch_descriptor(fd: RawFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: `fd` is the descriptor of the socket inside the driver's WebSocketStream, which
    // keeps it open for as long as the driver runs, and only the driver calls this; the borrow
    // lasts only for the dup.
    let socket = unsafe { BorrowedFd::borrow_raw(fd) };
    let watch = socket.try_clone_to_owned()?;
    // SAFETY: the registration needs the descriptor open and unchanged while the AsyncFd
    // lives; the AsyncFd owns the `OwnedFd`, which closes it only when dropped.
    unsafe { AsyncFd::register_with_interest(watch, Interest::READABLE) }
        .map_err(|refused| refused.into_parts().1)
}

/// Resolves once the watched socket has seen the peer's FIN (or failed); data arriving is only
/// noted and waited past, as the driver reads it later.
async fn peer_finished(watch: Option<&AsyncFd<OwnedFd>>) {
    let Some(watch) = watch else {
        return std::future::pending().await;
    };
    loop {
        match watch.readable().await {
            Ok(mut guard) => {
                if guard.ready().is_read_closed() {
                    return;
                }
                guard.clear_ready();
            }
            Err(_) => return,
        }
    }
}

/// The core's line as a frame of the request's type, without the line's `\n`.
fn frame_for(line: Line) -> Message {
    let binary = line.binary;
    let mut bytes = line.into_bytes();
    if bytes.last() == Some(&b'\n') {
        bytes.truncate(bytes.len() - 1);
    }
    if binary {
        return Message::Binary(bytes);
    }
    match bytes.clone().try_into() {
        Ok(text) => Message::Text(text),
        // serde_json only writes UTF-8; fall back to a binary frame rather than drop a reply.
        Err(_) => Message::Binary(bytes),
    }
}

fn too_large_reply(limit: usize) -> Message {
    let reply = ErrorReply::new(
        None,
        ErrorCode::MessageTooLarge,
        format!("message exceeds the maximum of {limit} bytes"),
    );
    Message::Text(serde_json::to_string(&reply).unwrap_or_default().into())
}

/// The `partial_message_timeout` error, as on the byte stream.
fn stalled_reply(waited_ms: u64) -> Message {
    let error = FrameError::stalled(waited_ms);
    let reply = ErrorReply::new(None, error.code(), error.to_string());
    Message::Text(serde_json::to_string(&reply).unwrap_or_default().into())
}

fn close(code: CloseCode, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// Frames waiting for the socket, each with the gauge bytes it stands for (0 for frames the
/// driver made itself).
#[derive(Default)]
struct Outgoing {
    frames: VecDeque<Message>,
    counted: VecDeque<usize>,
    /// Gauge bytes of the frames handed to the socket whose flush has not completed yet.
    in_flight: usize,
}

impl Outgoing {
    fn push(&mut self, frame: Message, counted: usize) {
        self.frames.push_back(frame);
        self.counted.push_back(counted);
    }

    fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Writes what is queued, as far as the socket takes it, and flushes. Cancel-safe: a frame
    /// leaves the queue only when the sink has accepted it; its gauge bytes move to `in_flight`
    /// until the flush that puts them in the kernel completes (the caller then reports them).
    async fn write_some<W: Sink<Message, Error = WsError> + Unpin>(
        &mut self,
        ws: &mut W,
    ) -> Result<(), WsError> {
        let Outgoing {
            frames,
            counted,
            in_flight,
        } = self;
        std::future::poll_fn(|cx| {
            poll_drain(Pin::new(&mut *ws), frames, cx, |_| {
                *in_flight += counted.pop_front().unwrap_or(0);
            })
        })
        .await
    }
}

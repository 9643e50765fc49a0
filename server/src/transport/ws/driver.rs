//! The per-connection WebSocket driver: frames in, the core's messages out, replies back as
//! frames of the request's type, pings, and the idle timeout.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Sink, SinkExt, StreamExt};
use pixl_ipc_protocol::sink_queue::poll_drain;
use pixl_ipc_protocol::{decode_line, frame_lines, ErrorCode, ErrorReply, RawRequest};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::connection::{Inbound, Received};
use crate::outbound::Line;

/// Frames waiting to be written before the driver stops taking replies from the core.
const OUTBOUND_DEPTH: usize = 64;

/// Owns the socket: reads frames into decoded messages for the core, writes the core's replies
/// as frames, pings, and drops a silent peer.
pub(super) struct Driver<S> {
    pub(super) ws: WebSocketStream<S>,
    pub(super) inbound: mpsc::Sender<Inbound>,
    pub(super) replies: mpsc::Receiver<Line>,
    pub(super) ping_interval: Duration,
    pub(super) idle_timeout: Duration,
    pub(super) max_message_bytes: usize,
    pub(super) going_away: tokio_util::sync::CancellationToken,
}

/// One thing the driver's loop reacts to.
enum Event<'a> {
    Slot(Option<mpsc::Permit<'a, Inbound>>),
    Frame(Option<Result<Message, WsError>>),
    Reply(Option<Line>),
    Written(Result<(), WsError>),
    Ping,
    Idle,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Driver<S> {
    pub(super) async fn run(self, id: u64) {
        let Driver {
            ws,
            inbound,
            mut replies,
            ping_interval,
            idle_timeout,
            max_message_bytes,
            going_away,
        } = self;
        let (mut sink, mut frames) = ws.split();
        // Dropping this sender ends the core's request stream.
        let mut inbound = Some(inbound);
        let mut decoded: VecDeque<Received> = VecDeque::new();
        let mut unsent: VecDeque<Message> = VecDeque::new();
        let mut closing = false;
        let start = tokio::time::Instant::now();
        let mut ping = tokio::time::interval_at(start + ping_interval, ping_interval);
        let idle = tokio::time::sleep(idle_timeout);
        tokio::pin!(idle);

        while !(closing && unsent.is_empty()) {
            let reading = inbound.is_some() && !closing;
            let mut stop_reading = false;
            // In its own block, so the event (which may borrow `inbound`) is gone before
            // `inbound` is dropped below.
            {
                let event = tokio::select! {
                    // Hand decoded messages to the core one slot at a time: the loop never blocks.
                    slot = reserve(&inbound), if !decoded.is_empty() => Event::Slot(slot),
                    frame = frames.next(), if reading && decoded.is_empty() => Event::Frame(frame),
                    line = replies.recv(), if unsent.len() < OUTBOUND_DEPTH && !closing => Event::Reply(line),
                    written = write_some(&mut sink, &mut unsent), if !unsent.is_empty() => Event::Written(written),
                    _ = ping.tick(), if !closing => Event::Ping,
                    () = &mut idle, if !closing => Event::Idle,
                };
                match event {
                    Event::Slot(Some(slot)) => {
                        if let Some(item) = decoded.pop_front() {
                            slot.send(Ok(item));
                        }
                    }
                    Event::Slot(None) => decoded.clear(),
                    Event::Frame(frame) => {
                        idle.as_mut()
                            .reset(tokio::time::Instant::now() + idle_timeout);
                        match frame {
                            Some(Ok(Message::Text(text))) => {
                                decode_frame(text.as_bytes(), false, &mut decoded)
                            }
                            Some(Ok(Message::Binary(bytes))) => {
                                decode_frame(&bytes, true, &mut decoded)
                            }
                            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                            // The peer is leaving or gone: nothing more can be sent to it.
                            Some(Ok(Message::Close(_))) | None => break,
                            Some(Err(WsError::Capacity(err))) => {
                                tracing::warn!(conn = id, error = %err, "WebSocket message over the limit; closing with 1009");
                                unsent.push_back(too_large_reply(max_message_bytes));
                                let reason = format!(
                                    "message exceeds the maximum of {max_message_bytes} bytes"
                                );
                                unsent.push_back(close(CloseCode::Size, &reason));
                                closing = true;
                                stop_reading = true;
                            }
                            Some(Err(err)) => {
                                tracing::debug!(conn = id, error = %err, "WebSocket read ended");
                                break;
                            }
                        }
                    }
                    Event::Reply(Some(line)) => unsent.push_back(frame_for(line)),
                    Event::Reply(None) => {
                        // The core is done (drained, or asked to close): say goodbye.
                        let (code, reason) = if going_away.is_cancelled() {
                            (CloseCode::Away, "server shutting down")
                        } else {
                            (CloseCode::Normal, "closing")
                        };
                        unsent.push_back(close(code, reason));
                        closing = true;
                    }
                    Event::Written(Ok(())) => {}
                    Event::Written(Err(err)) => {
                        tracing::debug!(conn = id, error = %err, "WebSocket write failed");
                        break;
                    }
                    Event::Ping => unsent.push_back(Message::Ping(Bytes::new())),
                    Event::Idle => {
                        tracing::info!(
                            conn = id,
                            idle_timeout_ms = idle_timeout.as_millis() as u64,
                            "WebSocket peer silent past the idle timeout; closing"
                        );
                        unsent.push_back(close(CloseCode::Away, "idle timeout"));
                        closing = true;
                        stop_reading = true;
                    }
                }
            }
            if stop_reading {
                inbound = None;
                decoded.clear();
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
    }
}

/// A slot in the core's request queue; `None` when the queue is closed on either side.
async fn reserve(inbound: &Option<mpsc::Sender<Inbound>>) -> Option<mpsc::Permit<'_, Inbound>> {
    match inbound {
        Some(sender) => sender.reserve().await.ok(),
        None => None,
    }
}

/// Splits a frame into its newline-separated messages (tremor's `separate`); a frame without a
/// newline is one message.
fn decode_frame(payload: &[u8], binary: bool, decoded: &mut VecDeque<Received>) {
    for line in frame_lines(payload) {
        if let Some(message) = decode_line::<RawRequest>(line) {
            decoded.push_back(Received { message, binary });
        }
    }
}

/// The core's line as a frame of the request's type, without the line's `\n`.
fn frame_for(line: Line) -> Message {
    let mut bytes = line.bytes;
    if bytes.last() == Some(&b'\n') {
        bytes.truncate(bytes.len() - 1);
    }
    if line.binary {
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

fn close(code: CloseCode, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// Writes what is queued, as far as the socket takes it. Cancel-safe: a frame leaves the queue
/// only when the sink has accepted it.
async fn write_some<W: Sink<Message, Error = WsError> + Unpin>(
    ws: &mut W,
    unsent: &mut VecDeque<Message>,
) -> Result<(), WsError> {
    std::future::poll_fn(|cx| poll_drain(Pin::new(&mut *ws), unsent, cx, |_| {})).await
}

//! The background task that owns the socket: it writes requests, matches replies to callers,
//! fans out pushes, and reconnects according to the policy.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pixl_ipc_protocol::FrameError;
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::address::Address;
use crate::close::CloseSignal;
use crate::error::Error;
use crate::lines::{self, Route};
use crate::notes::{Note, Notes};
use crate::pending::{PendingRequests, ReplySender, StreamSink};
use crate::pushes::PushHub;
use crate::reconnect::ReconnectPolicy;
use crate::state::{CloseReason, ConnectionState};
use crate::transport::{Connection, Dialer, Reader, Writer};

/// Past this many unsent bytes the task stops taking new requests until the server reads.
const MAX_UNSENT_BYTES: usize = 1024 * 1024;

/// A request for the task: one encoded line, and where its reply goes.
pub(crate) struct Outgoing {
    pub(crate) id: String,
    pub(crate) line: Bytes,
    pub(crate) reply: Reply,
}

/// Where a request's reply goes.
pub(crate) enum Reply {
    /// One-way (`ipcNoReply`): nowhere.
    None,
    /// A plain call: its one reply line.
    Call(ReplySender),
    /// A streamed call (`ipcStream`): every line until the final one.
    Stream(StreamSink),
}

impl Reply {
    /// True when the caller no longer waits, so the request need not be sent.
    fn abandoned(&self) -> bool {
        match self {
            Reply::None => false,
            Reply::Call(reply) => reply.is_closed(),
            Reply::Stream(sink) => sink.items.is_closed(),
        }
    }

    fn fail(self, error: Error) {
        match self {
            Reply::None => {}
            Reply::Call(reply) => {
                let _ = reply.send(Err(error));
            }
            Reply::Stream(sink) => sink.fail(error),
        }
    }
}

/// A stream's line that did not fit its full buffer: the task reads nothing more from the
/// connection until it does (or the stream is dropped), so the server pauses (backpressure).
struct Parked {
    id: String,
    line: Bytes,
    more: bool,
    items: mpsc::Sender<Bytes>,
}

/// Everything the task needs besides the connection.
pub(crate) struct TaskContext {
    pub(crate) dialer: Dialer,
    pub(crate) requests: mpsc::Receiver<Outgoing>,
    /// Streams their user stopped early (the task sends the cancel if still running) and calls
    /// their caller gave up on (forgotten at once). Only the user's own drops and timeouts fill
    /// it, one short id each.
    pub(crate) notes: Arc<Notes>,
    pub(crate) state: watch::Sender<ConnectionState>,
    pub(crate) pushes: Arc<PushHub>,
    pub(crate) close: Arc<CloseSignal>,
    pub(crate) policy: ReconnectPolicy,
    /// Replies longer than this fail their call with [`Error::ReplyTooLarge`] undecoded.
    pub(crate) max_reply_bytes: usize,
}

impl TaskContext {
    fn address(&self) -> &Address {
        &self.dialer.address
    }
}

/// How one connection ended.
enum Ended {
    /// `close()` was called, or every handle was dropped.
    ByCaller,
    /// The server closed the connection or it failed.
    Lost(String),
}

/// Makes sure the state never says `Connected` after the task is gone, however it ended (a
/// panic included): callers read the state to explain why their calls fail.
struct Guard(TaskContext);

impl Drop for Guard {
    fn drop(&mut self) {
        let ctx = &mut self.0;
        if !matches!(*ctx.state.borrow(), ConnectionState::Closed(_)) {
            finish(
                ctx,
                CloseReason::ConnectionLost(
                    "the client's connection task stopped unexpectedly".into(),
                ),
            );
        }
    }
}

/// Runs until the client is closed or the policy gives up.
pub(crate) async fn run(ctx: TaskContext, mut connection: Connection) {
    let mut guard = Guard(ctx);
    let ctx = &mut guard.0;
    loop {
        let reason = match serve(ctx, connection).await {
            Ended::ByCaller => return finish(ctx, CloseReason::ByCaller),
            Ended::Lost(reason) => reason,
        };
        tracing::debug!(address = %ctx.address(), %reason, "connection lost");
        match reconnect(ctx, &reason).await {
            Ok(next) => connection = next,
            Err(close) => return finish(ctx, close),
        }
    }
}

/// Publishes the final state and fails whatever is still queued, with the same reason later
/// calls will get.
fn finish(ctx: &mut TaskContext, reason: CloseReason) {
    let error = reason.to_error(ctx.address());
    ctx.state.send_replace(ConnectionState::Closed(reason));
    ctx.pushes.close();
    ctx.requests.close();
    ctx.notes.close();
    while let Ok(outgoing) = ctx.requests.try_recv() {
        outgoing.reply.fail(error.clone());
    }
}

/// Waits and retries per the policy. Requests sent meanwhile stay queued (their callers wait
/// within their own timeouts) and go out on the new connection.
async fn reconnect(ctx: &mut TaskContext, lost_reason: &str) -> Result<Connection, CloseReason> {
    let mut last_error = lost_reason.to_owned();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let Some(delay) = ctx.policy.delay_with(attempt, fastrand::f64()) else {
            return Err(if attempt == 1 {
                CloseReason::ConnectionLost(lost_reason.to_owned())
            } else {
                CloseReason::ReconnectFailed {
                    attempts: attempt - 1,
                    last_error,
                }
            });
        };
        ctx.state
            .send_replace(ConnectionState::Reconnecting { attempt });
        tokio::select! {
            () = ctx.close.closed() => return Err(CloseReason::ByCaller),
            () = tokio::time::sleep(delay) => {}
        }
        match ctx.dialer.connect().await {
            Ok(connection) => {
                tracing::info!(address = %ctx.address(), attempt, "reconnected");
                ctx.state.send_replace(ConnectionState::Connected);
                return Ok(connection);
            }
            Err(err) => {
                tracing::debug!(address = %ctx.address(), attempt, error = %err, "reconnect failed");
                last_error = err.to_string();
            }
        }
    }
}

/// Serves one connection: writes queued requests, reads replies, until it ends. Reading and
/// writing happen in one loop, so a server that stops reading cannot block the replies.
async fn serve(ctx: &mut TaskContext, connection: Connection) -> Ended {
    let Connection {
        mut reader,
        mut writer,
    } = connection;
    let mut pending = PendingRequests::default();
    let mut last_said = LastSaid::default();
    let mut parked: Option<Parked> = None;

    let ended = loop {
        tokio::select! {
            () = ctx.close.closed() => break Ended::ByCaller,
            // While a stream's buffer is full nothing is read: see `Parked`.
            incoming = reader.next(), if parked.is_none() => match incoming {
                Err(reason) => break Ended::Lost(last_said.explain(reason)),
                Ok(incoming) => parked = handle(ctx, &mut pending, &mut writer, &mut last_said, incoming),
            },
            room = room_for(&parked), if parked.is_some() => {
                if let Some(waiting) = parked.take() {
                    match room {
                        Ok(permit) => {
                            permit.send(waiting.line);
                        }
                        // The stream was dropped meanwhile.
                        Err(_) => {
                            if waiting.more {
                                cancel_stream(&mut pending, &mut writer, &waiting.id);
                            }
                        }
                    }
                }
            },
            notes = ctx.notes.take() => apply(notes, &mut pending, &mut writer),
            outgoing = ctx.requests.recv(), if writer.unsent() < MAX_UNSENT_BYTES => match outgoing {
                None => break Ended::ByCaller,
                Some(outgoing) => {
                    // Cancels queued before this request go out before it, so a stream
                    // dropped before a call is stopped before that call is read.
                    apply(ctx.notes.try_take(), &mut pending, &mut writer);
                    accept(outgoing, &mut pending, &mut writer);
                    // Written now, not on the next turn of the loop: saves a turn (a poll of
                    // every branch) per request. A write that cannot finish yet is left to the
                    // branch below, which waits for the socket.
                    if writer.unsent() > 0 {
                        if let Some(Err(reason)) = writer.try_write_now() {
                            read_what_is_left(ctx, &mut reader, &mut pending, &mut writer, &mut last_said).await;
                            break Ended::Lost(last_said.explain(reason));
                        }
                    }
                }
            },
            written = writer.write_some(), if writer.unsent() > 0 => {
                if let Err(reason) = written {
                    // The server may have answered, or said why it closed, before we noticed.
                    read_what_is_left(ctx, &mut reader, &mut pending, &mut writer, &mut last_said).await;
                    break Ended::Lost(last_said.explain(reason));
                }
            }
        }
    };
    let error = match &ended {
        Ended::ByCaller => Error::Closed,
        Ended::Lost(reason) => Error::ConnectionLost {
            address: ctx.address().to_string(),
            reason: reason.clone(),
        },
    };
    let failed = pending.fail_all(&error);
    if failed > 0 {
        tracing::debug!(failed, error = %error, "settled requests in flight");
    }
    writer.shutdown().await;
    ended
}

/// Carries out the notes left by dropped streams and abandoned calls, oldest first.
fn apply(notes: Vec<Note>, pending: &mut PendingRequests, writer: &mut Writer) {
    for note in notes {
        match note {
            Note::Cancel(id) => cancel_stream(pending, writer, &id),
            Note::Forget(id) => pending.forget(&id),
        }
    }
}

/// Resolves when the parked line's stream has room for it (or is gone). Only polled while a
/// line is parked.
async fn room_for(
    parked: &Option<Parked>,
) -> Result<mpsc::OwnedPermit<Bytes>, mpsc::error::SendError<()>> {
    match parked {
        Some(parked) => parked.items.clone().reserve_owned().await,
        None => std::future::pending().await,
    }
}

/// Stops the stream `id` if it is still running: the server is told, and whatever it still
/// sends for the id (items in flight, the `cancelled` final line) is dropped as an unknown
/// reply.
fn cancel_stream(pending: &mut PendingRequests, writer: &mut Writer, id: &str) {
    if pending.remove_stream(id).is_some() {
        queue_cancel(writer, id);
        tracing::debug!(id, "cancelled a stream");
    }
}

/// How long a connection whose write failed is still read for lines the server sent before it
/// closed: they are already in the socket's buffer, so this is only a bound.
const READ_LEFTOVERS: Duration = Duration::from_millis(100);

/// The server's error line without an `ipcReqID` (`too_many_connections`, `peer_not_allowed`),
/// kept while it is the last thing the server said: if the connection ends next, it is why.
#[derive(Default)]
struct LastSaid(Option<String>);

impl LastSaid {
    /// `reason`, with the server's own reason in front when it gave one just before closing.
    fn explain(&mut self, reason: String) -> String {
        match self.0.take() {
            Some(said) => {
                format!("the server closed the connection after reporting {said} ({reason})")
            }
            None => reason,
        }
    }
}

/// Reads the lines a closed connection still holds, for at most [`READ_LEFTOVERS`].
async fn read_what_is_left(
    ctx: &TaskContext,
    reader: &mut Reader,
    pending: &mut PendingRequests,
    writer: &mut Writer,
    last_said: &mut LastSaid,
) {
    let deadline = tokio::time::Instant::now() + READ_LEFTOVERS;
    while let Ok(Ok(incoming)) = tokio::time::timeout_at(deadline, reader.next()).await {
        // A stream with a full buffer: the connection is ending, its rest is not waited for.
        if handle(ctx, pending, writer, last_said, incoming).is_some() {
            break;
        }
    }
}

/// One line from the server, or a line too long to take. Returns a stream line that must wait
/// for room in its stream's buffer.
fn handle(
    ctx: &TaskContext,
    pending: &mut PendingRequests,
    writer: &mut Writer,
    last_said: &mut LastSaid,
    incoming: Result<Bytes, FrameError>,
) -> Option<Parked> {
    match incoming {
        Ok(line) => deliver(ctx, pending, writer, last_said, line),
        Err(bad_line) => {
            reject(pending, writer, &bad_line);
            None
        }
    }
}

/// Queues one request's bytes, batching with whatever else is waiting to be written.
fn accept(outgoing: Outgoing, pending: &mut PendingRequests, writer: &mut Writer) {
    // The caller already gave up: do not send a request nobody waits for.
    if outgoing.reply.abandoned() {
        return;
    }
    match outgoing.reply {
        Reply::Call(reply) => pending.insert(outgoing.id, reply),
        Reply::Stream(sink) => pending.insert_stream(outgoing.id, sink),
        Reply::None => {}
    }
    writer.queue(&outgoing.line);
}

/// Routes one line, without decoding it: a reply to its caller (who decodes it under its own
/// deadline), a push to subscribers (who decode it when they take it).
fn deliver(
    ctx: &TaskContext,
    pending: &mut PendingRequests,
    writer: &mut Writer,
    last_said: &mut LastSaid,
    line: Bytes,
) -> Option<Parked> {
    let route = lines::route(&line, ctx.max_reply_bytes);
    match route {
        Route::Reply(id) if pending.stream(&id).is_some() => {
            last_said.0 = None;
            return deliver_to_stream(ctx, pending, writer, id, line);
        }
        Route::Reply(id) => {
            last_said.0 = None;
            let outcome = if line.len() > ctx.max_reply_bytes {
                Err(Error::ReplyTooLarge {
                    size: line.len(),
                    limit: ctx.max_reply_bytes,
                })
            } else {
                Ok(line)
            };
            if !pending.complete(&id, outcome) {
                tracing::debug!(
                    id,
                    "dropped a reply nobody waits for (late, after a timeout)"
                );
            }
        }
        Route::ForeignId(id) => {
            last_said.0 = None;
            tracing::warn!(%id, "reply with an id this client never uses");
        }
        Route::UnattributedError(said) => {
            tracing::warn!(error = %said, "server reported an error for an unknown request");
            last_said.0 = Some(said);
        }
        Route::Push => {
            last_said.0 = None;
            // No subscriber is fine: pushes are offered, not queued for later. A copy, so a
            // buffered push never keeps a whole read buffer or frame alive.
            if ctx.pushes.has_subscribers() {
                ctx.pushes.publish(&Bytes::copy_from_slice(&line));
            }
        }
        Route::Skip(None) => {}
        Route::Skip(Some(error)) => tracing::warn!(%error, "undecodable line from the server"),
    }
    None
}

/// One line for the running stream `id`: into its buffer, or parked when the buffer is full.
fn deliver_to_stream(
    ctx: &TaskContext,
    pending: &mut PendingRequests,
    writer: &mut Writer,
    id: String,
    line: Bytes,
) -> Option<Parked> {
    if line.len() > ctx.max_reply_bytes {
        let size = line.len();
        fail_stream(
            pending,
            writer,
            &id,
            Error::ReplyTooLarge {
                size,
                limit: ctx.max_reply_bytes,
            },
        );
        return None;
    }
    let more = lines::is_more(&line);
    let sink = if more {
        pending.stream(&id)?.items.clone()
    } else {
        // The final line: the stream is over on the wire.
        pending.remove_stream(&id)?.items
    };
    match sink.try_send(line) {
        Ok(()) => None,
        Err(mpsc::error::TrySendError::Full(line)) => Some(Parked {
            id,
            line,
            more,
            items: sink,
        }),
        // Dropped, its cancel not seen yet: cancel now, so nothing more is read for it.
        Err(mpsc::error::TrySendError::Closed(_)) => {
            if more {
                cancel_stream(pending, writer, &id);
            }
            None
        }
    }
}

/// Ends the running stream `id` with `error` and tells the server to stop it.
fn fail_stream(pending: &mut PendingRequests, writer: &mut Writer, id: &str, error: Error) {
    if let Some(sink) = pending.remove_stream(id) {
        sink.fail(error);
        queue_cancel(writer, id);
    }
}

/// The cancel message for the stream `id` (see the stream spec): no uri, no data.
fn queue_cancel(writer: &mut Writer, id: &str) {
    writer.queue(&pixl_ipc_protocol::json::encode_cancel_line(
        &Value::String(id.to_owned()),
    ));
}

/// A line from the server that could not be decoded: fail its request if it names one.
fn reject(pending: &mut PendingRequests, writer: &mut Writer, bad_line: &FrameError) {
    let error = match bad_line {
        FrameError::TooLong { limit, .. } => Error::Protocol(format!(
            "the reply exceeds the maximum message size of {limit} bytes"
        )),
        other => Error::Protocol(other.to_string()),
    };
    match bad_line.req_id().map(|id| id.to_value()) {
        Some(Value::String(id)) if pending.stream(&id).is_some() => {
            fail_stream(pending, writer, &id, error);
        }
        Some(Value::String(id)) => {
            pending.complete(&id, Err(error));
        }
        _ => tracing::warn!(error = %bad_line, "undecodable line from the server"),
    }
}

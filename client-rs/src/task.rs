//! The background task that owns the socket: it writes requests, matches replies to callers,
//! fans out pushes, and reconnects according to the policy.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::address::Address;
use crate::close::CloseSignal;
use crate::error::Error;
use crate::notes::{Note, Notes};
use crate::pending::{ReplySender, StreamSink};
use crate::pushes::PushHub;
use crate::reconnect::ReconnectPolicy;
use crate::state::{CloseReason, ConnectionState};
use crate::transport::{Connection, Dialer, Reader, Writer};
use crate::wire::{Event, Wire, WireState};

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
    /// The receiving side, shared with the callers that read it themselves.
    pub(crate) wire: Arc<Wire>,
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
    // Normally settled already, when the connection ended; not if the task panicked.
    ctx.wire.end(&error);
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
///
/// A UNIX connection's read half goes to the shared [`Wire`], where a waiting caller may read
/// it too; the task reads it whenever it is woken (its readiness wakes the task as well as a
/// reading caller), so pushes and streams are read with no call waiting. A WebSocket's read
/// half stays here: only the task reads it.
async fn serve(ctx: &mut TaskContext, connection: Connection) -> Ended {
    let Connection { reader, mut writer } = connection;
    let mut local = match reader {
        Reader::Unix(lines) => {
            ctx.wire.install(Some(lines));
            None
        }
        #[cfg(feature = "ws")]
        Reader::WebSocket(ws) => {
            ctx.wire.install(None);
            Some(Reader::WebSocket(ws))
        }
    };
    // The buffer of a stream whose line is parked (see `Parked`): nothing is read meanwhile.
    let mut parked: Option<mpsc::Sender<Bytes>> = None;

    let ended = loop {
        tokio::select! {
            () = ctx.close.closed() => break Ended::ByCaller,
            // While a stream's buffer is full nothing is read: see `Parked`.
            event = next_event(&ctx.wire, &mut local), if parked.is_none() => match event {
                Event::Lost(reason) => break Ended::Lost(ctx.wire.explain(reason)),
                Event::Routed(cancels) => queue_cancels(&mut writer, cancels),
                Event::Parked(items) => parked = Some(items),
            },
            room = room_for(&parked), if parked.is_some() => {
                parked = None;
                // `Err`: the stream was dropped meanwhile.
                if let Some(id) = ctx.wire.unpark(room.ok()) {
                    queue_cancel(&mut writer, &id);
                    tracing::debug!(id, "cancelled a stream");
                }
            },
            notes = ctx.notes.take() => apply(&mut ctx.wire.lock(), notes, &mut writer),
            outgoing = ctx.requests.recv(), if writer.unsent() < MAX_UNSENT_BYTES => match outgoing {
                None => break Ended::ByCaller,
                Some(outgoing) => {
                    accept(&ctx.wire, ctx.notes.try_take(), outgoing, &mut writer);
                    // Written now, not on the next turn of the loop: saves a turn (a poll of
                    // every branch) per request. A write that cannot finish yet is left to the
                    // branch below, which waits for the socket.
                    if writer.unsent() > 0 {
                        if let Some(Err(reason)) = writer.try_write_now() {
                            read_what_is_left(&ctx.wire, &mut local, &mut writer).await;
                            break Ended::Lost(ctx.wire.explain(reason));
                        }
                    }
                }
            },
            written = writer.write_some(), if writer.unsent() > 0 => {
                if let Err(reason) = written {
                    // The server may have answered, or said why it closed, before we noticed.
                    read_what_is_left(&ctx.wire, &mut local, &mut writer).await;
                    break Ended::Lost(ctx.wire.explain(reason));
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
    let failed = ctx.wire.end(&error);
    if failed > 0 {
        tracing::debug!(failed, error = %error, "settled requests in flight");
    }
    writer.shutdown().await;
    ended
}

/// The next thing the receiving side needs from the task: from the shared read half (lines
/// routed, by the task or a caller; a parked line; its end), or from the task's own WebSocket
/// reader. Cancel-safe.
async fn next_event(wire: &Wire, local: &mut Option<Reader>) -> Event {
    match local {
        Some(reader) => match reader.next().await {
            Ok(incoming) => wire.route(incoming),
            Err(reason) => Event::Lost(reason),
        },
        None => std::future::poll_fn(|cx| wire.poll_task(cx)).await,
    }
}

/// Carries out the notes left by dropped streams and abandoned calls, oldest first.
fn apply(state: &mut WireState, notes: Vec<Note>, writer: &mut Writer) {
    for note in notes {
        match note {
            Note::Cancel(id) => cancel_stream(state, writer, &id),
            Note::Forget(id) => state.pending.forget(&id),
        }
    }
}

/// Resolves when the parked line's stream has room for it (or is gone). Only polled while a
/// line is parked.
async fn room_for(
    parked: &Option<mpsc::Sender<Bytes>>,
) -> Result<mpsc::OwnedPermit<Bytes>, mpsc::error::SendError<()>> {
    match parked {
        Some(items) => items.clone().reserve_owned().await,
        None => std::future::pending().await,
    }
}

/// Stops the stream `id` if it is still running: the server is told, and whatever it still
/// sends for the id (items in flight, the `cancelled` final line) is dropped as an unknown
/// reply.
fn cancel_stream(state: &mut WireState, writer: &mut Writer, id: &str) {
    if state.pending.remove_stream(id).is_some() {
        queue_cancel(writer, id);
        tracing::debug!(id, "cancelled a stream");
    }
}

/// How long a connection whose write failed is still read for lines the server sent before it
/// closed: they are already in the socket's buffer, so this is only a bound.
const READ_LEFTOVERS: Duration = Duration::from_millis(100);

/// Reads the lines a closed connection still holds, for at most [`READ_LEFTOVERS`].
async fn read_what_is_left(wire: &Wire, local: &mut Option<Reader>, writer: &mut Writer) {
    let deadline = tokio::time::Instant::now() + READ_LEFTOVERS;
    while let Ok(event) = tokio::time::timeout_at(deadline, next_event(wire, local)).await {
        match event {
            Event::Routed(cancels) => queue_cancels(writer, cancels),
            // A stream with a full buffer: the connection is ending, its rest is not waited
            // for. Or the read half has ended too.
            Event::Parked(_) | Event::Lost(_) => break,
        }
    }
}

/// Queues one request's bytes, batching with whatever else is waiting to be written, after the
/// cancels and notes left before it.
fn accept(wire: &Wire, notes: Vec<Note>, outgoing: Outgoing, writer: &mut Writer) {
    let mut state = wire.lock();
    // Cancels queued before this request go out before it, so a stream dropped before a call
    // is stopped before that call is read.
    queue_cancels(writer, state.take_cancels());
    apply(&mut state, notes, writer);
    // The caller already gave up: do not send a request nobody waits for.
    if outgoing.reply.abandoned() {
        return;
    }
    match outgoing.reply {
        Reply::Call(reply) => state.pending.insert(outgoing.id, reply),
        Reply::Stream(sink) => state.pending.insert_stream(outgoing.id, sink),
        Reply::None => {}
    }
    drop(state);
    writer.queue(&outgoing.line);
}

/// The cancels for streams found dropped (or failed) while routing.
fn queue_cancels(writer: &mut Writer, cancels: Vec<String>) {
    for id in cancels {
        queue_cancel(writer, &id);
    }
}

/// The cancel message for the stream `id` (see the stream spec): no uri, no data.
fn queue_cancel(writer: &mut Writer, id: &str) {
    writer.queue(&pixl_ipc_protocol::json::encode_cancel_line(
        &Value::String(id.to_owned()),
    ));
}

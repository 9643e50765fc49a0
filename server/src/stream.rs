//! Streamed replies: one request (`"ipcStream": true`), many reply lines. Item lines carry
//! `"ipcMore": true`; one final line without it ends the stream (a last value, `null`, or an
//! error). The stream runs in a task of its own and is dropped when it ends, when the client
//! cancels it (`"ipcCancel": true`), when the server shuts down, or with the connection.
//!
//! What one connection's streams can make the server hold: at most `max_streams` run on it,
//! beside its ordinary requests (streams take no request slot, so a connection whose streams
//! never end still reads the cancel for one); each keeps its request's charge only until its
//! handler has made the stream (so running streams never keep their connection from reading);
//! a stream is polled for its next item only while its client has fewer than the reply limit
//! (`max_outbound_bytes`) of unread bytes queued and, while the server-wide budget is spent,
//! none. So unread items stay under `reply limit + max_streams × largest item` per connection,
//! and past the server's budget each connection gets one item at a time.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use pixl_ipc_protocol::{ErrorCode, RawId, RawRequest, MAX_ERROR_REPLY_ID_BYTES};
use serde_json::Value;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::connection::Completion;
use crate::context::ConnectionContext;
use crate::handler::{BoxedStreamHandler, ItemStream, ReplyData, RequestContext, StreamFuture};

/// The longest id, as JSON text, a streamed request may have: the id outlives the request's
/// charge (it is in the cancel table and in every item line), so it has to be small.
pub(crate) const MAX_STREAM_ID_BYTES: usize = MAX_ERROR_REPLY_ID_BYTES;

/// The streams running on one connection, by request id, so that a cancel line finds its
/// stream. At most `max_streams` entries (each id at most [`MAX_STREAM_ID_BYTES`]).
#[derive(Default)]
pub(crate) struct Streams {
    running: Arc<Mutex<HashMap<Box<str>, CancellationToken>>>,
}

impl Streams {
    /// Cancels the stream with this id, if one runs; anything else is ignored (the stream may
    /// have just ended, and its final line is on the way).
    pub(crate) fn cancel(&self, id: Option<&RawId>) {
        let Some(id) = id else { return };
        let running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(token) = running.get(id.json()) {
            token.cancel();
        }
    }

    /// How many streams run on the connection.
    pub(crate) fn len(&self) -> usize {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Registers a stream under `id`, if no stream with that id runs and fewer than `limit`
    /// streams do.
    fn register(&self, id: &RawId, limit: usize) -> Result<Registration, Refused> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if running.contains_key(id.json()) {
            return Err(Refused::IdTaken);
        }
        if running.len() >= limit {
            return Err(Refused::TooMany);
        }
        let token = CancellationToken::new();
        running.insert(Box::from(id.json()), token.clone());
        Ok(Registration {
            running: self.running.clone(),
            id: Box::from(id.json()),
            token,
        })
    }
}

/// Why a stream could not start.
enum Refused {
    IdTaken,
    TooMany,
}

/// A running stream's entry in [`Streams`], removed when the stream's task ends or is dropped.
struct Registration {
    running: Arc<Mutex<HashMap<Box<str>, CancellationToken>>>,
    id: Box<str>,
    token: CancellationToken,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        running.remove(&self.id);
    }
}

/// A streamed request about to start.
pub(crate) struct Start<'a> {
    pub(crate) handler: &'a BoxedStreamHandler,
    pub(crate) request: RawRequest,
    pub(crate) ctx: &'a RequestContext,
    pub(crate) context: &'a ConnectionContext,
    pub(crate) streams: &'a Streams,
}

/// Why a stream ended before its handler's stream did.
enum Stopped {
    Cancelled,
    ShuttingDown,
}

impl Start<'_> {
    /// Checks the request and starts its stream in a task of `handlers`; a request that cannot
    /// stream is answered with `invalid_request` instead.
    pub(crate) fn run(self, done: Completion, handlers: &mut JoinSet<()>) {
        let Start {
            handler,
            request,
            ctx,
            context,
            streams,
        } = self;
        if request.no_reply {
            context.stats.protocol_error();
            return done.fail(
                ErrorCode::InvalidRequest,
                "a streamed request cannot be one-way (ipcNoReply)",
            );
        }
        let Some(id) = request.ipc_req_id.as_ref() else {
            context.stats.protocol_error();
            return done.fail(
                ErrorCode::InvalidRequest,
                "a streamed request needs an ipcReqID: its replies carry it",
            );
        };
        if id.json().len() > MAX_STREAM_ID_BYTES {
            // Kept for the stream's whole life (and written in every item) once its charge is
            // given back: so it must be small. Not copied into the refusal either.
            context.stats.protocol_error();
            return done.without_id().fail(
                ErrorCode::InvalidRequest,
                format!("a streamed request's ipcReqID may be at most {MAX_STREAM_ID_BYTES} bytes of JSON"),
            );
        }
        let limit = context.max_streams;
        let registration = match streams.register(id, limit) {
            Ok(registration) => registration,
            Err(refused) => {
                context.stats.protocol_error();
                let message = match refused {
                    Refused::IdTaken => {
                        "a stream with this ipcReqID is already running on this connection"
                            .to_owned()
                    }
                    Refused::TooMany => format!(
                        "this connection already runs {limit} streams, the most it may (--max-streams); cancel one first"
                    ),
                };
                return done.fail(ErrorCode::InvalidRequest, message);
            }
        };
        let setup = handler(request, ctx.clone());
        let shutdown = context.shutdown.clone();
        let limit = context.handler_timeout;
        handlers.spawn(async move {
            // Holding the registration until the task ends (or is dropped with the
            // connection) keeps the id taken for exactly as long as the stream runs.
            let token = registration.token.clone();
            serve(setup, limit, done, &token, &shutdown).await;
            drop(registration);
        });
    }
}

/// Resolves when the stream must stop before it ends by itself.
async fn stopped(token: &CancellationToken, shutdown: &CancellationToken) -> Stopped {
    tokio::select! {
        biased;
        () = token.cancelled() => Stopped::Cancelled,
        () = shutdown.cancelled() => Stopped::ShuttingDown,
    }
}

impl Stopped {
    /// The stream's final line for this reason.
    fn answer(self, done: Completion) {
        match self {
            Stopped::Cancelled => {
                done.fail(ErrorCode::Cancelled, "the client cancelled the stream")
            }
            Stopped::ShuttingDown => done.fail(
                ErrorCode::ShuttingDown,
                "the server is shutting down; the stream ends here",
            ),
        }
    }
}

/// Runs the handler up to its stream (within the handler timeout), then sends the stream's
/// items as the peer makes room for them, then the final line. The handler and its stream are
/// dropped as soon as the stream is cancelled or the server shuts down.
async fn serve(
    setup: StreamFuture,
    limit: Option<Duration>,
    mut done: Completion,
    token: &CancellationToken,
    shutdown: &CancellationToken,
) {
    let guarded = AssertUnwindSafe(setup).catch_unwind();
    let setup = async {
        match limit {
            None => Some(guarded.await),
            Some(limit) => tokio::time::timeout(limit, guarded).await.ok(),
        }
    };
    let outcome = tokio::select! {
        biased;
        stop = stopped(token, shutdown) => return stop.answer(done),
        outcome = setup => outcome,
    };
    let mut items: ItemStream = match outcome {
        Some(Ok(Ok(items))) => items,
        Some(Ok(Err(err))) => return done.complete(Ok(Err(err))),
        Some(Err(panic)) => return done.complete(Err(panic)),
        None => {
            let limit = limit.unwrap_or_default();
            let error = done.timed_out(limit);
            return done.complete(Ok(Err(error)));
        }
    };
    done.count_now();
    done.release_charge();
    let outbound = done.outbound().clone();
    loop {
        let next = async {
            outbound.has_room().await;
            AssertUnwindSafe(items.next()).catch_unwind().await
        };
        let event = tokio::select! {
            biased;
            stop = stopped(token, shutdown) => Err(stop),
            event = next => Ok(event),
        };
        match event {
            Err(stop) => {
                drop(items);
                return stop.answer(done);
            }
            Ok(Ok(Some(Ok(item)))) if item.last => {
                drop(items);
                return done.complete(Ok(Ok(ReplyData::Text(item.data))));
            }
            Ok(Ok(Some(Ok(item)))) => {
                if done.item(item.data).is_err() {
                    // The peer is gone: nobody to stream to.
                    return;
                }
                // A stream that is always ready would otherwise fill the connection's queue
                // before its writer (on the same thread) sends the first item: let the writer
                // and the other connections run every so often.
                tokio::task::consume_budget().await;
            }
            Ok(Ok(Some(Err(err)))) => return done.complete(Ok(Err(err))),
            Ok(Ok(None)) => return done.complete(Ok(Ok(ReplyData::Tree(Value::Null)))),
            Ok(Err(panic)) => return done.complete(Err(panic)),
        }
    }
}

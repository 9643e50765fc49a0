//! One connection's life, independent of the transport: read requests, run each in its own
//! task, queue replies in completion order, pause reading when the peer falls behind, and on
//! shutdown finish what was accepted before closing.

use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::{FutureExt, Stream, StreamExt};
use pixl_ipc_protocol::cost::value_bytes;
use pixl_ipc_protocol::json::{encode_response_line, raw_response_pieces, stream_item_pieces};
use pixl_ipc_protocol::quote::bounded;
use pixl_ipc_protocol::MAX_ERROR_REPLY_ID_BYTES;
use pixl_ipc_protocol::{
    encode_line, ErrorCode, ErrorReply, FrameError, RawId, RawRequest, Response,
};
use serde_json::json;
use tokio::task::{JoinHandle, JoinSet};

use crate::context::ConnectionContext;
use crate::handler::{ConnectionInfo, HandlerError, ReplyData, RequestContext};
use crate::outbound::{Charge, Line, Outbound, QueueError};
use crate::router::Matched;
use crate::stats::Stats;
use crate::stream::{self, Streams};

/// One decoded line from a transport, and whether it came in a binary frame (replies go back
/// in the same frame type).
pub(crate) struct Received {
    pub(crate) message: Result<RawRequest, FrameError>,
    pub(crate) binary: bool,
}

/// The decoded inbound side of a transport; an `Err` ends the connection.
pub(crate) type Inbound = Result<Received, io::Error>;

/// Why the reader stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadEnd {
    PeerClosed,
    ReadError,
    Shutdown,
    CloseRequested,
    /// The peer hung up or stopped taking data: nobody is left to answer.
    PeerGone,
}

/// What a transport hands the core besides the requests: the task that writes replies (it owns
/// the [`OutboundReceiver`](crate::outbound::OutboundReceiver)), and a future that resolves if
/// the peer hangs up while nothing is being read.
pub(crate) struct PeerWatch<G> {
    /// `Ok` after the last reply, once every [`Outbound`] is gone; `Err` when the peer stopped
    /// taking data. `None` once it has ended.
    writer: Option<AbortOnDrop<io::Result<()>>>,
    hangup: Pin<Box<G>>,
    hung_up: bool,
}

impl<G: Future<Output = ()>> PeerWatch<G> {
    pub(crate) fn new(writer: JoinHandle<io::Result<()>>, hangup: G) -> Self {
        PeerWatch {
            writer: Some(AbortOnDrop(writer)),
            hangup: Box::pin(hangup),
            hung_up: false,
        }
    }

    /// Resolves when the peer is known to be gone: it hung up, or the writer failed.
    async fn left(&mut self, conn_id: u64) {
        let PeerWatch {
            writer,
            hangup,
            hung_up,
        } = self;
        loop {
            tokio::select! {
                () = hangup_of(hangup, hung_up) => return,
                alive = writer_end(writer, conn_id) => if !alive { return },
            }
        }
    }
}

/// Resolves when the writer ends, with whether the peer is still there to read replies (false
/// when the write failed or the writer panicked). Pending forever once it has ended.
async fn writer_end(writer: &mut Option<AbortOnDrop<io::Result<()>>>, conn_id: u64) -> bool {
    let Some(running) = writer.as_mut() else {
        return std::future::pending().await;
    };
    let result = (&mut running.0).await;
    *writer = None;
    match result {
        Ok(Ok(())) => true,
        Ok(Err(err)) => {
            tracing::debug!(conn = conn_id, error = %err, "peer stopped taking replies");
            false
        }
        Err(err) if err.is_panic() => {
            tracing::error!(conn = conn_id, "connection writer panicked");
            false
        }
        Err(_) => false,
    }
}

/// Resolves once the peer has hung up; pending forever after it did once.
async fn hangup_of<G: Future<Output = ()>>(hangup: &mut Pin<Box<G>>, hung_up: &mut bool) {
    if *hung_up {
        return std::future::pending().await;
    }
    hangup.as_mut().await;
    *hung_up = true;
}

/// Serves one connection to the end, registered for pushes (and counted as open) meanwhile.
/// `outbound` is the connection's reply queue (created by the caller, whose writer drains its
/// other end); `watch` has that writer and the transport's hang-up signal.
///
/// A connection is released as soon as its peer is known to be gone, in whatever state: reading
/// paused, handlers running (they are dropped), replies unsent.
pub(crate) async fn serve<R, G>(
    info: Arc<ConnectionInfo>,
    context: &ConnectionContext,
    requests: R,
    outbound: Outbound,
    watch: PeerWatch<G>,
) where
    R: Stream<Item = Inbound> + Unpin,
    G: Future<Output = ()>,
{
    let id = info.id;
    context.stats.connection_opened();
    context.registry.insert(&info, &outbound);
    serve_registered(info, context, requests, outbound, watch).await;
    context.registry.remove(id);
    context.stats.connection_closed();
}

async fn serve_registered<R, G>(
    info: Arc<ConnectionInfo>,
    context: &ConnectionContext,
    mut requests: R,
    outbound: Outbound,
    mut watch: PeerWatch<G>,
) where
    R: Stream<Item = Inbound> + Unpin,
    G: Future<Output = ()>,
{
    let conn_id = info.id;
    let mut handlers = JoinSet::new();
    let end = read_requests(
        &info,
        context,
        &mut requests,
        &outbound,
        &mut handlers,
        &mut watch,
    )
    .await;
    tracing::debug!(conn = conn_id, reason = ?end, in_flight = handlers.len(), "stopped reading");
    drop(outbound);
    if end == ReadEnd::PeerGone {
        return give_up(conn_id, &mut handlers);
    }

    // Let accepted requests finish and their replies go out, unless the peer leaves or the exit
    // timeout passes. The writer ends cleanly once the last reply is out.
    loop {
        tokio::select! {
            biased;
            () = context.abort.cancelled() => {
                tracing::warn!(conn = conn_id, dropped = handlers.len(), "exit timeout reached; closing connection with requests unanswered");
                handlers.abort_all();
                return;
            }
            () = hangup_of(&mut watch.hangup, &mut watch.hung_up) => {
                return give_up(conn_id, &mut handlers);
            }
            alive = writer_end(&mut watch.writer, conn_id) => {
                if !alive {
                    return give_up(conn_id, &mut handlers);
                }
                break;
            }
            Some(_) = handlers.join_next(), if !handlers.is_empty() => {}
        }
    }
    if matches!(end, ReadEnd::Shutdown | ReadEnd::CloseRequested) {
        linger(&mut requests, context).await;
    }
}

/// Drops what still runs for a peer that is gone: its replies have nowhere to go.
fn give_up(conn_id: u64, handlers: &mut JoinSet<()>) {
    if !handlers.is_empty() {
        tracing::debug!(
            conn = conn_id,
            dropped = handlers.len(),
            "peer gone; cancelling its running requests"
        );
    }
    handlers.abort_all();
}

/// Reads and dispatches requests until the peer closes, fails, leaves, asks to close, or
/// shutdown.
async fn read_requests<R, G>(
    info: &Arc<ConnectionInfo>,
    context: &ConnectionContext,
    requests: &mut R,
    outbound: &Outbound,
    handlers: &mut JoinSet<()>,
    watch: &mut PeerWatch<G>,
) -> ReadEnd
where
    R: Stream<Item = Inbound> + Unpin,
    G: Future<Output = ()>,
{
    let ctx = RequestContext {
        connection: info.clone(),
    };
    let mut paused = false;
    let mut deferred: Option<Routed> = None;
    let streams = Streams::default();
    // One future for the whole loop: it registers for the wake-up once, instead of per request.
    let shutdown = context.shutdown.cancelled();
    tokio::pin!(shutdown);
    loop {
        let unread = outbound.is_full();
        if unread && !paused {
            context.stats.backpressure();
            tracing::debug!(
                conn = info.id,
                "peer is not reading replies; pausing its requests"
            );
        }
        paused = unread;
        // Past its budget (unread replies and requests being handled), or holding anything
        // while the server's budget is spent, a connection takes no new request until what it
        // holds shrinks; its own progress wakes it.
        // A request read but not yet affordable waits here, and nothing more is read.
        if let Some(waiting) = deferred.take() {
            if outbound.admits(waiting.cost) {
                if dispatch(waiting, &ctx, context, outbound, &streams, handlers) {
                    return ReadEnd::CloseRequested;
                }
            } else {
                deferred = Some(waiting);
            }
        }
        let behind = unread || outbound.over_budget() || deferred.is_some();
        // Streams have a limit of their own (checked as they start) and do not take request
        // slots: a connection whose slots all held endless streams could never read the
        // cancel that ends one.
        // (The stream count takes a lock: only asked when the slots look full.)
        let can_read = !behind
            && (handlers.len() < context.max_in_flight
                || handlers.len().saturating_sub(streams.len()) < context.max_in_flight);
        tokio::select! {
            biased;
            () = &mut shutdown => return ReadEnd::Shutdown,
            // While reading, a peer that leaves is seen as end-of-file; while not, only this.
            () = watch.left(info.id), if !can_read => return ReadEnd::PeerGone,
            Some(_) = handlers.join_next(), if !handlers.is_empty() => {}
            () = outbound.progressed(), if behind => {}
            next = requests.next(), if can_read => match next {
                None => return ReadEnd::PeerClosed,
                Some(Err(err)) => {
                    tracing::debug!(conn = info.id, error = %err, "connection read ended");
                    return ReadEnd::ReadError;
                }
                Some(Ok(Received { message: Err(frame_error), binary })) => {
                    reject_line(info.id, context, outbound, &frame_error, binary);
                }
                Some(Ok(Received { message: Ok(request), .. })) if request.cancel => {
                    // Not a request: costs nothing, answered only by the stream it ends.
                    streams.cancel(request.ipc_req_id.as_ref());
                }
                Some(Ok(Received { message: Ok(request), binary })) => {
                    let routed = Routed::new(request, binary, context);
                    if !outbound.admits(routed.cost) {
                        deferred = Some(routed);
                    } else if dispatch(routed, &ctx, context, outbound, &streams, handlers) {
                        return ReadEnd::CloseRequested;
                    }
                }
            },
        }
    }
}

/// How long a connection closed by the server keeps reading (and discarding) what the peer still
/// sends after the last reply went out.
const LINGER: Duration = Duration::from_millis(500);

/// Discards what the peer sent after we stopped reading, until it closes or [`LINGER`] passes.
/// Closing a socket with unread data makes the kernel reset the connection, and the peer could
/// then lose the replies it has not read yet; reading the rest first gives it a clean EOF.
async fn linger<R>(requests: &mut R, context: &ConnectionContext)
where
    R: Stream<Item = Inbound> + Unpin,
{
    let drain = async { while let Some(Ok(_)) = requests.next().await {} };
    tokio::select! {
        _ = tokio::time::timeout(LINGER, drain) => {}
        () = context.abort.cancelled() => {}
    }
}

/// Answers a line that could not be decoded; the connection carries on.
fn reject_line(
    conn_id: u64,
    context: &ConnectionContext,
    outbound: &Outbound,
    error: &FrameError,
    binary: bool,
) {
    tracing::warn!(conn = conn_id, error = %error, "rejected a line");
    context.stats.protocol_error();
    let reply = ErrorReply::new(error.req_id().cloned(), error.code(), error.to_string());
    queue(outbound, &reply, binary);
}

/// A decoded request with its route and what it will be charged against its connection's
/// budget while it is handled.
struct Routed {
    request: RawRequest,
    binary: bool,
    /// `None` for a request without a usable uri (answered `no_uri`).
    route: Option<Matched>,
    cost: usize,
    received: Instant,
}

impl Routed {
    /// Routes `request` and prices it: every field it holds while it is handled (id, uri, user
    /// agent, data; the echo's reply is its data again), and for a handler the `Value` trees its
    /// data and id are parsed into, estimated before parsing.
    fn new(request: RawRequest, binary: bool, context: &ConnectionContext) -> Routed {
        let received = Instant::now();
        context.stats.request_received();
        let route = request.routable_uri().map(|uri| context.router.route(uri));
        let data = request.data.as_deref().map_or("", |data| data.get());
        let id = request.ipc_req_id.as_ref().map_or("", |id| id.json());
        let held = [
            data.len(),
            id.len(),
            request.uri.as_ref().map_or(0, String::len),
            request.user_agent.as_ref().map_or(0, String::len),
        ]
        .iter()
        .fold(0usize, |sum, len| sum.saturating_add(*len));
        let cost = match &route {
            Some(route) if !route.echoes_data => held
                .saturating_add(value_bytes(data))
                .saturating_add(value_bytes(id)),
            _ => held,
        };
        Routed {
            request,
            binary,
            route,
            cost,
            received,
        }
    }
}

/// Starts one request: protocol errors are answered at once, the built-in echo is answered
/// from the data's text, and anything else runs its handler (in a task of its own if it waits)
/// so a slow handler does not hold up the others. True when the request asked the server to
/// close the connection after it.
fn dispatch(
    routed: Routed,
    ctx: &RequestContext,
    context: &ConnectionContext,
    outbound: &Outbound,
    streams: &Streams,
    handlers: &mut JoinSet<()>,
) -> bool {
    let Routed {
        request,
        binary,
        route,
        cost,
        received,
    } = routed;
    let close = request.close_after_reply;
    let Some(route) = route else {
        context.stats.protocol_error();
        tracing::warn!(conn = ctx.connection.id, "request without a uri");
        if !request.no_reply {
            let reply = ErrorReply::new(
                request.ipc_req_id,
                ErrorCode::NoUri,
                "Missing required uri parameter from request",
            );
            queue(outbound, &reply, binary);
        }
        return close;
    };
    if let Some(uri) = request.uri.as_deref() {
        tracing::trace!(conn = ctx.connection.id, uri = %bounded(uri), handler = %route.name, "request");
    }
    let mut done = Completion {
        charge: None,
        name: route.name.clone(),
        req_id: request.ipc_req_id.clone(),
        reply: !request.no_reply,
        binary,
        received,
        counted: false,
        stats: context.stats.clone(),
        outbound: outbound.clone(),
    };
    if cost > outbound.max_charge() {
        // Data whose tree alone could never fit the connection's budget: refused unparsed.
        context.stats.protocol_error();
        let limit = outbound.max_charge();
        tracing::warn!(conn = ctx.connection.id, cost, limit, handler = %route.name, "request refused: handling its data would take more than the connection's budget");
        if done.reply {
            // As for any line refused for its size, a long id is not copied back.
            let id = done
                .req_id
                .clone()
                .filter(|id| id.json().len() <= MAX_ERROR_REPLY_ID_BYTES);
            let reply = ErrorReply::new(
                id,
                ErrorCode::MessageTooLarge,
                format!("the request would take about {cost} bytes to handle (its fields, and its data and id as JSON trees), more than the {limit} bytes one connection may hold (--max-held-bytes)"),
            );
            queue(outbound, &reply, binary);
        }
        return close;
    }
    // Streams are not passed through tower layers (a layer sees one reply per request); they
    // have limits of their own (`--max-streams`, pacing) and end on cancel.
    if let Some(stream_handler) = &route.stream {
        if request.stream {
            done.charge = Some(outbound.charge(cost));
            let start = stream::Start {
                handler: stream_handler,
                request,
                ctx,
                context,
                streams,
            };
            start.run(done, handlers);
        } else {
            // Answered without parsing the data the handler would never see.
            let error = crate::handler::stream_required(&route.name);
            done.complete(Ok(Err(error)));
        }
        return close;
    }
    let limit = context.handler_timeout;
    if let Some(layered) = &context.layered {
        // With tower layers (`Server::layer`), every routed request goes through them.
        done.charge = Some(outbound.charge(cost));
        let future = crate::middleware::call(layered, request, ctx.clone(), route);
        run(future, done, limit, handlers);
        return close;
    }
    if route.echoes_data {
        done.echo(request.data);
        return close;
    }
    done.charge = Some(outbound.charge(cost));
    if let Some(text_handler) = &route.text {
        // A typed handler decodes its data from the text itself: no `Value` tree is built.
        // (It is still charged for one above: a conservative bound for what `T` holds.)
        run(text_handler(request, ctx.clone()), done, limit, handlers);
        return close;
    }
    let request = match request.into_request() {
        Ok(request) => request,
        Err(err) => {
            let error = FrameError::from_serde(&err, done.req_id.clone());
            reject_line(ctx.connection.id, context, outbound, &error, binary);
            return close;
        }
    };
    run((route.handler)(request, ctx.clone()), done, limit, handlers);
    close
}

/// Runs a handler's future to its reply. Most handlers (lookups, counters) finish without
/// waiting: poll once here and answer at once, and only give the ones that wait a task of
/// their own. Polling with a no-op waker is safe: the spawned task polls again first thing, so
/// no wake-up is missed.
fn run<T: Into<ReplyData> + 'static>(
    mut future: Pin<Box<dyn Future<Output = Result<T, HandlerError>> + Send>>,
    done: Completion,
    limit: Option<Duration>,
    handlers: &mut JoinSet<()>,
) {
    let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
    match std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx))) {
        Ok(Poll::Ready(result)) => done.complete(Ok(result.map(Into::into))),
        Err(panic) => done.complete(Err(panic)),
        Ok(Poll::Pending) => {
            handlers.spawn(async move {
                let guarded = AssertUnwindSafe(future).catch_unwind();
                let outcome = match limit {
                    None => guarded.await,
                    Some(limit) => match tokio::time::timeout(limit, guarded).await {
                        Ok(outcome) => outcome,
                        Err(_) => Ok(Err(done.timed_out(limit))),
                    },
                };
                done.complete(outcome.map(|result| result.map(Into::into)));
            });
        }
    }
}

/// Where a request's outcome goes once its handler is done.
pub(crate) struct Completion {
    /// What the request is charged against its connection's budget, until it is answered.
    charge: Option<Charge>,
    name: Arc<str>,
    /// The id as the client wrote it, for the reply to carry back byte for byte.
    req_id: Option<RawId>,
    reply: bool,
    binary: bool,
    received: Instant,
    /// The response is already in the statistics (a stream counts once its handler has
    /// produced the stream, so a long stream does not skew the latency figures).
    counted: bool,
    stats: Arc<Stats>,
    outbound: Outbound,
}

impl Completion {
    /// The connection's outbound queue.
    pub(crate) fn outbound(&self) -> &Outbound {
        &self.outbound
    }

    /// Gives back the request's charge before its reply is sent: for a stream once its
    /// handler has made the stream (the request's text is gone by then), so a connection's
    /// running streams never keep it from reading the cancel that would end them.
    pub(crate) fn release_charge(&mut self) {
        self.charge = None;
    }

    /// Counts the response in the statistics now, with the time since the request arrived.
    pub(crate) fn count_now(&mut self) {
        if !self.counted {
            self.counted = true;
            self.stats.response_sent(self.received.elapsed());
        }
    }

    /// Queues one item of a streamed reply. `Err` when the peer is gone.
    pub(crate) fn item(&self, data: Box<serde_json::value::RawValue>) -> Result<(), QueueError> {
        self.outbound.send(Line::from_pieces(
            stream_item_pieces(self.req_id.as_ref(), data),
            self.binary,
        ))
    }

    /// Forgets the request's id, so the reply carries `"ipcReqID": null` (for an id too long to
    /// copy back).
    pub(crate) fn without_id(mut self) -> Self {
        self.req_id = None;
        self
    }

    /// Answers with a top-level error (`{"ipcReqID":..,"code":..,"message":..}`).
    pub(crate) fn fail(mut self, code: ErrorCode, message: impl Into<String>) {
        self.count_now();
        if self.reply {
            let reply = ErrorReply::new(self.req_id.take(), code, message);
            queue(&self.outbound, &reply, self.binary);
        }
    }

    /// The error a cancelled, too-slow handler answers with.
    pub(crate) fn timed_out(&self, limit: Duration) -> HandlerError {
        tracing::warn!(handler = %self.name, limit_ms = limit.as_millis() as u64, "handler timed out and was cancelled");
        HandlerError::new(
            ErrorCode::HandlerTimeout.as_str(),
            format!(
                "handler '{}' did not finish within {} ms",
                self.name,
                limit.as_millis()
            ),
        )
    }

    /// Answers with the request's data exactly as it arrived (the built-in echo), a large one
    /// written from the buffer it was decoded into.
    fn echo(self, data: Option<Box<serde_json::value::RawValue>>) {
        self.reply_with(|ipc_req_id| raw_response_pieces(ipc_req_id, data));
    }

    /// Counts the response and, unless the request was one-way, queues the line `encode`
    /// makes for the request's id, in the pieces [`Line::from_pieces`] takes.
    fn reply_with(mut self, encode: impl FnOnce(Option<&RawId>) -> [bytes::Bytes; 3]) {
        self.count_now();
        if self.reply {
            let line = Line::from_pieces(encode(self.req_id.as_ref()), self.binary);
            // A closed queue means the peer is gone; its reply has nowhere to go.
            let _ = self.outbound.send(line);
        }
    }

    /// Turns the handler's outcome (or its panic) into the reply and queues it.
    pub(crate) fn complete(self, outcome: std::thread::Result<Result<ReplyData, HandlerError>>) {
        let data = match outcome {
            Ok(Ok(ReplyData::Tree(data))) => data,
            Ok(Ok(ReplyData::Text(text))) => {
                self.reply_with(|ipc_req_id| raw_response_pieces(ipc_req_id, Some(text)));
                return;
            }
            Ok(Err(err)) => {
                tracing::debug!(handler = %self.name, code = %bounded(&err.code), message = %bounded(&err.message), "handler returned an error");
                json!({"code": err.code, "message": err.message})
            }
            Err(panic) => {
                // A panic message may quote the request it choked on.
                let message = format!(
                    "handler '{}' panicked: {}",
                    self.name,
                    bounded(panic_message(&*panic))
                );
                tracing::error!(handler = %self.name, "{message}");
                json!({"code": ErrorCode::HandlerPanic.as_str(), "message": message})
            }
        };
        self.reply_with(|ipc_req_id| {
            let line = encode_response_line(&Response {
                ipc_req_id,
                data: &data,
            });
            [line, bytes::Bytes::new(), bytes::Bytes::new()]
        });
    }
}

fn queue<T: serde::Serialize>(outbound: &Outbound, message: &T, binary: bool) {
    match encode_line(message) {
        // A closed queue means the peer is gone; its replies have nowhere to go.
        Ok(bytes) => drop(outbound.send(Line::new(bytes, binary))),
        Err(err) => tracing::error!(error = %err, "reply could not be encoded as JSON"),
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// Aborts the writer task if the connection is dropped before it finished.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

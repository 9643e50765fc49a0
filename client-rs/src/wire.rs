//! The connection's receiving side, shared by the connection task and waiting callers: the
//! read half of a UNIX connection (with its partial line), the table of requests waiting for
//! replies, and the routing of every line the server sends.
//!
//! Why shared: a call whose reply the task read costs a hand-over (the task wakes the caller
//! through a oneshot, and the runtime polls the reactor once more before it resumes the caller).
//! So a caller waiting for its reply reads the socket itself ("caller reads") while no other
//! caller does, routing every line exactly as the task would (the same code below: replies for
//! other callers, stream items, pushes, errors), until its own reply is in. A caller takes the
//! role only while no other call waits (one call at a time, the case the hand-over costs most);
//! calls made while it reads are routed by it all the same.
//!
//! The rules that keep this safe:
//! - Everything is behind one std `Mutex`, never held across an `.await`: a read is one
//!   non-blocking poll under the lock. The read half and its buffer stay here, never in a
//!   caller's future, so a caller dropped between polls (a timeout, a `select!`) loses no byte.
//! - The socket's readiness always wakes the task *and* the reading caller (a [`Fan`] waker),
//!   and the task reads whenever it is polled, claim or not: a caller that holds the role but
//!   is not polled (a future kept but no longer awaited, a blocked thread) stalls nobody.
//! - The reading role (one caller at a time) is handed back to the task, which is woken, on the
//!   caller's own reply, when its future is dropped, at end-of-file or a read error (kept in
//!   `ended` for the task to end the connection with), and when a stream's buffer is full (the
//!   line is parked, reading stops for everyone until the task has room for it: backpressure
//!   as before).
//! - Each connection has a generation; a new connection clears the claim, and a caller that
//!   claimed the role on one connection never reads another.
//! - WebSocket connections stay on the task path: their read half is not put here (its reads
//!   also answer pings through the shared sink, which the task flushes).
//! - Only on a current-thread runtime, and only for callers on its thread (see
//!   `Wire::reading_thread`): elsewhere the task reads alone, as before.

use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::ThreadId;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use pixl_ipc_protocol::FrameError;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::error::Error;
use crate::lines::{self, Route};
use crate::pending::PendingRequests;
use crate::pushes::PushHub;
use crate::transport::{self, UnixLines};

/// The receiving side of the client's connection; see the module's documentation.
pub(crate) struct Wire {
    state: Mutex<WireState>,
    fan: Arc<Fan>,
    /// `fan` as a waker: the one the read half is always polled with.
    fan_waker: Waker,
    pushes: Arc<PushHub>,
    /// Replies longer than this fail their call with [`Error::ReplyTooLarge`] undecoded.
    max_reply_bytes: usize,
    /// The thread whose callers may read: the one the client was started on, when that runs a
    /// current-thread runtime (so the caller and the task share the thread); `None` on a
    /// multi-threaded runtime. A caller on any other thread (the client used from another
    /// runtime or thread) waits for the task instead: the socket's readiness would wake both on
    /// two threads, which then contend for the lock (a call one at a time measured ~40% slower
    /// on a multi-threaded runtime).
    reading_thread: Option<ThreadId>,
}

/// What the lock protects.
pub(crate) struct WireState {
    /// Counts connections; a claim is only good for the one it was made on.
    generation: u64,
    /// The read half of a UNIX connection; `None` between connections and on WebSocket
    /// connections (the task keeps their reader).
    reader: Option<UnixLines>,
    /// Requests written and not yet answered.
    pub(crate) pending: PendingRequests,
    last_said: LastSaid,
    /// A stream's line that did not fit its full buffer: nothing is read until it does.
    parked: Option<Parked>,
    /// Streams to cancel on the wire, found while routing; the task writes them.
    cancels: Vec<String>,
    /// Why the read half ended, seen by a caller: the task ends the connection with it.
    ended: Option<String>,
    /// The caller holding the reading role (its call's number), if one does.
    claim: Option<u64>,
}

impl WireState {
    /// The cancels found while routing, for the task to write.
    pub(crate) fn take_cancels(&mut self) -> Vec<String> {
        mem::take(&mut self.cancels)
    }
}

/// A stream's line that did not fit its full buffer: no one reads from the connection until it
/// does (or the stream is dropped), so the server pauses (backpressure).
pub(crate) struct Parked {
    pub(crate) id: String,
    pub(crate) line: Bytes,
    pub(crate) more: bool,
    pub(crate) items: mpsc::Sender<Bytes>,
}

/// The server's error line without an `ipcReqID` (`too_many_connections`, `peer_not_allowed`),
/// kept while it is the last thing the server said: if the connection ends next, it is why.
#[derive(Default)]
pub(crate) struct LastSaid(Option<String>);

impl LastSaid {
    /// `reason`, with the server's own reason in front when it gave one just before closing.
    pub(crate) fn explain(&mut self, reason: String) -> String {
        match self.0.take() {
            Some(said) => {
                format!("the server closed the connection after reporting {said} ({reason})")
            }
            None => reason,
        }
    }
}

/// The waker the read half is polled with: it wakes the task and the reading caller.
#[derive(Default)]
struct Fan {
    task: AtomicWaker,
    caller: Mutex<Option<(u64, Waker)>>,
}

impl Fan {
    fn caller(&self) -> MutexGuard<'_, Option<(u64, Waker)>> {
        self.caller.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_caller(&self, token: u64, waker: &Waker) {
        let mut slot = self.caller();
        match &*slot {
            Some((held, current)) if *held == token && current.will_wake(waker) => {}
            _ => *slot = Some((token, waker.clone())),
        }
    }

    fn clear_caller(&self, token: u64) {
        let mut slot = self.caller();
        if matches!(&*slot, Some((held, _)) if *held == token) {
            *slot = None;
        }
    }
}

impl Wake for Fan {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Woken outside the slot's lock: a waker may run arbitrary code.
        let caller = self.caller().as_ref().map(|(_, waker)| waker.clone());
        if let Some(caller) = caller {
            caller.wake();
        }
        self.task.wake();
    }
}

/// What one read from the shared read half did.
enum Read {
    /// One line routed.
    Routed,
    /// One line parked: reading stops until the task has room for it.
    Parked,
    /// The read half ended (`WireState::ended` says why).
    Ended,
}

/// What the task must act on.
pub(crate) enum Event {
    /// Lines were routed; these streams are to be cancelled on the wire.
    Routed(Vec<String>),
    /// A stream's line is parked: wait for room in this buffer (then [`Wire::unpark`]).
    Parked(mpsc::Sender<Bytes>),
    /// The connection ended, for this reason (not yet explained by what the server said last:
    /// see [`Wire::explain`]).
    Lost(String),
}

impl Wire {
    pub(crate) fn new(
        pushes: Arc<PushHub>,
        max_reply_bytes: usize,
        reading_thread: Option<ThreadId>,
    ) -> Wire {
        let fan = Arc::new(Fan::default());
        Wire {
            state: Mutex::new(WireState {
                generation: 0,
                reader: None,
                pending: PendingRequests::default(),
                last_said: LastSaid::default(),
                parked: None,
                cancels: Vec::new(),
                ended: None,
                claim: None,
            }),
            fan_waker: Waker::from(Arc::clone(&fan)),
            fan,
            pushes,
            max_reply_bytes,
            reading_thread,
        }
    }

    /// The shared state. A panic under the lock leaves it usable: every field is consistent
    /// between statements that could panic.
    pub(crate) fn lock(&self) -> MutexGuard<'_, WireState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a new connection: `reader` (a UNIX read half, which callers may read; `None` on
    /// a WebSocket). Whatever the last one left is gone, and so is any claim made on it.
    pub(crate) fn install(&self, reader: Option<UnixLines>) {
        let mut state = self.lock();
        state.generation += 1;
        state.reader = reader;
        state.last_said = LastSaid::default();
        state.parked = None;
        state.cancels.clear();
        state.ended = None;
        if let Some(token) = state.claim.take() {
            self.fan.clear_caller(token);
        }
    }

    /// Ends the connection's receiving side: settles every pending request with `error` and
    /// drops the read half. Returns how many requests were settled.
    pub(crate) fn end(&self, error: &Error) -> usize {
        let mut state = self.lock();
        let failed = state.pending.fail_all(error);
        state.reader = None;
        state.parked = None;
        state.cancels.clear();
        state.ended = None;
        if let Some(token) = state.claim.take() {
            self.fan.clear_caller(token);
        }
        failed
    }

    /// The task's side: the next thing to act on. Reads (one line per call) whenever nothing
    /// is parked, whether or not a caller holds the role. Cancel-safe.
    pub(crate) fn poll_task(&self, cx: &mut Context<'_>) -> Poll<Event> {
        self.fan.task.register(cx.waker());
        let mut state = self.lock();
        if let Some(reason) = state.ended.take() {
            return Poll::Ready(Event::Lost(reason));
        }
        // Cancels a reading caller queued before it parked a line go out now, not once the
        // parked stream has room.
        if !state.cancels.is_empty() {
            return Poll::Ready(Event::Routed(mem::take(&mut state.cancels)));
        }
        if let Some(parked) = &state.parked {
            return Poll::Ready(Event::Parked(parked.items.clone()));
        }
        match self.poll_read(&mut state) {
            Poll::Ready(Read::Routed) => Poll::Ready(Event::Routed(mem::take(&mut state.cancels))),
            Poll::Ready(Read::Parked) => match &state.parked {
                Some(parked) => Poll::Ready(Event::Parked(parked.items.clone())),
                None => Poll::Ready(Event::Routed(mem::take(&mut state.cancels))),
            },
            Poll::Ready(Read::Ended) => {
                Poll::Ready(Event::Lost(state.ended.take().unwrap_or_default()))
            }
            // Cancels a caller found while routing.
            Poll::Pending if !state.cancels.is_empty() => {
                Poll::Ready(Event::Routed(mem::take(&mut state.cancels)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// The task's side, for a line its own (WebSocket) reader read: routes it.
    pub(crate) fn route(&self, incoming: Result<Bytes, FrameError>) -> Event {
        let mut state = self.lock();
        self.handle(&mut state, incoming);
        match &state.parked {
            Some(parked) => Event::Parked(parked.items.clone()),
            None => Event::Routed(mem::take(&mut state.cancels)),
        }
    }

    /// `reason`, explained by what the server said last (see [`LastSaid`]).
    pub(crate) fn explain(&self, reason: String) -> String {
        self.lock().last_said.explain(reason)
    }

    /// The parked line's stream has room (`permit`), or was dropped (`None`): delivers the
    /// line, or returns the id of the stream to cancel on the wire. Reading resumes.
    pub(crate) fn unpark(&self, permit: Option<mpsc::OwnedPermit<Bytes>>) -> Option<String> {
        let mut state = self.lock();
        let parked = state.parked.take()?;
        match permit {
            Some(permit) => {
                permit.send(parked.line);
                None
            }
            None if parked.more && state.pending.remove_stream(&parked.id).is_some() => {
                Some(parked.id)
            }
            None => None,
        }
    }

    /// Reads one line from the shared read half and routes it. The read half is always polled
    /// with the fan waker, so its readiness wakes both the task and the reading caller.
    fn poll_read(&self, state: &mut WireState) -> Poll<Read> {
        let Some(reader) = state.reader.as_mut() else {
            return Poll::Pending;
        };
        if state.ended.is_some() || state.parked.is_some() {
            return Poll::Pending;
        }
        let mut cx = Context::from_waker(&self.fan_waker);
        match transport::poll_unix_line(reader, &mut cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(reason)) => {
                state.ended = Some(reason);
                Poll::Ready(Read::Ended)
            }
            Poll::Ready(Ok(incoming)) => {
                self.handle(state, incoming);
                Poll::Ready(if state.parked.is_some() {
                    Read::Parked
                } else {
                    Read::Routed
                })
            }
        }
    }

    /// One line from the server, or a line too long to take.
    fn handle(&self, state: &mut WireState, incoming: Result<Bytes, FrameError>) {
        match incoming {
            Ok(line) => self.deliver(state, line),
            Err(bad_line) => reject(state, &bad_line),
        }
    }

    /// Routes one line, without decoding it: a reply to its caller (who decodes it under its
    /// own deadline), a push to subscribers (who decode it when they take it).
    fn deliver(&self, state: &mut WireState, line: Bytes) {
        let route = lines::route(&line, self.max_reply_bytes);
        match route {
            Route::Reply(id) if state.pending.stream(&id).is_some() => {
                state.last_said.0 = None;
                self.deliver_to_stream(state, id, line);
            }
            Route::Reply(id) => {
                state.last_said.0 = None;
                let outcome = if line.len() > self.max_reply_bytes {
                    Err(Error::ReplyTooLarge {
                        size: line.len(),
                        limit: self.max_reply_bytes,
                    })
                } else {
                    Ok(line)
                };
                if !state.pending.complete(&id, outcome) {
                    tracing::debug!(
                        id,
                        "dropped a reply nobody waits for (late, after a timeout)"
                    );
                }
            }
            Route::ForeignId(id) => {
                state.last_said.0 = None;
                tracing::warn!(%id, "reply with an id this client never uses");
            }
            Route::UnattributedError(said) => {
                tracing::warn!(error = %said, "server reported an error for an unknown request");
                state.last_said.0 = Some(said);
            }
            Route::Push => {
                state.last_said.0 = None;
                // No subscriber is fine: pushes are offered, not queued for later. A copy, so
                // a buffered push never keeps a whole read buffer or frame alive.
                if self.pushes.has_subscribers() {
                    self.pushes.publish(&Bytes::copy_from_slice(&line));
                }
            }
            Route::Skip(None) => {}
            Route::Skip(Some(error)) => {
                tracing::warn!(%error, "undecodable line from the server");
            }
        }
    }

    /// One line for the running stream `id`: into its buffer, or parked when it is full.
    fn deliver_to_stream(&self, state: &mut WireState, id: String, line: Bytes) {
        if line.len() > self.max_reply_bytes {
            let size = line.len();
            fail_stream(
                state,
                &id,
                Error::ReplyTooLarge {
                    size,
                    limit: self.max_reply_bytes,
                },
            );
            return;
        }
        let more = lines::is_more(&line);
        let sink = if more {
            match state.pending.stream(&id) {
                Some(sink) => sink.items.clone(),
                None => return,
            }
        } else {
            // The final line: the stream is over on the wire.
            match state.pending.remove_stream(&id) {
                Some(sink) => sink.items,
                None => return,
            }
        };
        match sink.try_send(line) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(line)) => {
                state.parked = Some(Parked {
                    id,
                    line,
                    more,
                    items: sink,
                });
            }
            // Dropped, its cancel not seen yet: cancel now, so nothing more is read for it.
            Err(mpsc::error::TrySendError::Closed(_)) => {
                if more && state.pending.remove_stream(&id).is_some() {
                    tracing::debug!(id, "cancelled a stream");
                    state.cancels.push(id);
                }
            }
        }
    }
}

/// Ends the running stream `id` with `error` and has the server told to stop it.
fn fail_stream(state: &mut WireState, id: &str, error: Error) {
    if let Some(sink) = state.pending.remove_stream(id) {
        sink.fail(error);
        state.cancels.push(id.to_owned());
    }
}

/// A line from the server that could not be decoded: fail its request if it names one.
fn reject(state: &mut WireState, bad_line: &FrameError) {
    let error = match bad_line {
        FrameError::TooLong { limit, .. } => Error::Protocol(format!(
            "the reply exceeds the maximum message size of {limit} bytes"
        )),
        other => Error::Protocol(other.to_string()),
    };
    match bad_line.req_id().map(|id| id.to_value()) {
        Some(Value::String(id)) if state.pending.stream(&id).is_some() => {
            fail_stream(state, &id, error);
        }
        Some(Value::String(id)) => {
            state.pending.complete(&id, Err(error));
        }
        _ => tracing::warn!(error = %bad_line, "undecodable line from the server"),
    }
}

/// A caller's wait for its reply, reading the connection itself while no other caller does
/// (see the module's documentation). Dropping it hands the reading role back.
pub(crate) struct AwaitReply<'a> {
    wire: &'a Wire,
    reply: oneshot::Receiver<Result<Bytes, Error>>,
    /// This call's number: its claim on the reading role.
    token: u64,
    /// The connection this caller claimed the role on, once it has: it reads no other.
    claimed_on: Option<u64>,
}

impl<'a> AwaitReply<'a> {
    pub(crate) fn new(
        wire: &'a Wire,
        reply: oneshot::Receiver<Result<Bytes, Error>>,
        token: u64,
    ) -> AwaitReply<'a> {
        AwaitReply {
            wire,
            reply,
            token,
            claimed_on: None,
        }
    }

    /// Gives the reading role back to the task if this caller holds it, and wakes the task
    /// (lines already read may wait in the buffer, with no readiness left to announce them).
    fn release(&mut self) {
        if self.claimed_on.is_none() {
            return;
        }
        let mut state = self.wire.lock();
        if state.claim == Some(self.token) {
            state.claim = None;
            drop(state);
            self.wire.fan.clear_caller(self.token);
            self.wire.fan.task.wake();
        }
    }
}

impl Future for AwaitReply<'_> {
    type Output = Result<Result<Bytes, Error>, oneshot::error::RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.wire.reading_thread != Some(std::thread::current().id()) {
            return Pin::new(&mut this.reply).poll(cx);
        }
        loop {
            if let Poll::Ready(outcome) = Pin::new(&mut this.reply).poll(cx) {
                this.release();
                return Poll::Ready(outcome);
            }
            let mut state = this.wire.lock();
            let readable =
                state.reader.is_some() && state.ended.is_none() && state.parked.is_none();
            if state.claim != Some(this.token) {
                // Another caller reads (the task backs it up), or there is nothing to read
                // (between connections, a WebSocket, a parked line), or this caller's claim
                // was on an earlier connection, or other calls wait too (the task reads a
                // batch of replies in one turn; callers taking turns to read them measured
                // slower with 500 in flight): the reply comes through the oneshot.
                let on_another = this
                    .claimed_on
                    .is_some_and(|generation| generation != state.generation);
                if state.claim.is_some()
                    || !readable
                    || on_another
                    || state.pending.waiting_len() > 1
                {
                    return Poll::Pending;
                }
                state.claim = Some(this.token);
                this.claimed_on = Some(state.generation);
            } else if !readable {
                // Cannot happen while this caller holds the role (whoever ends reading drops
                // the claim); handed back all the same.
                drop(state);
                this.release();
                return Poll::Pending;
            }
            this.wire.fan.set_caller(this.token, cx.waker());
            match this.wire.poll_read(&mut state) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Read::Routed) => {
                    let cancels = !state.cancels.is_empty();
                    drop(state);
                    if cancels {
                        this.wire.fan.task.wake();
                    }
                }
                // End-of-file or a read error (for the task to end the connection with), or
                // a stream's full buffer (for the task to wait on): the task takes over.
                Poll::Ready(Read::Parked | Read::Ended) => {
                    state.claim = None;
                    drop(state);
                    this.wire.fan.clear_caller(this.token);
                    this.wire.fan.task.wake();
                }
            }
        }
    }
}

impl Drop for AwaitReply<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    //! The hand-over rules, driven step by step: a real socket pair (the test writes the
    //! server's side), the task's side polled by hand with a waker that counts its wake-ups.
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use pixl_ipc_io::unix::{split_tokio, UnixWriter};
    use pixl_ipc_protocol::LineSplitter;
    use tokio::io::AsyncWriteExt;
    use tokio::net::UnixStream;
    use tokio_util::codec::FramedRead;

    use super::*;
    use crate::pending::StreamSink;
    use crate::pushes::PushLimits;

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Wakers that count, and their counts.
    fn counter() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count::default());
        (Arc::clone(&count), Waker::from(count))
    }

    fn woken(count: &Count) -> usize {
        count.0.load(Ordering::SeqCst)
    }

    /// A wire with a new connection whose other end the test writes; our write half is
    /// returned so the connection stays open in both directions.
    fn connected(wire: &Wire) -> (UnixStream, UnixWriter) {
        let (ours, peer) = UnixStream::pair().unwrap();
        let (read, write) = split_tokio(ours).unwrap();
        wire.install(Some(FramedRead::new(read, LineSplitter::new(1 << 20))));
        (peer, write)
    }

    fn wire() -> Wire {
        let pushes = Arc::new(PushHub::new(PushLimits {
            max_pushes: 16,
            max_bytes: 1 << 20,
        }));
        Wire::new(pushes, 1 << 20, Some(std::thread::current().id()))
    }

    /// A waiting call `id`, as the task registers it.
    fn waiting(wire: &Wire, id: &str) -> oneshot::Receiver<Result<Bytes, Error>> {
        let (tx, rx) = oneshot::channel();
        wire.lock().pending.insert(id.into(), tx);
        rx
    }

    /// Lets the reactor see what the peer wrote.
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(30)).await;
    }

    /// The readiness woke the task too (and took its waker); this stands for the task having
    /// been polled since, without reading, so that only the hand-over can wake it now.
    fn task_waits_again(wire: &Wire, task_waker: &Waker) {
        wire.fan.task.register(task_waker);
    }

    fn poll_caller(call: &mut AwaitReply<'_>, waker: &Waker) -> Poll<Result<Bytes, Error>> {
        Pin::new(call)
            .poll(&mut Context::from_waker(waker))
            .map(|outcome| outcome.expect("the reply's sender is alive"))
    }

    fn poll_task(wire: &Wire, waker: &Waker) -> Poll<Event> {
        wire.poll_task(&mut Context::from_waker(waker))
    }

    fn line_of(outcome: Result<Result<Bytes, Error>, oneshot::error::TryRecvError>) -> Bytes {
        outcome.expect("answered").expect("a reply line")
    }

    /// Polled now, the task routes what is buffered, and `reply` gets `expected`.
    fn task_routes(
        wire: &Wire,
        task_waker: &Waker,
        reply: &mut oneshot::Receiver<Result<Bytes, Error>>,
        expected: &[u8],
    ) {
        assert!(matches!(
            poll_task(wire, task_waker),
            Poll::Ready(Event::Routed(_))
        ));
        assert_eq!(&line_of(reply.try_recv())[..], expected);
    }

    /// A caller that reads the reply for another caller and part of a third one's, then is
    /// dropped (a timeout, a `select!`): the partial line stays in the shared buffer, the role
    /// goes back to the task, which is woken and completes the third reply.
    #[tokio::test]
    async fn a_caller_dropped_mid_read_leaves_the_rest_to_the_task() {
        let wire = wire();
        let (mut peer, _write) = connected(&wire);
        let (task_count, task_waker) = counter();
        let (_, caller_waker) = counter();
        let a = waiting(&wire, "rq1");
        assert!(poll_task(&wire, &task_waker).is_pending());

        let mut call = AwaitReply::new(&wire, a, 1);
        assert!(poll_caller(&mut call, &caller_waker).is_pending());
        assert_eq!(wire.lock().claim, Some(1), "the caller reads");
        // Calls made while it reads.
        let mut b = waiting(&wire, "rq2");
        let mut c = waiting(&wire, "rq3");

        peer.write_all(b"{\"ipcReqID\":\"rq2\",\"data\":2}\n{\"ipcReqID\":\"rq3\",\"da")
            .await
            .unwrap();
        settle().await;
        assert!(poll_caller(&mut call, &caller_waker).is_pending());
        assert_eq!(
            &line_of(b.try_recv())[..],
            br#"{"ipcReqID":"rq2","data":2}"#
        );
        assert!(c.try_recv().is_err(), "half a line so far");

        task_waits_again(&wire, &task_waker);
        let before = woken(&task_count);
        drop(call);
        assert_eq!(wire.lock().claim, None, "the role is handed back");
        assert!(woken(&task_count) > before, "the task is woken to read on");

        peer.write_all(b"ta\":3}\n").await.unwrap();
        settle().await;
        task_routes(
            &wire,
            &task_waker,
            &mut c,
            br#"{"ipcReqID":"rq3","data":3}"#,
        );
    }

    /// A caller's own reply, with another caller's behind it in the same read: the caller
    /// stops at its own, hands the role back and wakes the task, which finds the other one
    /// already buffered (no readiness will announce it).
    #[tokio::test]
    async fn a_caller_stops_at_its_own_reply_and_wakes_the_task_for_the_rest() {
        let wire = wire();
        let (mut peer, _write) = connected(&wire);
        let (task_count, task_waker) = counter();
        let (_, caller_waker) = counter();
        let a = waiting(&wire, "rq1");
        assert!(poll_task(&wire, &task_waker).is_pending());
        let mut call = AwaitReply::new(&wire, a, 1);
        assert!(poll_caller(&mut call, &caller_waker).is_pending());
        assert_eq!(wire.lock().claim, Some(1));
        let mut b = waiting(&wire, "rq2");

        peer.write_all(b"{\"ipcReqID\":\"rq1\",\"data\":1}\n{\"ipcReqID\":\"rq2\",\"data\":2}\n")
            .await
            .unwrap();
        settle().await;
        task_waits_again(&wire, &task_waker);
        let before = woken(&task_count);
        match poll_caller(&mut call, &caller_waker) {
            Poll::Ready(Ok(line)) => assert_eq!(&line[..], br#"{"ipcReqID":"rq1","data":1}"#),
            other => panic!("expected the caller's reply, got {other:?}"),
        }
        assert!(b.try_recv().is_err(), "not routed by the caller");
        assert_eq!(wire.lock().claim, None);
        assert!(
            woken(&task_count) > before,
            "the task is woken for the buffered line"
        );
        task_routes(
            &wire,
            &task_waker,
            &mut b,
            br#"{"ipcReqID":"rq2","data":2}"#,
        );
    }

    /// A caller does not take the role while other calls wait: the task reads their replies
    /// in one turn.
    #[tokio::test]
    async fn a_caller_reads_only_when_no_other_call_waits() {
        let wire = wire();
        let (_peer, _write) = connected(&wire);
        let (_, caller_waker) = counter();
        let _other = waiting(&wire, "rq0");
        let a = waiting(&wire, "rq1");
        let mut call = AwaitReply::new(&wire, a, 1);
        assert!(poll_caller(&mut call, &caller_waker).is_pending());
        assert_eq!(wire.lock().claim, None);
        wire.lock().pending.forget("rq0");
        assert!(poll_caller(&mut call, &caller_waker).is_pending());
        assert_eq!(wire.lock().claim, Some(1), "alone, it reads");
    }

    /// A claim is good for one connection: after a reconnect the caller reads nothing of the
    /// new one (its call, if still waiting, is answered through the task).
    #[tokio::test]
    async fn a_claim_made_on_one_connection_is_void_on_the_next() {
        let wire = wire();
        let (_old_peer, _old_write) = connected(&wire);
        let (_, task_waker) = counter();
        let (_, caller_waker) = counter();
        let a = waiting(&wire, "rq1");
        let mut call = AwaitReply::new(&wire, a, 1);
        assert!(poll_caller(&mut call, &caller_waker).is_pending());
        assert_eq!(wire.lock().claim, Some(1));

        let (mut peer, _write) = connected(&wire);
        assert_eq!(wire.lock().claim, None, "a new connection clears the claim");
        let mut b = waiting(&wire, "rq2");
        peer.write_all(b"{\"ipcReqID\":\"rq2\",\"data\":2}\n")
            .await
            .unwrap();
        settle().await;
        assert!(poll_caller(&mut call, &caller_waker).is_pending());
        assert_eq!(wire.lock().claim, None, "no claim on the new connection");
        assert!(b.try_recv().is_err(), "the old claimant read nothing");
        task_routes(
            &wire,
            &task_waker,
            &mut b,
            br#"{"ipcReqID":"rq2","data":2}"#,
        );
    }

    /// A stream's full buffer stops a reading caller as it stops the task: the line is parked,
    /// the role goes to the task (woken), and nothing more is read, the caller's own reply
    /// included, until the stream has room.
    #[tokio::test]
    async fn a_full_stream_stops_a_reading_caller_until_there_is_room() {
        let wire = wire();
        let (mut peer, _write) = connected(&wire);
        let (task_count, task_waker) = counter();
        let (_, caller_waker) = counter();
        let (items_tx, mut items_rx) = mpsc::channel(1);
        let (ended_tx, _ended_rx) = oneshot::channel();
        wire.lock().pending.insert_stream(
            "rq0".into(),
            StreamSink {
                items: items_tx,
                ended: ended_tx,
            },
        );
        let a = waiting(&wire, "rq1");
        assert!(poll_task(&wire, &task_waker).is_pending());
        let mut call = AwaitReply::new(&wire, a, 1);
        assert!(poll_caller(&mut call, &caller_waker).is_pending());

        peer.write_all(
            b"{\"ipcReqID\":\"rq0\",\"data\":1,\"ipcMore\":true}\n\
              {\"ipcReqID\":\"rq0\",\"data\":2,\"ipcMore\":true}\n\
              {\"ipcReqID\":\"rq1\",\"data\":\"mine\"}\n",
        )
        .await
        .unwrap();
        settle().await;
        task_waits_again(&wire, &task_waker);
        let before = woken(&task_count);
        assert!(poll_caller(&mut call, &caller_waker).is_pending());
        assert_eq!(wire.lock().claim, None, "the role is handed back");
        assert!(
            woken(&task_count) > before,
            "the task is woken to wait for room"
        );
        assert!(wire.lock().parked.is_some());
        assert!(
            poll_caller(&mut call, &caller_waker).is_pending(),
            "nothing is read past the parked line"
        );

        let Poll::Ready(Event::Parked(items)) = poll_task(&wire, &task_waker) else {
            panic!("the task is told of the parked line");
        };
        assert!(items.try_reserve().is_err(), "still full");
        assert_eq!(
            &items_rx.recv().await.unwrap()[..],
            br#"{"ipcReqID":"rq0","data":1,"ipcMore":true}"#
        );
        let permit = items.reserve_owned().await.unwrap();
        assert_eq!(wire.unpark(Some(permit)), None);
        assert_eq!(
            &items_rx.recv().await.unwrap()[..],
            br#"{"ipcReqID":"rq0","data":2,"ipcMore":true}"#
        );
        match poll_caller(&mut call, &caller_waker) {
            Poll::Ready(Ok(line)) => {
                assert_eq!(&line[..], br#"{"ipcReqID":"rq1","data":"mine"}"#);
            }
            other => panic!("expected the caller's reply once reading resumed, got {other:?}"),
        }
    }

    /// End-of-file found by a reading caller is kept for the task, which ends the connection
    /// with it; the caller's call then fails as it would have on the task's path.
    #[tokio::test]
    async fn end_of_file_seen_by_a_caller_is_left_for_the_task() {
        let wire = wire();
        let (peer, _write) = connected(&wire);
        let (task_count, task_waker) = counter();
        let (_, caller_waker) = counter();
        let a = waiting(&wire, "rq1");
        assert!(poll_task(&wire, &task_waker).is_pending());
        let mut call = AwaitReply::new(&wire, a, 1);
        assert!(poll_caller(&mut call, &caller_waker).is_pending());

        drop(peer);
        settle().await;
        task_waits_again(&wire, &task_waker);
        let before = woken(&task_count);
        assert!(poll_caller(&mut call, &caller_waker).is_pending());
        assert_eq!(wire.lock().claim, None);
        assert!(woken(&task_count) > before);
        match poll_task(&wire, &task_waker) {
            Poll::Ready(Event::Lost(reason)) => {
                assert_eq!(reason, "the server closed the connection");
            }
            _ => panic!("the task is told the connection ended"),
        }
        let error = Error::ConnectionLost {
            address: "test".into(),
            reason: "the server closed the connection".into(),
        };
        assert_eq!(wire.end(&error), 1);
        assert!(matches!(
            poll_caller(&mut call, &caller_waker),
            Poll::Ready(Err(Error::ConnectionLost { .. }))
        ));
    }
}

//! A connection's outbound queue: encoded lines waiting for the connection's one writer (the
//! UNIX transport's `write_replies`, the WebSocket driver), and the byte gauge the reader
//! consults before taking another request. The gauge counts what the connection makes
//! the server hold: unread replies, and a charge for each request still being handled (its
//! text, and for a handler that takes a `Value`, the tree parsed from it). Each byte is also
//! counted in the server-wide [`Budget`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, Notify};

/// One encoded message on its way out, `\n` included. `binary` asks a transport that has frame
/// types (WebSocket) to send it as a binary frame, because the request came in one.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    /// The message, or its first piece when `rest` holds more.
    bytes: Bytes,
    /// Pieces that follow `bytes`, in order; `None` for most lines. A large payload travels here
    /// as the buffer it already was (the echo's data, a handler's encoded reply), so the UNIX
    /// writer sends it with its vectored write and never copies it into one line. Boxed so
    /// that every queued line, most of them small, stays small.
    rest: Option<Box<[Bytes; 2]>>,
    #[cfg_attr(not(feature = "ws"), allow(dead_code))] // Read by the WebSocket transport only.
    pub(crate) binary: bool,
}

impl Line {
    /// A message in one buffer.
    pub(crate) fn new(bytes: Bytes, binary: bool) -> Line {
        Line {
            bytes,
            rest: None,
            binary,
        }
    }

    /// A message in pieces written back to back (see [`pixl_ipc_protocol::json::raw_response_pieces`]).
    pub(crate) fn from_pieces([bytes, middle, end]: [Bytes; 3], binary: bool) -> Line {
        let rest = (!middle.is_empty() || !end.is_empty()).then(|| Box::new([middle, end]));
        Line {
            bytes,
            rest,
            binary,
        }
    }

    /// The message's length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
            + self
                .rest
                .as_deref()
                .map_or(0, |[middle, end]| middle.len() + end.len())
    }

    /// The pieces, in order (empty ones included).
    pub(crate) fn into_pieces(self) -> [Bytes; 3] {
        match self.rest {
            Some(rest) => {
                let [middle, end] = *rest;
                [self.bytes, middle, end]
            }
            None => [self.bytes, Bytes::new(), Bytes::new()],
        }
    }

    /// The message in one buffer, for a transport that frames each message (one copy, only
    /// when it is in pieces).
    #[cfg_attr(not(feature = "ws"), allow(dead_code))] // Used by the WebSocket transport only.
    pub(crate) fn into_bytes(self) -> Bytes {
        if self.rest.is_none() {
            return self.bytes;
        }
        Bytes::from(self.into_pieces().concat())
    }
}

/// What the gauge counts for each queued line beyond its bytes: its slot in the queue, its
/// buffer's header and the allocator's rounding. Without it a peer that never reads could queue
/// a million 24-byte replies under the 16 MiB limit, about 90 MiB of memory (measured: about 120
/// bytes per tiny reply besides its text). Released when the writer takes the line.
pub(crate) const LINE_OVERHEAD: usize = 128;

/// The sending side, cloned into every handler task and the push registry.
#[derive(Clone)]
pub(crate) struct Outbound {
    tx: mpsc::UnboundedSender<Line>,
    gauge: Arc<Gauge>,
}

struct Gauge {
    /// Reply bytes queued and not yet written to the socket.
    queued: AtomicUsize,
    /// Bytes charged for requests still being handled.
    charged: AtomicUsize,
    limits: OutboundLimits,
    drained: Notify,
    /// Woken (all waiters) when unread replies drop below the limit: what paced streams wait
    /// on. `drained` wakes one waiter per write, which suits the one reader but would leave
    /// all but one of several waiting streams asleep.
    room: Notify,
}

impl Gauge {
    fn grow(&self, counter: &AtomicUsize, bytes: usize) {
        counter.fetch_add(bytes, Ordering::AcqRel);
        self.limits.server.held.fetch_add(bytes, Ordering::AcqRel);
    }

    /// Takes `bytes` off `counter`, returning what it held before.
    fn shrink(&self, counter: &AtomicUsize, bytes: usize) -> usize {
        self.limits.server.held.fetch_sub(bytes, Ordering::AcqRel);
        counter.fetch_sub(bytes, Ordering::AcqRel)
    }
}

impl Drop for Gauge {
    /// Whatever the connection still held when it ended (replies never written to a peer that
    /// left) is freed with it, so it leaves the server-wide count too.
    fn drop(&mut self) {
        let left = *self.queued.get_mut() + *self.charged.get_mut();
        self.limits.server.held.fetch_sub(left, Ordering::AcqRel);
    }
}

/// The bytes every connection together makes the server hold (unread replies and charged
/// requests), against one limit: past it, a connection that holds anything takes no new
/// request until what it holds is done; one that holds nothing may always take one, so every
/// peer keeps making progress while the total stays bounded.
#[derive(Debug)]
pub(crate) struct Budget {
    held: AtomicUsize,
    limit: usize,
}

impl Budget {
    pub(crate) fn new(limit: usize) -> Arc<Budget> {
        Arc::new(Budget {
            held: AtomicUsize::new(0),
            limit,
        })
    }

    /// Bytes held now, over every connection.
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    fn is_spent(&self) -> bool {
        self.held() >= self.limit
    }
}

/// The limits a connection's gauge applies.
#[derive(Debug, Clone)]
pub(crate) struct OutboundLimits {
    /// Unread reply bytes past which reading pauses (`streamBackpressure`).
    pub(crate) replies: usize,
    /// Bytes held (replies and charged requests) past which reading pauses.
    pub(crate) held: usize,
    /// The server-wide budget.
    pub(crate) server: Arc<Budget>,
}

/// A request's charge against its connection's gauge, given back when dropped (when its
/// handler has finished and its reply is queued).
pub(crate) struct Charge {
    gauge: Arc<Gauge>,
    bytes: usize,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.gauge.shrink(&self.gauge.charged, self.bytes);
        self.gauge.drained.notify_one();
    }
}

/// Why a line was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueError {
    /// The writer has stopped (the peer is gone).
    Closed,
    /// The peer has more unread bytes queued than the limit.
    Full,
}

impl Outbound {
    /// A queue whose gauge applies `limits`, and its receiving end.
    pub(crate) fn new(limits: &OutboundLimits) -> (Outbound, OutboundReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        let gauge = Arc::new(Gauge {
            queued: AtomicUsize::new(0),
            charged: AtomicUsize::new(0),
            limits: limits.clone(),
            drained: Notify::new(),
            room: Notify::new(),
        });
        (
            Outbound {
                tx,
                gauge: gauge.clone(),
            },
            OutboundReceiver {
                rx,
                gauge,
                taken_overhead: 0,
            },
        )
    }

    /// Queues a reply. Replies are always accepted while the writer runs: the request was
    /// accepted, so its answer is owed; the reader's pause bounds how many can pile up.
    pub(crate) fn send(&self, line: Line) -> Result<(), QueueError> {
        let length = line.len().saturating_add(LINE_OVERHEAD);
        self.gauge.grow(&self.gauge.queued, length);
        self.tx.send(line).map_err(|_| {
            self.gauge.shrink(&self.gauge.queued, length);
            QueueError::Closed
        })
    }

    /// Charges `bytes` for a request until the returned [`Charge`] is dropped.
    pub(crate) fn charge(&self, bytes: usize) -> Charge {
        self.gauge.grow(&self.gauge.charged, bytes);
        Charge {
            gauge: self.gauge.clone(),
            bytes,
        }
    }

    /// Bytes this connection holds: unread replies and charged requests.
    fn held(&self) -> usize {
        self.gauge.queued.load(Ordering::Acquire) + self.gauge.charged.load(Ordering::Acquire)
    }

    /// True when the connection may not take another request yet: it holds its limit, or it
    /// holds anything while the server-wide budget is spent.
    pub(crate) fn over_budget(&self) -> bool {
        let held = self.held();
        held >= self.gauge.limits.held || (held > 0 && self.gauge.limits.server.is_spent())
    }

    /// True when a request charged `cost` may start now: it fits beside what the connection
    /// holds while the server's budget is not spent, or the connection holds nothing (so every
    /// connection keeps making progress, one request at a time). With `cost` never above
    /// [`max_charge`](Self::max_charge), a connection never holds more than its limit.
    pub(crate) fn admits(&self, cost: usize) -> bool {
        let held = self.held();
        held == 0
            || (held.saturating_add(cost) <= self.gauge.limits.held
                && !self.gauge.limits.server.is_spent())
    }

    /// The most one request may be charged: more could never fit the connection's budget.
    pub(crate) fn max_charge(&self) -> usize {
        self.gauge.limits.held
    }

    /// Queues a push, refusing it when the peer is already behind.
    pub(crate) fn try_push(&self, line: Line) -> Result<(), QueueError> {
        if self.is_full() {
            return Err(QueueError::Full);
        }
        self.send(line)
    }

    /// True when the peer has at least the limit of unread bytes queued.
    pub(crate) fn is_full(&self) -> bool {
        self.gauge.queued.load(Ordering::Acquire) >= self.gauge.limits.replies
    }

    /// Resolves after the writer next makes progress (may resolve spuriously: re-check).
    pub(crate) async fn progressed(&self) {
        self.gauge.drained.notified().await;
    }

    /// Resolves once the peer has fewer than the limit of unread bytes queued (at once if it
    /// has) and, while the server-wide budget is spent, none at all: what a stream waits for
    /// before producing its next item, so a peer that stops reading pauses its streams instead
    /// of having their items pile up, and streams on many connections stay within the
    /// server's budget (each connection still gets one item at a time).
    pub(crate) async fn has_room(&self) {
        loop {
            let room = self.gauge.room.notified();
            tokio::pin!(room);
            // Registered before the check, so a drop below the limit (or to nothing) right
            // after it still wakes us.
            room.as_mut().enable();
            let queued = self.gauge.queued.load(Ordering::Acquire);
            let spent = queued > 0 && self.gauge.limits.server.is_spent();
            if queued < self.gauge.limits.replies && !spent {
                return;
            }
            room.await;
        }
    }

    /// A handle that does not keep the queue open: the push registry holds these, so a
    /// connection's writer ends when the connection itself is done with it.
    pub(crate) fn downgrade(&self) -> WeakOutbound {
        WeakOutbound {
            tx: self.tx.downgrade(),
            gauge: self.gauge.clone(),
        }
    }
}

/// See [`Outbound::downgrade`].
pub(crate) struct WeakOutbound {
    tx: mpsc::WeakUnboundedSender<Line>,
    gauge: Arc<Gauge>,
}

impl WeakOutbound {
    /// The queue, if the connection is still writing.
    pub(crate) fn upgrade(&self) -> Option<Outbound> {
        Some(Outbound {
            tx: self.tx.upgrade()?,
            gauge: self.gauge.clone(),
        })
    }
}

/// The receiving side, owned by the writer. A line stays counted by the gauge until the writer
/// reports it [`written`](Self::written) to the socket, so whatever sits between the queue and
/// the kernel (a transport's frame queue, a TLS or WebSocket write buffer) is counted too.
pub(crate) struct OutboundReceiver {
    rx: mpsc::UnboundedReceiver<Line>,
    gauge: Arc<Gauge>,
    /// The [`LINE_OVERHEAD`] of lines taken off the queue since the last
    /// [`written`](Self::written), given back with it: one update of the gauge per write, not
    /// one more per line.
    taken_overhead: usize,
}

impl OutboundReceiver {
    /// The next line to write; `None` once every sender is gone and the queue is empty.
    pub(crate) async fn recv(&mut self) -> Option<Line> {
        let line = self.rx.recv().await;
        self.taken(&line);
        line
    }

    /// The next line if one is ready now.
    pub(crate) fn try_recv(&mut self) -> Option<Line> {
        let line = self.rx.try_recv().ok();
        self.taken(&line);
        line
    }

    /// A line left the queue: its [`LINE_OVERHEAD`] is no longer held (its bytes are, until
    /// written); the gauge is told with the next [`written`](Self::written), which always
    /// follows, since a line is never empty.
    fn taken(&mut self, line: &Option<Line>) {
        if line.is_some() {
            self.taken_overhead += LINE_OVERHEAD;
        }
    }

    /// Reports `bytes` of received lines as handed to the socket: the gauge drops by that
    /// much (and by the overhead of the lines taken since the last report), and a reader paused
    /// on it re-checks.
    pub(crate) fn written(&mut self, bytes: usize) {
        let bytes = bytes + std::mem::take(&mut self.taken_overhead);
        if bytes > 0 {
            let before = self.gauge.shrink(&self.gauge.queued, bytes);
            self.gauge.drained.notify_one();
            let (limit, after) = (self.gauge.limits.replies, before - bytes);
            // Streams wait for the queue to drop below the limit, or to empty while the
            // server's budget is spent.
            if (before >= limit && after < limit) || after == 0 {
                self.gauge.room.notify_waiters();
            }
        }
    }
}

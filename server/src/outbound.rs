//! A connection's outbound queue: encoded lines waiting for the writer, with a byte gauge so the
//! reader can stop taking requests from a peer that does not read its replies.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Sink, SinkExt};
use tokio::sync::{mpsc, Notify};

/// One encoded message on its way out, `\n` included. `binary` asks a transport that has frame
/// types (WebSocket) to send it as a binary frame, because the request came in one.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    pub(crate) bytes: Bytes,
    pub(crate) binary: bool,
}

/// The sending side, cloned into every handler task and the push registry.
#[derive(Clone)]
pub(crate) struct Outbound {
    tx: mpsc::UnboundedSender<Line>,
    gauge: Arc<Gauge>,
}

struct Gauge {
    queued: AtomicUsize,
    limit: usize,
    drained: Notify,
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
    /// A queue whose gauge reports full past `limit` unread bytes, and its receiving end.
    pub(crate) fn new(limit: usize) -> (Outbound, OutboundReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        let gauge = Arc::new(Gauge {
            queued: AtomicUsize::new(0),
            limit,
            drained: Notify::new(),
        });
        (
            Outbound {
                tx,
                gauge: gauge.clone(),
            },
            OutboundReceiver { rx, gauge },
        )
    }

    /// Queues a reply. Replies are always accepted while the writer runs: the request was
    /// accepted, so its answer is owed; the reader's pause bounds how many can pile up.
    pub(crate) fn send(&self, line: Line) -> Result<(), QueueError> {
        let length = line.bytes.len();
        self.gauge.queued.fetch_add(length, Ordering::AcqRel);
        self.tx.send(line).map_err(|_| {
            self.gauge.queued.fetch_sub(length, Ordering::AcqRel);
            QueueError::Closed
        })
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
        self.gauge.queued.load(Ordering::Acquire) >= self.gauge.limit
    }

    /// Resolves after the writer next makes progress (may resolve spuriously: re-check).
    pub(crate) async fn progressed(&self) {
        self.gauge.drained.notified().await;
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
}

impl OutboundReceiver {
    /// The next line to write; `None` once every sender is gone and the queue is empty.
    pub(crate) async fn recv(&mut self) -> Option<Line> {
        self.rx.recv().await
    }

    /// The next line if one is ready now.
    pub(crate) fn try_recv(&mut self) -> Option<Line> {
        self.rx.try_recv().ok()
    }

    /// Reports `bytes` of received lines as handed to the socket: the gauge drops by that
    /// much, and a reader paused on it re-checks.
    pub(crate) fn written(&self, bytes: usize) {
        if bytes > 0 {
            self.gauge.queued.fetch_sub(bytes, Ordering::AcqRel);
            self.gauge.drained.notify_one();
        }
    }

    /// Writes lines to `sink` until every sender is gone, batching what is ready into one flush.
    /// Returns the sink's error if the peer stopped accepting data.
    pub(crate) async fn write_all<S>(mut self, sink: &mut S) -> Result<(), S::Error>
    where
        S: Sink<Line> + Unpin,
    {
        while let Some(line) = self.recv().await {
            let mut batch = line.bytes.len();
            sink.feed(line).await?;
            while let Some(line) = self.try_recv() {
                batch += line.bytes.len();
                sink.feed(line).await?;
            }
            sink.flush().await?;
            self.written(batch);
        }
        Ok(())
    }
}

//! Fan-out of server pushes to subscribers, each with a buffer bounded in pushes and in bytes:
//! a subscriber that falls behind misses the oldest pushes, and is told how many.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use bytes::Bytes;
use tokio::sync::Notify;

/// The bounds of each subscriber's buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PushLimits {
    pub(crate) max_pushes: usize,
    pub(crate) max_bytes: usize,
}

/// The task's side: offers each push to every live subscriber.
pub(crate) struct PushHub {
    limits: PushLimits,
    inner: Mutex<HubInner>,
}

#[derive(Default)]
struct HubInner {
    subscribers: Vec<Weak<Queue>>,
    closed: bool,
}

/// One subscriber's buffer.
pub(crate) struct Queue {
    state: Mutex<QueueState>,
    notify: Notify,
}

#[derive(Default)]
struct QueueState {
    lines: VecDeque<Bytes>,
    bytes: usize,
    missed: u64,
    closed: bool,
}

/// What a subscriber gets next.
pub(crate) enum Next {
    Line(Bytes),
    Missed(u64),
    Closed,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl PushHub {
    pub(crate) fn new(limits: PushLimits) -> Self {
        PushHub {
            limits,
            inner: Mutex::default(),
        }
    }

    /// A new subscriber's buffer (already closed if the client is).
    pub(crate) fn subscribe(&self) -> Arc<Queue> {
        let mut inner = lock(&self.inner);
        let queue = Arc::new(Queue {
            state: Mutex::new(QueueState {
                closed: inner.closed,
                ..QueueState::default()
            }),
            notify: Notify::new(),
        });
        inner.subscribers.push(Arc::downgrade(&queue));
        queue
    }

    /// Whether anyone listens (a push nobody listens to is not even copied).
    pub(crate) fn has_subscribers(&self) -> bool {
        let mut inner = lock(&self.inner);
        inner.subscribers.retain(|queue| queue.strong_count() > 0);
        !inner.subscribers.is_empty()
    }

    /// Offers `line` to every subscriber. A full buffer drops its oldest pushes (counted as
    /// missed) until the new one fits; the newest push is always kept, so a buffer holds at most
    /// `max_bytes` plus one push.
    pub(crate) fn publish(&self, line: &Bytes) {
        let mut inner = lock(&self.inner);
        inner.subscribers.retain(|queue| queue.strong_count() > 0);
        for queue in inner.subscribers.iter().filter_map(Weak::upgrade) {
            {
                let mut state = lock(&queue.state);
                state.bytes += line.len();
                state.lines.push_back(line.clone());
                while state.lines.len() > 1
                    && (state.lines.len() > self.limits.max_pushes
                        || state.bytes > self.limits.max_bytes)
                {
                    if let Some(old) = state.lines.pop_front() {
                        state.bytes -= old.len();
                        state.missed += 1;
                    }
                }
            }
            queue.notify.notify_one();
        }
    }

    /// No more pushes: subscribers get what is buffered, then `Closed`.
    pub(crate) fn close(&self) {
        let mut inner = lock(&self.inner);
        inner.closed = true;
        for queue in inner.subscribers.iter().filter_map(Weak::upgrade) {
            lock(&queue.state).closed = true;
            queue.notify.notify_one();
        }
    }
}

impl Queue {
    /// The next push, the number missed since the last one, or `Closed`.
    pub(crate) async fn next(&self) -> Next {
        loop {
            {
                let mut state = lock(&self.state);
                if state.missed > 0 {
                    return Next::Missed(std::mem::take(&mut state.missed));
                }
                if let Some(line) = state.lines.pop_front() {
                    state.bytes -= line.len();
                    return Next::Line(line);
                }
                if state.closed {
                    return Next::Closed;
                }
            }
            // `notify_one` keeps a permit when nobody waits, so no wake-up is lost between the
            // check above and this wait.
            self.notify.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slow_subscriber_keeps_at_most_the_byte_bound_and_learns_what_it_missed() {
        let hub = PushHub::new(PushLimits {
            max_pushes: 1024,
            max_bytes: 1000,
        });
        let queue = hub.subscribe();
        for _ in 0..100 {
            hub.publish(&Bytes::from(vec![b'x'; 300]));
        }
        assert!(lock(&queue.state).bytes <= 1000);
        assert!(matches!(queue.next().await, Next::Missed(97)));
        for _ in 0..3 {
            assert!(matches!(queue.next().await, Next::Line(_)));
        }
        // One push larger than the bound is still delivered.
        hub.publish(&Bytes::from(vec![b'x'; 5000]));
        assert!(matches!(queue.next().await, Next::Line(line) if line.len() == 5000));
        hub.close();
        assert!(matches!(queue.next().await, Next::Closed));
    }
}

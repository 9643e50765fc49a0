//! Ids the connection task must act on that come without a request: streams dropped before
//! their final line (to cancel on the wire) and calls whose caller stopped waiting (to forget).
//!
//! The task looks here on every turn of its loop, so an empty queue costs one atomic load and a
//! waker registration, not a channel poll (an unbounded mpsc cost ~700 instructions per call
//! in a profile). Only the connection task takes notes.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

/// One thing for the task to do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Note {
    /// The stream with this id was dropped: cancel it if it is still running.
    Cancel(String),
    /// The call with this id was abandoned (timed out, or its future dropped): forget it, so
    /// its entry does not wait for a reply that may never come.
    Forget(String),
}

#[derive(Default)]
pub(crate) struct Notes {
    queue: Mutex<Queue>,
    /// True while `queue` holds notes; set and cleared under its lock.
    ready: AtomicBool,
    /// The connection task, the one taker.
    waiter: AtomicWaker,
}

#[derive(Default)]
struct Queue {
    notes: Vec<Note>,
    /// The task is gone: notes are dropped, not kept for nobody.
    closed: bool,
}

impl Notes {
    /// Leaves `note` for the task (dropped if the task has ended).
    pub(crate) fn push(&self, note: Note) {
        {
            let mut queue = self.lock();
            if queue.closed {
                return;
            }
            queue.notes.push(note);
            self.ready.store(true, Ordering::Release);
        }
        self.waiter.wake();
    }

    /// Every note left so far, oldest first (none without taking the lock when there are none).
    pub(crate) fn try_take(&self) -> Vec<Note> {
        if !self.ready.load(Ordering::Acquire) {
            return Vec::new();
        }
        let mut queue = self.lock();
        self.ready.store(false, Ordering::Relaxed);
        std::mem::take(&mut queue.notes)
    }

    /// Waits for notes and takes them all. Cancel-safe; one taker at a time (the task).
    pub(crate) async fn take(&self) -> Vec<Note> {
        poll_fn(|cx| self.poll_take(cx)).await
    }

    fn poll_take(&self, cx: &mut Context<'_>) -> Poll<Vec<Note>> {
        let notes = self.try_take();
        if !notes.is_empty() {
            return Poll::Ready(notes);
        }
        self.waiter.register(cx.waker());
        // Looked at again: a note left between the first look and the registration woke nobody.
        let notes = self.try_take();
        if notes.is_empty() {
            Poll::Pending
        } else {
            Poll::Ready(notes)
        }
    }

    /// The task has ended: drops what is queued and every later note.
    pub(crate) fn close(&self) {
        let mut queue = self.lock();
        queue.closed = true;
        queue.notes.clear();
        self.ready.store(false, Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Nothing panics while holding the lock; a poisoned queue is still consistent.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::{Note, Notes};

    #[tokio::test]
    async fn notes_come_out_in_order_and_wake_the_taker() {
        let notes = Arc::new(Notes::default());
        assert!(notes.try_take().is_empty());
        let taker = tokio::spawn({
            let notes = Arc::clone(&notes);
            async move { notes.take().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!taker.is_finished(), "nothing to take yet");
        notes.push(Note::Cancel("rq1".into()));
        let taken = tokio::time::timeout(Duration::from_secs(5), taker)
            .await
            .expect("the taker wakes")
            .expect("the taker does not panic");
        assert_eq!(taken, [Note::Cancel("rq1".into())]);

        notes.push(Note::Forget("rq2".into()));
        notes.push(Note::Cancel("rq3".into()));
        assert_eq!(
            notes.take().await,
            [Note::Forget("rq2".into()), Note::Cancel("rq3".into())]
        );
        assert!(notes.try_take().is_empty(), "taken once");
    }

    #[test]
    fn a_closed_queue_keeps_nothing() {
        let notes = Notes::default();
        notes.push(Note::Forget("rq1".into()));
        notes.close();
        assert!(notes.try_take().is_empty());
        notes.push(Note::Forget("rq2".into()));
        assert!(notes.try_take().is_empty());
    }
}

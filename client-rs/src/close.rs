//! The signal that tells the connection task to stop: set by [`Client::close`] or when the last
//! handle is dropped.
//!
//! The task looks at it on every turn of its loop, so it is a flag and one waker: a
//! `CancellationToken` registers with a lock-protected list on every poll, which cost several
//! hundred instructions per call in a profile. Only the connection task ever waits for it.
//!
//! [`Client::close`]: crate::Client::close

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

#[derive(Default)]
pub(crate) struct CloseSignal {
    closed: AtomicBool,
    /// The connection task, the one waiter.
    waiter: AtomicWaker,
}

impl CloseSignal {
    /// Asks the task to stop; idempotent.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.waiter.wake();
    }

    /// Resolves once [`close`](Self::close) has been called (at once if it was already).
    /// Cancel-safe; one waiter at a time (the connection task).
    pub(crate) async fn closed(&self) {
        poll_fn(|cx| self.poll_closed(cx)).await;
    }

    fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.closed.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        self.waiter.register(cx.waker());
        // Checked again: a close between the first look and the registration woke nobody.
        if self.closed.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::CloseSignal;

    #[tokio::test]
    async fn a_close_before_the_wait_is_seen() {
        let signal = CloseSignal::default();
        signal.close();
        signal.closed().await;
    }

    #[tokio::test]
    async fn a_close_wakes_the_waiter() {
        let signal = Arc::new(CloseSignal::default());
        let waiter = tokio::spawn({
            let signal = Arc::clone(&signal);
            async move { signal.closed().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "not closed yet");
        signal.close();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter wakes")
            .expect("the waiter does not panic");
    }
}

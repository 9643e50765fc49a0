//! Draining a queue of messages into a [`Sink`] without losing any when the drain is
//! cancelled: the WebSocket writers of the client and the server both use it.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_util::Sink;

/// Hands `queue`'s messages to `sink` in order and flushes it. Cancel-safe: a message leaves
/// the queue only once the sink has accepted it, so a caller may drop the future driving this
/// (a `select!` branch that lost) and call again later. `on_sent` sees each message as it goes.
///
/// # Errors
/// The sink's error; messages not yet accepted stay queued.
pub fn poll_drain<M, S: Sink<M> + ?Sized>(
    mut sink: Pin<&mut S>,
    queue: &mut VecDeque<M>,
    cx: &mut Context<'_>,
    mut on_sent: impl FnMut(&M),
) -> Poll<Result<(), S::Error>> {
    while !queue.is_empty() {
        ready!(sink.as_mut().poll_ready(cx))?;
        if let Some(message) = queue.pop_front() {
            on_sent(&message);
            sink.as_mut().start_send(message)?;
        }
    }
    sink.poll_flush(cx)
}

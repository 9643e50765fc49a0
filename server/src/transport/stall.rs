//! The partial-message timeout for byte-stream transports: a line that stops making progress
//! before its newline ends the connection.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use pixl_ipc_io::unix::UnixReader;
use pixl_ipc_protocol::{FrameError, JsonLinesCodec, RawRequest};
use tokio_util::codec::FramedRead;

/// Ends a connection whose last line stays incomplete for longer than `limit`: it yields a
/// `Stalled` error (answered with `partial_message_timeout`), then a read error that ends the
/// connection. Any progress on the line restarts the clock. Any buffered byte counts as an
/// incomplete line, whitespace too, and the check costs the same whatever is buffered.
pub(crate) struct StallGuard {
    lines: FramedRead<UnixReader, JsonLinesCodec<RawRequest>>,
    limit: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    buffered: usize,
    reported: bool,
}

impl StallGuard {
    /// Guards `lines` with the partial-message timeout `limit`.
    pub(crate) fn new(
        lines: FramedRead<UnixReader, JsonLinesCodec<RawRequest>>,
        limit: Duration,
    ) -> Self {
        StallGuard {
            lines,
            limit,
            timer: None,
            buffered: 0,
            reported: false,
        }
    }
}

impl Stream for StallGuard {
    type Item = Result<Result<RawRequest, FrameError>, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.reported {
            return Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "incomplete message timed out",
            ))));
        }
        match Pin::new(&mut this.lines).poll_next(cx) {
            Poll::Ready(item) => {
                this.timer = None;
                Poll::Ready(item)
            }
            Poll::Pending => {
                // Whatever is buffered is an incomplete line (the codec has taken every complete
                // one), whitespace included: checked in constant time, never by rescanning it.
                let buffered = this.lines.read_buffer().len();
                if buffered == 0 {
                    this.timer = None;
                } else if buffered != this.buffered || this.timer.is_none() {
                    let deadline = tokio::time::Instant::now() + this.limit;
                    match this.timer.as_mut() {
                        Some(timer) => timer.as_mut().reset(deadline),
                        None => this.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
                    }
                }
                this.buffered = buffered;
                if let Some(timer) = this.timer.as_mut() {
                    if std::future::Future::poll(timer.as_mut(), cx).is_ready() {
                        this.reported = true;
                        let waited_ms = u64::try_from(this.limit.as_millis()).unwrap_or(u64::MAX);
                        return Poll::Ready(Some(Ok(Err(pixl_ipc_protocol::FrameError::stalled(
                            waited_ms,
                        )))));
                    }
                }
                Poll::Pending
            }
        }
    }
}

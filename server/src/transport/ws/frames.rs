//! Watching the WebSocket frames a peer sends, below tungstenite, for one fact tungstenite does
//! not expose: whether a data message is in progress (a frame cut short, or a fragmented
//! message whose last fragment has not come). The driver times such a message out like a half
//! line on the byte stream, whatever control frames (pings, pongs) the peer keeps sending.
//!
//! Only frame headers are parsed (at most 14 bytes each); payloads are skipped by their length,
//! so the cost per byte received is constant. tungstenite still does all the decoding.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What the peer's frames say so far. It is fed the whole stream, the HTTP upgrade request
/// first: frames start after that request's blank line.
#[derive(Debug, Default)]
pub(super) struct FrameTracker {
    /// The upgrade request has ended (an empty line), and frames follow.
    head_done: bool,
    /// Inside the upgrade request: the last line ended and no byte of the next one came yet.
    line_start: bool,
    header: [u8; 14],
    header_len: usize,
    payload_left: u64,
    frame_is_data: bool,
    frame_fin: bool,
    /// A data message has started and its final frame is not complete yet.
    message_open: bool,
    /// Bytes received of data frames (headers and payloads): grows while a message progresses.
    data_bytes: u64,
}

impl FrameTracker {
    /// True while a data message, or any frame, is incomplete.
    pub(super) fn partial(&self) -> bool {
        self.message_open || self.header_len > 0 || self.payload_left > 0
    }

    /// A counter that grows whenever data-frame bytes arrive.
    pub(super) fn data_progress(&self) -> u64 {
        self.data_bytes
    }

    /// Takes the next bytes the peer sent.
    fn feed(&mut self, mut bytes: &[u8]) {
        // The upgrade request ends with an empty line; like the HTTP parser tungstenite uses,
        // a line may end with `\r\n` or a bare `\n`.
        while !self.head_done {
            let Some((&byte, rest)) = bytes.split_first() else {
                return;
            };
            bytes = rest;
            match byte {
                b'\n' if self.line_start => self.head_done = true,
                b'\n' => self.line_start = true,
                b'\r' => {}
                _ => self.line_start = false,
            }
        }
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let take = bytes
                    .len()
                    .min(usize::try_from(self.payload_left).unwrap_or(usize::MAX));
                self.payload_left -= take as u64;
                if self.frame_is_data {
                    self.data_bytes += take as u64;
                }
                bytes = &bytes[take..];
                if self.payload_left == 0 {
                    self.frame_done();
                }
                continue;
            }
            self.header[self.header_len] = bytes[0];
            self.header_len += 1;
            bytes = &bytes[1..];
            if let Some(payload) = self.header_complete() {
                let opcode = self.header[0] & 0x0f;
                self.frame_fin = self.header[0] & 0x80 != 0;
                // 0 continues a data message, 1 and 2 start one; 8 and up are control frames.
                self.frame_is_data = opcode < 8;
                if self.frame_is_data {
                    self.message_open = true;
                    self.data_bytes += self.header_len as u64;
                }
                self.header_len = 0;
                self.payload_left = payload;
                if payload == 0 {
                    self.frame_done();
                }
            }
        }
    }

    /// The payload length once the whole header has arrived.
    fn header_complete(&self) -> Option<u64> {
        if self.header_len < 2 {
            return None;
        }
        let masked = self.header[1] & 0x80 != 0;
        let (extended, length) = match self.header[1] & 0x7f {
            126 => (2, None),
            127 => (8, None),
            short => (0, Some(u64::from(short))),
        };
        let total = 2 + extended + if masked { 4 } else { 0 };
        if self.header_len < total {
            return None;
        }
        Some(length.unwrap_or_else(|| {
            self.header[2..2 + extended]
                .iter()
                .fold(0u64, |length, byte| (length << 8) | u64::from(*byte))
        }))
    }

    fn frame_done(&mut self) {
        if self.frame_is_data && self.frame_fin {
            self.message_open = false;
        }
    }
}

/// The connection's stream with a [`FrameTracker`] fed everything read from it.
pub(super) struct Tracked<S> {
    inner: S,
    tracker: Arc<Mutex<FrameTracker>>,
}

impl<S> Tracked<S> {
    /// Wraps `inner`; the returned tracker is shared with whoever watches it.
    pub(super) fn new(inner: S) -> (Self, Arc<Mutex<FrameTracker>>) {
        let tracker = Arc::new(Mutex::new(FrameTracker::default()));
        (
            Tracked {
                inner,
                tracker: tracker.clone(),
            },
            tracker,
        )
    }
}

/// Reads the tracker (never poisoned in practice: `feed` does not panic).
pub(super) fn with_tracker<R>(
    tracker: &Mutex<FrameTracker>,
    f: impl FnOnce(&FrameTracker) -> R,
) -> R {
    f(&tracker.lock().unwrap_or_else(PoisonError::into_inner))
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled {
            let fresh = &buf.filled()[before..];
            if !fresh.is_empty() {
                self.tracker
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .feed(fresh);
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: AsRawFd> AsRawFd for Tracked<S> {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame with a zero key.
    fn frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![first_byte];
        match payload.len() {
            short @ 0..=125 => frame.push(0x80 | short as u8),
            medium @ 126..=65535 => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(medium as u16).to_be_bytes());
            }
            long => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(long as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&[0, 0, 0, 0]);
        frame.extend_from_slice(payload);
        frame
    }

    /// A tracker past the upgrade request.
    fn upgraded() -> FrameTracker {
        let mut tracker = FrameTracker::default();
        tracker.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        tracker
    }

    #[test]
    fn a_whole_message_leaves_nothing_partial_however_it_is_split() {
        let bytes = [
            b"GET / HTTP/1.1\r\nHost: x\r\r\n\r\n".to_vec(),
            frame(0x81, b"{}"),
            frame(0x82, &vec![7; 70_000]),
        ]
        .concat();
        for step in [1, 3, 100, bytes.len()] {
            let mut tracker = FrameTracker::default();
            for chunk in bytes.chunks(step) {
                tracker.feed(chunk);
            }
            assert!(!tracker.partial(), "split every {step} bytes");
        }
    }

    #[test]
    fn a_fragmented_message_is_partial_until_its_last_fragment_and_pings_do_not_count() {
        let mut tracker = upgraded();
        tracker.feed(&frame(0x01, b"{\"a\":"));
        assert!(tracker.partial());
        let progress = tracker.data_progress();
        tracker.feed(&frame(0x89, b"ping"));
        tracker.feed(&frame(0x8A, b""));
        assert!(tracker.partial());
        assert_eq!(tracker.data_progress(), progress);
        tracker.feed(&frame(0x80, b"1}"));
        assert!(!tracker.partial());
        assert!(tracker.data_progress() > progress);
    }

    #[test]
    fn an_upgrade_request_with_bare_newlines_ends_at_its_empty_line() {
        let mut tracker = FrameTracker::default();
        tracker.feed(b"GET / HTTP/1.1\nHost: x\n\n");
        tracker.feed(&frame(0x01, b"{"));
        assert!(tracker.partial());
    }

    #[test]
    fn a_frame_cut_short_is_partial() {
        let whole = frame(0x81, b"{\"uri\":\"/x\"}");
        let mut tracker = upgraded();
        tracker.feed(&whole[..whole.len() - 1]);
        assert!(tracker.partial());
        tracker.feed(&whole[whole.len() - 1..]);
        assert!(!tracker.partial());
    }
}

//! A UNIX stream split into a reading and a writing half that, unlike Tokio's `UnixStream`,
//! asks the reactor about readability only.
//!
//! Why: a Tokio `UnixStream` is registered for both readable and writable events. On Linux, every
//! time the peer *reads* bytes we sent, the kernel signals "writable" on our socket, which wakes
//! our thread out of `epoll_wait` even though we had nothing to write. In a request/reply
//! exchange that is one extra wake-up (a cross-CPU interrupt) per message on each side, paid on
//! the critical path of the peer that sends it. Here the write side registers for writable
//! events only while a write is actually blocked, and drops that registration once its data is
//! flushed.
//!
//! [`WriteQueue`] holds encoded messages for such a writer without copying them together.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

/// Registers `stream` with the current Tokio reactor for `interest` only.
#[allow(unsafe_code)]
fn register(stream: UnixStream, interest: Interest) -> io::Result<AsyncFd<UnixStream>> {
    // SAFETY: `register_with_interest` needs the descriptor to stay open and unchanged for the
    // life of the `AsyncFd`. A `std` `UnixStream` owns its descriptor, closes it only when
    // dropped, and always returns the same one from `as_raw_fd`; the `AsyncFd` owns the stream.
    unsafe { AsyncFd::register_with_interest(stream, interest) }
        .map_err(|refused| refused.into_parts().1)
}

/// Splits a connected stream into halves; must be called inside a Tokio runtime. The stream is
/// switched to non-blocking mode.
///
/// # Errors
/// The stream cannot be made non-blocking or registered with the reactor.
pub fn split(stream: UnixStream) -> io::Result<(UnixReader, UnixWriter)> {
    stream.set_nonblocking(true)?;
    let shared = Arc::new(register(stream, Interest::READABLE)?);
    Ok((
        UnixReader {
            stream: shared.clone(),
            offer: MIN_OFFER,
            spin: None,
        },
        UnixWriter {
            stream: shared,
            blocked: None,
        },
    ))
}

/// Splits a Tokio stream (from `UnixListener::accept` or `UnixStream::connect`), see [`split`].
///
/// # Errors
/// As [`split`].
pub fn split_tokio(stream: tokio::net::UnixStream) -> io::Result<(UnixReader, UnixWriter)> {
    split(stream.into_std()?)
}

/// The reading half: an [`AsyncRead`] woken only when there is something to read.
#[derive(Debug)]
pub struct UnixReader {
    stream: Arc<AsyncFd<UnixStream>>,
    /// How many bytes the next read asks for, adapted to what recent reads returned.
    offer: usize,
    /// Busy-polling for the next bytes after data came in (off unless asked for).
    spin: Option<Spin>,
}

/// The low-latency mode of [`UnixReader::spin_after_lines`]: for `window` after the last line
/// ended, a read that finds nothing tries again at the next turn of the runtime instead of
/// leaving the thread to park.
#[derive(Debug, Clone, Copy)]
struct Spin {
    window: Duration,
    /// Until when to keep trying; `None` once the window has passed with nothing read.
    until: Option<Instant>,
}

// Safe code must zero the memory it hands to `read(2)`, so rather than offer the caller's
// whole buffer each time, a read offers about what the traffic needs: doubling while reads
// fill what was offered (large messages), halving while they use little of it.
/// The smallest read offered.
const MIN_OFFER: usize = 4 * 1024;
/// The largest read offered.
const MAX_OFFER: usize = 256 * 1024;

impl UnixReader {
    /// Turns on the low-latency mode: for `window` after each read that ended a line, a read
    /// that would wait tries the socket again at the runtime's next turn (after a
    /// `sched_yield`, so a client sharing the CPU runs first) instead of letting the thread park
    /// in `epoll_wait`. On a host where waking a parked thread is slow (a VM's idle vCPU), the
    /// next request of a client that calls one at a time is then read without that wake-up.
    /// The price is CPU: up to `window` of it after every line received, and none while the
    /// connection is idle or a line is still coming in. Other tasks on the same runtime still
    /// run between tries, with I/O events polled every `event_interval` (61) of them, and each
    /// try spends the task's cooperative budget like any read.
    pub fn spin_after_lines(&mut self, window: Duration) {
        self.spin = (!window.is_zero()).then_some(Spin {
            window,
            until: None,
        });
    }

    /// After a read that brought `fresh` into the caller's buffer: doubles the offer while
    /// reads fill it, halves it while they use little of it, and (in the low-latency mode)
    /// opens a spin window when `fresh` ends a line. Only a complete line opens one, so a peer
    /// trickling a line a byte at a time costs no spinning, and the mode's CPU stays at most
    /// one window per line received.
    fn after_read(&mut self, fresh: &[u8]) {
        let read = fresh.len();
        if read == self.offer {
            self.offer = (self.offer * 2).min(MAX_OFFER);
        } else if read < self.offer / 8 {
            self.offer = (self.offer / 2).max(MIN_OFFER);
        }
        if let Some(spin) = &mut self.spin {
            if fresh.contains(&b'\n') {
                spin.until = Some(Instant::now() + spin.window);
            }
        }
    }

    /// The reactor says nothing is ready: in a spin window, read the socket directly and, if
    /// it has nothing either, ask to be polled again right away.
    fn spin_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
        room: usize,
    ) -> Poll<io::Result<()>> {
        let Some(spin) = &mut self.spin else {
            return Poll::Pending;
        };
        let Some(until) = spin.until else {
            return Poll::Pending;
        };
        if Instant::now() >= until {
            spin.until = None;
            return Poll::Pending;
        }
        // The reactor's readiness check may have said Pending only because the task's
        // cooperative budget is spent: reading anyway would let a peer that keeps the socket
        // full hold the thread, starving every other task on it.
        let coop = ready!(tokio::task::coop::poll_proceed(cx));
        match read_uninit(self.stream.get_ref(), buf, room) {
            Ok(read) => {
                coop.made_progress();
                self.after_read(fresh(buf, read));
                Poll::Ready(Ok(()))
            }
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                // The reactor's waker stays registered too, so data is seen either way.
                std::thread::yield_now();
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Err(err) => Poll::Ready(Err(err)),
        }
    }

    /// A watch on the peer leaving altogether, usable while nothing is being read.
    pub fn hangup(&self) -> Hangup {
        Hangup {
            stream: self.stream.clone(),
        }
    }
}

/// Resolves once the peer has closed its socket in both directions, so that nothing we write
/// will ever be read. Unlike end-of-file on the reader (which a peer that only shut down its
/// writing side, and still reads replies, produces too), this means the peer is gone; and it is
/// seen without reading, so a connection whose reading is paused still notices.
///
/// How: the kernel reports a hang-up (`EPOLLHUP`, set on a UNIX stream socket only when both
/// directions are shut) whatever events were asked for, and Tokio keeps it as the sticky "write
/// closed" state of the reader's registration, which nothing else here waits on.
#[derive(Debug, Clone)]
pub struct Hangup {
    stream: Arc<AsyncFd<UnixStream>>,
}

impl Hangup {
    /// Ready once the peer has hung up (or the socket has failed).
    pub fn poll_hangup(&self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match ready!(self.stream.poll_write_ready(cx)) {
                Ok(mut guard) => {
                    if guard.ready().is_write_closed() {
                        return Poll::Ready(());
                    }
                    // Not a hang-up: forget it and wait for the next event.
                    guard.clear_ready();
                }
                Err(_) => return Poll::Ready(()),
            }
        }
    }

    /// Waits until the peer has hung up; see [`Hangup`].
    pub async fn wait(&self) {
        std::future::poll_fn(|cx| self.poll_hangup(cx)).await
    }
}

impl AsyncRead for UnixReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let room = buf.remaining().min(this.offer);
        if room == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            let mut guard = match this.stream.poll_read_ready(cx) {
                Poll::Ready(guard) => guard?,
                Poll::Pending => return this.spin_read(cx, buf, room),
            };
            match guard.try_io(|stream| read_uninit(stream.get_ref(), buf, room)) {
                Ok(Ok(read)) => {
                    // A short read means the socket is drained (epoll is edge-triggered, so
                    // new data brings a new event): skip the read that would say EAGAIN.
                    if read > 0 && read < room {
                        guard.clear_ready();
                    }
                    this.after_read(fresh(buf, read));
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(err)) if err.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(err)) => return Poll::Ready(Err(err)),
                Err(_would_block) => continue,
            }
        }
    }
}

/// The last `read` bytes `buf` was filled with.
fn fresh<'a>(buf: &'a ReadBuf<'_>, read: usize) -> &'a [u8] {
    let filled = buf.filled();
    &filled[filled.len().saturating_sub(read)..]
}

/// Reads at most `room` bytes from `stream` into `buf`'s unfilled part, without zeroing it
/// first, and marks what was read as filled.
///
/// Why not `buf.initialize_unfilled_to(room)` and `Read::read`: the frame reader hands over a
/// fresh, uninitialised buffer for every read, so that zeroed up to 256 KiB before each read:
/// 100,000 instructions (15% of the server's) per 100 KiB echo under callgrind. std's
/// uninitialised read (`read_buf`) is not stable yet; Tokio's own sockets do what this does.
#[allow(unsafe_code)]
fn read_uninit(stream: &UnixStream, buf: &mut ReadBuf<'_>, room: usize) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: `unfilled_mut` may hand out uninitialised memory as long as nothing reads it and
    // no uninitialised byte is marked initialised: read(2) only writes into it.
    let unfilled = unsafe { buf.unfilled_mut() };
    let room = room.min(unfilled.len());
    // SAFETY: the pointer and length describe `room` writable bytes of `unfilled`, which
    // outlive the call; the descriptor is the stream's, open while it is borrowed.
    let read = unsafe { libc::read(stream.as_raw_fd(), unfilled.as_mut_ptr().cast(), room) };
    let read = usize::try_from(read).map_err(|_| io::Error::last_os_error())?;
    // SAFETY: read(2) wrote exactly `read` (<= room) bytes at the start of `unfilled`.
    unsafe { buf.assume_init(read) };
    buf.advance(read);
    Ok(read)
}

/// The writing half: writes go straight to the socket; only a write that would block
/// registers for writable events, until the data is flushed. Dropping it shuts down the
/// writing direction, as Tokio's `OwnedWriteHalf` does, so the peer sees end-of-file.
#[derive(Debug)]
pub struct UnixWriter {
    stream: Arc<AsyncFd<UnixStream>>,
    /// A duplicate of the descriptor registered for writable events while the socket's send
    /// buffer is full.
    blocked: Option<AsyncFd<UnixStream>>,
}

impl UnixWriter {
    fn poll_io<R>(
        &mut self,
        cx: &mut Context<'_>,
        mut io: impl FnMut(&UnixStream) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        loop {
            if let Some(blocked) = &self.blocked {
                let mut guard = ready!(blocked.poll_write_ready(cx))?;
                match guard.try_io(|_| io(self.stream.get_ref())) {
                    Ok(Err(err)) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Ok(result) => return Poll::Ready(result),
                    Err(_would_block) => continue,
                }
            }
            match io(self.stream.get_ref()) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    let duplicate = self.stream.get_ref().try_clone()?;
                    self.blocked = Some(register(duplicate, Interest::WRITABLE)?);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                result => return Poll::Ready(result),
            }
        }
    }
}

impl AsyncWrite for UnixWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_io(cx, |mut stream| stream.write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_io(cx, |mut stream| stream.write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Everything handed to us is in the kernel: stop listening for writable events.
        self.get_mut().blocked = None;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.blocked = None;
        Poll::Ready(this.stream.get_ref().shutdown(std::net::Shutdown::Write))
    }
}

impl Drop for UnixWriter {
    fn drop(&mut self) {
        let _ = self.stream.get_ref().shutdown(std::net::Shutdown::Write);
    }
}

/// Most buffers handed to one vectored write (Linux allows 1024).
const MAX_SLICES: usize = 512;
/// The array used for a write of at most this many chunks.
const FEW_SLICES: usize = 8;

/// Encoded messages waiting to be written, kept as the [`Bytes`] they arrived in rather than
/// copied into one buffer, and written with vectored writes: a large message is never copied
/// on its way to the socket.
#[derive(Debug, Default)]
pub struct WriteQueue {
    chunks: VecDeque<Bytes>,
    len: usize,
}

impl WriteQueue {
    /// Appends `chunk` after everything already queued.
    pub fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.len += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    /// Bytes queued and not yet written.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes what one vectored write of the queue's front takes; returns the bytes written.
    /// Once the queue is empty it flushes `writer` too, which for a [`UnixWriter`] ends its
    /// interest in writable events.
    ///
    /// # Errors
    /// The writer's error, or [`io::ErrorKind::WriteZero`] when it takes nothing.
    pub fn poll_write_some<W: AsyncWrite + ?Sized>(
        &mut self,
        mut writer: Pin<&mut W>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        // Most writes are one or a few replies: filling 512 slices for those cost ~1,500
        // instructions per 1K echo under callgrind (9% of the server's), so few chunks get a
        // small array.
        let (written, count) = if self.chunks.len() <= FEW_SLICES {
            ready!(self.poll_write_slices::<FEW_SLICES, W>(writer.as_mut(), cx))?
        } else {
            ready!(self.poll_write_slices::<MAX_SLICES, W>(writer.as_mut(), cx))?
        };
        if written == 0 && count > 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        self.advance(written);
        if self.is_empty() {
            // The bytes are written either way; a writer that cannot flush yet is flushed by
            // its next write (a UnixWriter's flush never waits).
            if let Poll::Ready(Err(err)) = writer.poll_flush(cx) {
                return Poll::Ready(Err(err));
            }
        }
        Poll::Ready(Ok(written))
    }

    /// One vectored write of the first `N` chunks: bytes written, and how many chunks were
    /// offered.
    fn poll_write_slices<const N: usize, W: AsyncWrite + ?Sized>(
        &self,
        writer: Pin<&mut W>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(usize, usize)>> {
        let mut slices = [io::IoSlice::new(&[]); N];
        let count = self
            .chunks
            .iter()
            .zip(slices.iter_mut())
            .map(|(chunk, slice)| *slice = io::IoSlice::new(chunk))
            .count();
        let written = ready!(writer.poll_write_vectored(cx, &slices[..count]))?;
        Poll::Ready(Ok((written, count)))
    }

    fn advance(&mut self, mut written: usize) {
        self.len -= written;
        while written > 0 {
            let Some(front) = self.chunks.front_mut() else {
                return;
            };
            if front.len() <= written {
                written -= front.len();
                self.chunks.pop_front();
            } else {
                bytes::Buf::advance(front, written);
                written = 0;
            }
        }
    }
}

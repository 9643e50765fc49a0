//! Newline-delimited JSON framing with a bounded line length that recovers from bad lines.

use std::io;
use std::marker::PhantomData;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::error::Category;
use tokio_util::codec::{Decoder, Encoder};

use crate::error::FrameError;
use crate::message::RawId;
use crate::sniff::{sniff_id, sniff_req_id, Sniffed};

/// The default maximum message size: 64 MiB. Large, because the original's own tests echo 1 MiB
/// messages and nothing in the protocol caps them; bounded, because one peer must not be able to
/// make the server buffer without limit.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Splits a byte stream into lines of at most a maximum length, recovering from longer ones:
/// the line finding, length limit and discard-to-the-next-newline logic that
/// [`JsonLinesCodec`] (which decodes each line) and the Rust client (which routes each line
/// undecoded) share.
///
/// As a [`Decoder`] it yields each line that is not blank, without its `\n` (a `\r` before
/// it is kept: it is JSON whitespace), as [`Bytes`]. A line longer than `max_length` bytes (not
/// counting its `\n`) yields a single [`FrameError::TooLong`] as soon as the limit is passed,
/// naming the id its start shows (any JSON value there), and the rest of it is discarded as it
/// arrives, so memory stays bounded by the limit. A connection that closes in the middle of a
/// line is an [`io::Error`] of kind [`io::ErrorKind::UnexpectedEof`]; trailing whitespace, or
/// the rest of a line being discarded, is a clean end.
#[derive(Debug)]
pub struct LineSplitter {
    max_length: usize,
    /// Where the search for `\n` resumes, so bytes are scanned once however they arrive.
    next_index: usize,
    /// True while the rest of an over-long line is being thrown away.
    discarding: bool,
}

/// What [`LineSplitter::find`] found at the front of the buffer.
enum Found {
    /// A whole line: `buf[..end]`, with its `\n` at `buf[end]`; the caller takes `end + 1`
    /// bytes off the buffer.
    Line(usize),
    /// The line at the front is over the limit: the buffer still holds its start; the rest of
    /// it will be discarded.
    TooLong,
    /// No whole line yet; room was made for the next read.
    Incomplete,
}

/// Lines up to this size are copied out of the read buffer by [`LineSplitter`]'s decode.
const COPY_LINES_UP_TO: usize = 1024 * 1024;

impl LineSplitter {
    /// A splitter that rejects lines longer than `max_length` bytes (excluding the `\n`).
    pub fn new(max_length: usize) -> Self {
        LineSplitter {
            max_length,
            next_index: 0,
            discarding: false,
        }
    }

    /// The maximum line length in bytes.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Finds the next line, throwing away the rest of an over-long line first.
    #[inline]
    fn find(&mut self, buf: &mut BytesMut) -> Found {
        loop {
            // Never look further than one byte past the limit: a line is too long as soon as
            // that many bytes arrive without a newline.
            let read_to = buf.len().min(self.max_length.saturating_add(1));
            let newline = memchr::memchr(b'\n', &buf[self.next_index..read_to])
                .map(|offset| self.next_index + offset);
            match (self.discarding, newline) {
                (true, Some(end)) => {
                    buf.advance(end + 1);
                    self.next_index = 0;
                    self.discarding = false;
                }
                (true, None) => {
                    buf.advance(read_to);
                    self.next_index = 0;
                    if buf.is_empty() {
                        return Found::Incomplete;
                    }
                }
                (false, Some(end)) => {
                    self.next_index = 0;
                    return Found::Line(end);
                }
                (false, None) if buf.len() > self.max_length => {
                    self.discarding = true;
                    self.next_index = 0;
                    return Found::TooLong;
                }
                (false, None) => {
                    self.next_index = read_to;
                    reserve_for_next_read(buf, self.max_length);
                    return Found::Incomplete;
                }
            }
        }
    }

    /// At the end of the input, after [`find`](Self::find) found no whole line: clears the
    /// buffer; an error if it held part of a line that is not whitespace.
    fn finish(&mut self, buf: &mut BytesMut) -> Result<(), io::Error> {
        let leftover = std::mem::take(buf);
        self.next_index = 0;
        if self.discarding || leftover.iter().all(u8::is_ascii_whitespace) {
            self.discarding = false;
            return Ok(());
        }
        Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "connection closed in the middle of a message ({} bytes without a newline)",
                leftover.len()
            ),
        ))
    }
}

impl Decoder for LineSplitter {
    type Item = Result<Bytes, FrameError>;
    type Error = io::Error;

    // Inlinable into the client's reader, as when this lived in the client crate.
    #[inline]
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Item>, io::Error> {
        loop {
            match self.find(buf) {
                Found::Line(end) => {
                    if buf[..end].iter().all(u8::is_ascii_whitespace) {
                        buf.advance(end + 1);
                        continue;
                    }
                    // A line handed out shares the buffer's memory until its caller drops it,
                    // and the buffer cannot reuse that memory for the next read meanwhile (it
                    // reallocates, with page faults, as a large line arrives). Up to
                    // COPY_LINES_UP_TO the line is copied out instead, so the buffer stays its
                    // own; past it, a copy would cost more than the reallocation.
                    let line = if end <= COPY_LINES_UP_TO {
                        let line = Bytes::copy_from_slice(&buf[..end]);
                        buf.advance(end + 1);
                        line
                    } else {
                        let mut line = buf.split_to(end + 1);
                        line.truncate(end);
                        line.freeze()
                    };
                    return Ok(Some(Ok(line)));
                }
                Found::TooLong => {
                    let req_id = match sniff_id(buf) {
                        Sniffed::Id(id) => RawId::parse(id),
                        _ => None,
                    };
                    return Ok(Some(Err(FrameError::TooLong {
                        limit: self.max_length,
                        req_id,
                    })));
                }
                Found::Incomplete => return Ok(None),
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Item>, io::Error> {
        if let Some(item) = self.decode(buf)? {
            return Ok(Some(item));
        }
        self.finish(buf)?;
        Ok(None)
    }
}

/// Decodes lines of JSON into `T` and encodes `T` as one line of JSON.
///
/// Decoding follows the original's rules: a line whose first non-blank byte is `{` is parsed,
/// any other line (blank, or text) is skipped silently, `\r\n` endings are accepted, and a
/// partial line waits for its `\n`, however the bytes were split across reads (including inside
/// a multi-byte UTF-8 character). The lines are found by a [`LineSplitter`].
///
/// Each decoded line yields `Ok(message)` or, for a line that could not be used, `Err` with a
/// [`FrameError`] describing it; the codec has already moved past that line, so the stream of
/// messages carries on. A line longer than `max_length` bytes (not counting its `\n`) yields a
/// single [`FrameError::TooLong`] as soon as the limit is passed, and the rest of it is
/// discarded as it arrives, so memory stays bounded by the limit.
///
/// The codec's own `Error` (an [`io::Error`]) is reserved for failures that end the stream: I/O
/// errors, and a connection that closes in the middle of a line.
#[derive(Debug)]
pub struct JsonLinesCodec<T> {
    lines: LineSplitter,
    _message: PhantomData<fn() -> T>,
}

impl<T> JsonLinesCodec<T> {
    /// A codec with [`DEFAULT_MAX_MESSAGE_BYTES`].
    pub fn new() -> Self {
        Self::with_max_length(DEFAULT_MAX_MESSAGE_BYTES)
    }

    /// A codec that rejects lines longer than `max_length` bytes (excluding the `\n`).
    pub fn with_max_length(max_length: usize) -> Self {
        JsonLinesCodec {
            lines: LineSplitter::new(max_length),
            _message: PhantomData,
        }
    }

    /// The maximum line length in bytes.
    pub fn max_length(&self) -> usize {
        self.lines.max_length
    }
}

impl<T> Default for JsonLinesCodec<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: DeserializeOwned> Decoder for JsonLinesCodec<T> {
    type Item = Result<T, FrameError>;
    type Error = io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Item>, io::Error> {
        loop {
            match self.lines.find(buf) {
                Found::Line(end) => {
                    let line = buf.split_to(end + 1);
                    if let Some(item) = decode_line(&line[..end]) {
                        return Ok(Some(item));
                    }
                }
                Found::TooLong => {
                    return Ok(Some(Err(FrameError::TooLong {
                        limit: self.lines.max_length,
                        req_id: sniff_req_id(buf),
                    })));
                }
                Found::Incomplete => return Ok(None),
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Item>, io::Error> {
        if let Some(item) = self.decode(buf)? {
            return Ok(Some(item));
        }
        self.lines.finish(buf)?;
        Ok(None)
    }
}

/// The least free space offered to each read: a typical message then arrives in one read
/// system call instead of being cut at whatever room the buffer happened to have left.
const MIN_READ_SPACE: usize = 32 * 1024;

/// Makes room for the next read: at least [`MIN_READ_SPACE`], and as much again as the partial
/// line already buffered, so a large message takes a handful of reads rather than one per few
/// KiB. Never asks for more than the line limit could still use.
fn reserve_for_next_read(buf: &mut BytesMut, max_length: usize) {
    let still_allowed = max_length.saturating_add(1).saturating_sub(buf.len());
    let wanted = buf.len().max(MIN_READ_SPACE).min(still_allowed.max(1));
    if buf.capacity() - buf.len() < wanted {
        buf.reserve(wanted);
    }
}

/// The newline-separated lines of one WebSocket frame (tremor's `separate`), without their
/// `\n`; a frame without a newline is one line. Found with `memchr`, not byte by byte, because
/// frames can be large.
pub fn frame_lines(payload: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    let mut rest = Some(payload);
    std::iter::from_fn(move || {
        let remaining = rest?;
        match memchr::memchr(b'\n', remaining) {
            Some(end) => {
                rest = Some(&remaining[end + 1..]);
                Some(&remaining[..end])
            }
            None => {
                rest = None;
                Some(remaining)
            }
        }
    })
}

/// Decodes one message from one line (without its `\n`), by the same rules as the codec: `None`
/// means the line is skipped (blank, or not starting with `{`), as the original does.
///
/// Transports that frame messages themselves (WebSocket) use this for each line of a frame.
pub fn decode_line<T: DeserializeOwned>(line: &[u8]) -> Option<Result<T, FrameError>> {
    let first = line.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' {
        return None;
    }
    Some(serde_json::from_slice(line).map_err(|err| {
        let req_id = match err.classify() {
            // Valid JSON of the wrong shape: its id is wherever it is in the object.
            Category::Data => id_of_json_object(line),
            Category::Syntax | Category::Eof | Category::Io => sniff_req_id(line),
        };
        FrameError::from_serde(&err, req_id)
    }))
}

/// The `ipcReqID` of a line that is a valid JSON object, as written; only that member is kept.
fn id_of_json_object(line: &[u8]) -> Option<RawId> {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        #[serde(rename = "ipcReqID", default)]
        id: Option<RawId>,
    }
    serde_json::from_slice::<IdOnly>(line).ok()?.id
}

/// Serializes `message` as one line of JSON, `\n` included.
///
/// # Errors
/// Fails only if `message` cannot be represented as JSON (a map with non-string keys, for
/// example); plain data and [`serde_json::Value`] never fail.
pub fn encode_line<T: Serialize + ?Sized>(message: &T) -> Result<Bytes, serde_json::Error> {
    let mut buf = BytesMut::with_capacity(128);
    write_line(message, &mut buf)?;
    Ok(buf.freeze())
}

fn write_line<T: Serialize + ?Sized>(
    message: &T,
    buf: &mut BytesMut,
) -> Result<(), serde_json::Error> {
    serde_json::to_writer(buf.writer(), message)?;
    buf.put_u8(b'\n');
    Ok(())
}

impl<T, M: Serialize> Encoder<M> for JsonLinesCodec<T> {
    type Error = io::Error;

    /// Appends `message` as one line. A message whose JSON is longer than the maximum line
    /// length is refused with [`io::ErrorKind::InvalidInput`] and nothing is written, because
    /// the peer would reject it anyway.
    fn encode(&mut self, message: M, dst: &mut BytesMut) -> Result<(), io::Error> {
        let start = dst.len();
        write_line(&message, dst).map_err(io::Error::from)?;
        let length = dst.len() - start - 1;
        if length > self.lines.max_length {
            dst.truncate(start);
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "message of {length} bytes exceeds the maximum of {} bytes",
                    self.lines.max_length
                ),
            ));
        }
        Ok(())
    }
}

//! A faster JSON writer for [`serde_json::Value`], byte-for-byte the same output as
//! `serde_json::to_string`.
//!
//! serde_json escapes strings one byte at a time; payloads are mostly long strings that need no
//! escaping, so this writer checks 32 bytes at a time (then 8) for the three kinds of byte JSON
//! must escape (`"`, `\` and control characters) and copies clean runs whole. On the 100 KiB
//! benchmark message that makes encoding several times faster (see `benches/benches/codec.rs`).
//! Everything but strings (numbers, structure) is written as serde_json writes it.

use std::fmt::Write as _;

use bytes::Bytes;
use serde_json::Value;

use serde_json::value::RawValue;

use crate::message::{RawId, RawResponse, Request, Response};

/// `value` as compact JSON text, exactly as `serde_json::to_string` writes it.
pub fn to_json_string(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

/// Appends `value` as compact JSON text to `out`.
pub fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        // serde_json's Display for numbers is its JSON spelling (itoa / ryu).
        Value::Number(number) => {
            let _ = write!(out, "{number}");
        }
        Value::String(text) => write_str(out, text),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(members) => {
            out.push('{');
            for (index, (key, item)) in members.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_str(out, key);
                out.push(':');
                write_value(out, item);
            }
            out.push('}');
        }
    }
}

/// Appends `text` as a JSON string literal.
pub fn write_str(out: &mut String, text: &str) {
    out.reserve(text.len() + 2);
    out.push('"');
    let bytes = text.as_bytes();
    // `clean_from` starts the run not yet copied; escapes are only ever at ASCII bytes, so
    // every index used to slice `text` is a character boundary.
    let mut clean_from = 0;
    let mut index = 0;
    while index < bytes.len() {
        index += clean_prefix(&bytes[index..]);
        // Up to the next word (or the end) byte by byte: the escapes the word test found, or
        // the last few bytes.
        let end = bytes.len().min(index + 8);
        while index < end {
            let byte = bytes[index];
            if needs_escape(byte) {
                out.push_str(&text[clean_from..index]);
                push_escape(out, byte);
                clean_from = index + 1;
            }
            index += 1;
        }
    }
    out.push_str(&text[clean_from..]);
    out.push('"');
}

/// How many of the leading bytes of `bytes` need no escape, found a block of [`BLOCK`] bytes at
/// a time while the blocks are clean (the usual case for payload strings), then a word of 8.
/// Stops at the first block or word holding an escape; the caller goes on byte by byte.
fn clean_prefix(bytes: &[u8]) -> usize {
    let mut clean = 0;
    for block in bytes.chunks_exact(BLOCK) {
        if !block_is_clean(block) {
            break;
        }
        clean += BLOCK;
    }
    for word in bytes[clean..].chunks_exact(8) {
        if word_needs_escape(word) {
            break;
        }
        clean += 8;
    }
    clean
}

/// The bytes [`block_is_clean`] tests at once.
const BLOCK: usize = 32;

/// True when none of these [`BLOCK`] bytes is a control character, `"` or `\`.
///
/// Written as three flag arrays and one OR over them so that the compiler turns it into SIMD
/// compares (on x86-64, two 16-byte SSE2 lanes: about 26 instructions per 32 bytes, against
/// about 50 for four SWAR words; measured with callgrind on a 1 KiB string, 1,643 -> 1,070
/// instructions for the whole `write_str`). Safe code: no intrinsics, and other targets get
/// whatever their vector units allow.
fn block_is_clean(block: &[u8]) -> bool {
    let mut flagged = [0u8; BLOCK];
    for (flag, &byte) in flagged.iter_mut().zip(block) {
        *flag = u8::from(byte <= 0x1f) | u8::from(byte == b'"') | u8::from(byte == b'\\');
    }
    let (low, high) = flagged.split_at(BLOCK / 2);
    let word = |half: &[u8]| {
        let mut bytes = [0u8; BLOCK / 2];
        bytes.copy_from_slice(half);
        u128::from_ne_bytes(bytes)
    };
    word(low) | word(high) == 0
}

fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

/// True when one of these 8 bytes is a control character, `"` or `\` (SWAR: one word test
/// instead of eight byte tests).
fn word_needs_escape(chunk: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
    let mut word = [0u8; 8];
    word.copy_from_slice(chunk);
    let word = u64::from_le_bytes(word);
    let has_zero_byte = |v: u64| v.wrapping_sub(ONES) & !v & HIGH_BITS;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGH_BITS;
    let quote = has_zero_byte(word ^ (ONES * u64::from(b'"')));
    let backslash = has_zero_byte(word ^ (ONES * u64::from(b'\\')));
    below_space | quote | backslash != 0
}

/// The escapes serde_json writes: the short forms JSON has, `\u00xx` (lower-case hex) for the
/// other control characters.
fn push_escape(out: &mut String, byte: u8) {
    match byte {
        b'"' => out.push_str("\\\""),
        b'\\' => out.push_str("\\\\"),
        b'\n' => out.push_str("\\n"),
        b'\r' => out.push_str("\\r"),
        b'\t' => out.push_str("\\t"),
        0x08 => out.push_str("\\b"),
        0x0c => out.push_str("\\f"),
        other => {
            let _ = write!(out, "\\u{other:04x}");
        }
    }
}

/// About how many bytes `value` takes as JSON (exact for everything but escapes and numbers),
/// found without looking at string contents, so the output buffer is allocated once.
fn estimated_len(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(_) => 20,
        Value::String(text) => text.len() + 2,
        Value::Array(items) => {
            2 + items
                .iter()
                .map(|item| estimated_len(item) + 1)
                .sum::<usize>()
        }
        Value::Object(members) => {
            2 + members
                .iter()
                .map(|(key, item)| key.len() + 4 + estimated_len(item))
                .sum::<usize>()
        }
    }
}

/// A request's fields, borrowed: what a client needs to encode a request without building
/// (and copying its data into) an owned [`Request`].
#[derive(Debug, Clone, Copy)]
pub struct RequestRef<'a> {
    /// As [`Request::ipc_req_id`].
    pub ipc_req_id: Option<&'a Value>,
    /// As [`Request::uri`].
    pub uri: Option<&'a str>,
    /// As [`Request::data`].
    pub data: &'a Value,
    /// As [`Request::pid`].
    pub pid: Option<u32>,
    /// As [`Request::user_agent`].
    pub user_agent: Option<&'a str>,
    /// As [`Request::no_reply`].
    pub no_reply: bool,
    /// As [`Request::close_after_reply`].
    pub close_after_reply: bool,
    /// As [`Request::stream`].
    pub stream: bool,
}

impl<'a> From<&'a Request> for RequestRef<'a> {
    fn from(request: &'a Request) -> Self {
        RequestRef {
            ipc_req_id: request.ipc_req_id.as_ref(),
            uri: request.uri.as_deref(),
            data: &request.data,
            pid: request.pid,
            user_agent: request.user_agent.as_deref(),
            no_reply: request.no_reply,
            close_after_reply: request.close_after_reply,
            stream: request.stream,
        }
    }
}

/// A request as one line (`\n` included), the same bytes as
/// [`encode_line`](crate::encode_line) gives, with `data` written by the faster writer.
pub fn encode_request_line(request: &Request) -> Bytes {
    encode_request_ref(&RequestRef::from(request))
}

/// [`encode_request_line`] for borrowed fields.
pub fn encode_request_ref(request: &RequestRef<'_>) -> Bytes {
    let mut out = String::with_capacity(160 + estimated_len(request.data));
    out.push('{');
    let mut first = true;
    let mut field = |out: &mut String, name: &str| {
        if !std::mem::take(&mut first) {
            out.push(',');
        }
        out.push('"');
        out.push_str(name);
        out.push_str("\":");
    };
    if let Some(id) = request.ipc_req_id {
        field(&mut out, "ipcReqID");
        write_value(&mut out, id);
    }
    if let Some(uri) = request.uri {
        field(&mut out, "uri");
        write_str(&mut out, uri);
    }
    field(&mut out, "data");
    write_value(&mut out, request.data);
    if let Some(pid) = request.pid {
        field(&mut out, "pid");
        let _ = write!(out, "{pid}");
    }
    if let Some(agent) = request.user_agent {
        field(&mut out, "userAgent");
        write_str(&mut out, agent);
    }
    if request.no_reply {
        field(&mut out, "ipcNoReply");
        out.push_str("true");
    }
    if request.close_after_reply {
        field(&mut out, "ipcClose");
        out.push_str("true");
    }
    if request.stream {
        field(&mut out, "ipcStream");
        out.push_str("true");
    }
    out.push_str("}\n");
    Bytes::from(out)
}

/// A reply as one line (`\n` included), the same bytes as [`encode_line`](crate::encode_line)
/// gives for a [`Response`], with `data` written by the faster writer.
pub fn encode_response_line(response: &Response<'_>) -> Bytes {
    let id = response.ipc_req_id.map_or("null", RawId::json);
    let mut out = String::with_capacity(32 + id.len() + estimated_len(response.data));
    out.push_str("{\"ipcReqID\":");
    // The id's own text, byte for byte: ids are opaque to the server.
    out.push_str(id);
    out.push_str(",\"data\":");
    write_value(&mut out, response.data);
    out.push_str("}\n");
    Bytes::from(out)
}

/// A reply whose data is JSON text used as is ([`RawResponse`]) as one line, `\n` included:
/// the same bytes as [`encode_line`](crate::encode_line) gives, in one allocation.
pub fn encode_raw_response_line(response: &RawResponse<'_>) -> Bytes {
    let id = response.ipc_req_id.map_or("null", RawId::json);
    let data = response.data.map_or("null", RawValue::get);
    Bytes::from(text_line(id, data, REPLY_END))
}

/// One item of a streamed reply as one line, `\n` included:
/// `{"ipcReqID":<id>,"data":<text>,"ipcMore":true}`. The stream's final line is an ordinary
/// reply ([`encode_raw_response_line`]) or error.
pub fn encode_stream_item_line(ipc_req_id: Option<&RawId>, data: &RawValue) -> Bytes {
    let id = ipc_req_id.map_or("null", RawId::json);
    Bytes::from(text_line(id, data.get(), STREAM_ITEM_END))
}

/// What follows a reply's data, and a stream item's.
const REPLY_END: &[u8] = b"}\n";
const STREAM_ITEM_END: &[u8] = b",\"ipcMore\":true}\n";

/// The line's text before the id, and between the id and the data.
const ID_START: &[u8] = b"{\"ipcReqID\":";
const DATA_START: &[u8] = b",\"data\":";

/// `{"ipcReqID":<id>,"data":` in a buffer with room for `more` bytes after it. Capacities are
/// exact: `Bytes::from` a `Vec` with spare room allocates a second block to share it.
fn line_head(id: &str, more: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(ID_START.len() + id.len() + DATA_START.len() + more);
    out.extend_from_slice(ID_START);
    // The id's own text, byte for byte: ids are opaque to the server.
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(DATA_START);
    out
}

/// `{"ipcReqID":<id>,"data":<data>` + `end`, in one buffer.
fn text_line(id: &str, data: &str, end: &[u8]) -> Vec<u8> {
    let mut out = line_head(id, data.len() + end.len());
    out.extend_from_slice(data.as_bytes());
    out.extend_from_slice(end);
    out
}

/// Payloads at least this long are written by [`raw_response_pieces`] and
/// [`stream_item_pieces`] from the buffer they already are, not copied into the line. Below it
/// one buffer is cheaper than the extra slices and the payload's allocation kept until the
/// write; at 100 KB the copy was about a fifth of the server's instructions per echo
/// (benches/RESULTS.md, `profile`).
pub const SHARED_PAYLOAD_BYTES: usize = 8 * 1024;

/// A reply `{"ipcReqID":<id>,"data":<text>}` + `\n` as up to three pieces to be written back to
/// back: the same bytes as [`encode_raw_response_line`], but a payload of at least
/// [`SHARED_PAYLOAD_BYTES`] is its own piece, moved from the `Box` it was decoded or encoded into
/// without a copy. A shorter one makes the whole line the first piece and the other two empty.
pub fn raw_response_pieces(ipc_req_id: Option<&RawId>, data: Option<Box<RawValue>>) -> [Bytes; 3] {
    line_pieces(ipc_req_id, data, REPLY_END)
}

/// One item of a streamed reply in pieces, as [`raw_response_pieces`] does for a reply: the
/// same bytes as [`encode_stream_item_line`].
pub fn stream_item_pieces(ipc_req_id: Option<&RawId>, data: Box<RawValue>) -> [Bytes; 3] {
    line_pieces(ipc_req_id, Some(data), STREAM_ITEM_END)
}

fn line_pieces(
    ipc_req_id: Option<&RawId>,
    data: Option<Box<RawValue>>,
    end: &'static [u8],
) -> [Bytes; 3] {
    let id = ipc_req_id.map_or("null", RawId::json);
    match data {
        Some(data) if data.get().len() >= SHARED_PAYLOAD_BYTES => [
            Bytes::from(line_head(id, 0)),
            // Moving the box into `Bytes` copies nothing.
            Bytes::from(Box::<str>::from(data).into_boxed_bytes()),
            Bytes::from_static(end),
        ],
        data => {
            let text = data.as_deref().map_or("null", RawValue::get);
            [
                Bytes::from(text_line(id, text, end)),
                Bytes::new(),
                Bytes::new(),
            ]
        }
    }
}

/// The line a client sends to cancel its stream `ipc_req_id`, `\n` included:
/// `{"ipcReqID":<id>,"ipcCancel":true}`.
pub fn encode_cancel_line(ipc_req_id: &Value) -> Bytes {
    let mut out = String::with_capacity(48);
    out.push_str("{\"ipcReqID\":");
    write_value(&mut out, ipc_req_id);
    out.push_str(",\"ipcCancel\":true}\n");
    Bytes::from(out)
}

//! Property tests ("fuzzing" that runs everywhere) for the framing codec and the request parser:
//! arbitrary bytes, split at arbitrary points, never panic, never buffer more than the limit,
//! and every valid line among them is still decoded.
//!
//! The test command runs the default number of cases; a longer run:
//! `PROPTEST_CASES=200000 cargo test --release -p pixl-ipc-protocol --test fuzz_codec`.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use bytes::BytesMut;
use pixl_ipc_protocol::{FrameError, JsonLinesCodec, Request};
use proptest::prelude::*;
use serde_json::{json, Value};
use tokio_util::codec::Decoder;

const LIMIT: usize = 256;

/// Feeds `input` in the given chunk sizes; returns everything decoded, checking the buffer
/// bound after every chunk.
fn feed(input: &[u8], cuts: &[usize]) -> Vec<Result<Request, FrameError>> {
    let mut codec = JsonLinesCodec::<Request>::with_max_length(LIMIT);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = input;
    let mut cut = cuts.iter().cycle();
    while !rest.is_empty() {
        let size = (*cut.next().unwrap_or(&1)).clamp(1, rest.len());
        buf.extend_from_slice(&rest[..size]);
        rest = &rest[size..];
        while let Some(item) = codec.decode(&mut buf).expect("no I/O error mid-stream") {
            out.push(item);
        }
        // Never more than one line's worth (plus the chunk just added) is kept.
        assert!(
            buf.len() <= LIMIT + size + 1,
            "buffer grew to {} (limit {LIMIT})",
            buf.len()
        );
    }
    out
}

fn valid_request(id: u32, text: &str) -> Vec<u8> {
    let mut line =
        serde_json::to_vec(&json!({"ipcReqID": format!("rq{id}"), "uri": "/x", "data": text}))
            .unwrap();
    line.push(b'\n');
    line
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_or_overgrow(input in proptest::collection::vec(any::<u8>(), 0..4096), cuts in proptest::collection::vec(1usize..64, 1..8)) {
        let _ = feed(&input, &cuts);
    }

    #[test]
    fn valid_lines_survive_any_garbage_between_them(
        garbage in proptest::collection::vec(proptest::collection::vec(any::<u8>().prop_map(|b| if b == b'\n' { b'x' } else { b }), 0..600), 1..6),
        texts in proptest::collection::vec("[a-zA-Z0-9 éü/\\\\\"]{0,40}", 1..6),
        cuts in proptest::collection::vec(1usize..97, 1..6),
    ) {
        // garbage line, valid line, garbage line, valid line, ...
        let mut input = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            input.extend_from_slice(&garbage[i % garbage.len()]);
            input.push(b'\n');
            input.extend_from_slice(&valid_request(i as u32, text));
        }
        let decoded: Vec<Request> = feed(&input, &cuts).into_iter().filter_map(Result::ok).collect();
        let ids: Vec<Value> = decoded.iter().filter_map(|r| r.ipc_req_id.clone()).filter(|id| id.as_str().is_some_and(|id| id.starts_with("rq"))).collect();
        let expected: Vec<Value> = (0..texts.len()).map(|i| json!(format!("rq{i}"))).collect();
        // Garbage may itself parse as a request only if it happens to be valid JSON with such an
        // id, which random bytes without braces cannot: every valid line comes out, in order.
        prop_assert_eq!(ids, expected);
        for (request, text) in decoded.iter().filter(|r| r.uri.as_deref() == Some("/x")).zip(&texts) {
            prop_assert_eq!(&request.data, &json!(text));
        }
    }
}

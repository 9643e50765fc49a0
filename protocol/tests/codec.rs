//! The framing codec on raw bytes: no sockets, every way a line can arrive.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use bytes::BytesMut;
use pixl_ipc_protocol::{FrameError, JsonLinesCodec, LineSplitter, RawId, Request};
use serde_json::{json, Value};
use tokio_util::codec::{Decoder, Encoder};

type Decoded = Result<Value, FrameError>;

/// Feeds `chunks` one at a time, decoding after each, and returns everything decoded.
fn decode_chunks(codec: &mut JsonLinesCodec<Value>, chunks: &[&[u8]]) -> Vec<Decoded> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Some(item) = codec
            .decode(&mut buf)
            .expect("decode never fails mid-stream")
        {
            out.push(item);
        }
    }
    out
}

fn oks(values: Vec<Decoded>) -> Vec<Value> {
    values
        .into_iter()
        .map(|item| item.expect("expected a message"))
        .collect()
}

#[test]
fn json_and_newline_in_separate_writes_like_the_php_client() {
    let mut codec = JsonLinesCodec::new();
    let out = decode_chunks(
        &mut codec,
        &[
            br#"{"uri":"\/ipcserver\/test\/echo","ipcReqID":"rq0"}"#,
            b"\n",
        ],
    );
    assert_eq!(
        oks(out),
        vec![json!({"uri":"/ipcserver/test/echo","ipcReqID":"rq0"})]
    );
}

#[test]
fn several_lines_in_one_read_and_one_line_in_many_reads() {
    let mut codec = JsonLinesCodec::new();
    let out = decode_chunks(
        &mut codec,
        &[b"{\"a\":1}\n{\"a\":2}\n{\"a\"", b":", b"3}", b"\n"],
    );
    assert_eq!(
        oks(out),
        vec![json!({"a":1}), json!({"a":2}), json!({"a":3})]
    );
}

#[test]
fn crlf_line_endings() {
    let mut codec = JsonLinesCodec::new();
    let out = decode_chunks(&mut codec, &[b"{\"a\":1}\r\n{\"a\":2}\r", b"\n"]);
    assert_eq!(oks(out), vec![json!({"a":1}), json!({"a":2})]);
}

#[test]
fn blank_and_non_object_lines_are_skipped() {
    let mut codec = JsonLinesCodec::new();
    let out = decode_chunks(
        &mut codec,
        &[b"\n\r\n   \nhello there\n[1,2,3]\n42\n  {\"ok\":true}\n"],
    );
    assert_eq!(oks(out), vec![json!({"ok":true})]);
}

#[test]
fn multibyte_utf8_split_across_reads() {
    let line = "{\"text\":\"h\u{e9}llo \u{1f600} \u{4e16}\"}\n".as_bytes();
    for split in 1..line.len() {
        let mut codec = JsonLinesCodec::new();
        let out = decode_chunks(&mut codec, &[&line[..split], &line[split..]]);
        assert_eq!(
            oks(out),
            vec![json!({"text":"h\u{e9}llo \u{1f600} \u{4e16}"})],
            "split at {split}"
        );
    }
}

#[test]
fn byte_at_a_time() {
    let input = b"{\"uri\":\"/a\"}\n{\"uri\":\"/b\"}\n";
    let chunks: Vec<&[u8]> = input.chunks(1).collect();
    let mut codec = JsonLinesCodec::new();
    assert_eq!(
        oks(decode_chunks(&mut codec, &chunks)),
        vec![json!({"uri":"/a"}), json!({"uri":"/b"})]
    );
}

#[test]
fn php_escaped_slashes_and_unicode_escapes_decode() {
    let mut codec: JsonLinesCodec<Request> = JsonLinesCodec::new();
    let mut buf = BytesMut::from(&br#"{"uri":"\/myapi\/test","data":{"name":"caf\u00e9"},"pid":77,"userAgent":"PHP\/PixlIPCClient\/srv"}"#[..]);
    buf.extend_from_slice(b"\n");
    let request = codec.decode(&mut buf).unwrap().unwrap().unwrap();
    assert_eq!(request.uri.as_deref(), Some("/myapi/test"));
    assert_eq!(request.data, json!({"name":"caf\u{e9}"}));
    assert_eq!(request.pid, Some(77));
    assert_eq!(request.user_agent.as_deref(), Some("PHP/PixlIPCClient/srv"));
}

#[test]
fn over_long_line_gives_one_error_then_recovers() {
    let mut codec = JsonLinesCodec::with_max_length(32);
    let long = format!("{{\"ipcReqID\":\"rq9\",\"data\":\"{}\"}}", "x".repeat(100));
    let out = decode_chunks(
        &mut codec,
        &[
            long.as_bytes()[..40].as_ref(),
            &long.as_bytes()[40..],
            b"\n{\"a\":1}\n",
        ],
    );
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(
        out[0],
        Err(FrameError::TooLong {
            limit: 32,
            req_id: Some(RawId::from(&json!("rq9")))
        })
    );
    assert_eq!(out[1], Ok(json!({"a":1})));
}

#[test]
fn over_long_line_arriving_whole_with_its_newline() {
    let mut codec = JsonLinesCodec::with_max_length(10);
    let out = decode_chunks(&mut codec, &[b"{\"a\":\"0123456789\"}\n{\"b\":2}\n"]);
    assert!(matches!(
        out[0],
        Err(FrameError::TooLong {
            limit: 10,
            req_id: None
        })
    ));
    assert_eq!(out[1], Ok(json!({"b":2})));
    assert_eq!(out.len(), 2);
}

#[test]
fn line_exactly_at_the_limit_is_accepted() {
    let line = b"{\"a\":\"xyz\"}"; // 11 bytes
    let mut codec = JsonLinesCodec::with_max_length(line.len());
    let out = decode_chunks(&mut codec, &[line, b"\r\n"]);
    // The \r counts towards the line, so 11 + 1 is over a limit of 11.
    assert!(matches!(out[0], Err(FrameError::TooLong { .. })));
    let mut codec = JsonLinesCodec::with_max_length(line.len());
    let out = decode_chunks(&mut codec, &[line, b"\n"]);
    assert_eq!(out, vec![Ok(json!({"a":"xyz"}))]);
}

#[test]
fn discarding_does_not_buffer_the_discarded_bytes() {
    let mut codec: JsonLinesCodec<Value> = JsonLinesCodec::with_max_length(16);
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&[b'{'; 20]);
    assert!(matches!(
        codec.decode(&mut buf).unwrap(),
        Some(Err(FrameError::TooLong { .. }))
    ));
    for _ in 0..100 {
        buf.extend_from_slice(&[b'x'; 1000]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert!(buf.len() <= 17, "buffer grew to {}", buf.len());
    }
    buf.extend_from_slice(b"tail\n{\"ok\":1}\n");
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(Ok(json!({"ok":1}))));
}

#[test]
fn invalid_json_is_reported_with_the_recovered_id_and_the_next_line_decodes() {
    let mut codec = JsonLinesCodec::new();
    let out = decode_chunks(
        &mut codec,
        &[b"{\"ipcReqID\":\"rq3\",\"uri\":\"/x\",\"data\":{oops}\n{\"a\":1}\n"],
    );
    match &out[0] {
        Err(FrameError::InvalidJson { req_id, reason }) => {
            assert_eq!(req_id, &Some(RawId::from(&json!("rq3"))));
            assert!(reason.contains("line 1"), "{reason}");
        }
        other => panic!("expected InvalidJson, got {other:?}"),
    }
    assert_eq!(out[1], Ok(json!({"a":1})));
}

#[test]
fn wrong_field_types_are_invalid_messages_with_their_id() {
    let mut codec: JsonLinesCodec<Request> = JsonLinesCodec::new();
    let mut buf = BytesMut::from(&b"{\"ipcReqID\":\"rq5\",\"uri\":42}\n"[..]);
    match codec.decode(&mut buf).unwrap() {
        Some(Err(FrameError::InvalidMessage { req_id, .. })) => {
            assert_eq!(req_id, Some(RawId::from(&json!("rq5"))))
        }
        other => panic!("expected InvalidMessage, got {other:?}"),
    }
}

#[test]
fn lenient_informational_fields() {
    let mut codec: JsonLinesCodec<Request> = JsonLinesCodec::new();
    let mut buf = BytesMut::from(
        &b"{\"uri\":\"/a\",\"pid\":\"abc\",\"userAgent\":5,\"ipcReqID\":null}\n"[..],
    );
    let request = codec.decode(&mut buf).unwrap().unwrap().unwrap();
    assert_eq!(request.pid, None);
    assert_eq!(request.user_agent, None);
    assert_eq!(request.ipc_req_id, None);
    assert_eq!(request.data, Value::Null);
}

#[test]
fn eof_in_the_middle_of_a_line_is_an_error_and_clean_eof_is_not() {
    let mut codec: JsonLinesCodec<Value> = JsonLinesCodec::new();
    let mut buf = BytesMut::from(&b"{\"a\":1}\n{\"b\""[..]);
    assert_eq!(
        codec.decode_eof(&mut buf).unwrap(),
        Some(Ok(json!({"a":1})))
    );
    let err = codec.decode_eof(&mut buf).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);

    let mut buf = BytesMut::from(&b"{\"a\":1}\n  \r\n"[..]);
    assert_eq!(
        codec.decode_eof(&mut buf).unwrap(),
        Some(Ok(json!({"a":1})))
    );
    assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
}

#[test]
fn encoding_is_one_compact_line_and_respects_the_limit() {
    let mut codec: JsonLinesCodec<Value> = JsonLinesCodec::with_max_length(20);
    let mut buf = BytesMut::new();
    codec.encode(json!({"a":"b/c"}), &mut buf).unwrap();
    assert_eq!(&buf[..], b"{\"a\":\"b/c\"}\n");
    let err = codec
        .encode(json!({"a":"x".repeat(30)}), &mut buf)
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert_eq!(
        &buf[..],
        b"{\"a\":\"b/c\"}\n",
        "a refused message writes nothing"
    );
}

#[test]
fn encoded_strings_never_contain_a_raw_newline() {
    let line = pixl_ipc_protocol::encode_line(&json!({"text":"a\nb\r\nc"})).unwrap();
    assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
    assert!(line.ends_with(b"\n"));
}

#[test]
fn frame_lines_splits_at_every_newline_like_tremors_separate() {
    fn lines(payload: &[u8]) -> Vec<&[u8]> {
        pixl_ipc_protocol::frame_lines(payload).collect()
    }
    assert_eq!(lines(b"{\"a\":1}"), vec![&b"{\"a\":1}"[..]]);
    assert_eq!(lines(b"one\ntwo"), vec![&b"one"[..], b"two"]);
    assert_eq!(lines(b"one\n"), vec![&b"one"[..], b""]);
    assert_eq!(lines(b"\n\n"), vec![&b""[..], b"", b""]);
    assert_eq!(lines(b""), vec![&b""[..]]);
}

/// Feeds `chunks` to a [`LineSplitter`] one at a time, then ends the input; every line, error
/// and the end's result.
fn split_chunks(
    splitter: &mut LineSplitter,
    chunks: &[&[u8]],
) -> (Vec<Result<Vec<u8>, FrameError>>, std::io::Result<()>) {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Some(item) = splitter.decode(&mut buf).unwrap() {
            out.push(item.map(|line| line.to_vec()));
        }
    }
    let end = loop {
        match splitter.decode_eof(&mut buf) {
            Ok(Some(item)) => out.push(item.map(|line| line.to_vec())),
            Ok(None) => break Ok(()),
            Err(err) => break Err(err),
        }
    };
    (out, end)
}

#[test]
fn line_splitter_yields_raw_lines_keeping_cr_and_skipping_blank_ones() {
    let mut splitter = LineSplitter::new(64);
    let (out, end) = split_chunks(
        &mut splitter,
        &[b"{\"a\":1}\r\n\n  \t\r\nnot json\n{\"b\"", b":2}\n  {}  \n"],
    );
    assert_eq!(
        out,
        vec![
            Ok(b"{\"a\":1}\r".to_vec()),
            Ok(b"not json".to_vec()),
            Ok(b"{\"b\":2}".to_vec()),
            Ok(b"  {}  ".to_vec()),
        ]
    );
    assert!(end.is_ok());
}

#[test]
fn line_splitter_reports_an_over_long_line_once_with_any_leading_id_then_recovers() {
    let long = format!("{{\"ipcReqID\":\"rq9\",\"data\":\"{}\"}}", "x".repeat(100));
    let mut splitter = LineSplitter::new(32);
    let (out, end) = split_chunks(
        &mut splitter,
        &[
            &long.as_bytes()[..40],
            &long.as_bytes()[40..],
            b"\n{\"a\":1}\n",
        ],
    );
    assert_eq!(
        out,
        vec![
            Err(FrameError::TooLong {
                limit: 32,
                req_id: Some(RawId::from(&json!("rq9")))
            }),
            Ok(b"{\"a\":1}".to_vec()),
        ]
    );
    assert!(end.is_ok());

    // Unlike JsonLinesCodec, which answers the peer and so drops a null or over-long id, the
    // splitter reports whatever id the line starts with: its caller decides.
    let id = "i".repeat(2000);
    let line = format!("{{\"ipcReqID\":\"{id}\",\"data\":1}}\n");
    let (out, _) = split_chunks(&mut LineSplitter::new(100), &[line.as_bytes()]);
    assert_eq!(
        out,
        vec![Err(FrameError::TooLong {
            limit: 100,
            req_id: Some(RawId::from(&json!(id)))
        })]
    );
    let (out, _) = split_chunks(
        &mut LineSplitter::new(10),
        &[b"{\"ipcReqID\":null,\"data\":1}\n"],
    );
    assert_eq!(
        out,
        vec![Err(FrameError::TooLong {
            limit: 10,
            req_id: RawId::parse(b"null")
        })]
    );
    let mut codec: JsonLinesCodec<Value> = JsonLinesCodec::with_max_length(100);
    let out = decode_chunks(&mut codec, &[line.as_bytes()]);
    assert_eq!(
        out,
        vec![Err(FrameError::TooLong {
            limit: 100,
            req_id: None
        })]
    );
}

#[test]
fn line_splitter_limit_counts_the_cr_and_discarding_keeps_no_bytes() {
    let line = b"{\"a\":\"xyz\"}"; // 11 bytes
    let (out, _) = split_chunks(&mut LineSplitter::new(11), &[line, b"\n"]);
    assert_eq!(out, vec![Ok(line.to_vec())]);
    let (out, _) = split_chunks(&mut LineSplitter::new(11), &[line, b"\r\n"]);
    assert!(
        matches!(out[..], [Err(FrameError::TooLong { .. })]),
        "{out:?}"
    );

    let mut splitter = LineSplitter::new(16);
    let mut buf = BytesMut::from(&[b'{'; 20][..]);
    assert!(matches!(
        splitter.decode(&mut buf).unwrap(),
        Some(Err(FrameError::TooLong { .. }))
    ));
    for _ in 0..100 {
        buf.extend_from_slice(&[b'x'; 1000]);
        assert_eq!(splitter.decode(&mut buf).unwrap(), None);
        assert!(buf.len() <= 17, "buffer grew to {}", buf.len());
    }
    buf.extend_from_slice(b"tail\n{\"ok\":1}\n");
    assert_eq!(
        splitter.decode(&mut buf).unwrap(),
        Some(Ok(bytes::Bytes::from_static(b"{\"ok\":1}")))
    );
}

#[test]
fn line_splitter_hands_out_large_lines_whole() {
    // Past 1 MiB a line is split off the buffer rather than copied: the same bytes either way.
    for size in [
        1024 * 1024 - 1,
        1024 * 1024,
        1024 * 1024 + 1,
        3 * 1024 * 1024,
    ] {
        let line = vec![b'x'; size];
        let (out, end) = split_chunks(
            &mut LineSplitter::new(64 << 20),
            &[&line[..size / 2], &line[size / 2..], b"\n{}\n"],
        );
        assert_eq!(out.len(), 2, "size {size}");
        assert!(out[0].as_ref().is_ok_and(|got| *got == line), "size {size}");
        assert_eq!(out[1], Ok(b"{}".to_vec()));
        assert!(end.is_ok());
    }
}

#[test]
fn line_splitter_end_of_input_mid_line_is_an_error_and_whitespace_or_discarding_is_not() {
    let (out, end) = split_chunks(&mut LineSplitter::new(64), &[b"{\"a\":1}\n{\"b\""]);
    assert_eq!(out, vec![Ok(b"{\"a\":1}".to_vec())]);
    assert_eq!(end.unwrap_err().kind(), std::io::ErrorKind::UnexpectedEof);
    let (_, end) = split_chunks(&mut LineSplitter::new(64), &[b"{\"a\":1}\n  \r\n \t"]);
    assert!(end.is_ok());
    // A last line without its newline is not handed out.
    let (out, end) = split_chunks(&mut LineSplitter::new(64), &[b"{\"a\":1}"]);
    assert!(out.is_empty());
    assert!(end.is_err());
    let (out, end) = split_chunks(&mut LineSplitter::new(4), &[b"{\"a\":1} and more"]);
    assert!(
        matches!(out[..], [Err(FrameError::TooLong { .. })]),
        "{out:?}"
    );
    assert!(
        end.is_ok(),
        "the rest of an over-long line is discarded, not an error"
    );
}

//! The faster JSON writer must produce exactly serde_json's bytes, for any value.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use pixl_ipc_protocol::json::{
    encode_raw_response_line, encode_request_line, encode_response_line, encode_stream_item_line,
    raw_response_pieces, stream_item_pieces, to_json_string, SHARED_PAYLOAD_BYTES,
};
use pixl_ipc_protocol::{encode_line, RawId, RawResponse, Request, Response};
use proptest::prelude::*;
use serde_json::{json, Value};

/// Strings that exercise every escape: control characters, quotes, backslashes, DEL,
/// multi-byte characters, at every position of an 8-byte word and of a 32-byte block.
fn tricky_string() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("\"".to_owned()),
        Just("\\".to_owned()),
        Just("/".to_owned()),
        Just("\u{7f}".to_owned()),
        Just("é".to_owned()),
        Just("😀".to_owned()),
        (0u32..0x20).prop_map(|c| char::from_u32(c).unwrap().to_string()),
        "[a-zA-Z0-9 ]{0,12}",
        "[a-zA-Z0-9 ]{30,70}",
        any::<String>(),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
}

fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        tricky_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((tricky_string(), inner), 0..8)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn values_are_written_exactly_as_serde_json_writes_them(value in any_value()) {
        prop_assert_eq!(to_json_string(&value), serde_json::to_string(&value).unwrap());
    }

    #[test]
    fn request_lines_match_the_serde_encoding(
        data in any_value(),
        id in prop::option::of(tricky_string()),
        uri in prop::option::of(tricky_string()),
        pid in prop::option::of(any::<u32>()),
        agent in prop::option::of(tricky_string()),
        no_reply in any::<bool>(),
        close in any::<bool>(),
        stream in any::<bool>(),
    ) {
        let request = Request {
            ipc_req_id: id.map(Value::String),
            uri,
            data,
            pid,
            user_agent: agent,
            no_reply,
            close_after_reply: close,
            stream,
        };
        prop_assert_eq!(encode_request_line(&request), encode_line(&request).unwrap());
    }

    #[test]
    fn response_lines_match_the_serde_encoding(data in any_value(), id in any_value()) {
        let id = RawId::from(&id);
        let response = Response { ipc_req_id: Some(&id), data: &data };
        prop_assert_eq!(encode_response_line(&response), encode_line(&response).unwrap());
    }

    #[test]
    fn raw_response_lines_match_the_serde_encoding(data in prop::option::of(any_value()), id in any_value()) {
        let raw = data.map(|data| serde_json::value::to_raw_value(&data).unwrap());
        let id = RawId::from(&id);
        let response = RawResponse { ipc_req_id: Some(&id), data: raw.as_deref() };
        prop_assert_eq!(encode_raw_response_line(&response), encode_line(&response).unwrap());
    }

    /// The pieces, written back to back, are the one-buffer line, for payloads on both sides
    /// of the size from which the payload is its own piece.
    #[test]
    fn pieces_are_the_line_cut_in_three(
        data in prop::option::of(any_value()),
        padding in prop::sample::select(vec![0, SHARED_PAYLOAD_BYTES - 20, SHARED_PAYLOAD_BYTES]),
        id in prop::option::of(any_value()),
    ) {
        let data = data.map(|data| json!([data, "x".repeat(padding)]));
        let raw = || data.as_ref().map(|data| serde_json::value::to_raw_value(data).unwrap());
        let id = id.map(|id| RawId::from(&id));
        let pieces = raw_response_pieces(id.as_ref(), raw());
        let line = encode_raw_response_line(&RawResponse { ipc_req_id: id.as_ref(), data: raw().as_deref() });
        prop_assert_eq!(pieces.concat(), line.to_vec());
        let shared = raw().is_some_and(|raw| raw.get().len() >= SHARED_PAYLOAD_BYTES);
        prop_assert_eq!(pieces[1].is_empty(), !shared);
        if let Some(item) = raw() {
            let pieces = stream_item_pieces(id.as_ref(), item);
            let line = encode_stream_item_line(id.as_ref(), &raw().unwrap());
            prop_assert_eq!(pieces.concat(), line.to_vec());
        }
    }
}

#[test]
fn ids_are_written_as_their_text_and_none_as_null() {
    let id: RawId = serde_json::from_str(r#"{ "big": 18446744073709551617 }"#).unwrap();
    let data = json!(1);
    let line = encode_response_line(&Response {
        ipc_req_id: Some(&id),
        data: &data,
    });
    assert_eq!(
        &line[..],
        b"{\"ipcReqID\":{ \"big\": 18446744073709551617 },\"data\":1}\n"
    );
    assert_eq!(
        line,
        encode_line(&Response {
            ipc_req_id: Some(&id),
            data: &data
        })
        .unwrap()
    );
    let line = encode_raw_response_line(&RawResponse {
        ipc_req_id: None,
        data: None,
    });
    assert_eq!(&line[..], b"{\"ipcReqID\":null,\"data\":null}\n");
}

#[test]
fn the_benchmark_message_is_written_exactly_as_serde_json_writes_it() {
    let padded = "GiveMeDataz".repeat(100);
    let message = json!({"key_0": padded, "key_1": "tab\there \"quoted\" back\\slash \u{1}"});
    assert_eq!(
        to_json_string(&message),
        serde_json::to_string(&message).unwrap()
    );
}

/// The writer skips clean text 32 and 8 bytes at a time: an escape at any offset of a long
/// string, or two side by side, must still be found.
#[test]
fn an_escape_is_found_at_every_offset_of_a_long_string() {
    for length in [15, 16, 17, 24, 31, 32, 33, 47, 63, 64, 65, 95, 96, 100] {
        for at in 0..length {
            for escape in ["\"", "\\", "\n", "\u{1}", "\"\\"] {
                let mut text = "a".repeat(length);
                text.replace_range(at..at + 1, escape);
                let value = Value::String(text);
                assert_eq!(
                    to_json_string(&value),
                    serde_json::to_string(&value).unwrap()
                );
            }
        }
    }
}

//! Finding which request a line answers, without decoding it (the protocol crate's
//! `LineSplitter` cuts the server's bytes into lines): the connection task only routes, and each
//! caller decodes its own reply under its own deadline, so one huge reply neither overruns its
//! caller's timeout nor stalls the others.

use pixl_ipc_protocol::sniff::{sniff_id, Sniffed};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// Who a line is for, as the connection task needs to know it.
#[derive(Debug, PartialEq)]
pub(crate) enum Route {
    /// A reply to the request with this id.
    Reply(String),
    /// A reply whose id is not a string: this client never sends one.
    ForeignId(String),
    /// An error naming no request (`too_many_connections`): `"code: message"`.
    UnattributedError(String),
    /// A push: no `ipcReqID`.
    Push,
    /// A line that is not a JSON object (skipped, as the original does), or not valid JSON and
    /// without a readable id.
    Skip(Option<String>),
}

/// The top-level members routing needs; everything else (`data` above all) is skipped by the
/// parser without building any value.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "ipcReqID", default, borrow)]
    id: Option<&'a RawValue>,
    #[serde(default)]
    code: Option<Value>,
    #[serde(default)]
    message: Option<Value>,
}

/// Routes one line by its id, read from the line's start when it is there (the usual case: no
/// parsing at all), else by a parse that skips the values; a line longer than `max_scan`
/// without a leading id is dropped unread, so no push (or reply with its id last) can stall
/// the connection for longer than scanning `max_scan` bytes.
pub(crate) fn route(line: &[u8], max_scan: usize) -> Route {
    match line.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        _ => return Route::Skip(None),
    }
    if let Sniffed::Id(id) = sniff_id(line) {
        if let Some(route) = route_by_id(id) {
            return route;
        }
    }
    if line.len() > max_scan {
        return Route::Skip(Some(format!(
            "a line of {} bytes without a leading ipcReqID, over the {max_scan}-byte limit for replies; dropped unread",
            line.len()
        )));
    }
    let head = match serde_json::from_slice::<Head<'_>>(line) {
        Ok(head) => head,
        Err(err) => return Route::Skip(Some(err.to_string())),
    };
    if let Some(route) = head.id.and_then(|id| route_by_id(id.get().as_bytes())) {
        return route;
    }
    match head.code {
        Some(code) => {
            let text = |value: Option<Value>| match value {
                Some(Value::String(text)) => text,
                Some(other) => other.to_string(),
                None => String::new(),
            };
            Route::UnattributedError(format!("{}: {}", text(Some(code)), text(head.message)))
        }
        None => Route::Push,
    }
}

/// True when a streamed reply's line is an item (`"ipcMore": true`), false for its final line.
/// Usually decided without parsing: no `"ipcMore"` anywhere means final, and the server writes
/// it last; other layouts take a parse that skips the values.
pub(crate) fn is_more(line: &[u8]) -> bool {
    const KEY: &[u8] = b"\"ipcMore\"";
    const LAST: &[u8] = b",\"ipcMore\":true}";
    if memchr::memmem::find(line, KEY).is_none() {
        return false;
    }
    let end = line
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |last| last + 1);
    if line[..end].ends_with(LAST) {
        return true;
    }
    #[derive(Deserialize)]
    struct More {
        #[serde(rename = "ipcMore", default)]
        more: Option<Value>,
    }
    matches!(
        serde_json::from_slice::<More>(line),
        Ok(More {
            more: Some(Value::Bool(true))
        })
    )
}

/// `None` for a `null` id (the same as none).
fn route_by_id(id: &[u8]) -> Option<Route> {
    // The usual id (`"rq12"`): a string without escapes, taken as it is.
    if let [b'"', inner @ .., b'"'] = id {
        if !inner.contains(&b'\\') {
            if let Ok(text) = std::str::from_utf8(inner) {
                return Some(Route::Reply(text.to_owned()));
            }
        }
    }
    match serde_json::from_slice::<Value>(id).ok()? {
        Value::Null => None,
        Value::String(id) => Some(Route::Reply(id)),
        other => Some(Route::ForeignId(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    fn route_any(line: &[u8]) -> Route {
        route(line, usize::MAX)
    }

    #[test]
    fn a_long_line_without_a_leading_id_is_dropped_unread() {
        let push = format!("{{\"type\":\"push\",\"data\":[{}0]}}", "0,".repeat(100));
        assert!(matches!(route(push.as_bytes(), 64), Route::Skip(Some(_))));
        assert_eq!(route(push.as_bytes(), 1 << 20), Route::Push);
    }

    use super::*;
    use bytes::BytesMut;
    use pixl_ipc_protocol::{FrameError, LineSplitter};
    use tokio_util::codec::Decoder;

    #[test]
    fn routes_from_the_lines_start_or_by_a_skipping_parse() {
        assert_eq!(
            route_any(br#"{"ipcReqID":"rq1","data":[{},{}]}"#),
            Route::Reply("rq1".into())
        );
        assert_eq!(
            route_any(br#"{"data":{"ipcReqID":"inner"},"ipcReqID":"rq2"}"#),
            Route::Reply("rq2".into())
        );
        assert_eq!(
            route_any(br#"{"ipcReqID":"r\u0071\"1","data":1}"#),
            Route::Reply("rq\"1".into())
        );
        assert_eq!(
            route_any(br#"{"ipcReqID":7,"data":1}"#),
            Route::ForeignId("7".into())
        );
        assert_eq!(route_any(br#"{"uri":"/x","data":{"a":1}}"#), Route::Push);
        assert_eq!(route_any(br#"{"ipcReqID":null,"data":1}"#), Route::Push);
        assert_eq!(
            route_any(br#"{"code":"too_many_connections","message":"full"}"#),
            Route::UnattributedError("too_many_connections: full".into())
        );
        assert_eq!(route_any(b"hello"), Route::Skip(None));
        assert!(matches!(route_any(b"{nope"), Route::Skip(Some(_))));
        // The id after a long data member: found by the parse, not the sniff.
        let long = format!(
            r#"{{"data":"{}","ipcReqID":"rq3"}}"#,
            "x".repeat(pixl_ipc_protocol::sniff::SNIFF_LIMIT * 2)
        );
        assert_eq!(sniff_id(long.as_bytes()), Sniffed::Unknown);
        assert_eq!(route_any(long.as_bytes()), Route::Reply("rq3".into()));
    }

    #[test]
    fn tells_stream_items_from_final_lines() {
        assert!(is_more(
            br#"{"ipcReqID":"rq1","data":{"i":0},"ipcMore":true}"#
        ));
        assert!(is_more(
            b"{\"ipcReqID\":\"rq1\",\"data\":1,\"ipcMore\":true}\r"
        ));
        assert!(is_more(br#"{"ipcMore": true, "ipcReqID":"rq1","data":1}"#));
        assert!(!is_more(br#"{"ipcReqID":"rq1","data":{"done":3}}"#));
        assert!(!is_more(br#"{"ipcReqID":"rq1","data":{"ipcMore":true}}"#));
        assert!(!is_more(br#"{"ipcReqID":"rq1","ipcMore":false}"#));
        assert!(!is_more(
            br#"{"ipcReqID":"rq1","code":"cancelled","message":"x"}"#
        ));
    }

    #[test]
    fn splits_lines_and_reports_an_over_long_one_with_its_id() {
        let mut codec = LineSplitter::new(16);
        let mut buf = BytesMut::from(
            &b"{\"a\":1}\r\n\n{\"ipcReqID\":\"rq9\",\"data\":\"xxxxxxxxxxxx\"}\n{}\n"[..],
        );
        let first = codec.decode(&mut buf).unwrap().unwrap().unwrap();
        assert_eq!(&first[..], b"{\"a\":1}\r");
        match codec.decode(&mut buf).unwrap().unwrap() {
            Err(FrameError::TooLong { limit: 16, req_id }) => {
                assert_eq!(req_id.unwrap().json(), "\"rq9\"");
            }
            other => panic!("expected TooLong, got {other:?}"),
        }
        let last = codec.decode(&mut buf).unwrap().unwrap().unwrap();
        assert_eq!(&last[..], b"{}");
    }
}

//! Finding a line's top-level `ipcReqID` without decoding the line: the server recovers the id
//! of a line it could not decode (so the error reply reaches the caller waiting for it), and a
//! client routes a reply to its caller without parsing it.

use crate::message::{RawId, MAX_ERROR_REPLY_ID_BYTES};

/// How much of a line is scanned for the id. Clients put `ipcReqID` first (Node) or second
/// (PHP, after `uri`), and servers first, so a short prefix is enough.
pub const SNIFF_LIMIT: usize = 64 * 1024;

/// What the start of a line says about its top-level `ipcReqID`.
#[derive(Debug, PartialEq, Eq)]
pub enum Sniffed<'a> {
    /// The id's JSON text as written: a string, a number, or `null`.
    Id(&'a [u8]),
    /// The whole object was scanned: it has no top-level `ipcReqID`.
    Absent,
    /// The scan gave up: the id is past the first [`SNIFF_LIMIT`] bytes, or the line is not
    /// plain JSON there.
    Unknown,
}

/// Finds the top-level `"ipcReqID"` member in the first [`SNIFF_LIMIT`] bytes of `line`
/// without parsing the rest. Keys inside nested objects and look-alikes inside strings are
/// skipped; any surprise makes it give up ([`Sniffed::Unknown`]). The server uses it to recover
/// the id of a line it could not decode; a client, to route a reply without decoding it.
pub fn sniff_id(line: &[u8]) -> Sniffed<'_> {
    let line = &line[..line.len().min(SNIFF_LIMIT)];
    let mut pos = skip_ws(line, 0);
    if line.get(pos) != Some(&b'{') {
        return Sniffed::Unknown;
    }
    let mut depth = 0usize;
    let mut expecting_key = false;
    while pos < line.len() {
        match line[pos] {
            b'{' => {
                depth += 1;
                expecting_key = depth == 1;
                pos += 1;
            }
            b'[' => {
                depth += 1;
                expecting_key = false;
                pos += 1;
            }
            b'}' | b']' => {
                let Some(outer) = depth.checked_sub(1) else {
                    return Sniffed::Unknown;
                };
                depth = outer;
                pos += 1;
                if depth == 0 {
                    return Sniffed::Absent;
                }
            }
            b',' => {
                expecting_key = depth == 1;
                pos += 1;
            }
            b'"' => {
                let Some(end) = string_end(line, pos) else {
                    return Sniffed::Unknown;
                };
                if expecting_key && &line[pos..end] == b"\"ipcReqID\"" {
                    return value_after_colon(line, end).map_or(Sniffed::Unknown, Sniffed::Id);
                }
                expecting_key = false;
                pos = end;
            }
            _ => pos += 1,
        }
    }
    Sniffed::Unknown
}

/// The id of a line that failed, as the peer wrote it, for its error reply: a string or a
/// number found by [`sniff_id`], not `null`, and no longer than [`MAX_ERROR_REPLY_ID_BYTES`]
/// (an error reply does not carry one that long).
pub(crate) fn sniff_req_id(line: &[u8]) -> Option<RawId> {
    match sniff_id(line) {
        Sniffed::Id(id) if id != b"null" && id.len() <= MAX_ERROR_REPLY_ID_BYTES => {
            RawId::parse(id)
        }
        _ => None,
    }
}

/// The index just past the closing quote of the string starting at `start`.
fn string_end(line: &[u8], start: usize) -> Option<usize> {
    let mut pos = start + 1;
    while pos < line.len() {
        match line[pos] {
            b'\\' => pos += 2,
            b'"' => return Some(pos + 1),
            _ => pos += 1,
        }
    }
    None
}

fn skip_ws(line: &[u8], mut pos: usize) -> usize {
    while pos < line.len() && line[pos].is_ascii_whitespace() {
        pos += 1;
    }
    pos
}

/// The value's text after `"ipcReqID"`: a string, a number (up to the first byte that cannot
/// be part of one), or `null`.
fn value_after_colon(line: &[u8], key_end: usize) -> Option<&[u8]> {
    let colon = skip_ws(line, key_end);
    if line.get(colon) != Some(&b':') {
        return None;
    }
    let start = skip_ws(line, colon + 1);
    let end = match line.get(start)? {
        b'"' => string_end(line, start)?,
        b'-' | b'0'..=b'9' => {
            let digits = line[start..]
                .iter()
                .position(|b| !matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                .unwrap_or(line.len() - start);
            start + digits
        }
        b'n' if line[start..].starts_with(b"null") => start + 4,
        _ => return None,
    };
    Some(&line[start..end])
}

#[cfg(test)]
mod tests {
    use super::sniff_req_id;

    /// The sniffed id's JSON text.
    fn sniff(line: &[u8]) -> Option<String> {
        sniff_req_id(line).map(|id| id.json().to_owned())
    }

    #[test]
    fn finds_the_id_where_the_original_clients_put_it() {
        let node = br#"{"ipcReqID":"rq7","uri":"/x","data":{"a":"#;
        assert_eq!(sniff(node), Some(r#""rq7""#.to_owned()));
        let php = br#"{"uri":"\/x","ipcReqID":"rq12","data":[1,"#;
        assert_eq!(sniff(php), Some(r#""rq12""#.to_owned()));
        let spaced = b"  { \"uri\" : \"/x\" ,\r\n \"ipcReqID\" :  42 , ";
        assert_eq!(sniff(spaced), Some("42".to_owned()));
    }

    #[test]
    fn ignores_nested_and_quoted_lookalikes() {
        let nested = br#"{"data":{"ipcReqID":"inner"},"ipcReqID":"outer"}"#;
        assert_eq!(sniff(nested), Some(r#""outer""#.to_owned()));
        let quoted = br#"{"data":"say \"ipcReqID\":\"no\"","x":1"#;
        assert_eq!(sniff(quoted), None);
        let value_not_key = br#"{"uri":"ipcReqID","ipcReqID":"rq1"}"#;
        assert_eq!(sniff(value_not_key), Some(r#""rq1""#.to_owned()));
    }

    #[test]
    fn tells_an_absent_id_from_one_it_could_not_find() {
        use super::{sniff_id, Sniffed};
        assert_eq!(
            sniff_id(br#"{"uri":"/x","data":{"ipcReqID":1}}"#),
            Sniffed::Absent
        );
        assert_eq!(
            sniff_id(br#"{"ipcReqID":null,"data":1}"#),
            Sniffed::Id(b"null")
        );
        assert_eq!(sniff_id(b"hello"), Sniffed::Unknown);
        // `null` is no id to recover for an error reply.
        assert_eq!(sniff(br#"{"ipcReqID":null,"uri":"#), None);
    }

    #[test]
    fn keeps_the_ids_text_as_written() {
        let big = br#"{"ipcReqID":18446744073709551617,"uri":"#;
        assert_eq!(sniff(big), Some("18446744073709551617".to_owned()));
        let escaped = br#"{"ipcReqID":"a\"b\u00e9\/c","uri":"#;
        assert_eq!(sniff(escaped), Some(r#""a\"b\u00e9\/c""#.to_owned()));
    }

    #[test]
    fn drops_ids_too_long_for_an_error_reply() {
        let id = "x".repeat(super::MAX_ERROR_REPLY_ID_BYTES);
        let line = format!(r#"{{"ipcReqID":"{id}","uri":"#);
        assert_eq!(sniff(line.as_bytes()), None);
        let fits = &id[2..];
        let line = format!(r#"{{"ipcReqID":"{fits}","uri":"#);
        assert_eq!(sniff(line.as_bytes()), Some(format!(r#""{fits}""#)));
    }

    #[test]
    fn gives_up_on_non_objects_and_odd_ids() {
        assert_eq!(sniff(b"[1,2]"), None);
        assert_eq!(sniff(br#"{"ipcReqID":{"a":1}}"#), None);
        assert_eq!(sniff(br#"{"ipcReqID":"unterminated"#), None);
        assert_eq!(sniff(b""), None);
    }
}

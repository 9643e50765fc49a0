//! Quoting peer-controlled text in log lines and error messages, bounded.
//!
//! A peer decides what it sends, so any of its text copied into a log line or an error reply
//! (a uri, a header, a value serde quotes in its error message) must be cut to a small size, or
//! one 1 MiB field makes a 1 MiB log line and a 1 MiB reply. Every such place goes through
//! [`bounded`], so the rule lives here: at most [`QUOTE_LIMIT`] bytes of the text, cut on a
//! UTF-8 character boundary, then how many bytes were left out. Control characters are written
//! escaped (`\n`, `\u{1b}`), so a peer cannot start a fake log line or move a terminal's cursor.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

/// The most bytes of one piece of peer text quoted in a log line or an error message.
pub const QUOTE_LIMIT: usize = 200;

/// Peer text shown by [`Display`](fmt::Display) with at most [`QUOTE_LIMIT`] of its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Bounded<'a> {
    text: &'a str,
}

/// `text` for a log line or an error message: itself when it is short and has no control
/// characters, else its first [`QUOTE_LIMIT`] bytes (fewer, to end on a character boundary)
/// followed by `… (N more bytes)`, with control characters escaped.
///
/// Cheap to make: nothing is copied until it is formatted, and formatting reads at most
/// [`QUOTE_LIMIT`] bytes, however long `text` is.
pub fn bounded(text: &str) -> Bounded<'_> {
    Bounded { text }
}

/// [`bounded`] as a string, borrowing `text` when it is already within the rule.
pub fn bounded_cow(text: &str) -> Cow<'_, str> {
    if text.len() <= QUOTE_LIMIT && !text.chars().any(char::is_control) {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(bounded(text).to_string())
    }
}

impl fmt::Display for Bounded<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = &self.text[..floor_char_boundary(self.text, QUOTE_LIMIT)];
        for run in shown.split_inclusive(char::is_control) {
            match run.chars().next_back() {
                Some(last) if last.is_control() => {
                    f.write_str(&run[..run.len() - last.len_utf8()])?;
                    for escaped in last.escape_debug() {
                        f.write_char(escaped)?;
                    }
                }
                _ => f.write_str(run)?,
            }
        }
        let left_out = self.text.len() - shown.len();
        if left_out > 0 {
            write!(f, "… ({left_out} more bytes)")?;
        }
        Ok(())
    }
}

/// The largest index `<= index` that is a character boundary of `text` (`str` has this only
/// on nightly).
fn floor_char_boundary(text: &str, index: usize) -> usize {
    if index >= text.len() {
        return text.len();
    }
    // A boundary is at most 3 bytes back: UTF-8 characters are at most 4 bytes long.
    (index.saturating_sub(3)..=index)
        .rev()
        .find(|&at| text.is_char_boundary(at))
        .unwrap_or(0)
}

/// A serde_json error's message for a peer to read, with whatever of the peer's input it quotes
/// bounded: the message before its position (`invalid type: string "xxxx…", expected a
/// boolean`) goes through [`bounded`], keeping the end of it (what was expected) when the
/// quoted input is long, and the position (`at line 1 column 9`) is added back whole.
pub fn serde_error(err: &serde_json::Error) -> String {
    let full = err.to_string();
    let position = format!(" at line {} column {}", err.line(), err.column());
    let message = if err.line() > 0 {
        full.strip_suffix(&position).unwrap_or(&full)
    } else {
        &full
    };
    let mut out = String::with_capacity(QUOTE_LIMIT * 2);
    if message.len() <= QUOTE_LIMIT {
        let _ = write!(out, "{}", bounded(message));
    } else {
        // serde's messages end with what was expected (`, expected a boolean`); that part is
        // ours, not the peer's, and worth keeping, so show the start and the last few bytes.
        const TAIL: usize = 48;
        let tail_start = ceil_char_boundary(message, message.len() - TAIL);
        let head = &message[..tail_start];
        let _ = write!(
            out,
            "{} … {}",
            bounded(head),
            bounded(&message[tail_start..])
        );
    }
    if err.line() > 0 {
        out.push_str(&position);
    }
    out
}

fn ceil_char_boundary(text: &str, index: usize) -> usize {
    (index..=text.len())
        .find(|&at| text.is_char_boundary(at))
        .unwrap_or(text.len())
}

#[cfg(test)]
mod tests {
    use super::{bounded, bounded_cow, serde_error, QUOTE_LIMIT};

    #[test]
    fn short_clean_text_is_unchanged_and_borrowed() {
        assert_eq!(
            bounded("/ipcserver/test/echo").to_string(),
            "/ipcserver/test/echo"
        );
        assert!(matches!(
            bounded_cow("/x"),
            std::borrow::Cow::Borrowed("/x")
        ));
    }

    #[test]
    fn long_text_is_cut_and_says_how_much_is_left_out() {
        let text = "x".repeat(1 << 20);
        let shown = bounded(&text).to_string();
        assert!(shown.starts_with(&"x".repeat(QUOTE_LIMIT)), "{shown}");
        assert!(
            shown.ends_with(&format!("… ({} more bytes)", (1 << 20) - QUOTE_LIMIT)),
            "{shown}"
        );
        assert!(shown.len() < QUOTE_LIMIT + 40);
    }

    #[test]
    fn the_cut_is_on_a_character_boundary() {
        // 'é' is 2 bytes: 199 'a' put one across the limit.
        let text = format!("{}{}", "a".repeat(QUOTE_LIMIT - 1), "é".repeat(10));
        let shown = bounded(&text).to_string();
        assert!(shown.starts_with(&"a".repeat(QUOTE_LIMIT - 1)));
        assert!(shown.contains(&format!("… ({} more bytes)", 20)), "{shown}");
        // 4-byte characters all the way.
        let emoji = "🦀".repeat(100);
        let shown = bounded(&emoji).to_string();
        assert!(shown.starts_with(&"🦀".repeat(50)), "{shown}");
        assert!(shown.ends_with("… (200 more bytes)"), "{shown}");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            bounded("a\nINFO fake line\u{1b}[2J").to_string(),
            "a\\nINFO fake line\\u{1b}[2J"
        );
        assert_eq!(bounded_cow("tab\there"), "tab\\there");
    }

    #[test]
    fn serde_messages_keep_their_start_end_and_position() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Flag {
            flag: bool,
        }
        let line = format!("{{\"flag\":\"{}\"}}", "y".repeat(1 << 20));
        let err = serde_json::from_str::<Flag>(&line).unwrap_err();
        let message = serde_error(&err);
        assert!(message.len() < 400, "{} bytes", message.len());
        assert!(
            message.starts_with("invalid type: string \"yyy"),
            "{message}"
        );
        assert!(message.contains("more bytes)"), "{message}");
        assert!(message.contains("expected a boolean"), "{message}");
        assert!(
            message.ends_with(&format!("at line 1 column {}", line.len() - 1)),
            "{message}"
        );

        let short = serde_json::from_str::<Flag>("{\"flag\":1}").unwrap_err();
        assert_eq!(serde_error(&short), short.to_string());
    }
}

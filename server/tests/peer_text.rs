//! A peer's request ids come back byte for byte: raw-wire tests against the real binary.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::process::Command;

use common::{server_binary, ServerProcess};

fn start_logging(level: &str, args: &[&str]) -> (tempfile::TempDir, ServerProcess) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peer-text.sock");
    let mut command = Command::new(server_binary());
    command
        .env("RUST_LOG", level)
        .arg("--socket")
        .arg(&path)
        .args(args);
    let server = ServerProcess::spawn(command, &path).unwrap_or_else(|failure| {
        panic!("server failed to start: {}", failure.stderr);
    });
    (dir, server)
}

/// Ids any JSON library would change: they must come back exactly as sent.
const ODD_IDS: [&str; 6] = [
    "18446744073709551617",
    "1e400",
    r#""a\"b\u00e9\/c\n""#,
    r#"{"k": [1, 2.50, "x"], "n": null}"#,
    "-0.0",
    "[]",
];

#[test]
fn request_ids_come_back_byte_for_byte_on_every_reply_path() {
    let (_dir, server) = start_logging("info", &["--handler-timeout-ms", "50"]);
    let mut conn = server.connect();
    // Every mismatch, not just the first, so a failure shows which paths are wrong.
    let mut wrong = Vec::new();
    let mut checked = 0;
    for id in ODD_IDS {
        let starts = format!(r#"{{"ipcReqID":{id},"#);
        let mut check = |what: &str, request: String| {
            let reply = conn.call(&request);
            checked += 1;
            if !reply.starts_with(&starts) {
                wrong.push(format!("{what}: id {id} came back as {reply}"));
            }
        };
        check(
            "echo",
            format!(r#"{{"ipcReqID":{id},"uri":"/ipcserver/test/echo","data":[1]}}"#),
        );
        check(
            "handler reply",
            format!(r#"{{"ipcReqID":{id},"uri":"/ipcserver/test/delay"}}"#),
        );
        check(
            "no handler (default handler)",
            format!(r#"{{"ipcReqID":{id},"uri":"/nope"}}"#),
        );
        check(
            "handler timeout",
            format!(r#"{{"ipcReqID":{id},"uri":"/ipcserver/test/delay","data":{{"delay":5000}}}}"#),
        );
        check("no_uri", format!(r#"{{"ipcReqID":{id},"data":1}}"#));
        check(
            "invalid_request",
            format!(r#"{{"ipcReqID":{id},"uri":42}}"#),
        );
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        check(
            "data too deep for a handler",
            format!(r#"{{"ipcReqID":{id},"uri":"/ipcserver/test/delay","data":{deep}}}"#),
        );
        // The sniffer recovers string and number ids from a line that is not JSON.
        if !id.starts_with(['{', '[']) {
            check(
                "invalid_json",
                format!(r#"{{"ipcReqID":{id},"uri":"/x","data":{{oops}}}}"#),
            );
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {checked} replies:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

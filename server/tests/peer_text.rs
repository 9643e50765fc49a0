//! What a peer writes comes back and goes into the log only in bounded form, and its request ids
//! come back byte for byte: raw-wire tests against the real binary.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::process::Command;

use common::{server_binary, ServerProcess};
use serde_json::{json, Value};

const MIB: usize = 1 << 20;

/// Replies to bad lines stay this small, whatever the line held.
const SMALL_REPLY: usize = 512;
/// No log line is longer than this, whatever a peer sent.
const LONGEST_LOG_LINE: usize = 1024;

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

/// The reply to `request`, parsed, with a note in `problems` when it is not small.
fn small_reply(
    conn: &mut common::Conn,
    request: &str,
    what: &str,
    problems: &mut Vec<String>,
) -> Value {
    let reply = conn.call(request);
    if reply.len() >= SMALL_REPLY {
        problems.push(format!(
            "{what}: reply of {} bytes: {}...",
            reply.len(),
            &reply[..200.min(reply.len())]
        ));
    }
    serde_json::from_str(&reply).unwrap()
}

#[test]
fn megabytes_of_peer_text_give_small_error_replies_and_short_log_lines() {
    let (_dir, server) = start_logging("trace", &[]);
    let mut conn = server.connect();
    let big = "x".repeat(MIB);
    // Every problem, not just the first, so a failure shows each place that leaks.
    let mut problems = Vec::new();

    // A 1 MiB string where a boolean belongs: serde's message quotes the value.
    let request =
        format!(r#"{{"ipcReqID":"rq1","uri":"/ipcserver/test/echo","ipcNoReply":"{big}"}}"#);
    let error = small_reply(&mut conn, &request, "string for a boolean", &mut problems);
    assert_eq!(error["code"], json!("invalid_request"));
    assert_eq!(error["ipcReqID"], json!("rq1"));
    let message = error["message"].as_str().unwrap();
    if !(message.contains("more bytes)") && message.contains("expected a boolean")) {
        problems.push(format!(
            "string for a boolean: message {}",
            &message[..200.min(message.len())]
        ));
    }

    // An unknown 1 MiB uri: the default handler's message names the uri, and trace logs it.
    let request = format!(r#"{{"ipcReqID":"rq2","uri":"/{big}"}}"#);
    let answer = small_reply(&mut conn, &request, "unknown uri", &mut problems);
    assert_eq!(answer["data"]["code"], json!("no_handler_found"));

    // The id itself is 2 MiB, in a line that failed: the error reply does not carry it.
    let request =
        format!(r#"{{"ipcReqID":"{big}{big}","uri":"/ipcserver/test/echo","ipcClose":"{big}"}}"#);
    let error = small_reply(&mut conn, &request, "2 MiB id in a bad line", &mut problems);
    assert_eq!(error["code"], json!("invalid_request"));
    if !error["ipcReqID"].is_null() {
        problems.push("2 MiB id in a bad line: the id was copied back".into());
    }
    // And one of 60 KiB, found by the sniffer in a line that is not JSON.
    let id = "y".repeat(60 * 1024);
    let request = format!(r#"{{"ipcReqID":"{id}","uri":"/x","data":{{oops}}}}"#);
    let error = small_reply(
        &mut conn,
        &request,
        "60 KiB id in invalid JSON",
        &mut problems,
    );
    assert_eq!(error["code"], json!("invalid_json"));
    if !error["ipcReqID"].is_null() {
        problems.push("60 KiB id in invalid JSON: the id was copied back".into());
    }

    // A request that decodes keeps its id whole, however long.
    let reply = conn.call(&format!(
        r#"{{"ipcReqID":"{big}","uri":"/ipcserver/test/echo","data":1}}"#
    ));
    assert_eq!(reply, format!(r#"{{"ipcReqID":"{big}","data":1}}"#));

    drop(conn);
    let (_, log) = server.stop();
    for line in log.lines().filter(|line| line.len() >= LONGEST_LOG_LINE) {
        problems.push(format!(
            "log line of {} bytes: {}...",
            line.len(),
            &line[..200.min(line.len())]
        ));
    }
    // Trace did quote the peer's text, cut short.
    if !log.contains("more bytes)") {
        problems.push("no bounded quote in the log".into());
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
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

//! Raw-wire tests of what only the UNIX socket transport has (byte-stream framing, half-close,
//! the connection limit message) against the real binary: exact lines in, exact lines out.
//! The tests every transport shares are in transport_matrix.rs.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::time::Duration;

use common::{sized_message, ServerProcess};
use serde_json::{json, Value};

fn start(args: &[&str]) -> (tempfile::TempDir, ServerProcess) {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("wire.sock"), args);
    (dir, server)
}

#[test]
fn php_client_framing_json_then_newline_in_two_writes_with_escaped_slashes() {
    let (_dir, server) = start(&[]);
    let mut conn = server.connect();
    conn.send_raw(br#"{"uri":"\/ipcserver\/test\/echo","ipcReqID":"rq0","data":{"hello":"there\/you"},"pid":4242,"userAgent":"PHP\/PixlIPCClient\/var\/www"}"#);
    std::thread::sleep(Duration::from_millis(50));
    conn.send_raw(b"\n");
    // The echo sends the data back as the client wrote it (escapes included); what a client
    // parses is the same value the original's re-serialized reply gives.
    let reply = conn.read_line();
    assert_eq!(
        serde_json::from_str::<Value>(&reply).unwrap(),
        json!({"ipcReqID": "rq0", "data": {"hello": "there/you"}}),
        "{reply}"
    );
}

#[test]
fn missing_or_empty_uri_gets_the_originals_top_level_no_uri() {
    let (_dir, server) = start(&[]);
    let mut conn = server.connect();
    let expected = |id: &str| {
        format!(
            r#"{{"ipcReqID":{id},"code":"no_uri","message":"Missing required uri parameter from request"}}"#
        )
    };
    assert_eq!(
        conn.call(r#"{"ipcReqID":"rq0","data":{}}"#),
        expected("\"rq0\"")
    );
    assert_eq!(
        conn.call(r#"{"ipcReqID":"rq1","uri":""}"#),
        expected("\"rq1\"")
    );
    assert_eq!(conn.call(r#"{"uri":null}"#), expected("null"));
}

#[test]
fn request_without_id_is_answered_with_null_id() {
    let (_dir, server) = start(&[]);
    let mut conn = server.connect();
    assert_eq!(
        conn.call(r#"{"uri":"/ipcserver/test/echo","data":5}"#),
        r#"{"ipcReqID":null,"data":5}"#
    );
}

#[test]
fn echo_answers_absent_or_null_data_with_null_and_keeps_the_senders_spelling() {
    let (_dir, server) = start(&[]);
    let mut conn = server.connect();
    assert_eq!(
        conn.call(r#"{"ipcReqID":"a","uri":"/ipcserver/test/echo"}"#),
        r#"{"ipcReqID":"a","data":null}"#
    );
    assert_eq!(
        conn.call(r#"{"ipcReqID":"b","uri":"/ipcserver/test/echo","data":null}"#),
        r#"{"ipcReqID":"b","data":null}"#
    );
    assert_eq!(
        conn.call(r#"{"ipcReqID":"c","uri":"/ipcserver/test/echo","data":{"n":1e2,"s":"\u00e9"}}"#),
        r#"{"ipcReqID":"c","data":{"n":1e2,"s":"\u00e9"}}"#
    );
}

#[test]
fn large_payloads_come_back_byte_for_byte_around_the_shared_payload_size() {
    // From 8 KiB a reply's data is written from its own buffer (a vectored write of three
    // pieces), below it copied into the line: either way the line must be exactly the request's
    // data and id, in order, even with many replies queued behind each other.
    let (_dir, server) = start(&[]);
    let mut conn = server.connect();
    let sizes = [
        8 * 1024 - 40,
        8 * 1024 - 1,
        8 * 1024,
        8 * 1024 + 1,
        100 * 1024,
        3 << 20,
    ];
    let mut expected = Vec::new();
    let mut batch = String::new();
    for (i, size) in sizes.iter().enumerate() {
        // Spaces and escapes as sent: the echo must not re-encode them.
        let data = format!("[ \"{}\\u00e9\" , {i} ]", "x".repeat(*size));
        let id = format!("{{ \"n\" : {i} }}");
        batch.push_str(&format!(
            r#"{{"ipcReqID":{id},"uri":"/ipcserver/test/echo","data":{data}}}"#
        ));
        batch.push('\n');
        expected.push(format!(r#"{{"ipcReqID":{id},"data":{data}}}"#));
    }
    conn.send_raw(batch.as_bytes());
    for line in expected {
        assert_eq!(conn.read_line(), line);
    }
}

#[test]
fn data_nested_past_the_json_limit_is_refused_for_handlers_and_the_connection_lives_on() {
    let (_dir, server) = start(&[]);
    let mut conn = server.connect();
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let reply: Value = serde_json::from_str(&conn.call(&format!(
        r#"{{"ipcReqID":"deep","uri":"/ipcserver/test/delay","data":{deep}}}"#
    )))
    .unwrap();
    assert_eq!(reply["ipcReqID"], json!("deep"));
    assert_eq!(reply["code"], json!("invalid_json"), "{reply}");
    assert!(
        reply["message"].as_str().unwrap().contains("recursion"),
        "{reply}"
    );
    assert_eq!(
        conn.call(r#"{"ipcReqID":"next","uri":"/ipcserver/test/echo","data":1}"#),
        r#"{"ipcReqID":"next","data":1}"#
    );
}

#[test]
fn wrong_types_get_invalid_request() {
    let (_dir, server) = start(&[]);
    let mut conn = server.connect();
    let error = conn.read_json_after(r#"{"ipcReqID":"rq0","uri":42}"#);
    assert_eq!(error["code"], json!("invalid_request"));
    assert_eq!(error["ipcReqID"], json!("rq0"));
    assert_eq!(
        conn.call(r#"{"ipcReqID":"rq1","uri":"/ipcserver/test/echo","data":true}"#),
        r#"{"ipcReqID":"rq1","data":true}"#
    );
}

#[test]
fn blank_crlf_and_non_json_lines_are_ignored_like_the_original() {
    let (_dir, server) = start(&[]);
    let mut conn = server.connect();
    conn.send_raw(b"\n\r\nhello\n[1,2]\n   \n{\"ipcReqID\":\"rq0\",\"uri\":\"/ipcserver/test/echo\",\"data\":\"crlf\"}\r\n");
    assert_eq!(conn.read_line(), r#"{"ipcReqID":"rq0","data":"crlf"}"#);
    assert!(
        conn.is_silent_for(Duration::from_millis(200)),
        "ignored lines must get no reply"
    );
}

#[test]
fn stats_and_info_endpoints() {
    let (_dir, server) = start(&["--stats-interval", "300"]);
    let mut conn = server.connect();
    for i in 0..5 {
        conn.call(&format!(
            r#"{{"ipcReqID":"rq{i}","uri":"/ipcserver/test/echo"}}"#
        ));
    }
    conn.send("{broken");
    conn.read_line();
    std::thread::sleep(Duration::from_millis(450));
    let stats =
        conn.read_json_after(r#"{"ipcReqID":"s","uri":"/ipcserver/stats"}"#)["data"].clone();
    assert_eq!(stats["connections"], json!(1));
    assert_eq!(stats["handlers"], json!(6));
    // The first interval closed after 300 ms, holding the five requests.
    assert_eq!(stats["requests"], json!(5), "{stats}");
    assert_eq!(stats["clientOpen"], json!(1));
    assert_eq!(stats["errors"], json!(1));
    assert_eq!(stats["maxConnections"], json!(1));
    assert!(stats["duration"].as_u64().unwrap() >= 250, "{stats}");
    assert_eq!(stats["latencyMs"]["count"], json!(5));
    assert_eq!(
        stats["total"]["requests"],
        json!(6),
        "the stats request itself counts in the total"
    );
    for key in ["slowResponses", "streamBackpressure", "clientClose"] {
        assert!(stats[key].is_u64(), "{key} missing: {stats}");
    }

    let info = conn.read_json_after(r#"{"ipcReqID":"i","uri":"/ipcserver/info"}"#)["data"].clone();
    assert_eq!(info["server"], json!("pixl-ipc-server"));
    let patterns: Vec<&str> = info["handlers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["pattern"].as_str().unwrap())
        .collect();
    assert_eq!(
        patterns,
        [
            "^/ipcserver/test/echo",
            "^/ipcserver/test/delay",
            "^/ipcserver/stats$",
            "^/ipcserver/info$",
            "^/ipcserver/test/stream$",
            "^/ipcserver/stats/watch$"
        ]
    );
}

#[test]
fn one_way_requests_get_no_reply() {
    let (_dir, server) = start(&[]);
    let mut conn = server.connect();
    conn.send(r#"{"ipcReqID":"rq0","uri":"/ipcserver/test/echo","data":1,"ipcNoReply":true}"#);
    conn.send(r#"{"ipcReqID":"rq1","uri":"/nowhere","ipcNoReply":true}"#);
    assert_eq!(
        conn.call(r#"{"ipcReqID":"rq2","uri":"/ipcserver/test/echo","data":2}"#),
        r#"{"ipcReqID":"rq2","data":2}"#
    );
    assert!(conn.is_silent_for(Duration::from_millis(200)));
}

#[test]
fn close_after_reply_answers_in_flight_requests_then_closes() {
    let (_dir, server) = start(&[]);
    let mut conn = server.connect();
    conn.send(r#"{"ipcReqID":"rq0","uri":"/ipcserver/test/delay","data":{"delay":200}}"#);
    conn.send(r#"{"ipcReqID":"rq1","uri":"/ipcserver/test/echo","data":"bye","ipcClose":true}"#);
    conn.send(r#"{"ipcReqID":"rq2","uri":"/ipcserver/test/echo","data":"never read"}"#);
    assert_eq!(conn.read_line(), r#"{"ipcReqID":"rq1","data":"bye"}"#);
    assert_eq!(
        conn.read_line(),
        r#"{"ipcReqID":"rq0","data":{"delay":200}}"#
    );
    conn.expect_eof();
}

#[test]
fn connection_limit_refuses_with_a_clear_error_and_keeps_existing_connections() {
    let (_dir, server) = start(&["--max-connections", "2", "--max-connections-per-uid", "2"]);
    let mut first = server.connect();
    let mut second = server.connect();
    assert_eq!(
        first.call(r#"{"ipcReqID":"a","uri":"/ipcserver/test/echo"}"#),
        r#"{"ipcReqID":"a","data":null}"#
    );
    assert_eq!(
        second.call(r#"{"ipcReqID":"b","uri":"/ipcserver/test/echo"}"#),
        r#"{"ipcReqID":"b","data":null}"#
    );
    let mut third = server.connect();
    let refusal = third.read_json();
    assert_eq!(refusal["code"], json!("too_many_connections"));
    assert_eq!(refusal["ipcReqID"], Value::Null);
    third.expect_eof();
    assert_eq!(
        first.call(r#"{"ipcReqID":"c","uri":"/ipcserver/test/echo"}"#),
        r#"{"ipcReqID":"c","data":null}"#
    );
    drop(second);
    common::eventually("a slot frees up", || {
        let mut next = server.connect();
        // Until the slot is free the server refuses and closes at once, so this write may meet
        // a closed socket (EPIPE): that is "not yet", not a failure.
        let request = b"{\"ipcReqID\":\"d\",\"uri\":\"/ipcserver/test/echo\"}\n";
        if std::io::Write::write_all(&mut next.stream(), request).is_err() {
            return false;
        }
        next.read_json()["ipcReqID"] == json!("d")
    });
}

#[test]
fn a_client_that_never_reads_is_paused_and_others_are_served() {
    let (_dir, server) = start(&["--max-outbound-bytes", "1048576"]);
    let baseline = server.rss_kib();
    let stalled = server.connect();
    let request = json!({"ipcReqID":"x","uri":"/ipcserver/test/echo","data":sized_message(100)})
        .to_string()
        + "\n";
    // Write ~100 MiB of echo requests from a thread and never read a reply. The server must
    // stop reading this client (so the writer thread eventually blocks) instead of buffering.
    let mut writer = stalled.stream().try_clone().unwrap();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = sent.clone();
    std::thread::spawn(move || {
        use std::io::Write;
        for _ in 0..1000 {
            if writer.write_all(request.as_bytes()).is_err() {
                break;
            }
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    std::thread::sleep(Duration::from_millis(1500));
    let accepted = sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        accepted < 1000,
        "the server kept reading a client that does not read ({accepted} requests)"
    );

    let mut other = server.connect();
    assert_eq!(
        other.call(r#"{"ipcReqID":"ok","uri":"/ipcserver/test/echo","data":1}"#),
        r#"{"ipcReqID":"ok","data":1}"#
    );
    let stats =
        other.read_json_after(r#"{"ipcReqID":"s","uri":"/ipcserver/stats"}"#)["data"].clone();
    assert!(
        stats["current"]["streamBackpressure"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    let grown_mib = server.rss_kib().saturating_sub(baseline) / 1024;
    assert!(
        grown_mib < 64,
        "server memory grew by {grown_mib} MiB for a client that never reads"
    );
    drop(stalled);
}

#[test]
fn bad_delays_get_invalid_request_never_a_panic() {
    let (_dir, server) = start(&[]);
    let mut conn = server.connect();
    for (index, bad) in [
        "1e308",
        "-5",
        "-1e308",
        "\"100\"",
        "\"NaN\"",
        "18446744073709551615",
        "3600001",
        "true",
        "[1]",
    ]
    .iter()
    .enumerate()
    {
        let reply: Value = serde_json::from_str(&conn.call(&format!(
            r#"{{"ipcReqID":"d{index}","uri":"/ipcserver/test/delay","data":{{"delay":{bad}}}}}"#
        )))
        .unwrap();
        assert_eq!(
            reply["ipcReqID"],
            json!(format!("d{index}")),
            "{bad}: {reply}"
        );
        assert_eq!(
            reply["data"]["code"],
            json!("invalid_request"),
            "{bad}: {reply}"
        );
        assert!(
            reply["data"]["message"]
                .as_str()
                .unwrap()
                .contains("from 0 to 3600000"),
            "{bad}: {reply}"
        );
    }
    // Zero, fractions and a missing delay still work.
    for (request, expected) in [
        (r#"{"delay":0}"#, r#"{"delay":0}"#),
        (r#"{"delay":1.5}"#, r#"{"delay":1.5}"#),
        (r#"{}"#, r#"{"delay":0}"#),
    ] {
        assert_eq!(
            conn.call(&format!(
                r#"{{"ipcReqID":"ok","uri":"/ipcserver/test/delay","data":{request}}}"#
            )),
            format!(r#"{{"ipcReqID":"ok","data":{expected}}}"#)
        );
    }
}

/// CPU time (user + system) the process has used, in clock ticks (1/100 s).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start after its closing ')'.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn in_the_low_latency_mode_every_byte_is_read_the_peer_is_seen_leaving_and_idle_or_trickling_costs_nothing(
) {
    // The longest window, so the pieces below arrive both inside it and after it.
    let (_dir, server) = start(&["--spin-us", "1000"]);
    let mut conn = server.connect();
    // A line in pieces: 100 us apart (inside the window), then 20 ms apart (past it).
    conn.send_raw(br#"{"ipcReqID":1,"uri":"/ipcserver/test/echo","#);
    std::thread::sleep(Duration::from_micros(100));
    conn.send_raw(br#""data":{"a":"#);
    std::thread::sleep(Duration::from_millis(20));
    conn.send_raw(b"1}}\n");
    assert_eq!(conn.read_line(), r#"{"ipcReqID":1,"data":{"a":1}}"#);
    // Pipelined lines and a 100K message that takes many reads.
    let big = json!({"ipcReqID": 2, "uri": "/ipcserver/test/echo", "data": sized_message(100)});
    let mut batch = format!("{big}\n");
    for id in 3..=50 {
        batch.push_str(&format!(
            "{{\"ipcReqID\":{id},\"uri\":\"/ipcserver/test/echo\",\"data\":{id}}}\n"
        ));
    }
    conn.send_raw(batch.as_bytes());
    let first = conn.read_json();
    assert_eq!(first["ipcReqID"], json!(2));
    assert_eq!(first["data"], sized_message(100));
    for id in 3..=50 {
        assert_eq!(
            conn.read_line(),
            format!("{{\"ipcReqID\":{id},\"data\":{id}}}")
        );
    }
    // Idle: the window has passed, so the worker parks again rather than spinning.
    std::thread::sleep(Duration::from_millis(50));
    let before = cpu_ticks(server.pid().as_raw() as u32);
    std::thread::sleep(Duration::from_millis(500));
    let spent = cpu_ticks(server.pid().as_raw() as u32) - before;
    assert!(spent <= 5, "{spent} ticks of CPU in 500 ms of idle");
    // A line trickled a byte every 200 us: only a complete line opens a window, so this costs
    // no spinning (with every byte opening one, the worker spun the whole time).
    let before = cpu_ticks(server.pid().as_raw() as u32);
    let started = std::time::Instant::now();
    conn.send_raw(br#"{"ipcReqID":52,"uri":"/ipcserver/test/echo","data":""#);
    while started.elapsed() < Duration::from_millis(600) {
        conn.send_raw(b"x");
        std::thread::sleep(Duration::from_micros(200));
    }
    let spent = cpu_ticks(server.pid().as_raw() as u32) - before;
    conn.send_raw(b"\"}\n");
    assert!(conn
        .read_line()
        .starts_with(r#"{"ipcReqID":52,"data":"xxx"#));
    assert!(
        spent <= 20,
        "{spent} ticks of CPU in 600 ms of a trickled line"
    );
    // A peer that leaves inside the window is seen leaving: the server ends the connection.
    assert_eq!(
        conn.call(r#"{"ipcReqID":51,"uri":"/ipcserver/test/echo","data":51}"#),
        r#"{"ipcReqID":51,"data":51}"#
    );
    conn.stream().shutdown(std::net::Shutdown::Write).unwrap();
    conn.expect_eof();
}

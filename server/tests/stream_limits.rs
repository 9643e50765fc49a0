//! Streams against the connection's and the server's limits, on the real binary: a cancel still
//! gets through while the connection's streams hold every request slot or while the server-wide
//! budget is spent, and streams on many connections that read nothing stay within that budget.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{Conn, RssSampler, ServerProcess};
use serde_json::{json, Value};

/// Reads lines for up to `within` and returns the final line for `id` (one without
/// `ipcMore`), or `None` if none came: for endless streams (which keep sending), where waiting
/// for a final line that is never sent would never end.
fn final_line_within(conn: &mut Conn, id: &Value, within: Duration) -> Option<Value> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let line = conn.read_json();
        if line["ipcReqID"] == *id && line.get("ipcMore").is_none() {
            return Some(line);
        }
    }
    None
}

/// The `code` of each final line (one without `ipcMore`) read within `within`, by the id's
/// JSON text, until `count` streams have ended.
fn final_codes_within(conn: &mut Conn, count: usize, within: Duration) -> HashMap<String, Value> {
    let mut finals = HashMap::new();
    let deadline = Instant::now() + within;
    while finals.len() < count && Instant::now() < deadline {
        let line = conn.read_json();
        if line.get("ipcMore").is_none() {
            finals.insert(line["ipcReqID"].to_string(), line["code"].clone());
        }
    }
    finals
}

/// `/ipcserver/stats/watch` every 20 ms, as a stream with id `id`.
fn watch(id: u32) -> String {
    format!(
        r#"{{"uri":"/ipcserver/stats/watch","ipcReqID":{id},"data":{{"interval":20}},"ipcStream":true}}"#
    )
}

#[test]
fn a_cancel_gets_through_while_streams_hold_every_request_slot() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("s.sock"), &["--max-in-flight", "2"]);
    let mut conn = server.connect();
    conn.send(&watch(1));
    conn.send(&watch(2));
    let _ = conn.read_json();
    let _ = conn.read_json();
    // Both slots are taken by endless streams: the cancel is the only way to end one.
    conn.send(r#"{"ipcReqID":1,"ipcCancel":true}"#);
    let last = final_line_within(&mut conn, &json!(1), Duration::from_secs(3));
    assert_eq!(
        last.as_ref().map(|line| &line["code"]),
        Some(&json!("cancelled")),
        "stream 1 was not cancelled: {last:?}"
    );
    // Its slot is free again: a plain call runs beside stream 2.
    conn.send(r#"{"uri":"/ipcserver/test/echo","ipcReqID":"e","data":"free"}"#);
    let reply = loop {
        let line = conn.read_json();
        if line["ipcReqID"] == json!("e") {
            break line;
        }
    };
    assert_eq!(reply, json!({"ipcReqID": "e", "data": "free"}));
    conn.send(r#"{"ipcReqID":2,"ipcCancel":true}"#);
    let last = final_line_within(&mut conn, &json!(2), Duration::from_secs(3));
    assert_eq!(last.unwrap()["code"], json!("cancelled"));
}

#[test]
fn a_cancel_gets_through_while_the_server_wide_budget_is_spent() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(
        &dir.path().join("s.sock"),
        &["--max-held-bytes-total", "1048576"],
    );
    let mut watcher = server.connect();
    watcher.send(&watch(1));
    let _ = watcher.read_json();
    // Another peer spends the server's budget for a minute: 2 MiB of data to a slow handler.
    let mut hog = server.connect();
    let pad = "p".repeat(2 << 20);
    hog.send(&format!(
        r#"{{"uri":"/ipcserver/test/delay","ipcReqID":"hog","data":{{"delay":60000,"pad":"{pad}"}}}}"#
    ));
    std::thread::sleep(Duration::from_millis(500));
    // A running stream holds no charge (only a stream still starting does), so the call is
    // taken and answered at once; and the cancel behind it gets through.
    watcher.send(r#"{"uri":"/ipcserver/test/echo","ipcReqID":"e","data":"later"}"#);
    watcher.send(r#"{"ipcReqID":1,"ipcCancel":true}"#);
    let (mut cancelled, mut answered) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(3);
    while (cancelled.is_none() || answered.is_none()) && Instant::now() < deadline {
        let line = watcher.read_json();
        if line["ipcReqID"] == json!("e") {
            answered = Some(line);
        } else if line["ipcReqID"] == json!(1) && line.get("ipcMore").is_none() {
            cancelled = Some(line);
        }
    }
    assert_eq!(
        cancelled.as_ref().map(|line| &line["code"]),
        Some(&json!("cancelled")),
        "the watch was not cancelled: {cancelled:?}"
    );
    assert_eq!(answered, Some(json!({"ipcReqID": "e", "data": "later"})));
}

#[test]
fn streams_on_many_connections_that_read_nothing_stay_within_the_server_wide_budget() {
    const CONNECTIONS: usize = 32;
    const ITEMS: usize = 80;
    let dir = tempfile::tempdir().unwrap();
    // Each connection alone may hold 4 MiB of unread replies, all of them together 2 MiB.
    let server = ServerProcess::start(
        &dir.path().join("s.sock"),
        &[
            "--max-held-bytes-total",
            "2097152",
            "--max-outbound-bytes",
            "4194304",
        ],
    );
    let before = server.rss_kib();
    let sampler = RssSampler::start(server.pid());
    let mut conns: Vec<Conn> = (0..CONNECTIONS)
        .map(|k| {
            let mut conn = server.connect();
            conn.send(&format!(
                r#"{{"uri":"/ipcserver/test/stream","ipcReqID":{k},"data":{{"count":{ITEMS},"size":65536}},"ipcStream":true}}"#
            ));
            conn
        })
        .collect();
    server.wait_until_idle(Duration::from_millis(300));
    let grown_mib = sampler.peak_kib().saturating_sub(before) / 1024;
    // Bound: the 2 MiB budget, one 64 KiB item per connection past it, and slack. Without the
    // server-wide budget each connection would fill its own 4 MiB: 128 MiB.
    assert!(
        grown_mib < 32,
        "{CONNECTIONS} connections reading nothing made the server grow by {grown_mib} MiB"
    );
    // Every stream still makes progress once its reader reads.
    for (k, conn) in conns.iter_mut().enumerate() {
        for i in 0..ITEMS {
            let line = conn.read_json();
            assert_eq!(line["data"]["i"], json!(i), "connection {k}");
        }
        assert_eq!(
            conn.read_json(),
            json!({"ipcReqID": k, "data": {"done": ITEMS}})
        );
    }
}

#[test]
fn a_cancel_that_overtakes_its_waiting_stream_request_still_ends_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(
        &dir.path().join("s.sock"),
        &["--max-held-bytes-total", "1048576"],
    );
    let mut conn = server.connect();
    conn.send(&watch(1));
    let _ = conn.read_json();
    let mut hog = server.connect();
    let pad = "p".repeat(2 << 20);
    hog.send(&format!(
        r#"{{"uri":"/ipcserver/test/delay","ipcReqID":"hog","data":{{"delay":60000,"pad":"{pad}"}}}}"#
    ));
    std::thread::sleep(Duration::from_millis(500));
    // With the budget spent, stream 2's request may wait to be admitted; its cancel, right
    // behind it, must end it once it starts rather than be lost as the cancel of nothing.
    conn.send(&watch(2));
    conn.send(r#"{"ipcReqID":2,"ipcCancel":true}"#);
    std::thread::sleep(Duration::from_millis(200));
    conn.send(r#"{"ipcReqID":1,"ipcCancel":true}"#);
    let finals = final_codes_within(&mut conn, 2, Duration::from_secs(3));
    assert_eq!(finals.get("1"), Some(&json!("cancelled")), "{finals:?}");
    assert_eq!(finals.get("2"), Some(&json!("cancelled")), "{finals:?}");
    assert!(conn.is_silent_for(Duration::from_millis(300)));
}

#[test]
fn a_cancel_sent_right_after_its_stream_request_still_ends_it_while_the_slots_are_full() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("s.sock"), &["--max-in-flight", "1"]);
    let mut conn = server.connect();
    conn.send(&watch(1));
    let _ = conn.read_json();
    // The one request slot is taken by stream 1 (streams take none, so stream 2 starts at
    // once), and stream 2's cancel comes right behind it (a client that gave up at once).
    conn.send(&watch(2));
    conn.send(r#"{"ipcReqID":2,"ipcCancel":true}"#);
    std::thread::sleep(Duration::from_millis(200));
    conn.send(r#"{"ipcReqID":1,"ipcCancel":true}"#);
    let finals = final_codes_within(&mut conn, 2, Duration::from_secs(3));
    assert_eq!(finals.get("1"), Some(&json!("cancelled")), "{finals:?}");
    assert_eq!(finals.get("2"), Some(&json!("cancelled")), "{finals:?}");
    // Nothing runs any more: no stray items.
    assert!(conn.is_silent_for(Duration::from_millis(200)));
}

#[test]
fn many_paced_streams_of_large_items_stay_within_the_connections_budget() {
    const STREAMS: usize = 128;
    let dir = tempfile::tempdir().unwrap();
    // 16 MiB of unread replies (the default) and at most 16 streams per connection: the bound
    // on what a reader that reads nothing costs is 16 MiB + 16 x the largest item.
    let server = ServerProcess::start(&dir.path().join("s.sock"), &["--max-streams", "16"]);
    let before = server.rss_kib();
    let sampler = RssSampler::start(server.pid());
    let mut conn = server.connect();
    for k in 0..STREAMS {
        conn.send(&format!(
            r#"{{"uri":"/ipcserver/test/stream","ipcReqID":{k},"data":{{"count":3,"interval":1000,"size":1048576}},"ipcStream":true}}"#
        ));
    }
    // Every stream passes the room check while the queue is empty, then all items come at
    // once a second later.
    std::thread::sleep(Duration::from_millis(2500));
    server.wait_until_idle(Duration::from_millis(300));
    let grown_mib = sampler.peak_kib().saturating_sub(before) / 1024;
    // The bound (32 MiB) plus the allocator's slack and the item being written.
    assert!(
        grown_mib < 56,
        "{STREAMS} streams of 1 MiB items to a reader that reads nothing made the server grow by {grown_mib} MiB (bound 16 MiB + 16 x 1 MiB)"
    );
    // The streams past the limit were refused, each with one line.
    let refused = (0..STREAMS - 16)
        .filter(|_| {
            let line = loop {
                let line = conn.read_json();
                if line.get("ipcMore").is_none() {
                    break line;
                }
            };
            line["code"] == json!("invalid_request")
        })
        .count();
    assert_eq!(refused, STREAMS - 16);
}

//! Peer and server faults against the real binary: handlers that never finish, half-sent lines,
//! refused peers, connection churn, and a shutdown under load. Every reply accepted is counted.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Conn, ServerProcess};
use nix::sys::signal::Signal;
use serde_json::json;

fn start(args: &[&str]) -> (tempfile::TempDir, ServerProcess) {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("faults.sock"), args);
    (dir, server)
}

#[test]
fn a_handler_that_does_not_finish_is_cancelled_with_handler_timeout() {
    let (_dir, server) = start(&["--handler-timeout-ms", "200"]);
    let mut conn = server.connect();
    let started = Instant::now();
    let reply = conn.read_json_after(
        r#"{"ipcReqID":"slow","uri":"/ipcserver/test/delay","data":{"delay":5000}}"#,
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered at the timeout, not after the handler"
    );
    assert_eq!(reply["ipcReqID"], json!("slow"));
    assert_eq!(reply["data"]["code"], json!("handler_timeout"));
    assert_eq!(
        reply["data"]["message"],
        json!("handler 'IPCServer' did not finish within 200 ms")
    );
    // Fast handlers are untouched and the connection carries on.
    assert_eq!(
        conn.call(r#"{"ipcReqID":"ok","uri":"/ipcserver/test/delay","data":{"delay":50}}"#),
        r#"{"ipcReqID":"ok","data":{"delay":50}}"#
    );
}

#[test]
fn a_half_sent_line_that_stalls_is_answered_and_closed_but_a_slow_one_is_not() {
    let (_dir, server) = start(&["--partial-message-timeout-ms", "300"]);
    // Progressing slowly (a byte every 100 ms, 600 ms in all) is not stalling.
    let mut slow = server.connect();
    let line = br#"{"ipcReqID":"s","uri":"/ipcserver/test/echo","data":1}"#;
    for chunk in line.chunks(line.len() / 6 + 1) {
        slow.send_raw(chunk);
        std::thread::sleep(Duration::from_millis(100));
    }
    slow.send_raw(b"\n");
    assert_eq!(slow.read_line(), r#"{"ipcReqID":"s","data":1}"#);

    let mut stalled = server.connect();
    stalled.send_raw(br#"{"ipcReqID":"x","uri":"/ipcserver/te"#);
    let started = Instant::now();
    let error = stalled.read_json();
    assert_eq!(error["code"], json!("partial_message_timeout"), "{error}");
    assert!(started.elapsed() >= Duration::from_millis(250));
    stalled.expect_eof();
    // Everyone else is still served.
    assert_eq!(
        slow.call(r#"{"ipcReqID":"t","uri":"/ipcserver/test/echo","data":2}"#),
        r#"{"ipcReqID":"t","data":2}"#
    );
}

#[test]
fn peers_outside_the_uid_gid_allow_list_are_refused_before_any_request() {
    let uid = nix::unistd::geteuid().as_raw();
    let gid = nix::unistd::getegid().as_raw();
    let other_uid = if uid == 4242 { 4243 } else { 4242 };
    let (_dir, server) = start(&["--allow-uid", &other_uid.to_string()]);
    let mut refused = server.connect();
    let error = refused.read_json();
    assert_eq!(error["code"], json!("peer_not_allowed"));
    assert_eq!(
        error["message"],
        json!(format!("uid {uid} / gid {gid} may not use this server"))
    );
    refused.expect_eof();

    let (_dir2, by_gid) = start(&[
        "--allow-uid",
        &other_uid.to_string(),
        "--allow-gid",
        &gid.to_string(),
    ]);
    let mut allowed = by_gid.connect();
    assert_eq!(
        allowed.call(r#"{"ipcReqID":"a","uri":"/ipcserver/test/echo","data":1}"#),
        r#"{"ipcReqID":"a","data":1}"#
    );
    let log = server.stop().1;
    assert!(log.contains("peer not on the uid/gid allow-list"), "{log}");
}

#[test]
fn another_uid_is_refused_and_counted_when_the_test_can_switch_users() {
    if !nix::unistd::geteuid().is_root() {
        // Without root the test cannot run a client as another user; the allow-list logic is
        // covered by the test above with this process's own uid.
        eprintln!("note: not root, so no client runs under another uid here");
        assert!(Command::new("id").status().unwrap().success());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("uids.sock");
    let server = ServerProcess::start(&path, &["--chmod", "777", "--allow-uid", "0"]);
    let cli = common::server_binary().with_file_name("pixl-ipc");
    assert!(
        cli.exists(),
        "{} is built by cargo test --workspace",
        cli.display()
    );
    let output = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(&cli)
        .args([
            "--socket",
            path.to_str().unwrap(),
            "--timeout",
            "2s",
            "call",
            "/ipcserver/test/echo",
            "{}",
        ])
        .output()
        .expect("setpriv (util-linux) runs the CLI as nobody");
    assert!(!output.status.success(), "nobody must not be served");
    let mut root = server.connect();
    assert_eq!(
        root.call(r#"{"ipcReqID":"r","uri":"/ipcserver/test/echo","data":1}"#),
        r#"{"ipcReqID":"r","data":1}"#
    );
    let stats =
        root.read_json_after(r#"{"ipcReqID":"s","uri":"/ipcserver/stats"}"#)["data"].clone();
    assert_eq!(stats["total"]["rejectedPeers"], json!(1), "{stats}");
}

#[test]
fn ten_thousand_connections_opened_and_closed_leak_no_descriptors() {
    let (_dir, server) = start(&[]);
    let mut warm = server.connect();
    warm.call(r#"{"ipcReqID":"w","uri":"/ipcserver/test/echo"}"#);
    let fds_before = server.open_fds();
    let rss_before = server.rss_kib();
    for i in 0..10_000 {
        let mut conn = Conn::open(&server.path);
        if i % 100 == 0 {
            // Some of them do real work before closing.
            conn.call(r#"{"ipcReqID":"c","uri":"/ipcserver/test/echo","data":1}"#);
        }
    }
    // Closed connections may still wait in the accept backlog: wait until every one of them
    // has been accepted and closed, then compare.
    common::eventually("the server has accepted and closed all of them", || {
        let stats = warm.read_json_after(r#"{"ipcReqID":"s","uri":"/ipcserver/stats"}"#);
        stats["data"]["total"]["clientClose"] == json!(10_000)
            && stats["data"]["connections"] == json!(1)
    });
    common::eventually("file descriptors back to where they were", || {
        server.open_fds() == fds_before
    });
    let grown = server.rss_kib().saturating_sub(rss_before);
    assert!(
        grown < 16 * 1024,
        "RSS grew by {grown} KiB over 10,000 connections"
    );
}

#[test]
fn sigterm_with_a_thousand_requests_in_flight_answers_every_one() {
    let (_dir, server) = start(&["--exit-timeout-ms", "5000"]);
    let mut conns: Vec<Conn> = (0..10).map(|_| server.connect()).collect();
    for (c, conn) in conns.iter_mut().enumerate() {
        let mut batch = String::new();
        for i in 0..100 {
            batch.push_str(&format!(
                r#"{{"ipcReqID":"c{c}r{i}","uri":"/ipcserver/test/delay","data":{{"delay":{}}}}}"#,
                300 + i
            ));
            batch.push('\n');
        }
        conn.send_raw(batch.as_bytes());
    }
    // Make sure all 1,000 were read before the signal.
    let mut probe = server.connect();
    common::eventually("1,000 requests accepted", || {
        let stats = probe.read_json_after(r#"{"ipcReqID":"p","uri":"/ipcserver/stats"}"#);
        stats["data"]["total"]["requests"].as_u64().unwrap() >= 1_000
    });
    drop(probe);
    server.signal(Signal::SIGTERM);
    let mut answered = 0;
    for (c, conn) in conns.iter_mut().enumerate() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100 {
            let reply = conn.read_json();
            let id = reply["ipcReqID"].as_str().unwrap().to_owned();
            assert!(id.starts_with(&format!("c{c}r")), "{id}");
            assert!(seen.insert(id), "answered twice");
            answered += 1;
        }
        conn.expect_eof();
    }
    assert_eq!(answered, 1_000);
    let mut server = server;
    let (status, log) = server.wait();
    assert!(status.success());
    assert!(log.contains("drained=true"), "{log}");
}

//! What one connection, and sixteen together, can make the server hold, measured as the
//! server's peak RSS (sampled every 5 ms) against the real binary with default limits.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use common::{RssSampler, ServerProcess, WsConn};
use serde_json::{json, Value};

const MIB: u64 = 1024;

fn start(args: &[&str]) -> (tempfile::TempDir, ServerProcess) {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("memory.sock"), args);
    (dir, server)
}

/// A delay request (a handler that parses its data into a `Value`) carrying `pad`.
fn delay_line(id: usize, delay_ms: u64, pad: &str) -> String {
    format!(
        "{{\"ipcReqID\":{id},\"uri\":\"/ipcserver/test/delay\",\"data\":{{\"delay\":{delay_ms},\"pad\":{pad}}}}}\n"
    )
}

#[test]
fn data_that_would_parse_into_gigabytes_is_refused_without_parsing() {
    let (_dir, server) = start(&[]);
    let before = server.rss_kib();
    let sampler = RssSampler::start(server.pid());
    let mut conn = server.connect();
    // 6 MiB of `[0,0,...]`: about half a GiB as a Value tree.
    let dense = format!("[{}0]", "0,".repeat(3 * 1024 * 1024));
    conn.send_raw(delay_line(1, 0, &dense).as_bytes());
    let reply: Value = conn.read_json();
    let growth = sampler.peak_kib().saturating_sub(before) / MIB;
    assert_eq!(reply["ipcReqID"], json!(1));
    assert_eq!(reply["code"], json!("message_too_large"), "{reply}");
    assert!(growth < 128, "RSS grew by {growth} MiB");
    // The connection carries on.
    assert_eq!(
        conn.call(r#"{"ipcReqID":2,"uri":"/ipcserver/test/delay","data":{"delay":1}}"#),
        r#"{"ipcReqID":2,"data":{"delay":1}}"#
    );
}

/// Sends `count` requests of `pad_mib` MiB each to a handler that takes a minute, until all
/// are sent or the server stops taking them (a write blocks for 3 s); returns the
/// still-open connection and how many were sent whole.
fn send_until_paused(path: &Path, count: usize, pad_mib: usize) -> (UnixStream, usize) {
    let pad = format!("\"{}\"", "p".repeat(pad_mib * 1024 * 1024));
    let mut stream = UnixStream::connect(path).unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let sent = (0..count)
        .take_while(|id| {
            stream
                .write_all(delay_line(*id, 60_000, &pad).as_bytes())
                .is_ok()
        })
        .count();
    (stream, sent)
}

#[test]
fn slow_requests_on_one_connection_hold_at_most_its_budget() {
    let (_dir, server) = start(&[]);
    let before = server.rss_kib();
    let sampler = RssSampler::start(server.pid());
    // 32 requests of 4 MiB (128 MiB) to a handler that takes a minute: each would hold its
    // text and its Value while it runs.
    let (stream, sent) = send_until_paused(&server.path, 32, 4);
    std::thread::sleep(Duration::from_millis(200));
    let growth = sampler.peak_kib().saturating_sub(before) / MIB;
    eprintln!("one connection: {sent} requests sent whole, RSS grew by {growth} MiB");
    assert!(sent < 32, "the server never stopped reading");
    assert!(growth < 128, "RSS grew by {growth} MiB");
    drop(stream);
}

#[test]
fn tiny_replies_to_a_peer_that_never_reads_count_what_each_queued_line_costs() {
    // The reply limit (16 MiB) counts each queued line as its bytes plus a fixed overhead (the
    // queue slot, buffer header, allocator rounding: about 120 bytes measured). Counted as its
    // bytes alone, a million 24-byte echo replies fit under it and held about 90 MiB.
    let (_dir, server) = start(&[]);
    let before = server.rss_kib();
    let sampler = RssSampler::start(server.pid());
    let line = "{\"ipcReqID\":1,\"uri\":\"/ipcserver/test/echo\",\"data\":1}\n";
    let batch = line.repeat(1000);
    let mut stream = UnixStream::connect(&server.path).unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    // Until the server stops reading (a write blocks for 3 s); never read a reply.
    let batches = (0..2000)
        .take_while(|_| stream.write_all(batch.as_bytes()).is_ok())
        .count();
    std::thread::sleep(Duration::from_millis(200));
    let growth = sampler.peak_kib().saturating_sub(before) / MIB;
    eprintln!("{batches}000 tiny echoes sent, none read: RSS grew by {growth} MiB");
    assert!(batches < 2000, "the server never stopped reading");
    // The reply limit, twice over for what the allocator keeps, and the kernel's and read
    // buffer's share.
    assert!(growth < 40, "RSS grew by {growth} MiB");
    drop(stream);
}

/// Runs `connections` senders at once, each `send` returning its still-open connection and how
/// many requests it sent whole; returns how many were sent in all and the server's peak RSS
/// growth meanwhile, in MiB. The connections close only after the peak is taken.
fn sixteen_at_once<C: Send + 'static>(
    server: &ServerProcess,
    send: impl Fn() -> (C, usize) + Send + Sync + 'static,
) -> (usize, u64) {
    let before = server.rss_kib();
    let sampler = RssSampler::start(server.pid());
    let send = std::sync::Arc::new(send);
    let senders: Vec<_> = (0..16)
        .map(|_| {
            let send = send.clone();
            std::thread::spawn(move || send())
        })
        .collect();
    let connections: Vec<(C, usize)> = senders
        .into_iter()
        .map(|sender| sender.join().unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let growth = sampler.peak_kib().saturating_sub(before) / MIB;
    let sent = connections.iter().map(|(_, sent)| sent).sum();
    drop(connections);
    (sent, growth)
}

#[test]
fn sixteen_connections_together_stay_under_a_gigabyte() {
    let (_dir, server) = start(&[]);
    // 16 connections x 20 requests of 4 MiB: 1.25 GiB sent, to a handler that takes a minute.
    let path = server.path.clone();
    let (sent, growth) = sixteen_at_once(&server, move || send_until_paused(&path, 20, 4));
    eprintln!("sixteen connections: {sent} requests sent whole, RSS grew by {growth} MiB");
    assert!(growth < 1024, "RSS grew by {growth} MiB");
}

/// Like [`send_until_paused`], over a WebSocket (binary frames).
fn ws_send_until_paused(url: &str, count: usize, pad_mib: usize) -> (WsConn, usize) {
    let pad = format!("\"{}\"", "p".repeat(pad_mib * 1024 * 1024));
    let mut ws = WsConn::open(url);
    ws.tcp()
        .set_write_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let sent = (0..count)
        .take_while(|id| ws.try_send_binary(delay_line(*id, 60_000, &pad).trim_end().as_bytes()))
        .count();
    (ws, sent)
}

#[test]
fn sixteen_websocket_connections_together_stay_under_a_gigabyte() {
    let (_dir, server) = start(&["--ws", "127.0.0.1:0"]);
    // 16 connections x 20 requests of 4 MiB: 1.25 GiB sent, to a handler that takes a minute.
    let url = server.ws_url().unwrap();
    let (sent, growth) = sixteen_at_once(&server, move || ws_send_until_paused(&url, 20, 4));
    eprintln!(
        "sixteen WebSocket connections: {sent} requests sent whole, RSS grew by {growth} MiB"
    );
    assert!(growth < 1024, "RSS grew by {growth} MiB");
}

#[test]
fn every_field_of_a_request_is_charged_not_only_its_data() {
    let (_dir, server) = start(&[]);
    let before = server.rss_kib();
    let sampler = RssSampler::start(server.pid());
    let mut stream = UnixStream::connect(&server.path).unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    // 1 MiB each of id, uri (the delay route matches by prefix) and user agent, tiny data.
    let big = "x".repeat(1024 * 1024);
    let sent = (0..60)
        .take_while(|i| {
            let line = format!(
                "{{\"ipcReqID\":\"{i}{big}\",\"uri\":\"/ipcserver/test/delay{big}\",\"userAgent\":\"{big}\",\"data\":{{\"delay\":60000}}}}\n"
            );
            stream.write_all(line.as_bytes()).is_ok()
        })
        .count();
    std::thread::sleep(Duration::from_millis(200));
    let growth = sampler.peak_kib().saturating_sub(before) / MIB;
    eprintln!("{sent} requests of 3 MiB of fields sent whole; RSS grew by {growth} MiB");
    assert!(sent < 60, "the server never stopped reading");
    assert!(growth < 64, "RSS grew by {growth} MiB");

    // An id that would parse into a large tree is priced like data: refused unparsed.
    let mut conn = common::Conn::open(&server.path);
    let dense_id = format!("[{}0]", "0,".repeat(512 * 1024));
    conn.send_raw(
        format!("{{\"ipcReqID\":{dense_id},\"uri\":\"/ipcserver/test/delay\",\"data\":{{\"delay\":1}}}}\n")
            .as_bytes(),
    );
    let reply = conn.read_json();
    assert_eq!(reply["code"], json!("message_too_large"), "{reply}");
    drop(stream);
}

#[test]
fn a_huge_pid_or_user_agent_of_the_wrong_type_is_skipped_without_building_it() {
    let (_dir, server) = start(&[]);
    let before = server.rss_kib();
    let sampler = RssSampler::start(server.pid());
    let mut conn = common::Conn::open(&server.path);
    let dense = format!("[{}0]", "0,".repeat(3 * 1024 * 1024));
    for field in ["pid", "userAgent"] {
        conn.send_raw(
            format!("{{\"ipcReqID\":1,\"uri\":\"/ipcserver/test/echo\",\"{field}\":{dense},\"data\":1}}\n")
                .as_bytes(),
        );
        let reply = conn.read_json();
        assert_eq!(reply, json!({"ipcReqID": 1, "data": 1}));
    }
    let growth = sampler.peak_kib().saturating_sub(before) / MIB;
    // The 6 MiB line is buffered and scanned; as a Value tree it took ~35 times that.
    assert!(growth < 48, "RSS grew by {growth} MiB");
}

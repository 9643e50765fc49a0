//! What only the WebSocket transport has, against the real binary: access checks at the
//! upgrade (raw HTTP), keepalive and idle timeout, frame types, several messages per frame, the
//! connection limit, and the connection context handlers see.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{LibServer, ServerProcess, Wire, WsConn};
use pixl_ipc_server::{HandlerResult, Request, RequestContext, Transport, WebSocketConfig};
use serde_json::json;

fn start(args: &[&str]) -> (tempfile::TempDir, ServerProcess, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut all = vec!["--ws", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let server = ServerProcess::start(&dir.path().join("ws.sock"), &all);
    let url = server.ws_url().unwrap();
    (dir, server, url)
}

fn host_of(url: &str) -> &str {
    url.trim_start_matches("ws://").trim_end_matches('/')
}

/// Sends a raw HTTP upgrade request and returns the status code and the whole response head.
fn raw_upgrade(url: &str, target: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let host = host_of(url);
    let mut tcp = TcpStream::connect(host).unwrap();
    tcp.set_read_timeout(Some(common::TIMEOUT)).unwrap();
    let mut request = format!(
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    tcp.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if tcp.read(&mut byte).unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, head)
}

#[test]
fn a_token_is_required_when_configured_by_header_or_query() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let (_dir, _server, url) = start(&["--ws-token-file", token_file.to_str().unwrap()]);
    let (status, head) = raw_upgrade(&url, "/", &[]);
    assert_eq!(status, 401, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{head}"
    );
    assert_eq!(
        raw_upgrade(&url, "/", &[("Authorization", "Bearer wrong")]).0,
        401
    );
    assert_eq!(raw_upgrade(&url, "/?token=wrong", &[]).0, 401);
    assert_eq!(
        raw_upgrade(&url, "/", &[("Authorization", "Bearer s3cret-token")]).0,
        101
    );
    assert_eq!(raw_upgrade(&url, "/rpc?x=1&token=s3cret-token", &[]).0, 101);
    // The scheme is case-insensitive (RFC 7235 section 2.1); the token is not.
    for scheme in ["bearer", "BEARER", "bEaReR"] {
        let header = format!("{scheme} s3cret-token");
        assert_eq!(
            raw_upgrade(&url, "/", &[("Authorization", &header)]).0,
            101,
            "{header}"
        );
    }
    assert_eq!(
        raw_upgrade(&url, "/", &[("Authorization", "bearer S3CRET-TOKEN")]).0,
        401
    );
    assert_eq!(
        raw_upgrade(&url, "/", &[("Authorization", "Basic s3cret-token")]).0,
        401
    );
    // And a real client with the token gets answers.
    let mut conn = WsConn::open_with(&url, &[("Authorization", "Bearer s3cret-token")]).unwrap();
    assert_eq!(
        conn.call(r#"{"ipcReqID":"a","uri":"/ipcserver/test/echo","data":1}"#),
        r#"{"ipcReqID":"a","data":1}"#
    );
}

#[test]
fn origins_outside_the_allow_list_are_refused() {
    let (_dir, _server, url) = start(&[
        "--ws-origin",
        "http://localhost:8080",
        "--ws-origin",
        "https://app.example",
    ]);
    assert_eq!(
        raw_upgrade(&url, "/", &[("Origin", "http://localhost:8080")]).0,
        101
    );
    assert_eq!(
        raw_upgrade(&url, "/", &[("Origin", "https://app.example")]).0,
        101
    );
    let (status, head) = raw_upgrade(&url, "/", &[("Origin", "http://evil.example")]);
    assert_eq!(status, 403, "{head}");
    // Non-browser clients send no Origin and are not affected.
    assert_eq!(raw_upgrade(&url, "/", &[]).0, 101);
}

#[test]
fn a_peer_that_stops_answering_pings_is_dropped_after_the_idle_timeout() {
    let (_dir, server, url) = start(&[
        "--ws-ping-interval-ms",
        "100",
        "--ws-idle-timeout-ms",
        "400",
    ]);
    // Upgrade by hand, then never read or answer again.
    let silent_started = Instant::now();
    let mut silent = TcpStream::connect(host_of(&url)).unwrap();
    silent
        .write_all(format!("GET / HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", host_of(&url)).as_bytes())
        .unwrap();
    // A live peer (tungstenite answers pings while it reads) is kept across several timeouts.
    let mut live = WsConn::open(&url);
    assert!(live.is_silent_for(Duration::from_millis(1200)));
    assert_eq!(
        live.call(r#"{"ipcReqID":"a","uri":"/ipcserver/test/echo","data":1}"#),
        r#"{"ipcReqID":"a","data":1}"#
    );
    // The silent one has been closed: reading drains pings and a close frame, then EOF.
    silent.set_read_timeout(Some(common::TIMEOUT)).unwrap();
    let mut received = Vec::new();
    silent.read_to_end(&mut received).unwrap();
    let waited = silent_started.elapsed();
    assert!(
        waited >= Duration::from_millis(400),
        "dropped too early: {waited:?}"
    );
    // A close frame (0x88) with code 1001 (0x03E9) and the reason, then EOF.
    let close = [0x88, 0x0e, 0x03, 0xe9];
    assert!(
        received.windows(4).any(|window| window == close),
        "{received:?}"
    );
    assert!(
        String::from_utf8_lossy(&received).ends_with("idle timeout"),
        "{received:?}"
    );
    let stats = server
        .connect()
        .call(r#"{"ipcReqID":"s","uri":"/ipcserver/stats"}"#);
    assert!(stats.contains("\"clientClose\""), "{stats}");
}

#[test]
fn binary_frames_are_answered_in_binary_and_text_in_text() {
    let (_dir, _server, url) = start(&[]);
    let mut conn = WsConn::open(&url);
    conn.send_binary(br#"{"ipcReqID":"b","uri":"/ipcserver/test/echo","data":"bin"}"#);
    assert_eq!(
        conn.read_frame(),
        (r#"{"ipcReqID":"b","data":"bin"}"#.to_owned(), true)
    );
    conn.send(r#"{"ipcReqID":"t","uri":"/ipcserver/test/echo","data":"text"}"#);
    assert_eq!(
        conn.read_frame(),
        (r#"{"ipcReqID":"t","data":"text"}"#.to_owned(), false)
    );
    // A large echo (its data is written from its own buffer on UNIX sockets) is one frame of
    // the request's type too.
    let data = format!("\"{}\"", "y".repeat(100 * 1024));
    let request = format!(r#"{{"ipcReqID":"B","uri":"/ipcserver/test/echo","data":{data}}}"#);
    conn.send_binary(request.as_bytes());
    assert_eq!(
        conn.read_frame(),
        (format!(r#"{{"ipcReqID":"B","data":{data}}}"#), true)
    );
    conn.send(&request.replace("\"B\"", "\"T\""));
    assert_eq!(
        conn.read_frame(),
        (format!(r#"{{"ipcReqID":"T","data":{data}}}"#), false)
    );
}

#[test]
fn a_frame_may_carry_several_newline_separated_messages() {
    let (_dir, _server, url) = start(&[]);
    let mut conn = WsConn::open(&url);
    conn.send("{\"ipcReqID\":\"1\",\"uri\":\"/ipcserver/test/echo\",\"data\":1}\n\n{\"ipcReqID\":\"2\",\"uri\":\"/ipcserver/test/echo\",\"data\":2}\n");
    let mut replies = [conn.read_line(), conn.read_line()];
    replies.sort();
    assert_eq!(
        replies,
        [
            r#"{"ipcReqID":"1","data":1}"#,
            r#"{"ipcReqID":"2","data":2}"#
        ]
    );
}

#[test]
fn over_the_connection_limit_the_upgrade_gets_503() {
    let (_dir, server, url) = start(&["--max-connections", "1"]);
    let mut first = server.connect();
    first.call(r#"{"ipcReqID":"a","uri":"/ipcserver/test/echo"}"#);
    let (status, head) = raw_upgrade(&url, "/", &[]);
    assert_eq!(status, 503, "{head}");
}

#[test]
fn handlers_see_the_websocket_connection_context() {
    let server = LibServer::start(
        |config| {
            config.with_websocket(
                WebSocketConfig::default().listen_on("127.0.0.1:0".parse().unwrap()),
            )
        },
        |server| {
            server
                .add_uri_handler(
                    "/ctx",
                    "ctx",
                    |_: Request, ctx: RequestContext| async move {
                        let Transport::WebSocket {
                            local,
                            peer,
                            tls,
                            path,
                        } = &ctx.connection.transport
                        else {
                            return HandlerResult::Ok(json!("not a websocket"));
                        };
                        HandlerResult::Ok(json!({
                            "local": local.to_string(), "peerIp": peer.ip().to_string(),
                            "tls": tls, "path": path, "creds": ctx.connection.peer.is_some(),
                        }))
                    },
                )
                .unwrap();
        },
    );
    let url = server.handle.ws_urls()[0].clone();
    let mut conn = WsConn::open(&format!("{url}rpc/v1?client=test"));
    conn.send(r#"{"ipcReqID":"c","uri":"/ctx"}"#);
    let data = conn.read_json()["data"].clone();
    assert_eq!(data["local"], json!(host_of(&url)));
    assert_eq!(data["peerIp"], json!("127.0.0.1"));
    assert_eq!(data["tls"], json!(false));
    assert_eq!(
        data["path"],
        json!("/rpc/v1"),
        "the path, without the query"
    );
    assert_eq!(
        data["creds"],
        json!(false),
        "no kernel credentials over TCP"
    );
}

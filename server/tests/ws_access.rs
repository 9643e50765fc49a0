//! Who may use a WebSocket listener, against the real binary: the `Origin` rules (web pages
//! from other sites are refused by default) and the uid allow-list, which reaches peers on
//! this machine over loopback TCP as it reaches UNIX-socket peers.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;

use common::{LibServer, ServerProcess, Wire, WsConn};
use pixl_ipc_server::{HandlerResult, PeerCredentials, Request, RequestContext, WebSocketConfig};
use serde_json::{json, Value};

fn start(args: &[&str]) -> (tempfile::TempDir, ServerProcess, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut all = vec!["--ws", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let server = ServerProcess::start(&dir.path().join("ws.sock"), &all);
    let url = server.ws_url().unwrap();
    (dir, server, url)
}

/// `127.0.0.1:PORT` of a `ws://127.0.0.1:PORT/` URL.
fn host_of(url: &str) -> &str {
    url.trim_start_matches("ws://").trim_end_matches('/')
}

/// Sends a raw HTTP upgrade request (with `Host` the URL's unless `headers` names one) and
/// returns the status code, the response head and whatever body follows until the server
/// closes (nothing after a 101, which the server does not close).
fn upgrade(url: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    let host = host_of(url);
    let mut tcp = TcpStream::connect(host).unwrap();
    tcp.set_read_timeout(Some(common::TIMEOUT)).unwrap();
    let mut request = "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n".to_owned();
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        request.push_str(&format!("Host: {host}\r\n"));
    }
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
    let mut body = String::new();
    if status != 101 {
        let _ = tcp.read_to_string(&mut body);
    }
    (status, head, body)
}

fn status(url: &str, headers: &[(&str, &str)]) -> u16 {
    upgrade(url, headers).0
}

fn port_of(url: &str) -> &str {
    host_of(url).rsplit(':').next().unwrap()
}

fn echo_over(conn: &mut WsConn) -> String {
    conn.call(r#"{"ipcReqID":"a","uri":"/ipcserver/test/echo","data":1}"#)
}

fn our_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// A uid that is not ours.
fn another_uid() -> u32 {
    if our_uid() == 4242 {
        4343
    } else {
        4242
    }
}

#[test]
fn a_page_from_another_site_is_refused_by_default() {
    let (_dir, server, url) = start(&[]);
    let (code, head, _) = upgrade(&url, &[("Origin", "https://evil.example")]);
    assert_eq!(code, 403, "{head}");
    // Sandboxed pages and file: URLs send "null": not the server's own origin either.
    assert_eq!(status(&url, &[("Origin", "null")]), 403);
    // Same host, another port: another site.
    assert_eq!(status(&url, &[("Origin", "http://127.0.0.1:1")]), 403);
    // A name another site's DNS could point at 127.0.0.1 (DNS rebinding): not same-origin
    // over plain ws://, though it equals the Host header.
    let rebound = format!("evil.example:{}", port_of(&url));
    assert_eq!(
        status(
            &url,
            &[("Host", &rebound), ("Origin", &format!("http://{rebound}"))]
        ),
        403
    );
    let evil = WsConn::open_with(&url, &[("Origin", "https://evil.example")]);
    assert!(evil.is_err(), "a cross-site page must not get a WebSocket");
    let log = server.stop().1;
    assert!(log.contains("origin not allowed"), "{log}");
}

#[test]
fn same_origin_pages_and_clients_without_origin_are_served() {
    let (_dir, _server, url) = start(&[]);
    let own = format!("http://{}", host_of(&url));
    assert_eq!(status(&url, &[("Origin", &own)]), 101);
    assert_eq!(status(&url, &[("Origin", &own.to_uppercase())]), 101);
    // localhost names the same listener, when that is what the page and Host say.
    let localhost = format!("localhost:{}", port_of(&url));
    assert_eq!(
        status(
            &url,
            &[
                ("Host", &localhost),
                ("Origin", &format!("http://{localhost}"))
            ]
        ),
        101
    );
    let mut page = WsConn::open_with(&url, &[("Origin", &own)]).unwrap();
    assert_eq!(echo_over(&mut page), r#"{"ipcReqID":"a","data":1}"#);
    // Non-browser clients send no Origin and are not affected.
    assert_eq!(status(&url, &[]), 101);
    assert_eq!(
        echo_over(&mut WsConn::open(&url)),
        r#"{"ipcReqID":"a","data":1}"#
    );
}

#[test]
fn ws_origin_adds_pages_to_the_same_origin_ones() {
    let (_dir, server, url) = start(&["--ws-origin", "http://localhost:8080"]);
    assert_eq!(status(&url, &[("Origin", "http://localhost:8080")]), 101);
    assert_eq!(status(&url, &[("Origin", "http://LOCALHOST:8080")]), 101);
    assert_eq!(status(&url, &[("Origin", "http://localhost:8081")]), 403);
    assert_eq!(status(&url, &[("Origin", "https://evil.example")]), 403);
    let own = format!("http://{}", host_of(&url));
    assert_eq!(status(&url, &[("Origin", &own)]), 101);
    assert!(
        server
            .banner
            .contains("browsers: same-origin pages and http://localhost:8080)"),
        "{}",
        server.banner
    );
}

#[test]
fn every_origin_takes_an_explicit_star_and_a_warning() {
    let (_dir, server, url) = start(&["--ws-origin", "*"]);
    assert_eq!(status(&url, &[("Origin", "https://evil.example")]), 101);
    assert_eq!(status(&url, &[("Origin", "null")]), 101);
    assert!(
        server.banner.contains("browsers: any web page)"),
        "{}",
        server.banner
    );
    let log = server.stop().1;
    assert!(log.contains("WARN"), "{log}");
    assert!(
        log.contains("accepted from any Origin (--ws-origin '*')"),
        "{log}"
    );
}

#[test]
fn the_banner_says_who_can_reach_each_listener() {
    let (_dir, server, url) = start(&[]);
    assert!(
        server.banner.starts_with("pixl-ipc-server listening on "),
        "{}",
        server.banner
    );
    assert!(
        server.banner.contains(&format!(
            "{url} (any local user; browsers: same-origin pages only)"
        )),
        "{}",
        server.banner
    );
    let uid = our_uid().to_string();
    let (_dir, server, url) = start(&["--allow-uid", &uid]);
    assert!(
        server.banner.contains(&format!("; only uid {uid})")),
        "{}",
        server.banner
    );
    assert!(
        server.banner.contains(&format!(
            "{url} (local uid {uid} only; browsers: same-origin pages only)"
        )),
        "{}",
        server.banner
    );
}

#[test]
fn a_local_peer_whose_uid_is_not_allowed_is_refused_before_the_upgrade() {
    // The gid admits this test on the UNIX socket (to read the statistics); it cannot admit a
    // WebSocket peer, whose gid is unknown.
    let uid = another_uid().to_string();
    let gid = nix::unistd::getegid().as_raw().to_string();
    let (_dir, server, url) = start(&["--allow-uid", &uid, "--allow-gid", &gid]);
    let (code, head, body) = upgrade(&url, &[]);
    assert_eq!(code, 403, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["code"], json!("peer_not_allowed"), "{body}");
    assert_eq!(body["ipcReqID"], Value::Null, "{body}");
    let expected = format!("uid {} may not use this server", our_uid());
    assert_eq!(body["message"], json!(expected), "{body}");
    // A same-origin page or a token would not change that.
    let own = format!("http://{}", host_of(&url));
    assert_eq!(status(&url, &[("Origin", &own)]), 403);
    assert!(WsConn::open_with(&url, &[]).is_err());

    let mut unix = server.connect();
    let stats =
        unix.read_json_after(r#"{"ipcReqID":"s","uri":"/ipcserver/stats"}"#)["data"].clone();
    assert_eq!(stats["total"]["rejectedPeers"], json!(3), "{stats}");
    // Nothing but the statistics request itself reached a handler.
    assert_eq!(stats["connections"], json!(1), "{stats}");
    let log = server.stop().1;
    assert!(
        log.contains("connection refused: peer not on the uid/gid allow-list"),
        "{log}"
    );
}

#[test]
fn a_local_peer_whose_uid_is_allowed_is_served() {
    let uid = our_uid().to_string();
    let (_dir, _server, url) = start(&["--allow-uid", &uid]);
    assert_eq!(
        echo_over(&mut WsConn::open(&url)),
        r#"{"ipcReqID":"a","data":1}"#
    );
}

#[test]
fn handlers_see_the_uid_of_a_websocket_peer_on_this_machine() {
    let server = LibServer::start(
        |config| {
            config
                .with_allowed_peers(vec![our_uid()], Vec::new())
                .with_websocket(
                    WebSocketConfig::default().listen_on("127.0.0.1:0".parse().unwrap()),
                )
        },
        |server| {
            server
                .add_uri_handler(
                    "/whoami",
                    "whoami",
                    |_: Request, ctx: RequestContext| async move {
                        let peer = ctx.connection.peer;
                        HandlerResult::Ok(json!({
                            "uid": peer.map(|peer| peer.uid),
                            "gid": peer.map(|peer| peer.gid),
                            "pid": peer.and_then(|peer| peer.pid),
                        }))
                    },
                )
                .unwrap();
        },
    );
    let url = server.handle.ws_urls()[0].clone();
    let mut conn = WsConn::open(&url);
    conn.send(r#"{"ipcReqID":"w","uri":"/whoami"}"#);
    let reply = conn.read_json();
    assert_eq!(
        reply["data"],
        json!({"uid": our_uid(), "gid": PeerCredentials::UNKNOWN_GID, "pid": null})
    );
}

#[test]
fn an_allow_list_with_a_listener_other_machines_reach_needs_a_token() {
    // 192.0.2.1 (TEST-NET-1) stands for a network address; the check comes before any bind.
    let dir = tempfile::tempdir().unwrap();
    let failure = ServerProcess::try_start(
        &dir.path().join("ws.sock"),
        &["--allow-uid", "0", "--ws", "192.0.2.1:7070"],
    )
    .err()
    .expect("the server must refuse to start");
    assert!(!failure.status.success());
    assert!(
        failure.stderr.contains("192.0.2.1:7070")
            && failure.stderr.contains("--ws-token-file")
            && failure.stderr.contains("loopback"),
        "{}",
        failure.stderr
    );
    assert!(!dir.path().join("ws.sock").exists());
}

#[test]
fn another_uid_is_refused_over_websocket_when_the_test_can_switch_users() {
    if !nix::unistd::geteuid().is_root() {
        // Without root the test cannot run a client as another user; the refusal of another
        // uid is covered above with an allow-list that leaves this process's uid out.
        eprintln!("note: not root, so no WebSocket client runs under another uid here");
        return;
    }
    let (_dir, server, url) = start(&["--allow-uid", "0"]);
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
            "--url",
            &url,
            "--timeout",
            "2s",
            "call",
            "/ipcserver/test/echo",
            "{}",
        ])
        .output()
        .expect("setpriv (util-linux) runs the CLI as nobody");
    assert!(
        !output.status.success(),
        "nobody must not be served: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    // Root, on the list, is served over the same listener.
    assert_eq!(
        echo_over(&mut WsConn::open(&url)),
        r#"{"ipcReqID":"a","data":1}"#
    );
    let stats = server
        .connect()
        .read_json_after(r#"{"ipcReqID":"s","uri":"/ipcserver/stats"}"#)["data"]
        .clone();
    assert_eq!(stats["total"]["rejectedPeers"], json!(1), "{stats}");
    let log = server.stop().1;
    assert!(log.contains("uid 65534 may not use this server"), "{log}");
}

/// The token in a `Sec-WebSocket-Protocol` entry, as a browser can send it (Kubernetes' way):
/// `pixl-ipc` plus `pixl-ipc.bearer.<base64url(token), no padding>`; the server selects
/// `pixl-ipc` and never echoes the token entry.
#[test]
fn a_token_in_a_subprotocol_entry_is_accepted_and_only_pixl_ipc_is_selected() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let (_dir, server, url) = start(&["--ws-token-file", token_file.to_str().unwrap()]);
    // base64url("s3cret-token") and base64url("wrong"), without padding.
    let right = "pixl-ipc, pixl-ipc.bearer.czNjcmV0LXRva2Vu";
    let (code, head, _) = upgrade(&url, &[("Sec-WebSocket-Protocol", right)]);
    assert_eq!(code, 101, "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("\r\nsec-websocket-protocol: pixl-ipc\r\n"),
        "{head}"
    );
    assert!(
        !lower.contains("bearer"),
        "the token entry is echoed: {head}"
    );
    // The entries may come in any order, in separate headers.
    let (code, head, _) = upgrade(
        &url,
        &[
            ("Sec-WebSocket-Protocol", "pixl-ipc.bearer.czNjcmV0LXRva2Vu"),
            ("Sec-WebSocket-Protocol", "pixl-ipc"),
        ],
    );
    assert_eq!(code, 101, "{head}");
    assert!(head
        .to_ascii_lowercase()
        .contains("sec-websocket-protocol: pixl-ipc\r\n"));
    // Without `pixl-ipc` offered, nothing is selected (and nothing is echoed).
    let (code, head, _) = upgrade(
        &url,
        &[("Sec-WebSocket-Protocol", "pixl-ipc.bearer.czNjcmV0LXRva2Vu")],
    );
    assert_eq!(code, 101, "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("sec-websocket-protocol"),
        "{head}"
    );
    // A wrong token, a malformed entry (padding, the standard alphabet, a stray character), the
    // token not encoded, or `pixl-ipc` alone: 401.
    for offered in [
        "pixl-ipc, pixl-ipc.bearer.d3Jvbmc",
        "pixl-ipc, pixl-ipc.bearer.czNjcmV0LXRva2Vu=",
        "pixl-ipc, pixl-ipc.bearer.czNjcmV0LXRva2Vu+",
        "pixl-ipc, pixl-ipc.bearer.czNjcmV0LXRva2VuA",
        "pixl-ipc, pixl-ipc.bearer.s3cret-token",
        "pixl-ipc, pixl-ipc.bearer.",
        "pixl-ipc",
    ] {
        let (code, head, _) = upgrade(&url, &[("Sec-WebSocket-Protocol", offered)]);
        assert_eq!(code, 401, "{offered}: {head}");
    }
    // A real client (tungstenite checks the selected subprotocol is one it offered) is served.
    let mut conn = WsConn::open_with(&url, &[("Sec-WebSocket-Protocol", right)]).unwrap();
    assert_eq!(echo_over(&mut conn), r#"{"ipcReqID":"a","data":1}"#);
    drop(conn);
    // The other ways still work.
    assert_eq!(
        status(&url, &[("Authorization", "Bearer s3cret-token")]),
        101
    );
    let log = server.stop().1;
    assert!(
        !log.contains("s3cret-token") && !log.contains("czNjcmV0LXRva2Vu"),
        "the token reached the log: {log}"
    );
}

/// Without a token configured, a client that offers `pixl-ipc` still gets it selected (a
/// browser would fail the connection otherwise), and a token entry is ignored.
#[test]
fn pixl_ipc_is_selected_when_offered_without_a_token_configured() {
    let (_dir, _server, url) = start(&[]);
    let (code, head, _) = upgrade(&url, &[("Sec-WebSocket-Protocol", "pixl-ipc")]);
    assert_eq!(code, 101, "{head}");
    assert!(head
        .to_ascii_lowercase()
        .contains("\r\nsec-websocket-protocol: pixl-ipc\r\n"));
    let mut conn = WsConn::open_with(
        &url,
        &[(
            "Sec-WebSocket-Protocol",
            "pixl-ipc, pixl-ipc.bearer.anything",
        )],
    )
    .unwrap();
    assert_eq!(echo_over(&mut conn), r#"{"ipcReqID":"a","data":1}"#);
    // Other subprotocols are not selected.
    let (code, head, _) = upgrade(&url, &[("Sec-WebSocket-Protocol", "chat")]);
    assert_eq!(code, 101, "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("sec-websocket-protocol"),
        "{head}"
    );
}

//! The transport-independent wire tests, run once over the UNIX socket and once over a
//! WebSocket from the same bodies: exact messages in, exact messages out.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{sized_message, Conn, LibServer, ServerProcess, Wire, WsConn};
use nix::sys::signal::Signal;
use pixl_ipc_server::{Push, WebSocketConfig};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Unix,
    Ws,
}

/// The server binary, listening on a temp socket and, for WebSocket runs, a loopback port.
struct Setup {
    server: ServerProcess,
    kind: Kind,
    url: Option<String>,
    _dir: tempfile::TempDir,
}

impl Setup {
    fn start(kind: Kind, args: &[&str]) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let mut args = args.to_vec();
        if kind == Kind::Ws {
            args.extend(["--ws", "127.0.0.1:0"]);
        }
        let server = ServerProcess::start(&dir.path().join("matrix.sock"), &args);
        let url = server.ws_url();
        assert_eq!(url.is_some(), kind == Kind::Ws, "banner: {}", server.banner);
        Setup {
            server,
            kind,
            url,
            _dir: dir,
        }
    }

    fn connect(&self) -> Box<dyn Wire> {
        match (self.kind, &self.url) {
            (Kind::Ws, Some(url)) => Box::new(WsConn::open(url)),
            _ => Box::new(Conn::open(&self.server.path)),
        }
    }
}

macro_rules! on_both_transports {
    ($($name:ident),* $(,)?) => {
        mod unix {
            $( #[test] fn $name() { super::$name(super::Kind::Unix) } )*
        }
        mod ws {
            $( #[test] fn $name() { super::$name(super::Kind::Ws) } )*
        }
    };
}

on_both_transports!(
    echo_answers_data_unchanged_with_the_request_id,
    delay_waits_and_answers_the_delay_given,
    unknown_uri_goes_to_the_default_handler,
    bad_json_gets_an_error_and_the_next_request_is_served,
    over_long_message_gets_message_too_large,
    two_hundred_concurrent_requests_are_matched_by_id,
    pushes_reach_the_connection,
    sigterm_drains_the_request_in_flight,
);

fn echo_answers_data_unchanged_with_the_request_id(kind: Kind) {
    let setup = Setup::start(kind, &[]);
    let mut conn = setup.connect();
    let reply = conn.call(r#"{"ipcReqID":"rq0","uri":"/ipcserver/test/echo","data":{"message":"foo","echo":true,"bar":9},"pid":1,"userAgent":"Node/IPCClient/tmp"}"#);
    assert_eq!(
        reply,
        r#"{"ipcReqID":"rq0","data":{"message":"foo","echo":true,"bar":9}}"#
    );
    let message = sized_message(1024);
    conn.send(&json!({"ipcReqID":"rq1","uri":"/ipcserver/test/echo","data":message}).to_string());
    assert_eq!(
        conn.read_json()["data"],
        message,
        "1 MiB echo, as the original's test"
    );
}

fn delay_waits_and_answers_the_delay_given(kind: Kind) {
    let setup = Setup::start(kind, &[]);
    let mut conn = setup.connect();
    let started = Instant::now();
    assert_eq!(
        conn.call(r#"{"ipcReqID":"rq0","uri":"/ipcserver/test/delay","data":{"delay":150}}"#),
        r#"{"ipcReqID":"rq0","data":{"delay":150}}"#
    );
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(
        conn.call(r#"{"ipcReqID":"rq1","uri":"/ipcserver/test/delay"}"#),
        r#"{"ipcReqID":"rq1","data":{"delay":0}}"#
    );
}

fn unknown_uri_goes_to_the_default_handler(kind: Kind) {
    let setup = Setup::start(kind, &[]);
    let mut conn = setup.connect();
    assert_eq!(
        conn.call(r#"{"ipcReqID":"rq0","uri":"/ipcserver/no_such_thing","data":{"foo":10}}"#),
        r#"{"ipcReqID":"rq0","data":{"code":"no_handler_found","message":"No handler found for /ipcserver/no_such_thing"}}"#
    );
}

fn bad_json_gets_an_error_and_the_next_request_is_served(kind: Kind) {
    let setup = Setup::start(kind, &[]);
    let mut conn = setup.connect();
    conn.send(r#"{"ipcReqID":"rq0","uri":"/ipcserver/test/echo","data":{oops}"#);
    let error = conn.read_json();
    assert_eq!(
        error["ipcReqID"],
        json!("rq0"),
        "id recovered from the broken message: {error}"
    );
    assert_eq!(error["code"], json!("invalid_json"));
    assert!(
        error["message"].as_str().unwrap().contains("line 1 column"),
        "{error}"
    );
    conn.send("{not even close");
    assert_eq!(conn.read_json()["ipcReqID"], Value::Null);
    assert_eq!(
        conn.call(r#"{"ipcReqID":"rq1","uri":"/ipcserver/test/echo","data":1}"#),
        r#"{"ipcReqID":"rq1","data":1}"#
    );
}

fn over_long_message_gets_message_too_large(kind: Kind) {
    let setup = Setup::start(kind, &["--max-message-bytes", "1024"]);
    let mut conn = setup.connect();
    // Written out, not built with `json!`: the id must come first, where the server looks for
    // it in a line too long to parse, whatever order a `Value` would serialize its keys in.
    let big = format!(
        r#"{{"ipcReqID":"rq0","uri":"/ipcserver/test/echo","data":"{}"}}"#,
        "x".repeat(5000)
    );
    conn.send(&big);
    let error = conn.read_json();
    assert_eq!(error["code"], json!("message_too_large"));
    assert_eq!(
        error["message"],
        json!("message exceeds the maximum of 1024 bytes")
    );
    match kind {
        // A byte stream can skip to the next newline: the connection lives on.
        Kind::Unix => {
            assert_eq!(error["ipcReqID"], json!("rq0"));
            assert_eq!(
                conn.call(r#"{"ipcReqID":"rq1","uri":"/ipcserver/test/echo","data":"small"}"#),
                r#"{"ipcReqID":"rq1","data":"small"}"#
            );
        }
        // A WebSocket cannot skip part of a message: the reply, then close 1009.
        Kind::Ws => assert_eq!(conn.expect_closed(), Some(1009)),
    }
    // Either way, the server keeps serving everyone else.
    let mut other = setup.connect();
    assert_eq!(
        other.call(r#"{"ipcReqID":"rq2","uri":"/ipcserver/test/echo","data":2}"#),
        r#"{"ipcReqID":"rq2","data":2}"#
    );
}

fn two_hundred_concurrent_requests_are_matched_by_id(kind: Kind) {
    let setup = Setup::start(kind, &[]);
    let mut conn = setup.connect();
    // Earlier requests wait longer, so replies come back in roughly reverse order.
    let started = Instant::now();
    for i in 0..200 {
        let delay = 400 - 2 * i;
        conn.send(&format!(
            r#"{{"ipcReqID":"rq{i}","uri":"/ipcserver/test/delay","data":{{"delay":{delay}}}}}"#
        ));
    }
    let mut seen = HashSet::new();
    let mut order = Vec::new();
    for _ in 0..200 {
        let reply = conn.read_json();
        let id = reply["ipcReqID"].as_str().unwrap().to_owned();
        let index: i64 = id.trim_start_matches("rq").parse().unwrap();
        assert_eq!(
            reply["data"]["delay"],
            json!(400 - 2 * index),
            "reply matches its request"
        );
        assert!(seen.insert(id), "each request answered once");
        order.push(index);
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "handled concurrently, not one by one"
    );
    assert!(
        order.first() > order.last(),
        "completion order, not request order: {order:?}"
    );
}

fn pushes_reach_the_connection(kind: Kind) {
    let server = LibServer::start(
        |config| {
            config.with_websocket(
                WebSocketConfig::default().listen_on("127.0.0.1:0".parse().unwrap()),
            )
        },
        |_| {},
    );
    let mut conn: Box<dyn Wire> = match kind {
        Kind::Unix => Box::new(server.connect()),
        Kind::Ws => Box::new(WsConn::open(&server.handle.ws_urls()[0])),
    };
    conn.call(r#"{"ipcReqID":"a","uri":"/ipcserver/test/echo"}"#);
    let id = server.handle.connections()[0].id;
    server
        .handle
        .push(
            id,
            &Push {
                uri: Some("/events/config".into()),
                data: json!({"reloaded": true}),
            },
        )
        .unwrap();
    assert_eq!(
        conn.read_line(),
        r#"{"uri":"/events/config","data":{"reloaded":true}}"#
    );
    assert_eq!(
        server
            .handle
            .broadcast(&Push {
                uri: None,
                data: json!(1)
            })
            .delivered,
        1
    );
    assert_eq!(conn.read_line(), r#"{"data":1}"#);
}

fn sigterm_drains_the_request_in_flight(kind: Kind) {
    let setup = Setup::start(kind, &[]);
    let mut busy = setup.connect();
    busy.send(r#"{"ipcReqID":"rq0","uri":"/ipcserver/test/delay","data":{"delay":400}}"#);
    std::thread::sleep(Duration::from_millis(100));
    setup.server.signal(Signal::SIGTERM);
    assert_eq!(
        busy.read_line(),
        r#"{"ipcReqID":"rq0","data":{"delay":400}}"#
    );
    let code = busy.expect_closed();
    if kind == Kind::Ws {
        assert_eq!(
            code,
            Some(1001),
            "WebSocket peers are told the server is going away"
        );
    }
    let Setup {
        mut server, _dir, ..
    } = setup;
    let (status, log) = server.wait();
    assert!(status.success(), "{log}");
    assert!(log.contains("drained=true"), "{log}");
}

//! Streamed replies over the raw wire, on UNIX sockets and WebSockets: items in order then one
//! final line, `stream_required` for a plain call, cancel, disconnect and shutdown each stopping
//! the handler (seen through a drop guard), a reader that stops reading pausing the stream,
//! streams and plain calls interleaved, and the request checks.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, LibServer, ServerProcess, Wire, WsConn};
use futures_util::{stream, Stream, StreamExt};
use pixl_ipc_server::{Data, HandlerError, Last, Server, WebSocketConfig};
use serde_json::{json, Value};

/// Counts the items a stream produced and whether it was dropped.
#[derive(Default)]
struct Probe {
    produced: AtomicUsize,
    dropped: AtomicUsize,
}

/// Bumps `dropped` when the stream that owns it is dropped.
struct DropGuard(Arc<Probe>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

/// An endless stream, one `{"n": k}` every 20 ms, counted by `probe`.
fn drip(probe: Arc<Probe>) -> impl Stream<Item = Result<Value, HandlerError>> + Send {
    let guard = DropGuard(probe);
    stream::unfold((0u64, guard), |(n, guard)| async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        guard.0.produced.fetch_add(1, Ordering::SeqCst);
        Some((Ok(json!({ "n": n })), (n + 1, guard)))
    })
}

/// The size of one `/big` item's string.
const BIG_ITEM: usize = 1 << 20;
/// How many `/big` items are offered: 100 MiB in all.
const BIG_ITEMS: usize = 100;
/// The server's per-connection unread-reply limit in these tests.
const REPLY_LIMIT: usize = 4 << 20;

/// A library server with test streams, on UNIX and a loopback WebSocket port.
fn server(probe: &Arc<Probe>) -> (LibServer, String) {
    let (drips, bigs) = (probe.clone(), probe.clone());
    let server = LibServer::start(
        |config| {
            config
                .with_max_outbound_bytes_per_connection(REPLY_LIMIT)
                .with_websocket(
                    WebSocketConfig::default().listen_on("127.0.0.1:0".parse().unwrap()),
                )
        },
        move |server: &Server| {
            server
                .add_stream_handler("/drip", "drip", move || {
                    let items = drip(drips.clone());
                    async move { Ok::<_, HandlerError>(items) }
                })
                .unwrap()
                .add_stream_handler("/big", "big", move || {
                    let probe = bigs.clone();
                    let chunk: Arc<str> = Arc::from("x".repeat(BIG_ITEM));
                    let items = stream::iter(0..BIG_ITEMS).map(move |k| {
                        probe.produced.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, HandlerError>(json!({ "k": k, "pad": &*chunk }))
                    });
                    async move { Ok::<_, HandlerError>(items) }
                })
                .unwrap()
                .add_stream_handler("/fail", "fail", || async {
                    let items = stream::iter([
                        Ok(json!(1)),
                        Err(HandlerError::new("broke", "the source went away")),
                        Ok(json!("never sent")),
                    ]);
                    Ok::<_, HandlerError>(items)
                })
                .unwrap()
                .add_stream_handler("/panic", "panic", || async {
                    let items = stream::iter(0..3).map(|k| {
                        assert!(k < 1, "item {k} blew up");
                        Ok::<_, HandlerError>(k)
                    });
                    Ok::<_, HandlerError>(items)
                })
                .unwrap()
                .add_stream_handler("/last", "last", |Data(to): Data<u32>| async move {
                    let items = stream::iter(0..=to).map(move |k| {
                        let item = if k == to {
                            Last(json!({ "total": to })).into_stream_item()
                        } else {
                            pixl_ipc_server::IntoStreamItem::into_stream_item(k)
                        };
                        Ok::<_, HandlerError>(item.unwrap())
                    });
                    Ok::<_, HandlerError>(items)
                })
                .unwrap()
                .add_stream_handler("/refuse", "refuse", || async {
                    Err::<stream::Empty<Result<u8, HandlerError>>, _>(HandlerError::new(
                        "not_now",
                        "no stream today",
                    ))
                })
                .unwrap();
        },
    );
    let url = server.handle.ws_urls().remove(0);
    (server, url)
}

use pixl_ipc_server::IntoStreamItem as _;

/// Every line `conn` gets until the final line for `id`, which is returned last.
fn read_stream(conn: &mut (impl Wire + ?Sized), id: &Value) -> Vec<Value> {
    let mut lines = Vec::new();
    loop {
        let line = conn.read_json();
        let last = line["ipcReqID"] == *id && line.get("ipcMore").is_none();
        lines.push(line);
        if last {
            return lines;
        }
    }
}

fn transports(server: &LibServer, url: &str) -> Vec<(&'static str, Box<dyn Wire>)> {
    vec![
        ("unix", Box::new(server.connect())),
        ("websocket", Box::new(WsConn::open(url))),
    ]
}

#[test]
fn the_builtin_stream_sends_its_items_in_order_then_one_final_line_on_both_transports() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("s.sock"), &["--ws", "127.0.0.1:0"]);
    let conns: Vec<(&str, Box<dyn Wire>)> = vec![
        ("unix", Box::new(server.connect())),
        (
            "websocket",
            Box::new(WsConn::open(&server.ws_url().unwrap())),
        ),
    ];
    for (transport, mut conn) in conns {
        conn.send(r#"{"uri":"/ipcserver/test/stream","ipcReqID":"s1","data":{"count":5,"interval":5},"ipcStream":true}"#);
        let lines = read_stream(&mut *conn, &json!("s1"));
        let expected: Vec<Value> = (0..5)
            .map(|i| json!({"ipcReqID": "s1", "data": {"i": i}, "ipcMore": true}))
            .chain([json!({"ipcReqID": "s1", "data": {"done": 5}})])
            .collect();
        assert_eq!(lines, expected, "{transport}");
        // Nothing stray after the final line.
        assert!(
            conn.is_silent_for(Duration::from_millis(100)),
            "{transport}"
        );
        // No count: ten items; a count of zero: only the final line.
        conn.send(r#"{"uri":"/ipcserver/test/stream","ipcReqID":2,"ipcStream":true}"#);
        assert_eq!(read_stream(&mut *conn, &json!(2)).len(), 11, "{transport}");
        conn.send(
            r#"{"uri":"/ipcserver/test/stream","ipcReqID":3,"data":{"count":0},"ipcStream":true}"#,
        );
        assert_eq!(
            read_stream(&mut *conn, &json!(3)),
            [json!({"ipcReqID": 3, "data": {"done": 0}})],
            "{transport}"
        );
    }
}

#[test]
fn a_plain_call_to_a_streaming_route_gets_one_stream_required_reply() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("s.sock"), &[]);
    let mut conn = server.connect();
    // What every original client sends: no ipcStream.
    let reply = conn.call(
        r#"{"uri":"/ipcserver/test/stream","ipcReqID":"rq0","data":{"count":3},"userAgent":"pixl-ipc"}"#,
    );
    assert_eq!(
        reply,
        r#"{"ipcReqID":"rq0","data":{"code":"stream_required","message":"handler 'IPCServer' answers with a stream of replies: send the request with \"ipcStream\": true"}}"#
    );
    assert!(conn.is_silent_for(Duration::from_millis(200)));
    // ipcStream on a route that does not stream: the ordinary single reply.
    assert_eq!(
        conn.call(r#"{"uri":"/ipcserver/test/echo","ipcReqID":"e","data":[1],"ipcStream":true}"#),
        r#"{"ipcReqID":"e","data":[1]}"#
    );
    assert!(conn.is_silent_for(Duration::from_millis(100)));
}

#[test]
fn a_cancel_ends_the_stream_with_cancelled_and_drops_the_handler_on_both_transports() {
    let probe = Arc::new(Probe::default());
    let (server, url) = server(&probe);
    for (round, (transport, mut conn)) in transports(&server, &url).into_iter().enumerate() {
        conn.send(r#"{"uri":"/drip","ipcReqID":{"stream":7},"ipcStream":true}"#);
        let first = conn.read_json();
        assert_eq!(
            first,
            json!({"ipcReqID": {"stream": 7}, "data": {"n": 0}, "ipcMore": true})
        );
        conn.send(r#"{"ipcReqID":{"stream":7},"ipcCancel":true}"#);
        let lines = read_stream(&mut *conn, &json!({"stream": 7}));
        let last = lines.last().unwrap();
        assert_eq!(last["code"], json!("cancelled"), "{transport}: {lines:?}");
        assert!(lines[..lines.len() - 1]
            .iter()
            .all(|line| line["ipcMore"] == json!(true)));
        eventually("the stream is dropped", || {
            probe.dropped.load(Ordering::SeqCst) == round + 1
        });
        // It is not polled again, the connection carries on, and a second cancel (or one for an
        // id that never was) gets no reply at all.
        let produced = probe.produced.load(Ordering::SeqCst);
        conn.send(r#"{"ipcReqID":{"stream":7},"ipcCancel":true}"#);
        conn.send(r#"{"ipcReqID":"nobody","ipcCancel":true}"#);
        conn.send(r#"{"uri":"/ipcserver/test/echo","ipcReqID":1,"data":"after"}"#);
        assert_eq!(conn.read_line(), r#"{"ipcReqID":1,"data":"after"}"#);
        assert!(
            conn.is_silent_for(Duration::from_millis(100)),
            "{transport}"
        );
        assert_eq!(
            probe.produced.load(Ordering::SeqCst),
            produced,
            "{transport}"
        );
    }
}

#[test]
fn a_client_that_disconnects_has_its_streams_dropped_at_once_on_both_transports() {
    let probe = Arc::new(Probe::default());
    let (server, url) = server(&probe);
    for (round, (transport, mut conn)) in transports(&server, &url).into_iter().enumerate() {
        conn.send(r#"{"uri":"/drip","ipcReqID":1,"ipcStream":true}"#);
        conn.send(r#"{"uri":"/drip","ipcReqID":2,"ipcStream":true}"#);
        let _ = conn.read_json();
        let _ = conn.read_json();
        drop(conn);
        eventually(&format!("{transport}: both streams are dropped"), || {
            probe.dropped.load(Ordering::SeqCst) == 2 * (round + 1)
        });
    }
}

#[test]
fn a_reader_that_stops_reading_pauses_the_stream_and_gets_every_item_when_it_reads_again() {
    let probe = Arc::new(Probe::default());
    let (server, _url) = server(&probe);
    let mut conn = server.connect();
    conn.send(r#"{"uri":"/big","ipcReqID":"big","ipcStream":true}"#);
    // 100 MiB offered; the client reads nothing until the stream has stopped producing.
    let mut produced = 0;
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = probe.produced.load(Ordering::SeqCst);
        if now == produced {
            break;
        }
        produced = now;
    }
    // Bound: the reply limit's worth of items, one more that crossed it, and what the
    // kernel's socket buffers took (under 1 MiB each way on Linux by default).
    let bound = REPLY_LIMIT / BIG_ITEM + 1 + 2;
    assert!(
        produced <= bound,
        "the stream ran ahead of a reader that reads nothing: {produced} items of 1 MiB produced (bound {bound})"
    );
    // Reading again, every item arrives, in order, then the final line.
    for k in 0..BIG_ITEMS {
        let line = conn.read_json();
        assert_eq!(line["data"]["k"], json!(k));
        assert_eq!(line["data"]["pad"].as_str().unwrap().len(), BIG_ITEM);
    }
    assert_eq!(conn.read_json(), json!({"ipcReqID": "big", "data": null}));
    assert_eq!(probe.produced.load(Ordering::SeqCst), BIG_ITEMS);
}

#[test]
fn streams_and_plain_calls_interleave_on_one_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("s.sock"), &["--ws", "127.0.0.1:0"]);
    let conns: Vec<(&str, Box<dyn Wire>)> = vec![
        ("unix", Box::new(server.connect())),
        (
            "websocket",
            Box::new(WsConn::open(&server.ws_url().unwrap())),
        ),
    ];
    for (transport, mut conn) in conns {
        conn.send(r#"{"uri":"/ipcserver/test/stream","ipcReqID":"a","data":{"count":20,"interval":2},"ipcStream":true}"#);
        conn.send(r#"{"uri":"/ipcserver/test/stream","ipcReqID":"b","data":{"count":20,"interval":3},"ipcStream":true}"#);
        for i in 0..10 {
            conn.send(&format!(
                r#"{{"uri":"/ipcserver/test/delay","ipcReqID":{i},"data":{{"delay":{}}}}}"#,
                i * 4
            ));
        }
        let mut items: HashMap<String, Vec<Value>> = HashMap::new();
        let mut finals = 0;
        let mut plain = Vec::new();
        while finals < 2 || plain.len() < 10 {
            let line = conn.read_json();
            match &line["ipcReqID"] {
                Value::String(id) if line["ipcMore"] == json!(true) => {
                    items
                        .entry(id.clone())
                        .or_default()
                        .push(line["data"]["i"].clone());
                }
                Value::String(id) => {
                    assert_eq!(line["data"], json!({"done": 20}), "{transport} {id}");
                    assert_eq!(
                        items[id].len(),
                        20,
                        "{transport}: final line before the items"
                    );
                    finals += 1;
                }
                Value::Number(n) => plain.push(n.as_u64().unwrap()),
                other => panic!("{transport}: unexpected line {other}"),
            }
        }
        for id in ["a", "b"] {
            let expected: Vec<Value> = (0..20).map(|i| json!(i)).collect();
            assert_eq!(items[id], expected, "{transport}: stream {id} out of order");
        }
        plain.sort_unstable();
        assert_eq!(plain, (0..10).collect::<Vec<u64>>(), "{transport}");
    }
}

#[test]
fn stream_requests_that_cannot_run_are_refused_and_the_running_stream_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("s.sock"), &[]);
    let mut conn = server.connect();
    // No id: its replies could not be told apart.
    let reply = conn
        .read_json_after(r#"{"uri":"/ipcserver/test/stream","data":{"count":1},"ipcStream":true}"#);
    assert_eq!(reply["code"], json!("invalid_request"), "{reply}");
    assert_eq!(reply["ipcReqID"], Value::Null);
    // The same id as a stream still running: refused; the first one finishes.
    conn.send(r#"{"uri":"/ipcserver/test/stream","ipcReqID":9,"data":{"count":3,"interval":100},"ipcStream":true}"#);
    assert_eq!(conn.read_json()["data"], json!({"i": 0}));
    let reply = conn.read_json_after(
        r#"{"uri":"/ipcserver/test/stream","ipcReqID":9,"data":{"count":1},"ipcStream":true}"#,
    );
    assert_eq!(reply["code"], json!("invalid_request"), "{reply}");
    let rest = read_stream(&mut conn, &json!(9));
    assert_eq!(rest.last().unwrap()["data"], json!({"done": 3}));
    assert_eq!(rest.len(), 3);
    // Bad parameters: invalid_data, no items.
    for data in [
        r#"{"count":-1}"#,
        r#"{"count":1e9}"#,
        r#"{"interval":"x"}"#,
        r#"{"interval":1e12}"#,
        r#"{"nope":1}"#,
    ] {
        let reply = conn.read_json_after(&format!(
            r#"{{"uri":"/ipcserver/test/stream","ipcReqID":"bad","data":{data},"ipcStream":true}}"#
        ));
        assert_eq!(
            reply["data"]["code"],
            json!("invalid_data"),
            "{data}: {reply}"
        );
        assert!(reply.get("ipcMore").is_none());
    }
}

#[test]
fn a_stream_ends_with_its_error_its_panic_or_its_last_value() {
    let probe = Arc::new(Probe::default());
    let (server, url) = server(&probe);
    for (transport, mut conn) in transports(&server, &url) {
        conn.send(r#"{"uri":"/fail","ipcReqID":"f","ipcStream":true}"#);
        assert_eq!(
            read_stream(&mut *conn, &json!("f")),
            [
                json!({"ipcReqID": "f", "data": 1, "ipcMore": true}),
                json!({"ipcReqID": "f", "data": {"code": "broke", "message": "the source went away"}}),
            ],
            "{transport}"
        );
        conn.send(r#"{"uri":"/panic","ipcReqID":"p","ipcStream":true}"#);
        let lines = read_stream(&mut *conn, &json!("p"));
        assert_eq!(lines.len(), 2, "{transport}: {lines:?}");
        assert_eq!(
            lines[1]["data"]["code"],
            json!("handler_panic"),
            "{transport}"
        );
        conn.send(r#"{"uri":"/last","ipcReqID":"l","data":2,"ipcStream":true}"#);
        assert_eq!(
            read_stream(&mut *conn, &json!("l")),
            [
                json!({"ipcReqID": "l", "data": 0, "ipcMore": true}),
                json!({"ipcReqID": "l", "data": 1, "ipcMore": true}),
                json!({"ipcReqID": "l", "data": {"total": 2}}),
            ],
            "{transport}"
        );
        conn.send(r#"{"uri":"/refuse","ipcReqID":"r","ipcStream":true}"#);
        assert_eq!(
            read_stream(&mut *conn, &json!("r")),
            [json!({"ipcReqID": "r", "data": {"code": "not_now", "message": "no stream today"}})],
            "{transport}"
        );
        conn.send(r#"{"uri":"/last","ipcReqID":"l2","data":"two","ipcStream":true}"#);
        let reply = conn.read_json();
        assert_eq!(
            reply["data"]["code"],
            json!("invalid_data"),
            "{transport}: {reply}"
        );
        assert!(
            conn.is_silent_for(Duration::from_millis(100)),
            "{transport}"
        );
    }
}

#[test]
fn shutdown_ends_running_streams_with_shutting_down() {
    let probe = Arc::new(Probe::default());
    let (server, _url) = server(&probe);
    let mut conn = server.connect();
    conn.send(r#"{"uri":"/drip","ipcReqID":"w","ipcStream":true}"#);
    let _ = conn.read_json();
    let report = server.shutdown();
    let lines = read_stream(&mut conn, &json!("w"));
    assert_eq!(
        lines.last().unwrap()["code"],
        json!("shutting_down"),
        "{lines:?}"
    );
    assert_eq!(probe.dropped.load(Ordering::SeqCst), 1);
    conn.expect_eof();
    let _ = report;
}

#[test]
fn the_server_stays_small_while_a_reader_that_does_not_read_is_offered_100_mib_of_items() {
    let dir = tempfile::tempdir().unwrap();
    let limit = REPLY_LIMIT.to_string();
    let server = ServerProcess::start(
        &dir.path().join("s.sock"),
        &["--max-outbound-bytes", &limit],
    );
    let rss_before = server.rss_kib();
    let mut conn = server.connect();
    conn.send(r#"{"uri":"/ipcserver/test/stream","ipcReqID":"big","data":{"count":100,"size":1048576},"ipcStream":true}"#);
    let sampler = common::RssSampler::start(server.pid());
    // Until the server has done all it will do for a reader that reads nothing.
    server.wait_until_idle(Duration::from_millis(300));
    let grown_kib = sampler.peak_kib().saturating_sub(rss_before);
    // Bound: the reply limit, a few items in flight (each item exists as a JSON value, its
    // text and its line while it is made), and the allocator's slack.
    assert!(
        grown_kib < 24 * 1024,
        "the server grew by {grown_kib} KiB while 100 MiB were offered to a reader that reads nothing"
    );
    for k in 0..100 {
        let line = conn.read_json();
        assert_eq!(line["data"]["i"], json!(k));
        assert_eq!(line["data"]["pad"].as_str().unwrap().len(), 1 << 20);
    }
    assert_eq!(
        conn.read_json(),
        json!({"ipcReqID": "big", "data": {"done": 100}})
    );
}

#[test]
fn streams_take_no_request_slot_so_a_cancel_is_read_even_when_every_slot_could_be_taken() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(
        &dir.path().join("s.sock"),
        &["--max-in-flight", "1", "--max-streams", "2"],
    );
    let mut conn = server.connect();
    for id in ["a", "b"] {
        conn.send(&format!(
            r#"{{"uri":"/ipcserver/test/stream","ipcReqID":"{id}","data":{{"count":100000,"interval":20}},"ipcStream":true}}"#
        ));
    }
    // Two endless-enough streams run; plain calls are still read and answered.
    conn.send(r#"{"uri":"/ipcserver/test/delay","ipcReqID":1,"data":{"delay":50}}"#);
    conn.send(r#"{"uri":"/ipcserver/test/echo","ipcReqID":2,"data":"two"}"#);
    // A third stream is over the limit of 2 and refused; the others carry on.
    conn.send(r#"{"uri":"/ipcserver/test/stream","ipcReqID":"c","ipcStream":true}"#);
    let (mut plain, mut refused) = (0, None);
    while plain < 2 || refused.is_none() {
        let line = conn.read_json();
        match &line["ipcReqID"] {
            Value::Number(_) => plain += 1,
            id if *id == json!("c") => refused = Some(line),
            _ => assert_eq!(line["ipcMore"], json!(true), "{line}"),
        }
    }
    let refused = refused.unwrap();
    assert_eq!(refused["code"], json!("invalid_request"), "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("already runs 2 streams"),
        "{refused}"
    );
    // Both cancels are read although both stream slots are taken.
    conn.send(r#"{"ipcReqID":"a","ipcCancel":true}"#);
    conn.send(r#"{"ipcReqID":"b","ipcCancel":true}"#);
    let mut cancelled = 0;
    while cancelled < 2 {
        let line = conn.read_json();
        if line.get("ipcMore").is_none() {
            assert_eq!(line["code"], json!("cancelled"), "{line}");
            cancelled += 1;
        }
    }
}

#[test]
fn a_stream_gives_back_its_request_charge_once_it_runs_so_its_cancel_is_read() {
    let probe = Arc::new(Probe::default());
    let drips = probe.clone();
    // A connection may hold 1 MiB; each stream request below is charged about 0.8 MiB (its
    // 400 KB of data as text and as the tree it could parse into).
    let server = LibServer::start(
        |config| config.with_max_held_bytes(1 << 20, 64 << 20),
        move |server: &Server| {
            server
                .add_stream_handler("/drip", "drip", move || {
                    let items = drip(drips.clone());
                    async move { Ok::<_, HandlerError>(items) }
                })
                .unwrap();
        },
    );
    let mut conn = server.connect();
    let data = "x".repeat(400_000);
    for id in ["a", "b"] {
        conn.send(&format!(
            r#"{{"uri":"/drip","ipcReqID":"{id}","data":"{data}","ipcStream":true}}"#
        ));
        // Until this stream's first item: it runs (the other drips 50 lines a second).
        let started = (0..200).any(|_| conn.read_json()["ipcReqID"] == json!(id));
        assert!(
            started,
            "stream {id} never started: its request was not read"
        );
    }
    conn.send(r#"{"ipcReqID":"a","ipcCancel":true}"#);
    // Both streams drip every 20 ms: 200 lines is 2 s, far more than a read cancel needs.
    let cancelled = (0..200)
        .map(|_| conn.read_json())
        .find(|line| line["ipcReqID"] == json!("a") && line.get("ipcMore").is_none());
    assert_eq!(
        cancelled.map(|line| line["code"].clone()),
        Some(json!("cancelled")),
        "the cancel was not read while the connection's streams held their charges"
    );
    conn.send(r#"{"uri":"/ipcserver/test/echo","ipcReqID":"e","data":1}"#);
    let line = loop {
        let line = conn.read_json();
        if line["ipcReqID"] == json!("e") {
            break line;
        }
    };
    assert_eq!(line["data"], json!(1));
}

#[test]
fn a_stream_id_longer_than_1024_bytes_is_refused_without_being_copied_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("s.sock"), &[]);
    let mut conn = server.connect();
    // The id would outlive the request's charge (cancel table, every item line): refused.
    let id = format!("\"{}\"", "i".repeat(1023));
    let reply = conn.read_json_after(&format!(
        r#"{{"uri":"/ipcserver/stats/watch","ipcReqID":{id},"data":{{"interval":3600000}},"ipcStream":true}}"#
    ));
    assert_eq!(reply["code"], json!("invalid_request"), "{reply}");
    assert_eq!(
        reply["ipcReqID"],
        Value::Null,
        "the long id is not copied back"
    );
    assert!(
        conn.is_silent_for(Duration::from_millis(200)),
        "no stream runs"
    );
    // 1024 bytes of JSON (quotes included) is fine.
    let id = format!("\"{}\"", "i".repeat(1022));
    conn.send(&format!(
        r#"{{"uri":"/ipcserver/test/stream","ipcReqID":{id},"data":{{"count":1}},"ipcStream":true}}"#
    ));
    assert_eq!(conn.read_json()["data"], json!({"i": 0}));
    assert_eq!(conn.read_json()["data"], json!({"done": 1}));
    // A plain request keeps any id, as before.
    let id = format!("\"{}\"", "p".repeat(100_000));
    let reply = conn.read_json_after(&format!(
        r#"{{"uri":"/ipcserver/test/echo","ipcReqID":{id},"data":1}}"#
    ));
    assert_eq!(reply["ipcReqID"].as_str().unwrap().len(), 100_000);
}

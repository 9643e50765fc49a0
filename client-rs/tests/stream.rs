//! Streamed replies (`Client::stream`): against the real server binary for the protocol
//! (`/ipcserver/test/stream`, `/ipcserver/stats/watch`), over UNIX sockets and WebSockets; and
//! against a hand-written wire peer where a test must see the exact lines the client sends (the
//! cancel) or count what a server could push into a client that does not read (backpressure).
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use pixl_ipc_client::{Client, ConnectionState, Error, ReconnectPolicy, STREAM_BUFFER_LINES};
use pixl_ipc_server::{Data, HandlerError, RunningServer, Server, ServerConfig, WebSocketConfig};
use pixl_ipc_test_utils::ServerProcess;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

const LIMIT: Duration = Duration::from_secs(20);

/// The tests that flood this process or measure its memory run one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Fails the test instead of hanging.
async fn bounded<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, future)
        .await
        .expect("took longer than the test limit")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Unix,
    Ws,
}

/// The server binary on a temp socket, with a loopback WebSocket listener for `Kind::Ws`.
struct Target {
    server: ServerProcess,
    address: String,
    _dir: tempfile::TempDir,
}

fn start(kind: Kind) -> Target {
    let extra: &[&str] = &[];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stream.sock");
    let (server, address) = match kind {
        Kind::Unix => {
            let server = ServerProcess::start(&path, extra);
            (server, path.display().to_string())
        }
        Kind::Ws => {
            let mut args = vec!["--ws", "127.0.0.1:0"];
            args.extend_from_slice(extra);
            let server = ServerProcess::start(&path, &args);
            let url = server.ws_url().expect("the server prints its ws url");
            (server, url)
        }
    };
    Target {
        server,
        address,
        _dir: dir,
    }
}

async fn connect(target: &Target, timeout: Duration) -> Client {
    Client::builder()
        .reconnect(ReconnectPolicy::Off)
        .request_timeout(timeout)
        .connect(target.address.as_str())
        .await
        .unwrap()
}

macro_rules! on_both_transports {
    ($($name:ident),* $(,)?) => {
        mod unix {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Kind::Unix).await } )*
        }
        mod ws {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::Kind::Ws).await } )*
        }
    };
}

on_both_transports!(
    items_arrive_in_order_then_the_final_value_last,
    a_dropped_stream_is_cancelled_and_nothing_of_it_leaks,
    plain_calls_and_streams_interleave_on_one_client,
    the_timeout_applies_to_each_line_and_cancels,
    a_server_kill_ends_the_stream_with_connection_lost,
);

async fn items_arrive_in_order_then_the_final_value_last(kind: Kind) {
    let target = start(kind);
    let client = connect(&target, Duration::from_secs(5)).await;
    let items: Vec<Value> = bounded(
        client
            .stream("/ipcserver/test/stream", json!({"count": 5}))
            .map(Result::unwrap)
            .collect(),
    )
    .await;
    let mut expected: Vec<Value> = (0..5).map(|i| json!({ "i": i })).collect();
    expected.push(json!({"done": 5}));
    assert_eq!(items, expected);

    // Typed, with items spaced out.
    #[derive(Deserialize, Debug, PartialEq)]
    struct Item {
        i: Option<u64>,
        done: Option<u64>,
    }
    let mut typed = client.stream_as::<_, Item>(
        "/ipcserver/test/stream",
        &json!({"count": 3, "interval": 20}),
    );
    let mut seen = Vec::new();
    while let Some(item) = bounded(typed.next()).await {
        seen.push(item.unwrap());
    }
    assert_eq!(seen.len(), 4);
    assert_eq!(seen[2].i, Some(2));
    assert_eq!(seen[3].done, Some(3));
    assert!(bounded(typed.next()).await.is_none(), "ended for good");

    // A route that does not stream: its one reply, then the end.
    let echo: Vec<_> = bounded(
        client
            .stream("/ipcserver/test/echo", json!({"a": 1}))
            .collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(echo.len(), 1, "{echo:?}");
    assert_eq!(echo[0].as_ref().unwrap(), &json!({"a": 1}));
}

/// The server library in this process with a stream that never ends by itself (`/forever`,
/// an item every `interval` ms) and counts how often its handler was dropped: the server drops
/// it when the stream is cancelled (or its connection ends).
struct LibTarget {
    _running: RunningServer,
    address: String,
    dropped: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
}

struct CountDrop(Arc<AtomicUsize>);

impl Drop for CountDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Deserialize)]
struct Forever {
    interval: u64,
}

async fn lib_target(kind: Kind) -> LibTarget {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lib.sock");
    let ws = WebSocketConfig::default().listen_on("127.0.0.1:0".parse().unwrap());
    let server = Server::new(ServerConfig::new(&path).with_websocket(ws));
    let dropped = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&dropped);
    server
        .add_stream_handler("/forever", "forever", move |Data(params): Data<Forever>| {
            let guard = CountDrop(Arc::clone(&counter));
            async move {
                let pause = Duration::from_millis(params.interval);
                Ok(futures_util::stream::unfold(
                    (guard, 0u64),
                    move |(guard, k)| async move {
                        if k > 0 {
                            tokio::time::sleep(pause).await;
                        }
                        let item: Result<Value, HandlerError> = Ok(json!({ "i": k }));
                        Some((item, (guard, k + 1)))
                    },
                ))
            }
        })
        .unwrap();
    let running = server.start().await.unwrap();
    let address = match kind {
        Kind::Unix => path.display().to_string(),
        Kind::Ws => running.handle().ws_urls()[0].clone(),
    };
    LibTarget {
        _running: running,
        address,
        dropped,
        _dir: dir,
    }
}

impl LibTarget {
    async fn client(&self, timeout: Duration) -> Client {
        Client::builder()
            .reconnect(ReconnectPolicy::Off)
            .request_timeout(timeout)
            .connect(self.address.as_str())
            .await
            .unwrap()
    }

    /// Waits until the server has dropped `n` stream handlers.
    async fn dropped(&self, n: usize) {
        bounded(async {
            while self.dropped.load(Ordering::SeqCst) < n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }
}

/// A stream that never ends is dropped after two items: the server hears the cancel and drops
/// its handler while the connection stays open, its `cancelled` line is swallowed, nothing
/// reaches pushes, and the connection carries on.
async fn a_dropped_stream_is_cancelled_and_nothing_of_it_leaks(kind: Kind) {
    let target = lib_target(kind).await;
    let client = target.client(Duration::from_secs(5)).await;
    let mut pushes = client.subscribe();
    let mut stream = client.stream("/forever", json!({"interval": 20}));
    assert_eq!(
        bounded(stream.next()).await.unwrap().unwrap(),
        json!({"i": 0})
    );
    assert_eq!(
        bounded(stream.next()).await.unwrap().unwrap(),
        json!({"i": 1})
    );
    assert_eq!(target.dropped.load(Ordering::SeqCst), 0);
    drop(stream);
    target.dropped(1).await;
    assert_eq!(client.state(), ConnectionState::Connected);
    // Long enough for stray items (one per 50 ms) to show up if the stream were still going.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let echo = bounded(client.send("/ipcserver/test/echo", json!({"after": "drop"}))).await;
    assert_eq!(echo.unwrap(), json!({"after": "drop"}));
    let stray = tokio::time::timeout(Duration::from_millis(100), pushes.recv()).await;
    assert!(stray.is_err(), "nothing of the stream is a push: {stray:?}");
}

async fn plain_calls_and_streams_interleave_on_one_client(kind: Kind) {
    let target = start(kind);
    let client = connect(&target, Duration::from_secs(5)).await;
    let streams: Vec<_> = (0..4)
        .map(|n| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .stream(
                        "/ipcserver/test/stream",
                        json!({"count": 10 + n, "interval": 5}),
                    )
                    .map(Result::unwrap)
                    .collect::<Vec<_>>()
                    .await
            })
        })
        .collect();
    for n in 0..20 {
        let reply = bounded(client.send("/ipcserver/test/echo", json!({ "n": n }))).await;
        assert_eq!(reply.unwrap(), json!({ "n": n }));
    }
    for (n, stream) in streams.into_iter().enumerate() {
        let items = bounded(stream).await.unwrap();
        let count = 10 + n as u64;
        assert_eq!(items.len() as u64, count + 1);
        for (i, item) in items.iter().take(count as usize).enumerate() {
            assert_eq!(item, &json!({ "i": i }));
        }
        assert_eq!(items.last().unwrap(), &json!({ "done": count }));
    }
    // A streaming route called plainly: stream_required, for `call` an error, for `send` data.
    let err = bounded(client.call::<_, Value>("/ipcserver/test/stream", &json!({"count": 2})))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Server { code, .. } if code == "stream_required"),
        "{err:?}"
    );
    let reply = bounded(client.send("/ipcserver/test/stream", json!({}))).await;
    assert_eq!(reply.unwrap()["code"], "stream_required");
}

async fn the_timeout_applies_to_each_line_and_cancels(kind: Kind) {
    let target = lib_target(kind).await;
    let timeout = Duration::from_millis(400);
    let client = target.client(timeout).await;
    // Items every 150 ms: each wait is shorter than the timeout, the whole stream is not.
    let items: Vec<_> = bounded(
        client
            .stream("/forever", json!({"interval": 150}))
            .take(6)
            .collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(items.len(), 6, "{items:?}");
    assert!(items.iter().all(Result::is_ok), "{items:?}");
    target.dropped(1).await;

    // Items every 2 s: the wait for the second times out.
    let mut slow = client.stream("/forever", json!({"interval": 2000}));
    assert_eq!(
        bounded(slow.next()).await.unwrap().unwrap(),
        json!({"i": 0})
    );
    let started = Instant::now();
    let second = bounded(slow.next()).await.unwrap();
    let waited = started.elapsed();
    assert!(matches!(second, Err(Error::Timeout { .. })), "{second:?}");
    assert!(waited >= timeout && waited < timeout * 3, "{waited:?}");
    assert!(
        bounded(slow.next()).await.is_none(),
        "an error ends the stream"
    );
    // The server was told at once (the stream is still held here): its handler is dropped,
    // the connection stays, and the `cancelled` line is swallowed.
    target.dropped(2).await;
    assert_eq!(client.state(), ConnectionState::Connected);
    let echo = bounded(client.send("/ipcserver/test/echo", json!(1))).await;
    assert_eq!(echo.unwrap(), json!(1));

    // Items 700 ms apart (over the 400 ms client timeout) with a per-stream timeout of 5 s.
    let patient: Vec<_> = bounded(
        client
            .stream("/forever", json!({"interval": 700}))
            .timeout(Duration::from_secs(5))
            .take(3)
            .collect::<Vec<_>>(),
    )
    .await;
    assert!(patient.iter().all(Result::is_ok), "{patient:?}");
    assert_eq!(patient.len(), 3);
}

async fn a_server_kill_ends_the_stream_with_connection_lost(kind: Kind) {
    let target = start(kind);
    let client = connect(&target, Duration::from_secs(10)).await;
    let mut stream = client.stream(
        "/ipcserver/test/stream",
        json!({"count": 1_000_000, "interval": 20}),
    );
    assert!(bounded(stream.next()).await.unwrap().is_ok());
    let Target { server, _dir, .. } = target;
    server.kill9();
    let killed = Instant::now();
    let outcome = bounded(async {
        loop {
            match stream.next().await {
                Some(Ok(_)) => {}
                Some(Err(err)) => break err,
                None => panic!("ended without an error"),
            }
        }
    })
    .await;
    assert!(
        matches!(outcome, Error::ConnectionLost { .. }),
        "{outcome:?}"
    );
    assert!(killed.elapsed() < Duration::from_secs(1));
    assert!(bounded(stream.next()).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_stats_yields_the_stats_object_each_interval() {
    let target = start(Kind::Unix);
    let client = connect(&target, Duration::from_secs(5)).await;
    let mut watch = client.stream("/ipcserver/stats/watch", json!({"interval": 50}));
    let started = Instant::now();
    for _ in 0..3 {
        let stats = bounded(watch.next()).await.unwrap().unwrap();
        assert!(stats.is_object(), "{stats}");
    }
    assert!(started.elapsed() >= Duration::from_millis(90));
}

// ---- A hand-written peer: the exact wire ----

/// A UNIX socket server that accepts one connection and hands it to `behave`.
async fn wire_peer<F, Fut>(behave: F) -> (tempfile::TempDir, PathBuf)
where
    F: FnOnce(tokio::net::UnixStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peer.sock");
    let listener = UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        behave(stream).await;
    });
    (dir, path)
}

async fn wire_client(path: &Path, timeout: Duration) -> Client {
    Client::builder()
        .reconnect(ReconnectPolicy::Off)
        .request_timeout(timeout)
        .connect(path)
        .await
        .unwrap()
}

/// The request says `ipcStream`; the drop sends exactly `{"ipcReqID":ID,"ipcCancel":true}`;
/// the items still in flight and the `cancelled` line after it are swallowed (no push, no
/// error), and the next call on the connection is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wire_a_drop_sends_the_cancel_and_late_lines_are_swallowed() {
    let (seen_tx, seen_rx) = tokio::sync::oneshot::channel();
    let (_dir, path) = wire_peer(move |stream| async move {
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        let request: Value =
            serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        let id = request["ipcReqID"].clone();
        for i in 0..2 {
            let item = json!({"ipcReqID": id, "data": {"i": i}, "ipcMore": true});
            write
                .write_all(format!("{item}\n").as_bytes())
                .await
                .unwrap();
        }
        let cancel: Value =
            serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        // Still in flight when the cancel came, then the answer to it.
        for i in 2..5 {
            let item = json!({"ipcReqID": id, "data": {"i": i}, "ipcMore": true});
            write
                .write_all(format!("{item}\n").as_bytes())
                .await
                .unwrap();
        }
        let cancelled =
            json!({"ipcReqID": id, "code": "cancelled", "message": "cancelled by the client"});
        write
            .write_all(format!("{cancelled}\n").as_bytes())
            .await
            .unwrap();
        // Then a plain call, echoed.
        let call: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
        let reply = json!({"ipcReqID": call["ipcReqID"], "data": call["data"]});
        write
            .write_all(format!("{reply}\n").as_bytes())
            .await
            .unwrap();
        let _ = seen_tx.send((request, cancel));
        std::future::pending::<()>().await;
    })
    .await;
    let client = wire_client(&path, Duration::from_secs(5)).await;
    let mut pushes = client.subscribe();
    let mut stream = client.stream("/some/stream", json!({"x": 1}));
    let id = stream.id().to_owned();
    assert_eq!(
        bounded(stream.next()).await.unwrap().unwrap(),
        json!({"i": 0})
    );
    drop(stream);
    let echo = bounded(client.send("/echo", json!({"after": 1})))
        .await
        .unwrap();
    assert_eq!(echo, json!({"after": 1}));
    let (request, cancel) = bounded(seen_rx).await.unwrap();
    assert_eq!(request["ipcStream"], json!(true));
    assert_eq!(request["ipcReqID"], json!(id));
    assert_eq!(cancel, json!({"ipcReqID": id, "ipcCancel": true}));
    let stray = tokio::time::timeout(Duration::from_millis(200), pushes.recv()).await;
    assert!(
        stray.is_err(),
        "a late line of the dropped stream became a push: {stray:?}"
    );
    assert!(matches!(
        client.state(),
        pixl_ipc_client::ConnectionState::Connected
    ));
}

/// Error finals in both shapes end the stream with `Error::Server` after the items; a final
/// without data ends it with nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wire_error_and_empty_finals() {
    let (_dir, path) = wire_peer(move |stream| async move {
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        for final_line in [
            json!({"data": {"code": "handler_error", "message": "boom"}}),
            json!({"code": "shutting_down", "message": "bye"}),
            json!({}),
            json!({"data": null}),
        ] {
            let request: Value =
                serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
            let id = request["ipcReqID"].clone();
            let item = json!({"ipcReqID": id, "data": 7, "ipcMore": true});
            let mut last = final_line;
            last["ipcReqID"] = id;
            write
                .write_all(format!("{item}\n{last}\n").as_bytes())
                .await
                .unwrap();
        }
        std::future::pending::<()>().await;
    })
    .await;
    let client = wire_client(&path, Duration::from_secs(5)).await;
    for expected in ["handler_error", "shutting_down"] {
        let got: Vec<_> = bounded(client.stream("/s", json!({})).collect::<Vec<_>>()).await;
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].as_ref().unwrap(), &json!(7));
        assert!(
            matches!(&got[1], Err(Error::Server { code, .. }) if code == expected),
            "{got:?}"
        );
    }
    for _ in 0..2 {
        let got: Vec<_> = bounded(client.stream("/s", json!({})).collect::<Vec<_>>()).await;
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].as_ref().unwrap(), &json!(7));
    }
}

/// A server offering items as fast as it can to a stream nobody polls: the client stops reading
/// once the stream's buffer is full, so what the server got to write stays bounded (the socket
/// buffers plus the client's few lines), not the whole stream; then every item still arrives,
/// in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wire_a_stream_nobody_polls_stops_the_client_reading() {
    let _serial = ONE_AT_A_TIME.lock().await;
    const ITEMS: u64 = 400;
    const ITEM_BYTES: usize = 64 * 1024;
    let written = Arc::new(AtomicU64::new(0));
    let (_dir, path) = {
        let written = Arc::clone(&written);
        wire_peer(move |stream| async move {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            let request: Value =
                serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
            let id = request["ipcReqID"].clone();
            let pad = "x".repeat(ITEM_BYTES);
            for i in 0..ITEMS {
                let item = json!({"ipcReqID": id, "data": {"i": i, "pad": pad}, "ipcMore": true});
                let line = format!("{item}\n");
                write.write_all(line.as_bytes()).await.unwrap();
                written.fetch_add(line.len() as u64, Ordering::Relaxed);
            }
            let last = json!({"ipcReqID": id, "data": {"done": ITEMS}});
            write
                .write_all(format!("{last}\n").as_bytes())
                .await
                .unwrap();
            std::future::pending::<()>().await;
        })
        .await
    };
    let client = wire_client(&path, Duration::from_secs(5)).await;
    let mut stream = client.stream("/flood", json!({}));
    let first = bounded(stream.next()).await.unwrap().unwrap();
    assert_eq!(first["i"], 0);
    // Not polled for a while: the server writes what the client and the socket take.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let offered = written.load(Ordering::Relaxed);
    let whole = ITEMS * ITEM_BYTES as u64;
    let bound = (STREAM_BUFFER_LINES as u64 + 2) * ITEM_BYTES as u64 + 8 * 1024 * 1024;
    eprintln!("the server wrote {offered} of {whole} bytes while nobody polled (bound {bound})");
    assert!(
        offered < bound,
        "the client took {offered} bytes without being polled"
    );
    assert!(offered < whole / 2);
    let mut next = 1;
    while let Some(item) = bounded(stream.next()).await {
        let item = item.unwrap();
        if next < ITEMS {
            assert_eq!(item["i"], next);
        } else {
            assert_eq!(item, json!({"done": ITEMS}));
        }
        next += 1;
    }
    assert_eq!(next, ITEMS + 1);
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Against the real server: a stream of a million items nobody polls for three seconds leaves
/// this process's memory about where it was (the client stopped reading; the server paused the
/// stream). The documented cost: meanwhile a plain call on the same connection waits (here:
/// times out) behind the paused stream; dropping the stream cancels it and the connection
/// serves calls again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_nobody_polls_keeps_memory_bounded_and_holds_up_its_connection() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let target = start(Kind::Unix);
    let client = connect(&target, Duration::from_secs(10)).await;
    let short = Duration::from_millis(500);
    let before = rss_bytes();
    let mut stream = client.stream("/ipcserver/test/stream", json!({"count": 1_000_000}));
    assert_eq!(
        bounded(stream.next()).await.unwrap().unwrap(),
        json!({"i": 0})
    );
    // The whole stream is about 45 MB of lines: far more than the client may hold.
    // (Without the bound, a debug build took in about 7 MiB a second here.)
    tokio::time::sleep(Duration::from_secs(3)).await;
    let grew = rss_bytes().saturating_sub(before);
    eprintln!(
        "RSS grew {} KiB while the stream was not polled",
        grew / 1024
    );
    assert!(grew < 8 * 1024 * 1024, "RSS grew {} KiB", grew / 1024);
    let held =
        bounded(client.send_with_timeout("/ipcserver/test/echo", json!("held"), short)).await;
    assert!(matches!(held, Err(Error::Timeout { .. })), "{held:?}");
    // Still in order after the pause.
    assert_eq!(
        bounded(stream.next()).await.unwrap().unwrap(),
        json!({"i": 1})
    );
    drop(stream);
    let echo = bounded(async {
        loop {
            match client
                .send_with_timeout("/ipcserver/test/echo", json!("free"), short)
                .await
            {
                Err(Error::Timeout { .. }) => continue,
                other => break other,
            }
        }
    })
    .await;
    assert_eq!(echo.unwrap(), json!("free"));
}

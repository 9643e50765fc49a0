//! The async client against the real server: the library on a temp socket for custom handlers,
//! the binary where a process has to die. Every await is bounded by `bounded`.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pixl_ipc_client::{Client, CloseReason, ConnectionState, Error, Push, ReconnectPolicy};
use pixl_ipc_server::{
    HandlerResult, Request, RequestContext, RunningServer, Server, ServerConfig, WebSocketConfig,
};
use pixl_ipc_test_utils::ServerProcess;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(15);

/// Fails the test instead of hanging when `future` takes longer than [`LIMIT`].
async fn bounded<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, future)
        .await
        .expect("operation took longer than the test limit")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Unix,
    Ws,
}

/// The server library on a temp socket and a loopback WebSocket port; `address` is the one the
/// test's transport uses.
struct LibServer {
    running: RunningServer,
    path: PathBuf,
    address: String,
    _dir: tempfile::TempDir,
}

async fn lib_server(setup: impl FnOnce(&Server)) -> LibServer {
    lib_server_on(Kind::Unix, setup).await
}

async fn lib_server_on(kind: Kind, setup: impl FnOnce(&Server)) -> LibServer {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client-test.sock");
    let ws = WebSocketConfig::default().listen_on("127.0.0.1:0".parse().unwrap());
    let server = Server::new(ServerConfig::new(&path).with_websocket(ws));
    setup(&server);
    let running = server.start().await.unwrap();
    let address = match kind {
        Kind::Unix => path.display().to_string(),
        Kind::Ws => running.handle().ws_urls()[0].clone(),
    };
    LibServer {
        running,
        path,
        address,
        _dir: dir,
    }
}

/// The server binary for `kind`, on `path` and (for WebSockets) a fixed loopback port, so a
/// restarted server has the same address.
struct BinaryTarget {
    path: PathBuf,
    port: u16,
    kind: Kind,
}

impl BinaryTarget {
    fn new(kind: Kind, dir: &Path) -> BinaryTarget {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        BinaryTarget {
            path: dir.join("bin.sock"),
            port,
            kind,
        }
    }

    fn start(&self) -> ServerProcess {
        let ws = format!("127.0.0.1:{}", self.port);
        match self.kind {
            Kind::Unix => ServerProcess::start(&self.path, &[]),
            Kind::Ws => ServerProcess::start(&self.path, &["--ws", &ws]),
        }
    }

    fn address(&self) -> String {
        match self.kind {
            Kind::Unix => self.path.display().to_string(),
            Kind::Ws => format!("ws://127.0.0.1:{}/", self.port),
        }
    }
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
    concurrent_calls_from_many_tasks_share_one_connection,
    a_timeout_fails_the_call_and_the_late_reply_is_dropped_quietly,
    send_and_call_report_errors_as_documented,
    pushes_reach_subscribers,
    notify_is_one_way,
    close_settles_pending_calls_and_later_calls_fail,
    calls_in_flight_fail_with_connection_lost_within_100ms_of_a_server_kill,
    the_client_reconnects_after_a_server_restart_on_the_same_address,
    running_out_of_retries_fails_waiting_and_later_calls_clearly,
    requests_larger_than_the_socket_buffer_are_written_whole,
);

/// A request is written as soon as the task takes it; one the socket cannot take at once must
/// still go out whole (the rest written when the socket has room), with other calls queued
/// behind it and beside it.
async fn requests_larger_than_the_socket_buffer_are_written_whole(kind: Kind) {
    let server = lib_server_on(kind, |_| {}).await;
    let client = Client::connect(server.address.as_str()).await.unwrap();
    let calls = (0..4u8).map(|n| {
        let client = client.clone();
        tokio::spawn(async move {
            // 3 MiB, far past a socket buffer; different per call so a mix-up shows.
            let big = json!({"n": n, "text": char::from(b'a' + n).to_string().repeat(3 << 20)});
            let echo = client.send("/ipcserver/test/echo", &big).await.unwrap();
            assert!(echo == big, "call {n}: the echo differs");
            let small = json!({"after": n});
            assert_eq!(
                client.send("/ipcserver/test/echo", &small).await.unwrap(),
                small
            );
        })
    });
    for call in calls.collect::<Vec<_>>() {
        bounded(call).await.unwrap();
    }
    client.close().await;
}

fn fast_reconnect(max_retries: Option<u32>) -> ReconnectPolicy {
    ReconnectPolicy::Fixed {
        interval: Duration::from_millis(20),
        max_retries,
    }
}

async fn wait_for_state(
    client: &Client,
    wanted: impl Fn(&ConnectionState) -> bool,
) -> ConnectionState {
    let mut changes = client.state_changes();
    let state = bounded(changes.wait_for(|state| wanted(state)))
        .await
        .unwrap()
        .clone();
    state
}

async fn concurrent_calls_from_many_tasks_share_one_connection(kind: Kind) {
    let server = lib_server_on(kind, |_| {}).await;
    let client = Client::connect(server.address.as_str()).await.unwrap();
    let mut tasks = Vec::new();
    for task in 0..50u64 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            for call in 0..20u64 {
                let delay = (task * 7 + call * 3) % 15;
                let reply = client
                    .send(
                        "/ipcserver/test/delay",
                        json!({"delay": delay, "tag": [task, call]}),
                    )
                    .await
                    .unwrap();
                assert_eq!(
                    reply,
                    json!({"delay": if delay == 0 { json!(0) } else { json!(delay) }})
                );
                // Borrowed data: sent as is, still the caller's afterwards.
                let sent = json!({"task": task, "call": call});
                let echo = client.send("/ipcserver/test/echo", &sent).await.unwrap();
                assert_eq!(echo, sent);
            }
        }));
    }
    for task in tasks {
        bounded(task).await.unwrap();
    }
    let stats = server.running.handle().stats();
    assert_eq!(
        stats.total.client_open, 1,
        "all calls went over one connection"
    );
    assert_eq!(stats.total.requests, 2000);
}

async fn a_timeout_fails_the_call_and_the_late_reply_is_dropped_quietly(kind: Kind) {
    let server = lib_server_on(kind, |_| {}).await;
    let client = Client::builder()
        .request_timeout(Duration::from_millis(100))
        .connect(server.address.as_str())
        .await
        .unwrap();
    let started = Instant::now();
    let err = bounded(client.send("/ipcserver/test/delay", json!({"delay": 300})))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Timeout { uri, timeout } if uri == "/ipcserver/test/delay" && *timeout == Duration::from_millis(100)),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(250));
    // The late reply arrives while this call waits; it must not be mistaken for this one.
    let reply = bounded(client.send_with_timeout(
        "/ipcserver/test/delay",
        json!({"delay": 350}),
        Duration::from_secs(2),
    ))
    .await
    .unwrap();
    assert_eq!(reply, json!({"delay": 350}));
    assert_eq!(client.state(), ConnectionState::Connected);
}

async fn send_and_call_report_errors_as_documented(kind: Kind) {
    let server = lib_server_on(kind, |_| {}).await;
    let client = Client::connect(server.address.as_str()).await.unwrap();
    // Handler-level error: data for send, an error for call.
    let data = bounded(client.send("/nope", json!({}))).await.unwrap();
    assert_eq!(data["code"], json!("no_handler_found"));
    let err = bounded(client.call::<_, Value>("/nope", &json!({})))
        .await
        .unwrap_err();
    match err {
        Error::Server {
            code,
            message,
            data,
        } => {
            assert_eq!(code, "no_handler_found");
            assert_eq!(message, "No handler found for /nope");
            assert_eq!(data.unwrap()["code"], json!("no_handler_found"));
        }
        other => panic!("expected a server error, got {other:?}"),
    }
    // Request-level error (top-level code) is an error for send too.
    let err = bounded(client.send("", json!({}))).await.unwrap_err();
    assert!(
        matches!(&err, Error::Server { code, data: None, .. } if code == "no_uri"),
        "{err:?}"
    );
    // Typed decode, and a decode failure.
    #[derive(serde::Deserialize, Debug)]
    struct Delayed {
        delay: u64,
    }
    let typed: Delayed = bounded(client.call("/ipcserver/test/delay", &json!({"delay": 5})))
        .await
        .unwrap();
    assert_eq!(typed.delay, 5);
    let err = bounded(client.call::<_, Delayed>("/ipcserver/test/echo", &json!({"delay": "soon"})))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Decode(_)), "{err:?}");
}

#[tokio::test]
async fn requests_carry_pid_user_agent_and_fresh_ids() {
    let server = lib_server(|server| {
        server
            .add_uri_handler(
                "/who",
                "who",
                |req: Request, _: RequestContext| async move {
                    HandlerResult::Ok(
                        json!({"pid": req.pid, "ua": req.user_agent, "id": req.ipc_req_id}),
                    )
                },
            )
            .unwrap();
    })
    .await;
    let default_agent = Client::connect(&server.path).await.unwrap();
    let first = bounded(default_agent.send("/who", Value::Null))
        .await
        .unwrap();
    let second = bounded(default_agent.send("/who", Value::Null))
        .await
        .unwrap();
    assert_eq!(first["pid"], json!(std::process::id()));
    let cwd = std::env::current_dir().unwrap().display().to_string();
    assert_eq!(first["ua"], json!(format!("Rust/pixl-ipc-client{cwd}")));
    assert_eq!(first["id"], json!("rq0"));
    assert_eq!(second["id"], json!("rq1"));
    let custom = Client::builder()
        .user_agent("billing")
        .connect(server.path.as_path())
        .await
        .unwrap();
    assert_eq!(
        bounded(custom.send("/who", Value::Null)).await.unwrap()["ua"],
        json!("billing")
    );
}

#[tokio::test]
async fn a_request_over_the_size_limit_is_refused_without_being_sent() {
    let server = lib_server(|_| {}).await;
    let client = Client::builder()
        .max_message_bytes(1024)
        .connect(&server.path)
        .await
        .unwrap();
    let err = bounded(client.send("/ipcserver/test/echo", json!("x".repeat(2000))))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::MessageTooLarge { limit: 1024, size } if size > 2000),
        "{err:?}"
    );
    assert_eq!(server.running.handle().stats().total.requests, 0);
    assert_eq!(
        bounded(client.send("/ipcserver/test/echo", json!(1)))
            .await
            .unwrap(),
        json!(1)
    );
}

#[tokio::test]
async fn connecting_to_a_missing_server_names_the_address_and_the_os_reason() {
    let err = Client::connect("/nonexistent/dir/x.sock")
        .await
        .err()
        .unwrap();
    let text = err.to_string();
    assert!(matches!(err, Error::Connect { .. }));
    assert!(
        text.contains("/nonexistent/dir/x.sock") && text.contains("No such file"),
        "{text}"
    );
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("ws://127.0.0.1:{closed_port}/");
    let err = Client::connect(url.as_str()).await.err().unwrap();
    let text = err.to_string();
    assert!(text.contains(&url) && text.contains("refused"), "{text}");
    let err = Client::connect("http://127.0.0.1:1/").await.err().unwrap();
    assert!(matches!(err, Error::UnsupportedAddress { .. }), "{err:?}");
}

async fn pushes_reach_subscribers(kind: Kind) {
    let server = lib_server_on(kind, |_| {}).await;
    let client = Client::connect(server.address.as_str()).await.unwrap();
    let mut first = client.subscribe();
    let mut second = client.subscribe();
    bounded(client.send("/ipcserver/test/echo", json!(0)))
        .await
        .unwrap();
    let handle = server.running.handle();
    let report = handle.broadcast(&Push {
        uri: Some("/events/x".into()),
        data: json!({"n": 1}),
    });
    assert_eq!(report.delivered, 1);
    for subscription in [&mut first, &mut second] {
        let push = bounded(subscription.recv()).await.unwrap();
        assert_eq!(push.uri.as_deref(), Some("/events/x"));
        assert_eq!(push.data, json!({"n": 1}));
    }
}

async fn notify_is_one_way(kind: Kind) {
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    let server = lib_server_on(kind, move |server| {
        server
            .add_uri_handler("/count", "count", move |_: Request, _: RequestContext| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    HandlerResult::Ok(json!("unseen"))
                }
            })
            .unwrap();
    })
    .await;
    let client = Client::connect(server.address.as_str()).await.unwrap();
    for _ in 0..3 {
        bounded(client.notify("/count", Value::Null)).await.unwrap();
    }
    // A normal call after them; replies are in completion order, so wait for the count.
    bounded(client.send("/ipcserver/test/echo", json!(1)))
        .await
        .unwrap();
    bounded(async {
        while count.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

async fn close_settles_pending_calls_and_later_calls_fail(kind: Kind) {
    let server = lib_server_on(kind, |_| {}).await;
    let client = Client::connect(server.address.as_str()).await.unwrap();
    let pending: Vec<_> = (0..5)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .send("/ipcserver/test/delay", json!({"delay": 5000}))
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    bounded(client.close()).await;
    for call in pending {
        let outcome = bounded(call).await.unwrap();
        assert!(matches!(outcome, Err(Error::Closed)), "{outcome:?}");
    }
    assert_eq!(
        client.state(),
        ConnectionState::Closed(CloseReason::ByCaller)
    );
    let later = bounded(client.send("/ipcserver/test/echo", json!(1))).await;
    assert!(matches!(later, Err(Error::Closed)), "{later:?}");
}

async fn calls_in_flight_fail_with_connection_lost_within_100ms_of_a_server_kill(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let target = BinaryTarget::new(kind, dir.path());
    let server = target.start();
    let client = Client::builder()
        .reconnect(ReconnectPolicy::Off)
        .connect(target.address())
        .await
        .unwrap();
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let outcome = client
                    .send("/ipcserver/test/delay", json!({"delay": 10000}))
                    .await;
                (outcome, Instant::now())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.kill9();
    let killed = Instant::now();
    for call in calls {
        let (outcome, settled) = bounded(call).await.unwrap();
        assert!(
            matches!(&outcome, Err(Error::ConnectionLost { .. })),
            "{outcome:?}"
        );
        let after = settled.saturating_duration_since(killed);
        assert!(
            after < Duration::from_millis(100),
            "settled {after:?} after the kill"
        );
    }
    // Policy off: the client stays down and says why.
    let state = wait_for_state(&client, |s| matches!(s, ConnectionState::Closed(_))).await;
    assert!(
        matches!(
            state,
            ConnectionState::Closed(CloseReason::ConnectionLost(_))
        ),
        "{state:?}"
    );
    let later = bounded(client.send("/ipcserver/test/echo", json!(1))).await;
    assert!(
        matches!(later, Err(Error::NotConnected { .. })),
        "{later:?}"
    );
}

async fn the_client_reconnects_after_a_server_restart_on_the_same_address(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let target = BinaryTarget::new(kind, dir.path());
    let server = target.start();
    let client = Client::builder()
        .reconnect(fast_reconnect(None))
        .connect(target.address())
        .await
        .unwrap();
    assert_eq!(
        bounded(client.send("/ipcserver/test/echo", json!("before")))
            .await
            .unwrap(),
        json!("before")
    );
    server.kill9();
    wait_for_state(&client, |s| {
        matches!(s, ConnectionState::Reconnecting { .. })
    })
    .await;
    // A call made while the server is down waits for the reconnect within its own timeout.
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { client.send("/ipcserver/test/echo", json!("during")).await })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    let _restarted = target.start();
    assert_eq!(bounded(waiting).await.unwrap().unwrap(), json!("during"));
    assert_eq!(client.state(), ConnectionState::Connected);
    assert_eq!(
        bounded(client.send("/ipcserver/test/echo", json!("after")))
            .await
            .unwrap(),
        json!("after")
    );
}

async fn running_out_of_retries_fails_waiting_and_later_calls_clearly(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let target = BinaryTarget::new(kind, dir.path());
    let server = target.start();
    let client = Client::builder()
        .reconnect(fast_reconnect(Some(3)))
        .connect(target.address())
        .await
        .unwrap();
    bounded(client.send("/ipcserver/test/echo", json!(1)))
        .await
        .unwrap();
    server.kill9();
    wait_for_state(&client, |s| {
        matches!(s, ConnectionState::Reconnecting { .. })
    })
    .await;
    let waiting = bounded(client.send("/ipcserver/test/echo", json!(2))).await;
    assert!(
        matches!(&waiting, Err(Error::ReconnectFailed { attempts: 3, .. })),
        "{waiting:?}"
    );
    let state = client.state();
    assert!(
        matches!(
            state,
            ConnectionState::Closed(CloseReason::ReconnectFailed { attempts: 3, .. })
        ),
        "{state:?}"
    );
    let later = bounded(client.send("/ipcserver/test/echo", json!(3))).await;
    let text = later.unwrap_err().to_string();
    assert!(
        text.contains("gave up reconnecting") && text.contains("3 attempts"),
        "{text}"
    );
}

#[tokio::test]
async fn dropping_every_handle_stops_the_background_task() {
    let server = lib_server(|_| {}).await;
    let client = Client::connect(&server.path).await.unwrap();
    bounded(client.send("/ipcserver/test/echo", json!(1)))
        .await
        .unwrap();
    let mut changes = client.state_changes();
    drop(client);
    bounded(changes.wait_for(|s| matches!(s, ConnectionState::Closed(CloseReason::ByCaller))))
        .await
        .unwrap();
    let handle = server.running.handle();
    bounded(async {
        while !handle.connections().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// The client reaches a server on a Linux abstract socket by `@name`, `unix:@name` and
/// `unix://@name`, and sees the server's transport report the name as `@name`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg(target_os = "linux")]
async fn the_client_reaches_a_server_on_an_abstract_socket() {
    let name = format!("pixl-ipc-test-{}-client", std::process::id());
    let server = Server::new(ServerConfig::new_abstract(&name));
    server
        .add_uri_handler(
            "/where",
            "where",
            |_: Request, ctx: RequestContext| async move {
                HandlerResult::Ok(json!(format!("{:?}", ctx.connection.transport)))
            },
        )
        .unwrap();
    let running = server.start().await.unwrap();
    assert_eq!(
        running.handle().socket_path(),
        Path::new(&format!("@{name}"))
    );
    for address in [
        format!("@{name}"),
        format!("unix:@{name}"),
        format!("unix://@{name}"),
    ] {
        let client = bounded(Client::builder().connect(address.as_str()))
            .await
            .unwrap();
        let reply = bounded(client.send("/where", json!({}))).await.unwrap();
        assert!(
            reply.as_str().unwrap().contains(&format!("\"@{name}\"")),
            "{reply}"
        );
        client.close().await;
    }
    running.shutdown().await;
    let Err(err) = bounded(Client::builder().connect(format!("@{name}").as_str())).await else {
        panic!("connected to @{name} after the server stopped");
    };
    assert!(matches!(err, Error::Connect { .. }), "{err}");
    assert!(err.to_string().contains(&format!("@{name}")), "{err}");
}

//! A waiting caller reads the UNIX socket itself ("caller reads"); these tests hand the reading
//! role over at the awkward moments, against a scripted server that writes exact bytes (split
//! lines, several replies in one write) or the real binary where a process has to die.
//!
//! Callers read only on a current-thread runtime (on a multi-threaded one the task reads
//! alone). Each test runs on one, with the reading caller in the test's own future, which the
//! runtime polls before the connection task: the caller, not the task, is the one reading when
//! the bytes arrive.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::{poll, StreamExt};
use pixl_ipc_client::{Client, ConnectionState, Error, ReconnectPolicy};
use pixl_ipc_test_utils::ServerProcess;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixListener;

const LIMIT: Duration = Duration::from_secs(15);

/// Fails the test instead of hanging when `future` takes longer than [`LIMIT`].
async fn bounded<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, future)
        .await
        .expect("operation took longer than the test limit")
}

/// The server's side of one connection, written by the test.
struct Scripted {
    lines: Lines<BufReader<OwnedReadHalf>>,
    write: OwnedWriteHalf,
}

impl Scripted {
    /// The next request's id and uri.
    async fn request(&mut self) -> (String, String) {
        let line = bounded(self.lines.next_line()).await.unwrap().unwrap();
        let request: Value = serde_json::from_str(&line).unwrap();
        (
            request["ipcReqID"].as_str().unwrap().to_owned(),
            request["uri"].as_str().unwrap().to_owned(),
        )
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.write.write_all(bytes).await.unwrap();
    }
}

fn reply(id: &str, data: &Value) -> String {
    format!("{}\n", json!({"ipcReqID": id, "data": data}))
}

/// A client connected to a scripted server, after one answered call (so the connection task
/// has put the read half where callers can read it).
async fn scripted() -> (tempfile::TempDir, Client, Scripted) {
    scripted_with(Client::builder()).await
}

/// As [`scripted`], with the client built by `builder`.
async fn scripted_with(
    builder: pixl_ipc_client::ClientBuilder,
) -> (tempfile::TempDir, Client, Scripted) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scripted.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let (client, accepted) = tokio::join!(builder.connect(&path), listener.accept());
    let client = client.unwrap();
    let (stream, _) = accepted.unwrap();
    let (read, write) = stream.into_split();
    let mut server = Scripted {
        lines: BufReader::new(read).lines(),
        write,
    };
    let answer = async {
        let (id, _) = server.request().await;
        server.write(reply(&id, &json!("warm")).as_bytes()).await;
    };
    let (warm, ()) = tokio::join!(client.send("/warm", json!(0)), answer);
    assert_eq!(warm.unwrap(), json!("warm"));
    (dir, client, server)
}

/// A call on its own task: it waits on its oneshot (the test's caller holds the role).
fn spawn_call(client: &Client, uri: &str) -> tokio::task::JoinHandle<Result<Value, Error>> {
    let client = client.clone();
    let uri = uri.to_owned();
    tokio::spawn(async move { client.send(&uri, json!(null)).await })
}

/// The reading caller times out holding half of another caller's reply: the half stays in the
/// shared buffer, the task reads the rest, and the other caller gets its reply whole.
#[tokio::test]
async fn a_caller_timing_out_mid_read_loses_no_byte_of_another_callers_reply() {
    let (_dir, client, mut server) = scripted().await;
    let a = client.send_with_timeout("/a", json!(null), Duration::from_millis(300));
    tokio::pin!(a);
    assert!(poll!(&mut a).is_pending(), "A is sent and reads the socket");
    let b = spawn_call(&client, "/b");
    let script = tokio::spawn(async move {
        let (id_a, _) = server.request().await;
        let (id_b, _) = server.request().await;
        let reply_b = reply(&id_b, &json!("b"));
        let (first, rest) = reply_b.split_at(reply_b.len() / 2);
        server.write(first.as_bytes()).await;
        // A times out meanwhile, with the half line read.
        tokio::time::sleep(Duration::from_millis(600)).await;
        server.write(rest.as_bytes()).await;
        server.write(reply(&id_a, &json!("late")).as_bytes()).await;
        server
    });
    let outcome = bounded(&mut a).await;
    assert!(matches!(outcome, Err(Error::Timeout { .. })), "{outcome:?}");
    assert_eq!(bounded(b).await.unwrap().unwrap(), json!("b"));
    // The connection is sound: the next caller reads its own reply.
    let mut server = bounded(script).await.unwrap();
    let (next, ()) = tokio::join!(client.send("/c", json!(null)), async {
        let (id, _) = server.request().await;
        server.write(reply(&id, &json!("c")).as_bytes()).await;
    });
    assert_eq!(next.unwrap(), json!("c"));
}

/// The reading caller routes one caller's reply and half of a third one's from one read, then
/// its future is dropped (a `select!` elsewhere won): both other callers get their replies.
#[tokio::test]
async fn a_caller_dropped_after_reading_others_replies_leaves_them_whole() {
    let (_dir, client, mut server) = scripted().await;
    // Boxed, so that `drop` below drops the future itself.
    let mut a = Box::pin(client.send("/a", json!(null)));
    assert!(poll!(&mut a).is_pending());
    let b = spawn_call(&client, "/b");
    let c = spawn_call(&client, "/c");
    let (drop_a, dropped_a) = tokio::sync::oneshot::channel::<()>();
    let (a_gone, wait_a_gone) = tokio::sync::oneshot::channel::<()>();
    let script = tokio::spawn(async move {
        let (id_a, _) = server.request().await;
        let (id_b, _) = server.request().await;
        let (id_c, _) = server.request().await;
        let reply_c = reply(&id_c, &json!("c"));
        let (first, rest) = reply_c.split_at(reply_c.len() / 2);
        // One write: B's reply and the first half of C's.
        server
            .write(format!("{}{first}", reply(&id_b, &json!("b"))).as_bytes())
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop_a.send(()).unwrap();
        wait_a_gone.await.unwrap();
        server.write(rest.as_bytes()).await;
        server.write(reply(&id_a, &json!("late")).as_bytes()).await;
    });
    tokio::select! {
        outcome = &mut a => panic!("A has no reply yet: {outcome:?}"),
        _ = dropped_a => {}
    }
    // B's reply was routed by A, which read it.
    assert_eq!(bounded(b).await.unwrap().unwrap(), json!("b"));
    drop(a);
    a_gone.send(()).unwrap();
    assert_eq!(bounded(c).await.unwrap().unwrap(), json!("c"));
    bounded(script).await.unwrap();
}

/// A stream's buffer fills while a caller reads: reading stops there for everyone (the
/// caller's own reply, written after the stream's lines, waits), and resumes as the stream's
/// user takes its items, every item in order, then the caller's reply.
#[tokio::test]
async fn a_full_stream_pauses_a_reading_caller_until_its_items_are_taken() {
    let items = pixl_ipc_client::STREAM_BUFFER_LINES + 3;
    let (_dir, client, mut server) = scripted().await;
    let mut stream = client.stream("/s", json!(null));
    assert!(poll!(stream.next()).is_pending(), "the stream is sent");
    let a = client.send("/a", json!(null));
    tokio::pin!(a);
    let script = tokio::spawn(async move {
        let (id_s, uri) = server.request().await;
        assert_eq!(uri, "/s");
        let (id_a, _) = server.request().await;
        let mut burst = String::new();
        for i in 0..items {
            burst.push_str(&format!(
                "{}\n",
                json!({"ipcReqID": id_s, "data": {"i": i}, "ipcMore": true})
            ));
        }
        burst.push_str(&reply(&id_a, &json!("a")));
        burst.push_str(&reply(&id_s, &Value::Null));
        server.write(burst.as_bytes()).await;
        server
    });
    // A reads: the stream's buffer fills, and A's reply is not read while it is full.
    let early = tokio::time::timeout(Duration::from_millis(400), &mut a).await;
    assert!(
        early.is_err(),
        "A's reply was read past a full stream: {early:?}"
    );
    for i in 0..items {
        let item = bounded(stream.next()).await.unwrap().unwrap();
        assert_eq!(item, json!({"i": i}));
    }
    assert!(
        bounded(stream.next()).await.is_none(),
        "the final line ends it"
    );
    assert_eq!(bounded(&mut a).await.unwrap(), json!("a"));
    let _server = bounded(script).await.unwrap();
}

/// A reading caller fails a stream (its item is over max_reply_bytes: a cancel to send), then
/// parks another stream's line behind a full buffer: the cancel goes out at once, not once the
/// other stream has room (the hostile review found it held back while the line was parked).
#[tokio::test]
async fn a_cancel_found_by_a_reading_caller_is_sent_while_another_streams_line_is_parked() {
    let (_dir, client, mut server) = scripted_with(Client::builder().max_reply_bytes(300)).await;
    let mut too_large = client.stream("/s1", json!(null));
    let mut unread = client.stream("/s2", json!(null));
    assert!(poll!(too_large.next()).is_pending(), "s1 is sent");
    assert!(poll!(unread.next()).is_pending(), "s2 is sent");
    let a = client.send("/a", json!(null));
    tokio::pin!(a);
    assert!(poll!(&mut a).is_pending(), "a is sent");
    let (id1, _) = server.request().await;
    let (id2, _) = server.request().await;
    let (id_a, _) = server.request().await;
    assert!(poll!(&mut a).is_pending(), "a claims the reading role");
    let items = pixl_ipc_client::STREAM_BUFFER_LINES + 8;
    let mut burst = format!(
        "{}\n",
        json!({"ipcReqID": id1, "data": "z".repeat(600), "ipcMore": true})
    );
    for i in 0..items {
        burst.push_str(&format!(
            "{}\n",
            json!({"ipcReqID": id2, "data": i, "ipcMore": true})
        ));
    }
    burst.push_str(&reply(&id_a, &json!("a")));
    server.write(burst.as_bytes()).await;
    // A reads until s2's buffer is full and its next line parks; its own reply waits.
    let early = tokio::time::timeout(Duration::from_millis(300), &mut a).await;
    assert!(early.is_err(), "a's reply was read past the parked line");
    let cancel = tokio::time::timeout(Duration::from_millis(2000), server.lines.next_line())
        .await
        .expect("no cancel for s1 while s2's line was parked")
        .unwrap()
        .unwrap();
    let cancel: Value = serde_json::from_str(&cancel).unwrap();
    assert_eq!(cancel, json!({"ipcReqID": id1, "ipcCancel": true}));
    for i in 0..items {
        assert_eq!(bounded(unread.next()).await.unwrap().unwrap(), json!(i));
    }
    assert_eq!(bounded(&mut a).await.unwrap(), json!("a"));
    assert!(matches!(
        bounded(too_large.next()).await,
        Some(Err(Error::ReplyTooLarge { .. }))
    ));
}

fn fast_reconnect() -> ReconnectPolicy {
    ReconnectPolicy::Fixed {
        interval: Duration::from_millis(20),
        max_retries: None,
    }
}

async fn wait_connected(client: &Client) {
    bounded(
        client
            .state_changes()
            .wait_for(|state| *state == ConnectionState::Connected),
    )
    .await
    .unwrap();
}

/// The server dies while a caller reads (another waits on its oneshot): both fail with the
/// task path's error at once, the client reconnects to the restarted server, and calls and
/// streams work on the new connection.
#[tokio::test]
async fn a_server_restart_while_a_caller_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("restart.sock");
    let server = ServerProcess::start(&path, &[]);
    let client = Client::builder()
        .reconnect(fast_reconnect())
        .connect(Path::new(&path))
        .await
        .unwrap();
    assert_eq!(
        bounded(client.send("/ipcserver/test/echo", json!(1)))
            .await
            .unwrap(),
        json!(1)
    );
    let a = client.send("/ipcserver/test/delay", json!({"delay": 10_000}));
    tokio::pin!(a);
    assert!(poll!(&mut a).is_pending());
    let b = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .send("/ipcserver/test/delay", json!({"delay": 10_000}))
                .await
        })
    };
    let killed = tokio::select! {
        outcome = &mut a => panic!("A has no reply yet: {outcome:?}"),
        killed = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            server.kill9();
            Instant::now()
        } => killed,
    };
    let outcome = bounded(&mut a).await;
    assert!(
        matches!(&outcome, Err(Error::ConnectionLost { reason, .. }) if reason == "the server closed the connection"),
        "{outcome:?}"
    );
    assert!(killed.elapsed() < Duration::from_secs(1));
    let other = bounded(b).await.unwrap();
    assert!(
        matches!(&other, Err(Error::ConnectionLost { .. })),
        "{other:?}"
    );

    let _restarted = ServerProcess::start(&path, &[]);
    wait_connected(&client).await;
    for round in 0..3 {
        assert_eq!(
            bounded(client.send("/ipcserver/test/echo", json!(round)))
                .await
                .unwrap(),
            json!(round)
        );
    }
    let items: Vec<Value> = bounded(
        client
            .stream("/ipcserver/test/stream", json!({"count": 3}))
            .map(Result::unwrap)
            .collect(),
    )
    .await;
    assert_eq!(items.len(), 4, "{items:?}");
}

/// Many callers on one connection, the reading role passing between them and the
/// task all the time: calls that time out, calls dropped after one poll, streams, and plain
/// echoes, all at once on one connection. Every echo gets its own data back, every stream its
/// items, and nothing hangs.
#[tokio::test]
async fn callers_that_time_out_drop_and_stream_at_once_all_settle_correctly() {
    busy_callers().await;
}

/// The same on a multi-threaded runtime, where the task reads alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_on_a_multi_threaded_runtime() {
    busy_callers().await;
}

async fn busy_callers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("busy.sock");
    let _server = pixl_ipc_server::Server::new(pixl_ipc_server::ServerConfig::new(&path))
        .start()
        .await
        .unwrap();
    let client = Client::connect(&path).await.unwrap();
    let workers: Vec<_> = (0..8)
        .map(|worker| {
            let client = client.clone();
            tokio::spawn(async move {
                for i in 0..150 {
                    let data = json!({"worker": worker, "i": i});
                    if i % 5 == 0 {
                        let outcome = client
                            .send_with_timeout(
                                "/ipcserver/test/delay",
                                json!({"delay": 2}),
                                Duration::from_millis(1),
                            )
                            .await;
                        assert!(
                            matches!(outcome, Ok(_) | Err(Error::Timeout { .. })),
                            "{outcome:?}"
                        );
                    } else if i % 7 == 0 {
                        // Polled once or a few times, then dropped.
                        tokio::select! {
                            outcome = client.send("/ipcserver/test/echo", &data) => {
                                assert_eq!(outcome.unwrap(), data);
                            }
                            () = tokio::task::yield_now() => {}
                        }
                    } else if i % 11 == 0 {
                        let items: Vec<Value> = client
                            .stream("/ipcserver/test/stream", json!({"count": 3}))
                            .map(Result::unwrap)
                            .collect()
                            .await;
                        assert_eq!(items.len(), 4, "{items:?}");
                    } else {
                        let echoed = client.send("/ipcserver/test/echo", &data).await.unwrap();
                        assert_eq!(echoed, data);
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        bounded(worker).await.unwrap();
    }
    assert_eq!(
        bounded(client.send("/ipcserver/test/echo", json!("end")))
            .await
            .unwrap(),
        json!("end")
    );
}

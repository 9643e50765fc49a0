//! The client against servers written to misbehave: each test's server does exactly one bad
//! thing (a huge reply of tiny objects, a ping flood without reading, one frame of millions of
//! messages, a push flood, an invalid close code, a dropped connection with a reconnect policy
//! at its limits), and checks a bound: time to settle, or the growth of this process's resident
//! memory (sampled from /proc/self/status while the test runs).
//!
//! The tests that measure memory run one at a time (a lock), so they do not see each other's.
#![allow(clippy::unwrap_used)]
// Tests fail loudly on purpose.
// Without the `ws` feature the WebSocket servers and their helpers are compiled out.
#![cfg_attr(not(feature = "ws"), allow(unused_imports, dead_code))]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pixl_ipc_client::{
    Backoff, Client, CloseReason, ConnectionState, ReconnectPolicy, SubscriptionError,
};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener};

const LIMIT: Duration = Duration::from_secs(60);
const MIB: u64 = 1024 * 1024;

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().await
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Samples this process's RSS every 2 ms; `stop` returns the peak growth over the start.
struct PeakRss {
    start: u64,
    peak: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PeakRss {
    fn start() -> PeakRss {
        let start = rss_bytes();
        let peak = Arc::new(AtomicU64::new(start));
        let done = Arc::new(AtomicBool::new(false));
        let thread = {
            let (peak, done) = (Arc::clone(&peak), Arc::clone(&done));
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_bytes(), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        PeakRss {
            start,
            peak,
            done,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> u64 {
        self.done.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        self.peak
            .load(Ordering::Relaxed)
            .max(rss_bytes())
            .saturating_sub(self.start)
    }
}

async fn bounded<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, future)
        .await
        .expect("took longer than the test limit")
}

/// A UNIX socket server that accepts one connection and hands it to `behave`.
async fn unix_server<F, Fut>(behave: F) -> (tempfile::TempDir, std::path::PathBuf)
where
    F: FnOnce(tokio::net::UnixStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.sock");
    let listener = UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        behave(stream).await;
    });
    (dir, path)
}

#[cfg(feature = "ws")]
/// A WebSocket server on loopback that accepts one connection, completes the upgrade, and then
/// hands the raw TCP stream to `behave`, which writes frames by hand.
async fn ws_server<F, Fut>(behave: F) -> String
where
    F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let ws = tokio_tungstenite::accept_async(stream).await.unwrap();
        behave(ws.into_inner()).await;
    });
    url
}

/// `{"ipcReqID":"<id>","data":[{},{},...]}` of about `bytes` bytes, with its newline.
fn tiny_objects_reply(id: &str, bytes: usize) -> Vec<u8> {
    let mut line = format!(r#"{{"ipcReqID":"{id}","data":["#).into_bytes();
    line.extend_from_slice(b"{}");
    while line.len() < bytes {
        line.extend_from_slice(b",{}");
    }
    line.extend_from_slice(b"]}\n");
    line
}

fn id_of(line: &str) -> String {
    let request: Value = serde_json::from_str(line).unwrap();
    request["ipcReqID"].as_str().unwrap().to_owned()
}

/// An unmasked server frame with `opcode` and `payload`.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        len @ 0..=125 => out.push(u8::try_from(len).unwrap()),
        len @ 126..=65535 => {
            out.push(126);
            out.extend_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
        }
        len => {
            out.push(127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

/// Item: decoding happened in the connection task, before the deadline was looked at. A 7.5 MiB
/// reply of 2.6M tiny objects (under the default `max_reply_bytes`) must not overrun its
/// caller's 500 ms timeout, nor delay another call's small reply queued behind it.
///
/// The caller that timed out leaves its reply decoding on a blocking thread; this test's own
/// runtime waits for that before the next test measures memory.
#[test]
fn a_huge_reply_of_tiny_objects_keeps_its_deadline_and_stalls_no_other_call() {
    let _serial = ONE_AT_A_TIME.blocking_lock();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(huge_reply_keeps_its_deadline());
    drop(runtime);
}

async fn huge_reply_keeps_its_deadline() {
    // Built before the calls start (the client's ids are "rq" + a counter from 0), so building
    // it is not counted in the time measured.
    let big_reply = tiny_objects_reply("rq0", 7_500_000);
    let (_dir, path) = unix_server(|stream| async move {
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        assert_eq!(id_of(&lines.next_line().await.unwrap().unwrap()), "rq0");
        let small_id = id_of(&lines.next_line().await.unwrap().unwrap());
        write.write_all(&big_reply).await.unwrap();
        let small = format!("{{\"ipcReqID\":\"{small_id}\",\"data\":\"small\"}}\n");
        write.write_all(small.as_bytes()).await.unwrap();
        std::future::pending::<()>().await;
    })
    .await;
    let client = Client::builder()
        .reconnect(ReconnectPolicy::Off)
        .connect(&path)
        .await
        .unwrap();
    let timeout = Duration::from_millis(500);
    let big = {
        let client = client.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let outcome = client.send_with_timeout("/big", json!({}), timeout).await;
            (started.elapsed(), outcome.map(|_| ()))
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let small = bounded(client.send_with_timeout("/small", json!({}), Duration::from_secs(20)))
        .await
        .unwrap();
    let small_took = started.elapsed();
    let (big_took, big_outcome) = bounded(big).await.unwrap();
    eprintln!("big reply: {big_outcome:?} after {big_took:?}; small reply after {small_took:?}");
    assert_eq!(small, json!("small"));
    assert!(
        big_took < timeout + Duration::from_millis(250),
        "the big reply's caller settled after {big_took:?}, past its {timeout:?} timeout"
    );
    assert!(
        small_took < Duration::from_millis(250),
        "a small reply waited {small_took:?} behind another call's big one"
    );
}

/// Item: parse amplification. A 24 MiB reply of tiny objects decodes into ~1.5 GiB of `Value`s;
/// with the default `max_reply_bytes` (8 MiB) it fails at once, undecoded, and the client's
/// memory grows by little more than the line itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_24_mib_reply_of_tiny_objects_is_refused_undecoded_by_default() {
    let _serial = serial().await;
    let reply = tiny_objects_reply("rq0", 24 * 1024 * 1024);
    let (_dir, path) = unix_server(move |stream| async move {
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        let _ = lines.next_line().await;
        write.write_all(&reply).await.unwrap();
        drop(reply);
        std::future::pending::<()>().await;
    })
    .await;
    let client = Client::builder()
        .reconnect(ReconnectPolicy::Off)
        .connect(&path)
        .await
        .unwrap();
    let rss = PeakRss::start();
    let started = Instant::now();
    let outcome =
        bounded(client.send_with_timeout("/big", json!({}), Duration::from_secs(30))).await;
    let took = started.elapsed();
    let grew = rss.stop();
    eprintln!(
        "24 MiB reply: {:?} after {took:?}, RSS grew {} MiB",
        outcome.as_ref().map(|_| ()),
        grew / MIB
    );
    let err = outcome.unwrap_err();
    assert!(
        err.to_string().contains("max_reply_bytes"),
        "unexpected error: {err}"
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(grew < 160 * MIB, "RSS grew {} MiB", grew / MIB);
}

/// The same kind of reply through typed `call`: `data` goes straight into the caller's type,
/// no `Value` tree in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_call_decodes_a_big_reply_without_a_value_tree() {
    let _serial = serial().await;
    let (_dir, path) = unix_server(|stream| async move {
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        let id = id_of(&lines.next_line().await.unwrap().unwrap());
        write
            .write_all(&tiny_objects_reply(&id, 6 * 1024 * 1024))
            .await
            .unwrap();
        std::future::pending::<()>().await;
    })
    .await;
    let client = Client::builder()
        .request_timeout(Duration::from_secs(30))
        .connect(&path)
        .await
        .unwrap();
    let rss = PeakRss::start();
    let items: Vec<serde::de::IgnoredAny> = bounded(client.call("/big", &json!({}))).await.unwrap();
    let grew = rss.stop();
    eprintln!(
        "typed call of {} objects: RSS grew {} MiB",
        items.len(),
        grew / MIB
    );
    assert!(items.len() > 2_000_000, "{} items", items.len());
    assert!(grew < 96 * MIB, "RSS grew {} MiB", grew / MIB);
}

#[cfg(feature = "ws")]
/// Item: over WebSocket a pong was queued for every ping while the server did not read. A
/// server flooding 1M pings (125-byte payloads) without ever reading gets cut off after a few
/// dozen unsent pongs, and the client's memory stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_from_a_server_that_never_reads_is_cut_off() {
    let _serial = serial().await;
    let url = ws_server(|mut tcp| async move {
        let ping = frame(0x9, &[b'p'; 125]);
        let batch: Vec<u8> = ping
            .iter()
            .copied()
            .cycle()
            .take(ping.len() * 1000)
            .collect();
        for _ in 0..1000 {
            if tcp.write_all(&batch).await.is_err() {
                return;
            }
        }
        std::future::pending::<()>().await;
    })
    .await;
    let rss = PeakRss::start();
    let client = Client::builder()
        .reconnect(ReconnectPolicy::Off)
        .connect(url.as_str())
        .await
        .unwrap();
    let started = Instant::now();
    let mut state = client.state_changes();
    let closed = bounded(state.wait_for(|s| matches!(s, ConnectionState::Closed(_))))
        .await
        .unwrap()
        .clone();
    let took = started.elapsed();
    let grew = rss.stop();
    eprintln!(
        "ping flood: {closed:?} after {took:?}, RSS grew {} MiB",
        grew / MIB
    );
    assert!(
        matches!(&closed, ConnectionState::Closed(CloseReason::ConnectionLost(reason)) if reason.contains("pings")),
        "{closed:?}"
    );
    assert!(grew < 48 * MIB, "RSS grew {} MiB", grew / MIB);
}

#[cfg(feature = "ws")]
/// Item: over WebSocket a whole frame was decoded into messages before the first was handed
/// out. One 2 MiB frame of 700K tiny messages is now taken a line at a time: memory stays flat,
/// and the push after it arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_frame_of_a_million_tiny_messages_is_taken_a_line_at_a_time() {
    let _serial = serial().await;
    let url = ws_server(|mut tcp| async move {
        let payload: Vec<u8> = b"{}\n"
            .iter()
            .copied()
            .cycle()
            .take(2 * 1024 * 1024 / 3 * 3)
            .collect();
        tcp.write_all(&frame(0x1, &payload)).await.unwrap();
        drop(payload);
        let done = br#"{"uri":"/done","data":1}"#;
        tcp.write_all(&frame(0x1, done)).await.unwrap();
        std::future::pending::<()>().await;
    })
    .await;
    let rss = PeakRss::start();
    let client = Client::builder()
        .reconnect(ReconnectPolicy::Off)
        .connect(url.as_str())
        .await
        .unwrap();
    let mut pushes = client.subscribe();
    let started = Instant::now();
    let mut missed = 0;
    let done = bounded(async {
        loop {
            match pushes.recv().await {
                Ok(push) if push.uri.as_deref() == Some("/done") => break push,
                Ok(_) => {}
                Err(SubscriptionError::Lagged(n)) => missed += n,
                Err(SubscriptionError::Closed) => panic!("closed before /done"),
            }
        }
    })
    .await;
    let took = started.elapsed();
    let grew = rss.stop();
    eprintln!(
        "700K-message frame: /done after {took:?}, {missed} missed, RSS grew {} MiB",
        grew / MIB
    );
    assert_eq!(done.data, json!(1));
    assert!(grew < 64 * MIB, "RSS grew {} MiB", grew / MIB);
}

/// Item: a slow subscriber buffered 1024 pushes whatever their size. 300 pushes of 512 KiB
/// (150 MiB) to a subscriber that does not read: it holds about the 8 MiB default, then learns
/// how many it missed, and gets the last push.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_holds_a_bounded_number_of_bytes_and_learns_what_it_missed() {
    let _serial = serial().await;
    let (flooded_tx, flooded_rx) = tokio::sync::oneshot::channel();
    let (_dir, path) = unix_server(move |mut stream| async move {
        let mut push = br#"{"uri":"/big","data":""#.to_vec();
        push.extend(std::iter::repeat_n(b'x', 512 * 1024));
        push.extend_from_slice(b"\"}\n");
        for _ in 0..300 {
            stream.write_all(&push).await.unwrap();
        }
        stream
            .write_all(b"{\"uri\":\"/done\",\"data\":1}\n")
            .await
            .unwrap();
        let _ = flooded_tx.send(());
        std::future::pending::<()>().await;
    })
    .await;
    let client = Client::builder()
        .reconnect(ReconnectPolicy::Off)
        .connect(&path)
        .await
        .unwrap();
    let rss = PeakRss::start();
    let mut pushes = client.subscribe();
    bounded(flooded_rx).await.unwrap();
    // Let the client take in everything the server wrote.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let grew = rss.stop();
    let mut missed = 0;
    let mut got = 0;
    bounded(async {
        loop {
            match pushes.recv().await {
                Ok(push) if push.uri.as_deref() == Some("/done") => break,
                Ok(_) => got += 1,
                Err(SubscriptionError::Lagged(n)) => missed += n,
                Err(SubscriptionError::Closed) => panic!("closed before /done"),
            }
        }
    })
    .await;
    eprintln!(
        "push flood: {got} received, {missed} missed, RSS grew {} MiB while not reading",
        grew / MIB
    );
    assert_eq!(
        got + missed,
        300,
        "every push is received or counted as missed"
    );
    assert!(missed > 250, "missed only {missed}");
    assert!(grew < 64 * MIB, "RSS grew {} MiB", grew / MIB);
}

#[cfg(feature = "ws")]
/// Item: the error named 1002, the code the client answered with, not the server's.
#[tokio::test]
async fn an_invalid_close_code_is_named_as_the_server_sent_it() {
    let url = ws_server(|mut tcp| async move {
        tcp.write_all(&frame(0x8, &[0x03, 0xE7])).await.unwrap(); // 999
        std::future::pending::<()>().await;
    })
    .await;
    let client = Client::builder()
        .reconnect(ReconnectPolicy::Off)
        .connect(url.as_str())
        .await
        .unwrap();
    let mut state = client.state_changes();
    let closed = bounded(state.wait_for(|s| matches!(s, ConnectionState::Closed(_))))
        .await
        .unwrap()
        .clone();
    let ConnectionState::Closed(CloseReason::ConnectionLost(reason)) = closed else {
        panic!("{closed:?}");
    };
    eprintln!("{reason}");
    assert!(reason.contains("999"), "{reason}");
}

/// Item: out-of-range options panicked the reconnect task, after which every call failed
/// "closed" while `state()` said `Connected`. They are refused at construction now.
#[tokio::test]
async fn out_of_range_options_are_refused_at_construction() {
    let (_dir, path) = unix_server(|_stream| std::future::pending::<()>()).await;
    let nan = Client::builder()
        .reconnect(ReconnectPolicy::Backoff(Backoff {
            jitter: f64::NAN,
            ..Backoff::default()
        }))
        .connect(&path)
        .await;
    let err = nan.err().expect("a NaN jitter was accepted");
    assert!(err.to_string().contains("jitter"), "{err}");
    let zero = Client::builder()
        .request_timeout(Duration::ZERO)
        .connect(&path)
        .await;
    let err = zero.err().expect("a zero request timeout was accepted");
    assert!(err.to_string().contains("request_timeout"), "{err}");
}

/// `Duration::MAX` intervals are valid (wait as good as forever): the reconnect task must not
/// panic on them, and the state must say what is happening.
#[tokio::test]
async fn duration_max_reconnect_intervals_wait_and_the_state_says_so() {
    let (_dir, path) = unix_server(|stream| async move { drop(stream) }).await;
    let client = Client::builder()
        .reconnect(ReconnectPolicy::Backoff(Backoff {
            interval: Duration::MAX,
            max_delay: Duration::MAX,
            jitter: 0.0,
            ..Backoff::default()
        }))
        .connect(&path)
        .await
        .unwrap();
    let mut state = client.state_changes();
    bounded(state.wait_for(|s| *s != ConnectionState::Connected))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(client.state(), ConnectionState::Reconnecting { attempt: 1 });
    let err = client
        .send_with_timeout("/x", json!({}), Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(
        matches!(err, pixl_ipc_client::Error::Timeout { .. }),
        "{err}"
    );
}

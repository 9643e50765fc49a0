//! `--forward PATTERN=ADDRESS`: the real binary in front of an upstream pixl-ipc server.
//!
//! The upstream is either this crate's server in-process (real sockets; it has routes of its
//! own for the forwarder to reach, which the binary lacks: its built-ins are the forwarder's
//! too, and built-ins are matched first) or the binary itself, when the test kills and
//! restarts it by PID.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pixl_ipc_server::{
    HandlerError, HandlerResult, Request, RequestContext, RunningServer, Server, ServerConfig,
};
use pixl_ipc_test_utils::{eventually, ServerProcess, TIMEOUT};
use serde_json::{json, Value};

/// An in-process upstream on `path`, named `name` in its answers: `/myapi/echo` answers the
/// uri and data, `/myapi/fail` a handler error, `/myapi/slow` after `data.ms`, and every other
/// uri `{"from": name, "default": uri}`.
fn upstream(runtime: &tokio::runtime::Runtime, path: &Path, name: &'static str) -> RunningServer {
    runtime.block_on(async {
        let server = Server::new(ServerConfig::new(path));
        server
            .add_uri_handler(
                "/myapi/echo",
                "echo",
                move |req: Request, _: RequestContext| async move {
                    HandlerResult::Ok(json!({"from": name, "uri": req.uri, "data": req.data}))
                },
            )
            .unwrap()
            .add_uri_handler(
                "/myapi/fail",
                "fail",
                |_: Request, _: RequestContext| async move {
                    HandlerResult::Err(HandlerError::new("my_code", "it failed upstream"))
                },
            )
            .unwrap()
            .add_uri_handler(
                "/myapi/slow",
                "slow",
                |req: Request, _: RequestContext| async move {
                    let ms = req.data["ms"].as_u64().unwrap_or(0);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    HandlerResult::Ok(json!({"slept": ms}))
                },
            )
            .unwrap()
            .set_default_handler(move |req: Request, _: RequestContext| async move {
                HandlerResult::Ok(json!({"from": name, "default": req.uri}))
            });
        server.start().await.unwrap()
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn forward_arg(pattern: &str, socket: &Path) -> String {
    format!("{pattern}=unix:{}", socket.display())
}

/// Starts the forwarder binary on `dir/front.sock` with `args`.
fn forwarder(dir: &Path, args: &[String]) -> ServerProcess {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ServerProcess::start(&dir.join("front.sock"), &args)
}

/// Waits until the forwarder relays `uri` from its upstream (its first connect is in the
/// background).
fn wait_connected(front: &ServerProcess, uri: &str) {
    let mut conn = front.connect();
    eventually("the forwarder reaches its upstream", || {
        let reply = conn.call(&format!(r#"{{"ipcReqID":"w","uri":"{uri}","data":{{}}}}"#));
        !reply.contains("upstream_unavailable")
    });
}

#[test]
fn replies_and_errors_are_relayed_with_the_callers_id() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let up_path = dir.path().join("up.sock");
    let _up = upstream(&rt, &up_path, "A");
    let front = forwarder(
        dir.path(),
        &["--forward".into(), forward_arg("^/myapi/", &up_path)],
    );
    wait_connected(&front, "/myapi/echo");
    let mut conn = front.connect();

    let reply = conn.read_json_after(
        r#"{"ipcReqID":"mine-7","uri":"/myapi/echo","data":{"n":[1,2.5,"x"],"big":12345678901234567}}"#,
    );
    assert_eq!(
        reply,
        json!({"ipcReqID": "mine-7", "data": {"from": "A", "uri": "/myapi/echo",
            "data": {"n": [1, 2.5, "x"], "big": 12_345_678_901_234_567_u64}}})
    );
    // A numeric id comes back as the caller sent it.
    let reply = conn.read_json_after(r#"{"ipcReqID":42,"uri":"/myapi/echo","data":null}"#);
    assert_eq!(reply["ipcReqID"], json!(42));
    assert_eq!(reply["data"]["data"], Value::Null);

    // The upstream's handler error: relayed in data, code and message as they were.
    let reply = conn.read_json_after(r#"{"ipcReqID":"e1","uri":"/myapi/fail","data":{}}"#);
    assert_eq!(
        reply,
        json!({"ipcReqID": "e1", "data": {"code": "my_code", "message": "it failed upstream"}})
    );
    // A uri the upstream routes to its default handler.
    let reply = conn.read_json_after(r#"{"ipcReqID":"d1","uri":"/myapi/other","data":{}}"#);
    assert_eq!(
        reply["data"],
        json!({"from": "A", "default": "/myapi/other"})
    );
    // Not forwarded: the forwarder's own default handler.
    let reply = conn.read_json_after(r#"{"ipcReqID":"n1","uri":"/elsewhere","data":{}}"#);
    assert_eq!(reply["data"]["code"], "no_handler_found");

    // The statistics count the forward's requests.
    let stats = conn.read_json_after(r#"{"ipcReqID":"s","uri":"/ipcserver/stats","data":{}}"#);
    let forwards = &stats["data"]["forwards"];
    assert_eq!(forwards[0]["pattern"], "^/myapi/");
    assert_eq!(
        forwards[0]["address"],
        json!(format!("unix:{}", up_path.display()))
    );
    assert!(forwards[0]["forwarded"].as_u64().unwrap() >= 4, "{stats}");
    assert_eq!(forwards[0]["upstreamTimeout"], 0);
    front.stop();
}

#[test]
fn forwards_are_tried_in_order_after_the_builtins() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.sock"), dir.path().join("b.sock"));
    let _a = upstream(&rt, &a, "A");
    let _b = upstream(&rt, &b, "B");
    let front = forwarder(
        dir.path(),
        &[
            "--forward".into(),
            forward_arg("/exact", &b),
            "--forward".into(),
            forward_arg("^/myapi/special", &b),
            "--forward".into(),
            forward_arg("^/myapi/", &a),
            // Everything else, but never the built-ins: they come first.
            "--forward".into(),
            forward_arg("^/", &b),
        ],
    );
    wait_connected(&front, "/myapi/x");
    wait_connected(&front, "/exact");
    let mut conn = front.connect();
    let mut from = |uri: &str| {
        let reply =
            conn.read_json_after(&format!(r#"{{"ipcReqID":"o","uri":"{uri}","data":{{}}}}"#));
        reply["data"]["from"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(from("/myapi/special/1"), "B");
    assert_eq!(from("/myapi/echo"), "A");
    assert_eq!(from("/exact"), "B");
    assert_eq!(
        from("/exactly"),
        "B",
        "an exact pattern is whole-uri; ^/ takes the rest"
    );
    assert_eq!(from("/other"), "B");
    // The built-ins stay the forwarder's own: its stats list its forwards.
    let stats = conn.read_json_after(r#"{"ipcReqID":"s","uri":"/ipcserver/stats","data":{}}"#);
    assert_eq!(
        stats["data"]["forwards"].as_array().unwrap().len(),
        4,
        "{stats}"
    );
    let echo = conn.read_json_after(r#"{"ipcReqID":"e","uri":"/ipcserver/test/echo","data":"me"}"#);
    assert_eq!(echo["data"], "me");
    front.stop();
}

#[test]
fn a_missing_upstream_is_unavailable_at_once_then_used_once_it_starts() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let up_path = dir.path().join("later.sock");
    let front = forwarder(
        dir.path(),
        &["--forward".into(), forward_arg("^/myapi/", &up_path)],
    );
    let mut conn = front.connect();
    let started = Instant::now();
    let reply = conn.read_json_after(r#"{"ipcReqID":"u1","uri":"/myapi/echo","data":{}}"#);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(reply["ipcReqID"], "u1");
    assert_eq!(reply["data"]["code"], "upstream_unavailable", "{reply}");
    let message = reply["data"]["message"].as_str().unwrap();
    assert!(message.contains("later.sock"), "{message}");

    // Started later, it is found by the background reconnect.
    let _up = upstream(&rt, &up_path, "A");
    wait_connected(&front, "/myapi/echo");
    let reply = conn.read_json_after(r#"{"ipcReqID":"u2","uri":"/myapi/echo","data":{}}"#);
    assert_eq!(reply["data"]["from"], "A");
    let stats = conn.read_json_after(r#"{"ipcReqID":"s","uri":"/ipcserver/stats","data":{}}"#);
    assert!(
        stats["data"]["forwards"][0]["upstreamUnavailable"]
            .as_u64()
            .unwrap()
            >= 1
    );
    front.stop();
}

#[test]
fn a_slow_upstream_reply_is_an_upstream_timeout() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let up_path = dir.path().join("up.sock");
    let _up = upstream(&rt, &up_path, "A");
    let front = forwarder(
        dir.path(),
        &[
            "--forward".into(),
            forward_arg("^/myapi/", &up_path),
            "--forward-timeout-ms".into(),
            "300".into(),
        ],
    );
    wait_connected(&front, "/myapi/echo");
    let mut conn = front.connect();
    let started = Instant::now();
    let reply = conn.read_json_after(r#"{"ipcReqID":"t1","uri":"/myapi/slow","data":{"ms":3000}}"#);
    let took = started.elapsed();
    assert_eq!(reply["ipcReqID"], "t1");
    assert_eq!(reply["data"]["code"], "upstream_timeout", "{reply}");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "{took:?}"
    );
    // Within the timeout: answered; the connection to the upstream is still good.
    let reply = conn.read_json_after(r#"{"ipcReqID":"t2","uri":"/myapi/slow","data":{"ms":10}}"#);
    assert_eq!(reply["data"], json!({"slept": 10}));
    let stats = conn.read_json_after(r#"{"ipcReqID":"s","uri":"/ipcserver/stats","data":{}}"#);
    assert_eq!(
        stats["data"]["forwards"][0]["upstreamTimeout"], 1,
        "{stats}"
    );
    front.stop();
}

#[test]
fn the_config_file_sets_forwards_too() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let up_path = dir.path().join("up.sock");
    let _up = upstream(&rt, &up_path, "A");
    let config = dir.path().join("config.json");
    let file = json!({"forward": [{"pattern": "^/myapi/", "address": format!("unix:{}", up_path.display())}],
        "forward_timeout_ms": 5000});
    std::fs::write(&config, file.to_string()).unwrap();
    let front = forwarder(
        dir.path(),
        &["--config".into(), config.display().to_string()],
    );
    wait_connected(&front, "/myapi/echo");
    let reply = front
        .connect()
        .read_json_after(r#"{"ipcReqID":"c","uri":"/myapi/echo","data":1}"#);
    assert_eq!(reply["data"]["data"], 1);
    front.stop();
}

#[test]
fn bad_forwards_are_refused_at_start_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("front.sock");
    let to_itself = format!("^/loop/=unix:{}", path.display());
    for (arg, expected) in [
        (to_itself.as_str(), "is this server's own socket"),
        ("^/myapi/", "expected PATTERN=ADDRESS"),
        ("^/myapi/=http://x", "expected PATTERN=ADDRESS"),
        ("^/my(api/=unix:/tmp/x.sock", "invalid uri pattern"),
        ("^/myapi/=unix:", "has no path"),
    ] {
        let failure = ServerProcess::try_start(&path, &["--forward", arg])
            .err()
            .unwrap_or_else(|| panic!("{arg} was accepted"));
        assert!(!failure.status.success());
        assert!(
            failure.stderr.contains(expected),
            "{arg}: {}",
            failure.stderr
        );
    }
}

/// Calls `/up/...` through the forwarder from 50 tasks at once, each with 256 KiB of data,
/// until `stop`; returns how each call ended: `"reply"` (the upstream answered) or the code.
async fn load(
    front: PathBuf,
    stop: Arc<tokio::sync::Notify>,
    stopped: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<String> {
    let client = pixl_ipc_client::Client::builder()
        .request_timeout(TIMEOUT)
        .connect(&front)
        .await
        .unwrap();
    let data = Arc::new(json!({"pad": "x".repeat(256 * 1024)}));
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..50 {
        let (client, data, stopped) = (client.clone(), data.clone(), stopped.clone());
        tasks.spawn(async move {
            let mut outcomes = Vec::new();
            let mut n = 0;
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let reply = client
                    .send(&format!("/up/{task}/{n}"), &*data)
                    .await
                    .expect("the forwarder answers every call, within the timeout");
                let outcome = match reply["code"].as_str() {
                    // The upstream binary has no /up/ route: its default handler answers.
                    Some("no_handler_found") => "reply".to_owned(),
                    Some(code) => code.to_owned(),
                    None => format!("unexpected {reply}"),
                };
                outcomes.push(outcome);
            }
            outcomes
        });
    }
    stop.notified().await;
    let mut all = Vec::new();
    while let Some(outcomes) = tasks.join_next().await {
        all.extend(outcomes.unwrap());
    }
    all
}

#[test]
fn an_upstream_killed_mid_load_fails_calls_in_flight_and_is_used_again_after_restart() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let up_path = dir.path().join("up.sock");
    let up = ServerProcess::start(&up_path, &[]);
    let front = forwarder(
        dir.path(),
        &["--forward".into(), forward_arg("^/up/", &up_path)],
    );
    wait_connected(&front, "/up/warm");

    let stop = Arc::new(tokio::sync::Notify::new());
    let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let running = rt.spawn(load(front.path.clone(), stop.clone(), stopped.clone()));
    std::thread::sleep(Duration::from_millis(500));
    up.kill9();
    std::thread::sleep(Duration::from_millis(300));
    stopped.store(true, std::sync::atomic::Ordering::Relaxed);
    stop.notify_one();
    // Every call settles well within the callers' timeout: none hangs.
    let outcomes = rt
        .block_on(async { tokio::time::timeout(TIMEOUT, running).await })
        .expect("every call settled")
        .unwrap();
    let replies = outcomes.iter().filter(|o| *o == "reply").count();
    let unavailable = outcomes
        .iter()
        .filter(|o| *o == "upstream_unavailable")
        .count();
    assert!(replies > 0, "{outcomes:?}");
    assert!(
        unavailable > 0,
        "some calls were in flight or sent after the kill"
    );
    assert_eq!(
        replies + unavailable,
        outcomes.len(),
        "only replies and upstream_unavailable: {:?}",
        outcomes
            .iter()
            .filter(|o| *o != "reply" && *o != "upstream_unavailable")
            .collect::<Vec<_>>()
    );

    // Restarted on the same path: the forwarder reconnects by itself.
    let up = ServerProcess::start(&up_path, &[]);
    wait_connected(&front, "/up/again");
    let reply = front
        .connect()
        .read_json_after(r#"{"ipcReqID":"r","uri":"/up/again","data":{}}"#);
    assert_eq!(reply["data"]["code"], "no_handler_found", "{reply}");
    assert_eq!(reply["ipcReqID"], "r");
    let (status, _) = up.stop();
    assert!(status.success());
    front.stop();
}

/// The repository root (this file is server/tests/forward.rs).
fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run_script(mut command: Command) -> Value {
    let output = command.output().expect("the interpreter runs");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn our_node_and_php_clients_work_through_the_forwarder() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let up_path = dir.path().join("up.sock");
    let _up = upstream(&rt, &up_path, "A");
    let front = forwarder(
        dir.path(),
        &["--forward".into(), forward_arg("^/myapi/", &up_path)],
    );
    wait_connected(&front, "/myapi/echo");
    let socket = front.path.display().to_string();

    // client-node needs `ws` (for its WebSocket transport): tests/drivers has it after `npm
    // ci` there (scripts/test.sh does that).
    let node_modules = repo().join("tests/drivers/node_modules");
    assert!(
        node_modules.join("ws").is_dir(),
        "run `npm ci` in tests/drivers first"
    );
    let script = r"
        const IPCClient = require(process.argv[1]);
        (async () => {
          const client = new IPCClient(process.argv[2]);
          await client.connect();
          const echo = await client.send('/myapi/echo', { from: 'node', n: 1 });
          const fail = await client.send('/myapi/fail', {});
          console.log(JSON.stringify([echo, fail]));
          client.close();
        })().catch((err) => { console.error(err); process.exit(1); });";
    let mut node = Command::new("node");
    node.env("NODE_PATH", &node_modules)
        .arg("-e")
        .arg(script)
        .arg(repo().join("client-node"))
        .arg(&socket);
    let replies = run_script(node);
    assert_eq!(
        replies[0],
        json!({"from": "A", "uri": "/myapi/echo", "data": {"from": "node", "n": 1}})
    );
    assert_eq!(replies[1]["code"], "my_code");

    let script = r"
        require $argv[1];
        $client = new PixlIPCClient($argv[2]);
        $echo = ['from' => 'php'];
        $fail = ['x' => 1];
        echo json_encode([$client->send('/myapi/echo', $echo), $client->send('/myapi/fail', $fail)]), PHP_EOL;";
    let mut php = Command::new("php");
    php.arg("-r")
        .arg(script)
        .arg(repo().join("client-php/autoload.php"))
        .arg(&socket);
    let replies = run_script(php);
    assert_eq!(
        replies[0],
        json!({"from": "A", "uri": "/myapi/echo", "data": {"from": "php"}})
    );
    assert_eq!(replies[1]["code"], "my_code");
    front.stop();
}

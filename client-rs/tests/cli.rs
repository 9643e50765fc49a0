//! The `pixl-ipc` command line against the real server binary: output and exit codes.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use pixl_ipc_test_utils::ServerProcess;
use serde_json::{json, Value};

fn cli(socket: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pixl-ipc"));
    command
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    drop(child.stdin.take());
    let status = pixl_ipc_test_utils::wait_with_timeout(&mut child, pixl_ipc_test_utils::TIMEOUT)
        .expect("pixl-ipc exits");
    let mut output = child.wait_with_output().unwrap();
    output.status = status;
    output
}

fn stdout_json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("{err}: {}", String::from_utf8_lossy(&output.stdout)))
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn server() -> (tempfile::TempDir, ServerProcess) {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("cli.sock"), &[]);
    (dir, server)
}

#[test]
fn call_prints_the_reply_data_as_one_compact_line_when_piped() {
    let (_dir, server) = server();
    let output = cli(
        &server.path,
        &[
            "call",
            "/ipcserver/test/echo",
            r#"{"a": [1, 2], "b": "c/d"}"#,
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "{\"a\":[1,2],\"b\":\"c/d\"}\n"
    );
}

#[test]
fn call_reads_data_from_stdin_with_a_dash() {
    let (_dir, server) = server();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pixl-ipc"))
        .args([
            "--socket",
            server.path.to_str().unwrap(),
            "call",
            "/ipcserver/test/echo",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"from\":\"stdin\"}")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    assert_eq!(stdout_json(&output), json!({"from": "stdin"}));
}

#[test]
fn options_are_accepted_before_the_subcommand_and_url_works() {
    let (_dir, server) = server();
    let url = format!("unix://{}", server.path.display());
    let output = Command::new(env!("CARGO_BIN_EXE_pixl-ipc"))
        .args(["--url", &url, "--timeout", "2s", "stats"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let stats = stdout_json(&output);
    assert_eq!(stats["handlers"], json!(6));
    assert!(stats["total"]["requests"].as_u64().unwrap() >= 1);
}

#[test]
fn ping_reports_each_round_trip_and_a_summary() {
    let (_dir, server) = server();
    let output = cli(&server.path, &["ping", "--count", "3", "--interval", "1ms"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        text.lines().filter(|line| line.contains("time=")).count(),
        3,
        "{text}"
    );
    assert!(text.contains("3 round trips: min"), "{text}");
}

#[test]
fn exit_codes_distinguish_connect_timeout_server_and_usage_errors() {
    let (dir, server) = server();
    let missing = dir.path().join("missing.sock");
    let output = cli(&missing, &["stats"]);
    assert_eq!(output.status.code(), Some(3));
    assert!(
        stderr(&output).starts_with("pixl-ipc: cannot connect to"),
        "{}",
        stderr(&output)
    );
    assert_eq!(stderr(&output).lines().count(), 1);

    let output = cli(
        &server.path,
        &[
            "--timeout",
            "100ms",
            "call",
            "/ipcserver/test/delay",
            r#"{"delay":2000}"#,
        ],
    );
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert!(stderr(&output).contains("no reply to /ipcserver/test/delay within 100ms"));

    let output = cli(&server.path, &["call", "/no/such/route"]);
    assert_eq!(output.status.code(), Some(5));
    assert!(
        stderr(&output).contains("no_handler_found"),
        "{}",
        stderr(&output)
    );

    let output = cli(&server.path, &["call", "/ipcserver/test/echo", "{not json"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("not valid JSON"));
}

#[test]
fn watch_prints_pushes_as_json_lines() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("watch.sock");
    let running = runtime
        .block_on(pixl_ipc_server::Server::new(pixl_ipc_server::ServerConfig::new(&path)).start())
        .unwrap();
    let handle = running.handle();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pixl-ipc"))
        .args(["--socket", path.to_str().unwrap(), "watch"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    pixl_ipc_test_utils::eventually("the watcher connects", || !handle.connections().is_empty());
    let push = pixl_ipc_server::Push {
        uri: Some("/events/a".into()),
        data: json!({"n": 1}),
    };
    assert_eq!(handle.broadcast(&push).delivered, 1);
    // Read on a thread so a missing push fails the test instead of hanging it.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
        let _ = tx.send(lines.next());
    });
    let first = rx.recv_timeout(pixl_ipc_test_utils::TIMEOUT);
    child.kill().unwrap();
    child.wait().unwrap();
    let line = first
        .expect("a push line within the limit")
        .unwrap()
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&line).unwrap(),
        json!({"uri": "/events/a", "data": {"n": 1}})
    );
}

#[test]
fn a_connection_the_server_refuses_reports_the_servers_reason() {
    // At its connection limit the server writes one too_many_connections line and closes; the
    // request written meanwhile fails with EPIPE or ECONNRESET, which used to be all we showed.
    let dir = tempfile::tempdir().unwrap();
    let full = ServerProcess::start(&dir.path().join("full.sock"), &["--max-connections", "1"]);
    let mut holder = full.connect();
    assert_eq!(
        holder.call(r#"{"ipcReqID":"h","uri":"/ipcserver/test/echo","data":1}"#),
        r#"{"ipcReqID":"h","data":1}"#
    );
    // The refused peer may lose the race either way (write fails, or read is reset): repeat.
    for _ in 0..5 {
        let output = cli(&full.path, &["call", "/ipcserver/test/echo", "1"]);
        assert!(!output.status.success());
        let message = stderr(&output);
        assert!(
            message.contains("too_many_connections") && message.contains("limit of 1 connections"),
            "{message}"
        );
    }
    // The same for a peer the uid/gid allow-list does not name.
    // Our own uid is the owner of the directory we just created; allow some other uid only.
    let ours = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(dir.path()).unwrap());
    let uid = ours.wrapping_add(4242).to_string();
    let strict = ServerProcess::start(&dir.path().join("strict.sock"), &["--allow-uid", &uid]);
    let output = cli(&strict.path, &["call", "/ipcserver/test/echo", "1"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("peer_not_allowed"),
        "{}",
        stderr(&output)
    );
}

/// A unique Linux abstract socket name for this test process.
#[cfg(target_os = "linux")]
fn abstract_name(tag: &str) -> String {
    format!("pixl-ipc-test-{}-{tag}", std::process::id())
}

#[test]
#[cfg(target_os = "linux")]
fn abstract_sockets_are_reached_by_at_name_and_unix_at_urls() {
    let name = abstract_name("cli");
    let server = ServerProcess::start(Path::new(&format!("@{name}")), &[]);
    let output = cli(
        Path::new(&format!("@{name}")),
        &["call", "/ipcserver/test/echo", "[1]"],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout_json(&output), json!([1]));
    for url in [format!("unix:@{name}"), format!("unix://@{name}")] {
        let output = Command::new(env!("CARGO_BIN_EXE_pixl-ipc"))
            .args(["--url", &url, "call", "/ipcserver/test/echo", "[2]"])
            .output()
            .unwrap();
        assert!(output.status.success(), "{url}: {}", stderr(&output));
        assert_eq!(stdout_json(&output), json!([2]));
    }
    server.stop();
    // Once it is gone: exit 3, naming the address as given.
    let output = cli(Path::new(&format!("@{name}")), &["stats"]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(&format!("@{name}")),
        "{}",
        stderr(&output)
    );
}

/// `pixl-ipc` with exactly `args` (no --socket), timed.
fn cli_args(args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pixl-ipc"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = pixl_ipc_test_utils::wait_with_timeout(&mut child, pixl_ipc_test_utils::TIMEOUT)
        .expect("pixl-ipc exits");
    let elapsed = started.elapsed();
    let mut output = child.wait_with_output().unwrap();
    output.status = status;
    (output, elapsed)
}

#[test]
fn health_exits_0_when_the_server_answers_over_unix_and_websocket() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "health-secret\n").unwrap();
    let server = ServerProcess::start(
        &dir.path().join("health.sock"),
        &[
            "--ws",
            "127.0.0.1:0",
            "--ws-token-file",
            token.to_str().unwrap(),
        ],
    );
    let output = cli(&server.path, &["health"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.starts_with("ok: ") && text.contains("answered in"),
        "{text}"
    );

    let url = server.ws_url().unwrap();
    let token = token.to_str().unwrap();
    let (output, _) = cli_args(&["--url", &url, "--token-file", token, "health"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    // Without the token the upgrade is refused: the server is not healthy for this caller.
    let (output, _) = cli_args(&["--url", &url, "health"]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).starts_with("pixl-ipc: unhealthy: cannot connect"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn health_without_a_server_exits_3_naming_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nobody.sock");
    let (output, elapsed) = cli_args(&["--socket", missing.to_str().unwrap(), "health"]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(
        message.starts_with("pixl-ipc: unhealthy: cannot connect to")
            && message.contains("nobody.sock")
            && message.contains("No such file"),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");

    // A port nobody listens on: refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (output, _) = cli_args(&["--url", &format!("ws://127.0.0.1:{port}/"), "health"]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(stderr(&output).contains("refused"), "{}", stderr(&output));
}

#[test]
fn health_gives_up_on_a_server_that_never_answers_within_the_timeout() {
    // Accepts, reads and never writes: the listener stays alive for the whole test.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("silent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    let (output, elapsed) = cli_args(&[
        "--socket",
        path.to_str().unwrap(),
        "--timeout",
        "300ms",
        "health",
    ]);
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert!(
        stderr(&output).starts_with("pixl-ipc: unhealthy: no reply to /ipcserver/test/echo"),
        "{}",
        stderr(&output)
    );
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");

    // The default budget is 2 s, connection and answer together.
    let (output, elapsed) = cli_args(&["--socket", path.to_str().unwrap(), "health"]);
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert!(
        elapsed >= Duration::from_millis(1900) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );

    // A TCP listener that never completes the WebSocket handshake: down, within the timeout.
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tcp.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in tcp.incoming() {
            held.push(stream);
        }
    });
    let url = format!("ws://127.0.0.1:{port}/");
    let (output, elapsed) = cli_args(&["--url", &url, "--timeout", "300ms", "health"]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(stderr(&output).contains("unhealthy"), "{}", stderr(&output));
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
}

#[test]
fn health_exits_5_when_the_server_answers_with_an_error() {
    // A server that answers every request with a request-level error.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("failing.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut writer = stream.try_clone().unwrap();
            for line in std::io::BufRead::lines(std::io::BufReader::new(stream)) {
                let Ok(line) = line else { break };
                let Ok(request) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                let reply = json!({"ipcReqID": request["ipcReqID"], "code": "overloaded", "message": "try later"});
                let _ = writeln!(writer, "{reply}");
            }
        }
    });
    let (output, _) = cli_args(&["--socket", path.to_str().unwrap(), "health"]);
    assert_eq!(output.status.code(), Some(5), "{}", stderr(&output));
    assert!(
        stderr(&output).starts_with("pixl-ipc: unhealthy:")
            && stderr(&output).contains("overloaded"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn info_prints_version_routes_and_listeners_over_unix_and_websocket() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("info.sock"), &["--ws", "127.0.0.1:0"]);
    let url = server.ws_url().unwrap();
    let by_socket = stdout_json(&cli(&server.path, &["info"]));
    let (output, _) = cli_args(&["--url", &url, "info"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let by_url = stdout_json(&output);
    assert_eq!(by_socket, by_url);
    assert_eq!(by_socket["server"], json!("pixl-ipc-server"));
    assert_eq!(by_socket["version"], json!(env!("CARGO_PKG_VERSION")));
    let patterns: Vec<&str> = by_socket["handlers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|route| route["pattern"].as_str().unwrap())
        .collect();
    assert!(patterns.contains(&"^/ipcserver/info$"), "{patterns:?}");
    assert!(
        patterns
            .iter()
            .any(|pattern| pattern.contains("/ipcserver/test/echo")),
        "{patterns:?}"
    );
    assert_eq!(
        by_socket["listeners"],
        json!([
            {"transport": "unix", "address": server.path.display().to_string()},
            {"transport": "websocket", "url": url},
        ])
    );
}

#[test]
#[cfg(target_os = "linux")]
fn info_names_an_abstract_socket_as_at_name() {
    let name = abstract_name("info");
    let server = ServerProcess::start(Path::new(&format!("@{name}")), &[]);
    let output = cli(Path::new(&format!("@{name}")), &["info"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout_json(&output)["listeners"],
        json!([{"transport": "unix", "address": format!("@{name}")}])
    );
    let output = cli(Path::new(&format!("@{name}")), &["health"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    server.stop();
}

#[test]
fn stream_prints_one_json_line_per_item_then_the_final_value() {
    let (_dir, server) = server();
    let output = cli(
        &server.path,
        &["stream", "/ipcserver/test/stream", r#"{"count":3}"#],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "{\"i\":0}\n{\"i\":1}\n{\"i\":2}\n{\"done\":3}\n"
    );
}

#[test]
fn stream_exits_5_on_an_error_final_and_4_when_a_line_takes_too_long() {
    let (_dir, server) = server();
    let output = cli(&server.path, &["stream", "/no/such/route"]);
    assert_eq!(output.status.code(), Some(5), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("no_handler_found"),
        "{}",
        stderr(&output)
    );

    let output = cli(
        &server.path,
        &[
            "--timeout",
            "300ms",
            "stream",
            "/ipcserver/test/stream",
            r#"{"count":3,"interval":100}"#,
        ],
    );
    assert!(
        output.status.success(),
        "each wait is short: {}",
        stderr(&output)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 4);

    let output = cli(
        &server.path,
        &[
            "--timeout",
            "300ms",
            "stream",
            "/ipcserver/test/stream",
            r#"{"count":3,"interval":5000}"#,
        ],
    );
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
}

/// A running `pixl-ipc` with stdout piped, and its lines read on a thread (so a missing line
/// fails the test instead of hanging it).
struct Streaming {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

fn streaming(socket: &Path, args: &[&str]) -> Streaming {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pixl-ipc"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            if tx.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    Streaming { child, lines }
}

impl Streaming {
    fn line(&self) -> Value {
        let line = self
            .lines
            .recv_timeout(pixl_ipc_test_utils::TIMEOUT)
            .expect("a line within the limit");
        serde_json::from_str(&line).unwrap()
    }
}

#[test]
fn stream_interrupted_by_ctrl_c_exits_0() {
    let (_dir, server) = server();
    let mut running = streaming(
        &server.path,
        &[
            "stream",
            "/ipcserver/test/stream",
            r#"{"count":1000000,"interval":50}"#,
        ],
    );
    assert_eq!(running.line(), json!({"i": 0}));
    assert_eq!(running.line(), json!({"i": 1}));
    let status = Command::new("kill")
        .args(["-INT", &running.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status =
        pixl_ipc_test_utils::wait_with_timeout(&mut running.child, pixl_ipc_test_utils::TIMEOUT)
            .expect("pixl-ipc exits after Ctrl-C");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn stream_into_a_closed_pipe_exits_0() {
    let (_dir, server) = server();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pixl-ipc"))
        .arg("--socket")
        .arg(&server.path)
        .args([
            "stream",
            "/ipcserver/test/stream",
            r#"{"count":1000000,"interval":20}"#,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut reader = std::io::BufReader::new(stdout);
    let mut first = String::new();
    std::io::BufRead::read_line(&mut reader, &mut first).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&first).unwrap(),
        json!({"i": 0})
    );
    // `| head -1`: the reader goes away.
    drop(reader);
    let status = pixl_ipc_test_utils::wait_with_timeout(&mut child, pixl_ipc_test_utils::TIMEOUT)
        .expect("pixl-ipc exits once its output is gone");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn watch_stats_prints_the_stats_object_each_interval() {
    let (_dir, server) = server();
    let mut running = streaming(&server.path, &["watch", "--stats", "--interval", "50"]);
    let started = Instant::now();
    for _ in 0..3 {
        let stats = running.line();
        assert!(stats.is_object(), "{stats}");
    }
    assert!(started.elapsed() >= Duration::from_millis(90));
    running.child.kill().unwrap();
    running.child.wait().unwrap();
}

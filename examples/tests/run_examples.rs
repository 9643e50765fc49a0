//! Runs the built examples for real: each `--demo`, and each server/client pair as separate
//! processes, as a newcomer would run them (server on a temp socket or a free loopback port,
//! client against it, server stopped by PID with SIGINT or SIGTERM).
//!
//! The binaries are the ones in `target/<profile>/examples/`. `cargo test` builds every
//! example of the package (in normal mode, to check they compile) before it runs any test, so
//! `cargo test --workspace` and `cargo test -p pixl-ipc-examples` find them fresh; a run that
//! selects only this test (`--test run_examples`) does not build them, so an example binary
//! older than its source is reported as stale instead of silently tested.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test fails loudly on purpose.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Every wait gives up after this long; the whole file normally takes a few seconds.
const TIMEOUT: Duration = Duration::from_secs(30);

/// `target/<profile>/examples/<name>`, checked to exist and to be newer than its source.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current test executable");
    // target/<profile>/deps/run_examples-<hash>  ->  target/<profile>/examples/<name>
    let binary = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory")
        .join("examples")
        .join(name);
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(format!("{name}.rs"));
    let built = std::fs::metadata(&binary)
        .and_then(|meta| meta.modified())
        .unwrap_or_else(|err| {
            panic!(
                "{}: {err}; build the examples first (cargo build --examples -p pixl-ipc-examples; cargo test does)",
                binary.display()
            )
        });
    let written = std::fs::metadata(&source)
        .and_then(|meta| meta.modified())
        .expect("example source");
    assert!(
        built >= written,
        "{} is older than {}: rebuild it (cargo build --examples -p pixl-ipc-examples)",
        binary.display(),
        source.display()
    );
    binary
}

/// A command for an example, with an environment that does not leak into the test.
fn command(name: &str, args: &[&str]) -> Command {
    let mut command = Command::new(example(name));
    command
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .env_remove("PIXL_IPC_EXAMPLE_SOCKET")
        .env_remove("PIXL_IPC_EXAMPLE_URL")
        .env_remove("PIXL_IPC_WS_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// A running example whose stdout lines are collected as they come; killed by PID if dropped
/// while still running.
struct Running {
    name: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(mut command: Command, name: &str) -> Running {
        let mut child = command.spawn().expect("start the example");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            name: name.to_owned(),
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a stdout line containing `text` and returns it.
    fn wait_for_line(&mut self, text: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(_) => {
                    let stderr = self.kill_and_stderr();
                    panic!(
                        "{}: no line containing {text:?} within {TIMEOUT:?}; stdout so far:\n{}\nstderr:\n{stderr}",
                        self.name,
                        self.seen.join("\n"),
                    )
                }
            }
        }
    }

    fn signal(&self, signal: Signal) {
        let pid = i32::try_from(self.child.id()).expect("pid fits i32");
        kill(Pid::from_raw(pid), signal).expect("signal our own child");
    }

    /// Waits for the process to exit; returns its status and all of its stdout.
    fn wait(&mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() > deadline {
                let stderr = self.kill_and_stderr();
                panic!(
                    "{}: still running after {TIMEOUT:?}; stderr:\n{stderr}",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        // The reader thread ends at EOF, after the process has exited.
        while let Ok(line) = self.lines.recv_timeout(TIMEOUT) {
            self.seen.push(line);
        }
        (status, self.seen.join("\n"))
    }

    /// Waits for a successful exit and returns stdout; panics with stderr otherwise.
    fn wait_success(&mut self) -> String {
        let (status, stdout) = self.wait();
        if !status.success() {
            let mut stderr = String::new();
            if let Some(mut pipe) = self.child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            panic!(
                "{} exited with {status}\nstdout:\n{stdout}\nstderr:\n{stderr}",
                self.name
            );
        }
        stdout
    }

    /// SIGINT or SIGTERM, as Ctrl-C or a service manager would, then waits for a clean exit.
    fn stop(mut self, signal: Signal) -> String {
        self.signal(signal);
        self.wait_success()
    }

    fn kill_and_stderr(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
        }
        stderr
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs an example to completion and returns its stdout; panics unless it exits 0.
fn run(name: &str, args: &[&str]) -> String {
    Running::start(command(name, args), name).wait_success()
}

fn assert_contains(output: &str, expected: &str) {
    assert!(
        output.contains(expected),
        "expected {expected:?} in the output:\n{output}"
    );
}

#[test]
fn every_demo_checks_itself() {
    for name in [
        "embedded_server",
        "extractors",
        "push_server",
        "reconnect",
        "stream_client",
        "stream_server",
        "tower_layers",
        "typed_handler",
        "websocket_server",
    ] {
        let stdout = run(name, &["--demo"]);
        assert_contains(&stdout, "demo ok");
    }
}

#[test]
fn client_calls_the_embedded_server() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("app.sock");
    let socket_arg = socket.to_str().unwrap();
    let mut server = Running::start(command("embedded_server", &[socket_arg]), "embedded_server");
    server.wait_for_line("listening on");

    let stdout = run("client", &[socket_arg]);
    for expected in [
        // Objects print their keys in whichever order the build's serde_json keeps them.
        "\"message\":\"Hello, Ada!\"",
        "\"calls\":1",
        "message \"Hello, Grace!\", 2 calls so far",
        "counter clicks: 0 -> 1",
        "error invalid_greeting: the greeting must not be empty",
        "call /app/hello without a name -> server error handler_error",
        "call /app/nope -> server error unknown_api",
        "send_with_timeout /ipcserver/test/delay -> timed out",
        "after the timeout -> {\"still\":\"here\"}",
        "client done",
    ] {
        assert_contains(&stdout, expected);
    }

    let stdout = server.stop(Signal::SIGINT);
    assert_contains(&stdout, "stopped after 2 hello calls");
    assert!(!socket.exists(), "the socket file is left behind");
}

#[test]
fn stream_client_reads_the_embedded_servers_built_in_streams() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("app.sock");
    let socket_arg = socket.to_str().unwrap();
    let mut server = Running::start(command("embedded_server", &[socket_arg]), "embedded_server");
    server.wait_for_line("listening on");

    let stdout = run("stream_client", &[socket_arg]);
    for expected in [
        "tick 0",
        "tick 4",
        "done after 5 ticks",
        "stats: 1 connection(s)",
    ] {
        assert_contains(&stdout, expected);
    }
    assert_eq!(stdout.matches("stats: ").count(), 3, "{stdout}");
    server.stop(Signal::SIGINT);
}

#[test]
fn push_client_gets_its_welcome_items_and_ticks() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("news.sock");
    let socket_arg = socket.to_str().unwrap();
    let mut server = Running::start(
        command("push_server", &[socket_arg, "--tick-ms", "100"]),
        "push_server",
    );
    server.wait_for_line("listening on");

    let stdout = run("push_client", &[socket_arg, "--ticks", "2"]);
    assert_contains(&stdout, "push /news/welcome {\"connection\":");
    assert_contains(&stdout, "published to 1 connections");
    assert_contains(&stdout, "push /news/item {\"headline\":\"hello from pid");
    // At least the two it waited for; more when a tick came while it waited for the others.
    assert!(stdout.matches("push /news/tick").count() >= 2, "{stdout}");
    assert_contains(&stdout, "push client done");

    let stdout = server.stop(Signal::SIGTERM);
    assert_contains(&stdout, "stopped");
}

#[test]
fn reconnect_client_survives_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("app.sock");
    let socket_arg = socket.to_str().unwrap();
    let mut server = Running::start(command("embedded_server", &[socket_arg]), "embedded_server");
    server.wait_for_line("listening on");
    let mut client = Running::start(command("reconnect", &[socket_arg]), "reconnect");
    client.wait_for_line("now restart the server");

    server.stop(Signal::SIGINT);
    client.wait_for_line("state: Reconnecting");
    let mut server = Running::start(command("embedded_server", &[socket_arg]), "embedded_server");
    server.wait_for_line("listening on");

    let stdout = client.wait_success();
    assert_contains(&stdout, "state: Connected");
    assert_contains(&stdout, "reconnected: call");
    server.stop(Signal::SIGINT);
}

#[test]
fn websocket_client_needs_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ws.sock");
    let socket_arg = socket.to_str().unwrap();
    let mut server = command("websocket_server", &["--listen", "127.0.0.1:0", socket_arg]);
    server.env("PIXL_IPC_WS_TOKEN", "test-token");
    let mut server = Running::start(server, "websocket_server");
    let line = server.wait_for_line("websocket ws://127.0.0.1:");
    let url = line.trim_start_matches("websocket ").to_owned();

    let mut client = command("websocket_client", &[&url]);
    client.env("PIXL_IPC_WS_TOKEN", "test-token");
    let stdout = Running::start(client, "websocket_client").wait_success();
    assert_contains(&stdout, "without the token: cannot connect");
    assert_contains(&stdout, "HTTP 401");
    assert_contains(&stdout, "/ws/whoami -> {");
    assert_contains(&stdout, "\"transport\":\"ws\"");
    assert_contains(&stdout, "{\"over\":\"websocket\"}");
    assert_contains(&stdout, "websocket client done");

    // The wrong token is refused.
    let mut client = command("websocket_client", &[&url]);
    client.env("PIXL_IPC_WS_TOKEN", "wrong-token");
    let (status, stdout) = Running::start(client, "websocket_client").wait();
    assert!(
        !status.success(),
        "connected with the wrong token:\n{stdout}"
    );

    server.stop(Signal::SIGINT);
}

//! The binary's log output and start errors: `--log-format json` writes nothing but JSON lines,
//! `--log-level` picks the level over `RUST_LOG`, a start failure prints its cause once, and
//! `--ws` takes a host name.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

mod common;

use std::process::Command;

use common::{server_binary, ServerProcess, Wire, WsConn};
use nix::sys::signal::Signal;
use serde_json::Value;

const ECHO: &str = r#"{"ipcReqID":"a","uri":"/ipcserver/test/echo","data":1}"#;
const ECHOED: &str = r#"{"ipcReqID":"a","data":1}"#;

/// Parses every line of `log` as a JSON log object with the fields shippers rely on.
fn json_lines(log: &str) -> Vec<Value> {
    assert!(!log.trim().is_empty(), "nothing was logged");
    log.lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|err| panic!("not a JSON line ({err}): {line}\n{log}"));
            for field in ["timestamp", "level", "target", "message"] {
                assert!(value[field].is_string(), "no {field}: {line}");
            }
            value
        })
        .collect()
}

#[test]
fn json_logs_are_one_object_a_line_with_the_events_fields() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.sock");
    let server = ServerProcess::start(&path, &["--ws", "127.0.0.1:0", "--log-format", "json"]);
    assert_eq!(server.connect().call(ECHO), ECHOED);
    let mut ws = WsConn::open(&server.ws_url().unwrap());
    assert_eq!(ws.call(ECHO), ECHOED);
    drop(ws);
    server.signal(Signal::SIGHUP);
    // The reload is logged before the stop (signals are taken one at a time, in order).
    std::thread::sleep(std::time::Duration::from_millis(200));
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
    let lines = json_lines(&log);
    let listening = lines
        .iter()
        .find(|line| line["message"] == "listening" && line["url"].is_string())
        .unwrap_or_else(|| panic!("no listening line with its url field:\n{log}"));
    assert_eq!(listening["level"], "INFO");
    assert!(
        lines.iter().any(
            |line| line["message"].as_str().unwrap().starts_with("reload:")
                && line["signal"] == "SIGHUP"
        ),
        "{log}"
    );
    assert!(
        lines.iter().any(|line| line["message"] == "stopped"),
        "{log}"
    );
}

#[test]
fn a_start_failure_in_json_is_a_json_line_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.sock");
    let _first = ServerProcess::start(&path, &[]);
    let failure = ServerProcess::try_start(&path, &["--log-format", "json"])
        .err()
        .expect("the path is in use");
    assert_eq!(failure.status.code(), Some(1));
    let lines = json_lines(&failure.stderr);
    let error = lines
        .iter()
        .find(|line| line["level"] == "ERROR")
        .unwrap_or_else(|| panic!("no ERROR line:\n{}", failure.stderr));
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("in use by a running server"),
        "{error}"
    );
}

#[test]
fn a_start_failure_in_json_is_said_even_when_the_filter_turns_errors_off() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.sock");
    let _first = ServerProcess::start(&path, &[]);
    let failure = ServerProcess::try_start(&path, &["--log-format", "json", "--log-level", "off"])
        .err()
        .expect("the path is in use");
    assert_eq!(failure.status.code(), Some(1));
    let lines = json_lines(&failure.stderr);
    assert!(
        lines.iter().any(|line| line["level"] == "ERROR"
            && line["message"]
                .as_str()
                .is_some_and(|message| message.contains("in use by a running server"))),
        "{}",
        failure.stderr
    );
}

#[test]
fn an_invalid_rust_log_is_reported_once_and_the_server_serves_at_info() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rustlog.sock");
    let mut command = Command::new(server_binary());
    command
        .arg("--socket")
        .arg(&path)
        .env("RUST_LOG", "info,=bad[");
    let server = match ServerProcess::spawn(command, &path) {
        Ok(server) => server,
        Err(failure) => panic!("an invalid RUST_LOG stopped the start: {}", failure.stderr),
    };
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains("RUST_LOG is not a valid log filter"), "{log}");
    assert!(!log.contains("log_level"), "{log}");
}

#[test]
fn log_level_picks_the_level_over_rust_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.sock");
    // The harness sets RUST_LOG=info: the flag wins.
    let server = ServerProcess::start(&path, &["--log-level", "debug"]);
    assert_eq!(server.connect().call(ECHO), ECHOED);
    let (_, log) = server.stop();
    assert!(log.contains("DEBUG"), "no debug line:\n{log}");
    assert!(log.contains("descriptor limit"), "{log}");

    let mut command = Command::new(server_binary());
    command
        .arg("--socket")
        .arg(&path)
        .args(["--log-level", "info"])
        .env("RUST_LOG", "debug");
    let server = ServerProcess::spawn(command, &path).unwrap_or_else(|failure| {
        panic!("start failed: {}", failure.stderr);
    });
    let (_, log) = server.stop();
    assert!(
        !log.contains("DEBUG"),
        "RUST_LOG won over --log-level:\n{log}"
    );

    let failure = ServerProcess::try_start(&path, &["--log-level", "info,x=nonsense"])
        .err()
        .expect("a bad level is refused");
    assert_eq!(failure.status.code(), Some(2), "{}", failure.stderr);
    assert!(failure.stderr.contains("--log-level"), "{}", failure.stderr);
}

#[test]
fn help_documents_the_log_flags_and_the_reload() {
    let output = Command::new(server_binary())
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for needle in [
        "--log-format <FORMAT>",
        "--log-level <LEVEL>",
        "RUST_LOG",
        "SIGHUP reloads",
        "log_level",
        "localhost:7070",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
}

#[test]
fn a_start_failure_prints_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    // A WebSocket port in use: the OS error is the cause, printed once.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let failure = ServerProcess::try_start(&dir.path().join("p.sock"), &["--ws", &address])
        .err()
        .expect("the port is taken");
    assert_eq!(failure.status.code(), Some(1));
    let stderr = &failure.stderr;
    assert!(
        stderr.contains(&format!("cannot listen for WebSockets on {address}")),
        "{stderr}"
    );
    assert_eq!(stderr.matches("os error 98").count(), 1, "{stderr}");
    assert_eq!(stderr.matches("(os error").count(), 1, "{stderr}");

    // The socket path in use by a live server: its message, once.
    let path = dir.path().join("live.sock");
    let _first = ServerProcess::start(&path, &[]);
    let failure = ServerProcess::try_start(&path, &[])
        .err()
        .expect("the path is in use");
    let stderr = &failure.stderr;
    assert_eq!(
        stderr.matches("in use by a running server").count(),
        1,
        "{stderr}"
    );
    assert_eq!(stderr.matches("pixl-ipc-server:").count(), 1, "{stderr}");
}

#[test]
fn ws_takes_a_host_name_and_serves_on_each_of_its_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sock");
    let server = ServerProcess::start(&path, &["--ws", "localhost:0"]);
    // localhost is 127.0.0.1 everywhere; ::1 too where /etc/hosts lists it.
    let urls: Vec<&str> = server
        .banner
        .split_whitespace()
        .filter(|word| word.starts_with("ws://"))
        .collect();
    assert!(
        urls.iter().any(|url| url.starts_with("ws://127.0.0.1:")),
        "{}",
        server.banner
    );
    let resolved: Vec<_> = std::net::ToSocketAddrs::to_socket_addrs("localhost:0")
        .unwrap()
        .collect();
    assert_eq!(urls.len(), resolved.len(), "{}", server.banner);
    for url in urls {
        assert_eq!(WsConn::open(url).call(ECHO), ECHOED, "{url}");
    }

    let failure = ServerProcess::try_start(&dir.path().join("n.sock"), &["--ws", "localhost"])
        .err()
        .expect("no port");
    assert_eq!(failure.status.code(), Some(1));
    assert!(
        failure.stderr.contains("--ws localhost: cannot resolve it"),
        "{}",
        failure.stderr
    );
}

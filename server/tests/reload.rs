//! SIGHUP against the real binary: the token file and the config file's allow-list and log
//! level are re-read and apply to new connections, open connections keep going, and a bad
//! reload keeps every old setting and says why in the log.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{server_binary, wait_with_timeout, Conn, Wire, WsConn, TIMEOUT};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

const ECHO: &str = r#"{"ipcReqID":"a","uri":"/ipcserver/test/echo","data":1}"#;
const ECHOED: &str = r#"{"ipcReqID":"a","data":1}"#;

/// True when a new connection gets its echo answered; false when it is refused (closed before
/// or after the request, or answered `peer_not_allowed`).
fn echo_served(socket: &Path) -> bool {
    use std::io::Write;
    let Ok(mut stream) = std::os::unix::net::UnixStream::connect(socket) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(TIMEOUT));
    if stream.write_all(format!("{ECHO}\n").as_bytes()).is_err() {
        return false;
    }
    let mut line = String::new();
    matches!(BufReader::new(stream).read_line(&mut line), Ok(n) if n > 0)
        && line.trim_end() == ECHOED
}

/// The binary with its stderr readable while it runs (the shared harness hands the log over
/// only at exit), stopped by PID when dropped.
struct Logged {
    child: Child,
    banner: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Logged {
    fn start(socket: &Path, args: &[&str], rust_log: Option<&str>) -> Logged {
        let mut command = Command::new(server_binary());
        command.arg("--socket").arg(socket).args(args);
        match rust_log {
            Some(filter) => command.env("RUST_LOG", filter),
            None => command.env_remove("RUST_LOG"),
        };
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pixl-ipc-server");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next().and_then(Result::ok));
            for _ in lines {}
        });
        let banner = match rx.recv_timeout(TIMEOUT) {
            Ok(Some(banner)) if banner.contains("listening on") => banner,
            other => {
                let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                let _ = child.wait();
                panic!(
                    "server did not start ({other:?}): {:?}",
                    log.lock().unwrap()
                );
            }
        };
        Logged { child, banner, log }
    }

    fn ws_url(&self) -> String {
        self.banner
            .split_whitespace()
            .find(|word| word.starts_with("ws://"))
            .expect("a ws:// URL in the banner")
            .to_owned()
    }

    fn hangup(&self) {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGHUP).unwrap();
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits until the log has a line containing every one of `parts`; returns that line.
    fn wait_for(&self, parts: &[&str]) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(line) = self
                .log
                .lock()
                .unwrap()
                .iter()
                .find(|line| parts.iter().all(|part| line.contains(part)))
            {
                return line.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {parts:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Lines logged with `part`.
    fn count(&self, part: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|line| line.contains(part))
            .count()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        if wait_with_timeout(&mut self.child, TIMEOUT).is_none() {
            let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn open_ws(url: &str, token: &str) -> Result<WsConn, String> {
    WsConn::open_with(url, &[("Authorization", &bearer(token))]).map_err(|err| err.to_string())
}

#[test]
fn sighup_swaps_the_token_and_keeps_open_connections() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "old-secret\n").unwrap();
    let server = Logged::start(
        &dir.path().join("s.sock"),
        &[
            "--ws",
            "127.0.0.1:0",
            "--ws-token-file",
            token_file.to_str().unwrap(),
        ],
        Some("info"),
    );
    let url = server.ws_url();
    let mut open = open_ws(&url, "old-secret").unwrap();
    assert_eq!(open.call(ECHO), ECHOED);

    std::fs::write(&token_file, "new-secret\n").unwrap();
    server.hangup();
    server.wait_for(&["reload: new WebSocket token", "SIGHUP"]);

    assert_eq!(open.call(ECHO), ECHOED, "the open connection keeps going");
    let refused = open_ws(&url, "old-secret")
        .err()
        .expect("old token refused");
    assert!(refused.contains("401"), "{refused}");
    let mut fresh = open_ws(&url, "new-secret").unwrap();
    assert_eq!(fresh.call(ECHO), ECHOED);
    assert_eq!(open.call(ECHO), ECHOED);

    // The same token again changes nothing, and says so.
    server.hangup();
    server.wait_for(&["reload: nothing changed"]);
    let log = server.log_text();
    assert!(
        !log.contains("old-secret") && !log.contains("new-secret"),
        "a token reached the log:\n{log}"
    );
}

#[test]
fn a_bad_token_file_keeps_the_old_token_and_the_log_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "kept-secret").unwrap();
    let server = Logged::start(
        &dir.path().join("s.sock"),
        &[
            "--ws",
            "127.0.0.1:0",
            "--ws-token-file",
            token_file.to_str().unwrap(),
        ],
        Some("info"),
    );
    let url = server.ws_url();
    let mut open = open_ws(&url, "kept-secret").unwrap();

    // Unreadable: gone (root reads a file whatever its mode, so a missing file stands in).
    std::fs::remove_file(&token_file).unwrap();
    server.hangup();
    let line = server.wait_for(&["reload failed; keeping every previous setting"]);
    assert!(
        line.contains("cannot read the token file") && line.contains("token"),
        "{line}"
    );
    assert_eq!(
        line.matches("os error 2").count(),
        1,
        "the cause once: {line}"
    );
    assert_eq!(open.call(ECHO), ECHOED);
    assert_eq!(open_ws(&url, "kept-secret").unwrap().call(ECHO), ECHOED);

    // Empty: it would remove the token and open the listener to everyone.
    std::fs::write(&token_file, "").unwrap();
    server.hangup();
    server.wait_for(&["reload failed", "is empty"]);
    assert_eq!(open_ws(&url, "kept-secret").unwrap().call(ECHO), ECHOED);
    let refused = WsConn::open_with(&url, &[])
        .err()
        .expect("still needs a token");
    assert!(refused.to_string().contains("401"), "{refused}");
    assert_eq!(server.count("kept-secret"), 0, "{}", server.log_text());
}

fn our_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

fn another_uid() -> u32 {
    if our_uid() == 4242 {
        4343
    } else {
        4242
    }
}

fn write_config(path: &Path, value: &Value) {
    // Written beside and renamed, as an editor or a deployment would, so a reload never reads
    // a half-written file.
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, value.to_string()).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

#[test]
fn the_allow_list_and_log_level_reload_from_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("s.sock");
    let config = dir.path().join("config.json");
    write_config(
        &config,
        &json!({"IPCServer": {"allowed_uids": [our_uid()]}}),
    );
    // No RUST_LOG, so the file's log_level is the one in force.
    let server = Logged::start(&socket, &["--config", config.to_str().unwrap()], None);
    let mut open = Conn::open(&socket);
    assert_eq!(open.call(ECHO), ECHOED);
    let mut closing = Conn::open(&socket);
    assert_eq!(closing.call(ECHO), ECHOED);
    assert_eq!(server.count("DEBUG"), 0, "{}", server.log_text());

    write_config(
        &config,
        &json!({"IPCServer": {"allowed_uids": [another_uid()], "log_level": "debug"}}),
    );
    server.hangup();
    server.wait_for(&["reload: new uid/gid allow-list", &another_uid().to_string()]);
    server.wait_for(&["reload: new log level", "debug"]);
    assert_eq!(open.call(ECHO), ECHOED, "the open connection keeps going");
    let mut refused = Conn::open(&socket);
    let reply: Value = serde_json::from_str(&refused.read_line()).unwrap();
    assert_eq!(reply["code"], json!("peer_not_allowed"), "{reply}");
    // The debug level is in force: a connection closing is a debug line now.
    drop(closing);
    server.wait_for(&["DEBUG", "stopped reading"]);

    // A file that is not JSON: nothing changes, and the log says why.
    std::fs::write(&config, "{ not json").unwrap();
    server.hangup();
    let line = server.wait_for(&["reload failed; keeping every previous setting"]);
    assert!(line.contains("is not valid JSON"), "{line}");
    let mut still_refused = Conn::open(&socket);
    let reply: Value = serde_json::from_str(&still_refused.read_line()).unwrap();
    assert_eq!(reply["code"], json!("peer_not_allowed"), "{reply}");

    // Back to our uid: new connections are served again.
    write_config(&config, &json!({"allowed_uids": [our_uid()]}));
    server.hangup();
    server.wait_for(&["reload: new uid/gid allow-list", "previous_uids"]);
    // (The log line waited for above may be the previous reload's: keep trying until this one
    // is in force, and take a refusal as "not yet", not as a failure.)
    common::eventually("served again after the reload", || echo_served(&socket));
    assert_eq!(open.call(ECHO), ECHOED);
}

#[test]
fn flags_are_fixed_and_a_reload_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("s.sock");
    let config = dir.path().join("config.json");
    write_config(&config, &json!({"allowed_uids": [another_uid()]}));
    let uid = our_uid().to_string();
    let server = Logged::start(
        &socket,
        &[
            "--config",
            config.to_str().unwrap(),
            "--allow-uid",
            &uid,
            "--log-level",
            "info",
        ],
        None,
    );
    write_config(
        &config,
        &json!({"allowed_uids": [another_uid()], "log_level": "debug"}),
    );
    server.hangup();
    server.wait_for(&["reload: nothing changed", "--log-level"]);
    assert_eq!(Conn::open(&socket).call(ECHO), ECHOED);
    assert_eq!(server.count("DEBUG"), 0, "{}", server.log_text());
}

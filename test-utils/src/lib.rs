//! Test harness (`pixl-ipc-test-utils`, not published) shared by every suite and benchmark that
//! drives the real binaries: the `pixl-ipc-server` process on a temp socket (stopped by PID), a
//! blocking raw-wire connection whose every read is bounded, so no test can hang, and the
//! message recipe the tests and benchmarks share.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A harness fails loudly on purpose.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

/// Every blocking wait in these tests gives up after this long.
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// The `pixl-ipc-server` binary: `$PIXL_IPC_SERVER_BIN` if set, else the one cargo built into
/// the same target directory as the running test (`cargo test --workspace` builds it).
pub fn server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("PIXL_IPC_SERVER_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current test executable");
    // target/<profile>/deps/<test>-<hash>  ->  target/<profile>/pixl-ipc-server
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let binary = profile_dir.join("pixl-ipc-server");
    assert!(
        binary.exists(),
        "{} is missing: build it first (cargo build -p pixl-ipc-server; cargo test --workspace does)",
        binary.display()
    );
    binary
}

/// A running `pixl-ipc-server` process, stopped by PID when dropped.
pub struct ServerProcess {
    child: Child,
    /// The socket path it listens on.
    pub path: PathBuf,
    /// The first line it printed ("pixl-ipc-server listening on ...").
    pub banner: String,
    log: Option<std::thread::JoinHandle<String>>,
}

/// How a server process that was expected to fail at startup ended.
pub struct StartFailure {
    /// The exit status.
    pub status: ExitStatus,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

impl ServerProcess {
    /// Starts the binary on `path` with extra flags and waits for its "listening on" line.
    pub fn start(path: &Path, args: &[&str]) -> ServerProcess {
        match Self::try_start(path, args) {
            Ok(server) => server,
            Err(failure) => panic!(
                "server failed to start ({}): {}",
                failure.status, failure.stderr
            ),
        }
    }

    /// Like [`start`](Self::start), but returns the exit status and stderr if it exits instead.
    pub fn try_start(path: &Path, args: &[&str]) -> Result<ServerProcess, StartFailure> {
        let mut command = Command::new(server_binary());
        command.arg("--socket").arg(path).args(args);
        Self::spawn(command, path)
    }

    /// Starts the binary with exactly `args` (no `--socket`), expecting it to listen on `path`.
    /// Logs at `info` unless `command` sets `RUST_LOG` itself.
    pub fn spawn(mut command: Command, path: &Path) -> Result<ServerProcess, StartFailure> {
        if !command.get_envs().any(|(key, _)| key == "RUST_LOG") {
            command.env("RUST_LOG", "info");
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn pixl-ipc-server");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().and_then(Result::ok);
            let _ = tx.send(first);
            for _ in lines {}
        });
        match rx.recv_timeout(TIMEOUT) {
            Ok(Some(banner)) if banner.contains("listening on") => {
                // Read stderr all along so a chatty server never blocks on a full pipe.
                let mut pipe = child.stderr.take().expect("stderr");
                let log = std::thread::spawn(move || {
                    let mut text = String::new();
                    let _ = pipe.read_to_string(&mut text);
                    text
                });
                Ok(ServerProcess {
                    child,
                    path: path.to_path_buf(),
                    banner,
                    log: Some(log),
                })
            }
            _ => {
                let status = wait_with_timeout(&mut child, TIMEOUT)
                    .expect("server neither started nor exited");
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                Err(StartFailure { status, stderr })
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).expect("signal the server");
    }

    /// Sends SIGTERM and waits for the exit; returns the status and everything logged.
    pub fn stop(mut self) -> (ExitStatus, String) {
        self.signal(Signal::SIGTERM);
        self.wait()
    }

    /// Waits for the process to exit on its own; returns the status and everything logged.
    pub fn wait(&mut self) -> (ExitStatus, String) {
        let status = wait_with_timeout(&mut self.child, TIMEOUT).expect("server did not exit");
        let log = self.log.take().map(|log| log.join().unwrap_or_default());
        (status, log.unwrap_or_default())
    }

    /// SIGKILL: the process gets no chance to clean up, as after a crash.
    pub fn kill9(mut self) {
        self.signal(Signal::SIGKILL);
        let _ = wait_with_timeout(&mut self.child, TIMEOUT);
    }

    /// Resident memory of the server process in KiB.
    pub fn rss_kib(&self) -> u64 {
        read_rss_kib(&format!("/proc/{}/status", self.child.id())).expect("VmRSS of the server")
    }

    /// User plus system CPU time the server has used so far.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("stat of the server");
        // Fields after the command name (which is in parentheses and may hold spaces).
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .expect("a stat line")
            .1
            .split_whitespace()
            .collect();
        let ticks: u64 =
            fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
        let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .unwrap_or(100) as u64;
        Duration::from_millis(ticks * 1000 / per_second)
    }

    /// Waits until the server has stopped using CPU (no more than a tick over `quiet`), for
    /// at most [`TIMEOUT`]: for tests that check what a server holds once it has done all it
    /// will do.
    pub fn wait_until_idle(&self, quiet: Duration) {
        let deadline = Instant::now() + TIMEOUT;
        let mut last = self.cpu_time();
        while Instant::now() < deadline {
            std::thread::sleep(quiet);
            let now = self.cpu_time();
            if now.saturating_sub(last) <= Duration::from_millis(10) {
                return;
            }
            last = now;
        }
        panic!("the server kept busy for {TIMEOUT:?}");
    }

    /// Descriptors the process has open now.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .expect("read /proc fd")
            .count()
    }

    /// The first `ws://` or `wss://` URL the banner names (servers started with `--ws`).
    pub fn ws_url(&self) -> Option<String> {
        self.banner
            .split_whitespace()
            .find(|word| word.starts_with("ws://") || word.starts_with("wss://"))
            .map(str::to_owned)
    }

    /// A new raw connection to the server.
    pub fn connect(&self) -> Conn {
        Conn::open(&self.path)
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = kill(self.pid(), Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// Samples a process's resident memory every few milliseconds on a thread of its own, to catch
/// the peak of a short spike that two readings before and after would miss.
pub struct RssSampler {
    peak: std::sync::Arc<std::sync::atomic::AtomicU64>,
    running: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    /// Starts sampling the process `pid`.
    pub fn start(pid: Pid) -> RssSampler {
        use std::sync::atomic::Ordering;
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let thread = {
            let (peak, running) = (peak.clone(), running.clone());
            let status = format!("/proc/{pid}/status");
            std::thread::spawn(move || {
                while running.load(Ordering::Relaxed) {
                    if let Some(rss) = read_rss_kib(&status) {
                        peak.fetch_max(rss, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        RssSampler {
            peak,
            running,
            thread: Some(thread),
        }
    }

    /// Stops sampling; the highest RSS seen, in KiB.
    pub fn peak_kib(mut self) -> u64 {
        self.running
            .store(false, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.peak.load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn read_rss_kib(status_path: &str) -> Option<u64> {
    std::fs::read_to_string(status_path)
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Waits for `child` to exit, giving up (returning `None`) after `timeout`.
pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A raw client connection: exact bytes out, lines in, every read bounded by [`TIMEOUT`].
pub struct Conn {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Conn {
    /// Connects to the socket at `path`.
    pub fn open(path: &Path) -> Conn {
        let stream = UnixStream::connect(path).expect("connect to the server");
        Conn::from_stream(stream)
    }

    /// Wraps an already connected stream.
    pub fn from_stream(stream: UnixStream) -> Conn {
        stream.set_read_timeout(Some(TIMEOUT)).expect("set timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone stream"));
        Conn {
            writer: stream,
            reader,
        }
    }

    /// Writes `bytes` exactly as given.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write to the server");
    }

    /// Writes `line` followed by `\n`.
    pub fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\n").as_bytes());
    }

    /// Writes `value` as one compact JSON line.
    pub fn send_json(&mut self, value: &Value) {
        self.send(&value.to_string());
    }

    /// The next line, without its newline. Panics on EOF or timeout.
    pub fn read_line(&mut self) -> String {
        let mut line = String::new();
        let read = self.reader.read_line(&mut line).expect("read a reply line");
        assert!(read > 0, "connection closed while a reply was expected");
        assert!(line.ends_with('\n'), "reply line without newline: {line:?}");
        line.pop();
        line
    }

    /// The next line, parsed as JSON.
    pub fn read_json(&mut self) -> Value {
        let line = self.read_line();
        serde_json::from_str(&line)
            .unwrap_or_else(|err| panic!("reply is not JSON ({err}): {line}"))
    }

    /// Sends `request` and returns the reply parsed as JSON.
    pub fn read_json_after(&mut self, request: &str) -> Value {
        self.send(request);
        self.read_json()
    }

    /// Sends `request` and returns the reply line.
    pub fn call(&mut self, request: &str) -> String {
        self.send(request);
        self.read_line()
    }

    /// Asserts that the server closes the connection (EOF) with nothing more to read.
    pub fn expect_eof(&mut self) {
        let mut rest = String::new();
        let read = self.reader.read_line(&mut rest).expect("read until EOF");
        assert_eq!(read, 0, "expected EOF, got {rest:?}");
    }

    /// The underlying socket.
    pub fn stream(&self) -> &UnixStream {
        &self.writer
    }

    /// Changes how long reads wait.
    pub fn set_read_timeout(&self, timeout: Duration) {
        self.writer
            .set_read_timeout(Some(timeout))
            .expect("set timeout");
    }

    /// True if nothing arrives within `wait`.
    pub fn is_silent_for(&mut self, wait: Duration) -> bool {
        self.set_read_timeout(wait);
        let mut line = String::new();
        let silent = match self.reader.read_line(&mut line) {
            Err(err) => matches!(
                err.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            Ok(_) => false,
        };
        self.set_read_timeout(TIMEOUT);
        silent
    }
}

/// Polls `condition` until it holds or [`TIMEOUT`] passes.
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The original benchmark's message: `size` keys `key_N`, each "GiveMe" padded to 1024
/// characters with "Dataz". The one recipe: the benchmarks (`pixl-ipc-benches`) re-export it.
pub fn sized_message(size: usize) -> Value {
    let mut value = String::from("GiveMe");
    while value.len() < 1024 {
        value.push_str("Dataz");
    }
    value.truncate(1024);
    let map = (0..size)
        .map(|i| (format!("key_{i}"), Value::String(value.clone())))
        .collect();
    Value::Object(map)
}

/// What a raw-wire test needs from a connection, whatever the transport: one message out, one
/// message in, and the end of the connection.
pub trait Wire {
    /// Sends one message (a line on a socket, a text frame on a WebSocket).
    fn send(&mut self, message: &str);
    /// The next message, without any trailing newline. Panics on close or timeout.
    fn read_line(&mut self) -> String;
    /// True if nothing arrives within `wait`.
    fn is_silent_for(&mut self, wait: Duration) -> bool;
    /// Asserts that the server closes the connection with nothing more to read; returns the
    /// WebSocket close code when there is one.
    fn expect_closed(&mut self) -> Option<u16>;

    /// The next message, parsed as JSON.
    fn read_json(&mut self) -> Value {
        let line = self.read_line();
        serde_json::from_str(&line)
            .unwrap_or_else(|err| panic!("reply is not JSON ({err}): {line}"))
    }

    /// Sends `request` and returns the reply.
    fn call(&mut self, request: &str) -> String {
        self.send(request);
        self.read_line()
    }
}

impl Wire for Conn {
    fn send(&mut self, message: &str) {
        Conn::send(self, message);
    }

    fn read_line(&mut self) -> String {
        Conn::read_line(self)
    }

    fn is_silent_for(&mut self, wait: Duration) -> bool {
        Conn::is_silent_for(self, wait)
    }

    fn expect_closed(&mut self) -> Option<u16> {
        self.expect_eof();
        None
    }
}

/// A blocking WebSocket client (tungstenite) for raw-frame tests; every read is bounded.
pub struct WsConn {
    socket: tungstenite::WebSocket<std::net::TcpStream>,
}

impl WsConn {
    /// Connects to a `ws://host:port/path` URL.
    pub fn open(url: &str) -> WsConn {
        Self::open_with(url, &[])
            .unwrap_or_else(|err| panic!("WebSocket connect to {url} failed: {err}"))
    }

    /// Connects with extra request headers; the error is the failed handshake.
    pub fn open_with(url: &str, headers: &[(&str, &str)]) -> Result<WsConn, tungstenite::Error> {
        use tungstenite::client::IntoClientRequest;
        let mut request = url.into_client_request()?;
        for (name, value) in headers {
            let name =
                tungstenite::http::HeaderName::from_bytes(name.as_bytes()).expect("header name");
            request
                .headers_mut()
                .insert(name, value.parse().expect("header value"));
        }
        let host = request
            .uri()
            .authority()
            .expect("URL with host and port")
            .as_str()
            .to_owned();
        let stream = std::net::TcpStream::connect(&host).expect("TCP connect");
        stream.set_read_timeout(Some(TIMEOUT)).expect("set timeout");
        let (socket, _response) =
            tungstenite::client(request, stream).map_err(|err| match err {
                tungstenite::HandshakeError::Failure(err) => err,
                tungstenite::HandshakeError::Interrupted(_) => tungstenite::Error::ConnectionClosed,
            })?;
        Ok(WsConn { socket })
    }

    /// Sends one binary frame.
    pub fn send_binary(&mut self, payload: &[u8]) {
        self.socket
            .send(tungstenite::Message::Binary(payload.to_vec().into()))
            .expect("send a binary frame");
    }

    /// Sends one binary frame; false when the socket would not take it in time (its write
    /// timeout), as with a server that stopped reading.
    pub fn try_send_binary(&mut self, payload: &[u8]) -> bool {
        match self
            .socket
            .send(tungstenite::Message::Binary(payload.to_vec().into()))
        {
            Ok(()) => true,
            Err(tungstenite::Error::Io(err))
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                false
            }
            Err(err) => panic!("send a binary frame: {err}"),
        }
    }

    /// The next data frame: its payload and whether it was binary.
    pub fn read_frame(&mut self) -> (String, bool) {
        loop {
            match self.socket.read().expect("read a WebSocket frame") {
                tungstenite::Message::Text(text) => return (text.to_string(), false),
                tungstenite::Message::Binary(bytes) => {
                    return (
                        String::from_utf8(bytes.to_vec()).expect("UTF-8 payload"),
                        true,
                    )
                }
                tungstenite::Message::Close(frame) => {
                    panic!("connection closed while a reply was expected: {frame:?}")
                }
                _ => {}
            }
        }
    }

    /// The underlying TCP stream.
    pub fn tcp(&self) -> &std::net::TcpStream {
        self.socket.get_ref()
    }
}

impl Wire for WsConn {
    fn send(&mut self, message: &str) {
        self.socket
            .send(tungstenite::Message::Text(message.into()))
            .expect("send a text frame");
    }

    fn read_line(&mut self) -> String {
        self.read_frame().0
    }

    fn is_silent_for(&mut self, wait: Duration) -> bool {
        // Pings keep arriving on a healthy connection; only data frames break the silence.
        let deadline = Instant::now() + wait;
        let silent = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break true;
            }
            self.tcp()
                .set_read_timeout(Some(left))
                .expect("set timeout");
            match self.socket.read() {
                Ok(tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_)) => continue,
                Ok(_) => break false,
                Err(tungstenite::Error::Io(err)) => {
                    break matches!(
                        err.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    )
                }
                Err(_) => break false,
            }
        };
        self.tcp()
            .set_read_timeout(Some(TIMEOUT))
            .expect("set timeout");
        silent
    }

    fn expect_closed(&mut self) -> Option<u16> {
        loop {
            match self.socket.read() {
                Ok(tungstenite::Message::Close(frame)) => {
                    return frame.map(|frame| u16::from(frame.code))
                }
                Ok(tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_)) => {}
                Ok(other) => panic!("expected the connection to close, got {other:?}"),
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return None
                }
                Err(tungstenite::Error::Io(err))
                    if err.kind() != std::io::ErrorKind::WouldBlock =>
                {
                    return None
                }
                Err(err) => panic!("expected a close, got {err}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sized_message_is_the_originals_recipe() {
        let message = sized_message(3);
        let map = message.as_object().unwrap();
        assert_eq!(map.keys().collect::<Vec<_>>(), ["key_0", "key_1", "key_2"]);
        for value in map.values() {
            let text = value.as_str().unwrap();
            assert_eq!(text.len(), 1024);
            assert!(text.starts_with("GiveMeDatazDataz"), "{text:.20}");
            assert!(text.ends_with("DatazDat"), "ends with {:?}", &text[1014..]);
        }
        assert_eq!(sized_message(0), Value::Object(Default::default()));
    }
}

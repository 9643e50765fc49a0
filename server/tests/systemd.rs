//! Running under systemd, against the real binary: socket activation as systemd does it (the
//! test binds the sockets and hands them over as descriptors 3 and 4 with `LISTEN_FDS`,
//! `LISTEN_PID`, `LISTEN_FDNAMES`), and the `NOTIFY_SOCKET` datagrams (`READY=1`, `STATUS=`,
//! `STOPPING=1`, `WATCHDOG=1`) received on a socket the test listens on.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{server_binary, Conn, ServerProcess, StartFailure, Wire, WsConn, TIMEOUT};
use nix::fcntl::{fcntl, FcntlArg};

const ECHO: &str = r#"{"ipcReqID":"a1","uri":"/ipcserver/test/echo","data":"activated"}"#;
const ECHOED: &str = r#"{"ipcReqID":"a1","data":"activated"}"#;

/// Whose pid `LISTEN_PID` names.
#[derive(Clone, Copy)]
enum ListenPid {
    /// The server's own, as systemd sets it.
    Server,
    /// Another process's.
    Other(u32),
}

/// A server command to which `passed` are handed as descriptors 3, 4, ... with the variables
/// systemd sets (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES` when `names` is given), and the
/// parent's copies of them, to close once it has started.
struct Activated {
    command: Command,
    copies: Vec<RawFd>,
}

///
/// `LISTEN_PID` must be the server's own pid, known only once it is forked. Setting it in
/// `pre_exec` with `std::env::set_var` deadlocks: std holds its environment lock across the
/// fork, and the child would wait for it forever (tried). So a `sh` that `exec`s the server
/// exports its own `$$`, which the server keeps across `exec`; `pre_exec` only moves the
/// descriptors into place, with `dup2`, which is async-signal-safe.
fn activated(
    passed: &[&dyn AsFd],
    names: Option<&str>,
    pid: ListenPid,
    args: &[&str],
) -> Activated {
    // Copies at 10 and up, close-on-exec, so that moving one to 3 or 4 in the child never
    // overwrites another still to be moved (the originals may well be 3 or 4 themselves).
    let high: Vec<RawFd> = passed
        .iter()
        .map(|fd| fcntl(fd.as_fd().as_raw_fd(), FcntlArg::F_DUPFD_CLOEXEC(10)).unwrap())
        .collect();
    let export_pid = match pid {
        ListenPid::Server => "export LISTEN_PID=$$; ",
        ListenPid::Other(_) => "",
    };
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(format!("{export_pid}exec \"$0\" \"$@\""))
        .arg(server_binary())
        .args(args)
        .env("LISTEN_FDS", passed.len().to_string());
    if let ListenPid::Other(other) = pid {
        command.env("LISTEN_PID", other.to_string());
    }
    if let Some(names) = names {
        command.env("LISTEN_FDNAMES", names);
    }
    let moves = high.clone();
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // calls are allowed: it calls dup2 (a system call; `dup2` clears close-on-exec on the
    // copy) over a Vec allocated before the fork, and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            for (index, fd) in moves.iter().enumerate() {
                nix::unistd::dup2(*fd, 3 + index as RawFd)?;
            }
            Ok(())
        });
    }
    Activated {
        command,
        copies: high,
    }
}

impl Activated {
    /// Starts the server and waits for its banner; expects it on `path`.
    fn spawn(self, path: &Path) -> Result<ServerProcess, StartFailure> {
        let started = ServerProcess::spawn(self.command, path);
        // The child has its own descriptors from the moment it was forked.
        for fd in self.copies {
            let _ = nix::unistd::close(fd);
        }
        started
    }
}

/// The started server, or a panic with what it wrote before exiting.
fn up(started: Result<ServerProcess, StartFailure>) -> ServerProcess {
    started.unwrap_or_else(|failure| {
        panic!(
            "server failed to start ({}): {}",
            failure.status, failure.stderr
        )
    })
}

/// A datagram socket standing in for systemd's notification socket.
struct NotifySocket {
    socket: UnixDatagram,
}

impl NotifySocket {
    fn bind(path: &Path) -> NotifySocket {
        let socket = UnixDatagram::bind(path).unwrap();
        socket.set_read_timeout(Some(TIMEOUT)).unwrap();
        NotifySocket { socket }
    }

    /// The next notification, or `None` if none comes within `wait`.
    fn next_within(&self, wait: Duration) -> Option<String> {
        self.socket.set_read_timeout(Some(wait)).unwrap();
        let mut buffer = [0u8; 4096];
        let received = self.socket.recv(&mut buffer);
        self.socket.set_read_timeout(Some(TIMEOUT)).unwrap();
        received
            .ok()
            .map(|length| String::from_utf8_lossy(&buffer[..length]).into_owned())
    }

    /// Skips notifications until one has a line starting with `prefix`; returns it whole.
    fn wait_for(&self, prefix: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.next_within(left) {
                Some(message) if message.lines().any(|line| line.starts_with(prefix)) => {
                    return message
                }
                Some(message) => seen.push(message),
                None => break,
            }
        }
        panic!("no {prefix} notification; got {seen:?}");
    }

    /// Every notification already waiting, without blocking.
    fn pending(&self) -> Vec<String> {
        self.socket.set_nonblocking(true).unwrap();
        let mut messages = Vec::new();
        let mut buffer = [0u8; 4096];
        while let Ok(length) = self.socket.recv(&mut buffer) {
            messages.push(String::from_utf8_lossy(&buffer[..length]).into_owned());
        }
        self.socket.set_nonblocking(false).unwrap();
        messages
    }
}

fn inode(path: &Path) -> u64 {
    std::fs::symlink_metadata(path).unwrap().ino()
}

#[test]
fn passed_unix_and_tcp_sockets_are_served_and_left_in_place_at_exit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("activated.sock");
    let unused = dir.path().join("unused.sock");
    let unix = UnixListener::bind(&path).unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tcp.local_addr().unwrap().port();
    let before = inode(&path);
    let notify = NotifySocket::bind(&dir.path().join("notify"));

    let mut activation = activated(
        &[&unix, &tcp],
        Some("pixl-ipc-server.socket:pixl-ipc-server.socket"),
        ListenPid::Server,
        &["--socket", unused.to_str().unwrap()],
    );
    activation
        .command
        .env("NOTIFY_SOCKET", dir.path().join("notify"));
    let server = up(activation.spawn(&path));
    assert!(
        server.banner.contains(path.to_str().unwrap()) && server.banner.contains("passed in"),
        "{}",
        server.banner
    );

    // The first request is answered; READY=1 was sent before it (it is already waiting).
    let mut conn = Conn::open(&path);
    assert_eq!(conn.call(ECHO), ECHOED);
    let ready = notify.pending();
    assert!(
        ready
            .first()
            .is_some_and(|first| first.lines().any(|line| line == "READY=1")),
        "READY=1 first, before any reply: {ready:?}"
    );

    // The passed TCP socket serves WebSockets; the banner names its port.
    let url = server.ws_url().expect("a ws:// URL in the banner");
    assert_eq!(url, format!("ws://127.0.0.1:{port}/"));
    let mut ws = WsConn::open(&url);
    assert_eq!(ws.call(ECHO), ECHOED);
    drop((conn, ws));

    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
    let stopping = notify.wait_for("STOPPING=1");
    assert!(stopping.contains("STATUS=draining"), "{stopping}");
    // systemd owns the socket: same file, not removed, no lock file beside it, and the path
    // given with --socket never created.
    assert_eq!(
        inode(&path),
        before,
        "the passed socket's file is left in place"
    );
    let mut lock = path.as_os_str().to_owned();
    lock.push(".lock");
    assert!(
        !Path::new(&lock).exists(),
        "no lock taken for a passed socket"
    );
    assert!(
        !unused.exists(),
        "--socket is not bound when a socket is passed in"
    );
    assert!(log.contains("passed in"), "{log}");

    // As with systemd between two runs, the socket still listens (the test holds it): a server
    // started by hand on the path finds it live and leaves it alone...
    let intruder = ServerProcess::try_start(&path, &[])
        .err()
        .expect("a live socket is never taken over");
    assert!(intruder.stderr.contains("in use"), "{}", intruder.stderr);
    assert_eq!(inode(&path), before);
    // ...and a client that connects now waits in the backlog; the next server answers it.
    let mut waiting = Conn::from_stream(UnixStream::connect(&path).unwrap());
    waiting.send(ECHO);
    let next = up(activated(&[&unix], None, ListenPid::Server, &[]).spawn(&path));
    assert_eq!(waiting.read_line(), ECHOED);
    drop(waiting);
    let (status, _) = next.stop();
    assert!(status.success());
    assert_eq!(inode(&path), before);
}

#[test]
fn listen_pid_of_another_process_is_ignored_and_the_server_binds_its_own_socket() {
    let dir = tempfile::tempdir().unwrap();
    let passed_path = dir.path().join("passed.sock");
    let own = dir.path().join("own.sock");
    let passed = UnixListener::bind(&passed_path).unwrap();
    let server = up(activated(
        &[&passed],
        Some("other"),
        ListenPid::Other(std::process::id()),
        &["--socket", own.to_str().unwrap()],
    )
    .spawn(&own));
    assert!(
        server.banner.contains(own.to_str().unwrap()),
        "{}",
        server.banner
    );
    assert!(!server.banner.contains("passed in"), "{}", server.banner);
    let mut conn = server.connect();
    assert_eq!(conn.call(ECHO), ECHOED);
    // Nobody serves the passed socket: a request there waits in its backlog, unanswered.
    let mut ignored = Conn::open(&passed_path);
    ignored.send(ECHO);
    assert!(ignored.is_silent_for(Duration::from_millis(300)));
    let (status, _) = server.stop();
    assert!(status.success());
    assert!(!own.exists(), "its own socket is removed as usual");
    assert!(passed_path.exists());
}

#[test]
fn a_passed_descriptor_that_cannot_be_served_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let own = dir.path().join("own.sock");
    let socket_args = ["--socket", own.to_str().unwrap()];

    // LISTEN_FDS=1 and nothing at descriptor 3.
    let mut closed = activated(&[], None, ListenPid::Server, &socket_args);
    closed.command.env("LISTEN_FDS", "1");
    let failure = closed.spawn(&own).err().expect("must not start");
    assert_eq!(failure.status.code(), Some(1));
    assert!(
        failure.stderr.contains("descriptor 3 (unknown)"),
        "{}",
        failure.stderr
    );
    assert!(failure.stderr.contains("not open"), "{}", failure.stderr);

    // A regular file (a unit's OpenFile= or a shell redirection, say).
    let file = std::fs::File::create(dir.path().join("file")).unwrap();
    let failure = activated(&[&file], None, ListenPid::Server, &socket_args)
        .spawn(&own)
        .err()
        .expect("must not start");
    assert!(
        failure.stderr.contains("not a socket"),
        "{}",
        failure.stderr
    );

    // A datagram socket (ListenDatagram= by mistake).
    let datagram = UnixDatagram::bind(dir.path().join("dgram")).unwrap();
    let failure = activated(
        &[&datagram],
        Some("dgram.socket"),
        ListenPid::Server,
        &socket_args,
    )
    .spawn(&own)
    .err()
    .expect("must not start");
    assert_eq!(failure.status.code(), Some(1));
    assert!(
        failure.stderr.contains("descriptor 3 (dgram.socket)"),
        "{}",
        failure.stderr
    );
    assert!(failure.stderr.contains("datagram"), "{}", failure.stderr);

    // A connected stream socket, not a listening one (Accept=yes by mistake).
    let (connected, _peer) = UnixStream::pair().unwrap();
    let failure = activated(&[&connected], None, ListenPid::Server, &socket_args)
        .spawn(&own)
        .err()
        .expect("must not start");
    assert!(
        failure.stderr.contains("not listening"),
        "{}",
        failure.stderr
    );

    // A name count that does not match LISTEN_FDS.
    let listener = UnixListener::bind(dir.path().join("named.sock")).unwrap();
    let failure = activated(
        &[&listener],
        Some("one:two"),
        ListenPid::Server,
        &socket_args,
    )
    .spawn(&own)
    .err()
    .expect("must not start");
    assert!(
        failure.stderr.contains("LISTEN_FDNAMES"),
        "{}",
        failure.stderr
    );

    assert!(!own.exists(), "nothing was created at the configured path");
}

#[test]
fn a_plain_start_notifies_ready_status_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plain.sock");
    let notify = NotifySocket::bind(&dir.path().join("notify"));
    let mut command = Command::new(server_binary());
    command
        .args([
            "--socket",
            path.to_str().unwrap(),
            "--stats-interval",
            "100",
        ])
        .env("NOTIFY_SOCKET", dir.path().join("notify"))
        .env("WATCHDOG_USEC", "200000");
    let server = up(ServerProcess::spawn(command, &path));
    let ready = notify.wait_for("READY=1");
    assert!(
        ready.contains(&format!("STATUS=listening on {}", path.display())),
        "{ready}"
    );

    let mut conn = server.connect();
    assert_eq!(conn.call(ECHO), ECHOED);
    // WATCHDOG=1 every 100 ms (half of 200 ms): several within a second.
    let started = Instant::now();
    let mut pings = 0;
    let mut status = None;
    while started.elapsed() < Duration::from_secs(1) {
        match notify.next_within(Duration::from_millis(500)) {
            Some(message) if message == "WATCHDOG=1" => pings += 1,
            Some(message) if message.starts_with("STATUS=") => status = Some(message),
            Some(other) => panic!("unexpected notification {other:?}"),
            None => break,
        }
    }
    assert!(pings >= 5, "{pings} WATCHDOG=1 in a second");
    let status = status.expect("a STATUS= line at the stats interval");
    assert!(status.starts_with("STATUS=1 connections; "), "{status}");
    assert!(status.ends_with(" in all"), "{status}");

    let (exit, _) = server.stop();
    assert!(exit.success());
    notify.wait_for("STOPPING=1");
    assert!(
        !path.exists(),
        "a socket the server created is removed as usual"
    );
}

#[test]
fn the_watchdog_is_not_fed_for_another_pid_and_an_abstract_notify_socket_is_reached() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("abstract.sock");
    let name = format!("pixl-ipc-systemd-test-{}", std::process::id());
    let socket = {
        use std::os::linux::net::SocketAddrExt;
        let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        UnixDatagram::bind_addr(&address).unwrap()
    };
    let notify = NotifySocket { socket };
    let mut command = Command::new(server_binary());
    command
        .args(["--socket", path.to_str().unwrap()])
        .env("NOTIFY_SOCKET", format!("@{name}"))
        .env("WATCHDOG_USEC", "100000")
        .env("WATCHDOG_PID", std::process::id().to_string());
    let server = up(ServerProcess::spawn(command, &path));
    notify.wait_for("READY=1");
    assert_eq!(
        notify.next_within(Duration::from_millis(400)),
        None,
        "no WATCHDOG=1 when WATCHDOG_PID names another process"
    );
    let (exit, _) = server.stop();
    assert!(exit.success());
    notify.wait_for("STOPPING=1");
}

#[test]
fn an_unusable_or_unread_notify_socket_never_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("unread.sock");

    // An address kind the server does not speak: a warning, and it serves.
    let mut command = Command::new(server_binary());
    command
        .args(["--socket", path.to_str().unwrap()])
        .env("NOTIFY_SOCKET", "vsock:2:9999");
    let server = up(ServerProcess::spawn(command, &path));
    assert_eq!(server.connect().call(ECHO), ECHOED);
    let (exit, log) = server.stop();
    assert!(exit.success());
    assert!(
        log.contains("serving without notifications") && log.contains("vsock:2:9999"),
        "{log}"
    );

    // A manager that never reads while WATCHDOG=1 is due every 500 us: its queue fills within
    // milliseconds; each later notification is dropped (one warning), and requests are still
    // answered at once.
    let notify = NotifySocket::bind(&dir.path().join("notify"));
    let mut command = Command::new(server_binary());
    command
        .args(["--socket", path.to_str().unwrap()])
        .env("NOTIFY_SOCKET", dir.path().join("notify"))
        .env("WATCHDOG_USEC", "1000");
    let server = up(ServerProcess::spawn(command, &path));
    std::thread::sleep(Duration::from_millis(300));
    let mut conn = server.connect();
    for _ in 0..20 {
        let asked = Instant::now();
        assert_eq!(conn.call(ECHO), ECHOED);
        assert!(
            asked.elapsed() < Duration::from_millis(500),
            "{:?}",
            asked.elapsed()
        );
    }
    drop(conn);
    let (exit, log) = server.stop();
    assert!(exit.success());
    assert_eq!(
        log.matches("cannot send WATCHDOG=1").count(),
        1,
        "warned once while it kept failing: {log}"
    );
    assert!(notify
        .pending()
        .first()
        .is_some_and(|first| first.starts_with("READY=1")));
}

//! The socket's lifecycle against the real binary: what is at the path before start, the mode
//! it gets, and what shutdown leaves behind.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{server_binary, ServerProcess};
use nix::sys::signal::Signal;
use serde_json::json;

fn echo_works(server: &ServerProcess) -> bool {
    let mut conn = server.connect();
    conn.call(r#"{"ipcReqID":"rq0","uri":"/ipcserver/test/echo","data":"alive"}"#)
        == r#"{"ipcReqID":"rq0","data":"alive"}"#
}

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn a_live_socket_is_refused_and_its_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.sock");
    let first = ServerProcess::start(&path, &[]);
    let failure = ServerProcess::try_start(&path, &[])
        .err()
        .expect("second server must not start");
    assert_eq!(failure.status.code(), Some(1));
    assert!(
        failure.stderr.contains("in use by a running server"),
        "{}",
        failure.stderr
    );
    assert!(
        failure.stderr.contains(path.to_str().unwrap()),
        "names the path: {}",
        failure.stderr
    );
    assert!(
        echo_works(&first),
        "the first server still owns and serves the path"
    );
}

#[test]
fn a_stale_socket_left_by_kill_9_is_reclaimed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stale.sock");
    ServerProcess::start(&path, &[]).kill9();
    assert!(std::fs::symlink_metadata(&path)
        .unwrap()
        .file_type()
        .is_socket_like());
    let second = ServerProcess::start(&path, &[]);
    assert!(echo_works(&second));
    let (status, log) = second.stop();
    assert!(status.success());
    assert!(log.contains("removing stale socket"), "{log}");
}

#[test]
fn of_five_concurrent_starts_on_one_path_exactly_one_wins_and_keeps_its_socket() {
    // Each round starts five servers at once on a path where the previous round's winner was
    // killed with SIGKILL (a stale socket; none in the first round). Without the lock a server
    // could judge the socket stale between another's bind and listen and unlink it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("race.sock");
    for round in 0..50 {
        let attempts: Vec<_> = (0..5)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || ServerProcess::try_start(&path, &[]))
            })
            .collect();
        let (mut winners, mut losers) = (Vec::new(), Vec::new());
        for attempt in attempts {
            match attempt.join().unwrap() {
                Ok(server) => winners.push(server),
                Err(failure) => losers.push(failure),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: exactly one server runs");
        for failure in &losers {
            assert_ne!(failure.status.code(), Some(0), "round {round}");
            assert!(
                failure.stderr.contains(path.to_str().unwrap()),
                "round {round}: names the path: {}",
                failure.stderr
            );
        }
        let winner = winners.pop().unwrap();
        assert!(
            echo_works(&winner),
            "round {round}: the path still reaches the winner"
        );
        winner.kill9();
    }
}

#[test]
fn a_server_holding_the_lock_keeps_its_socket_even_before_it_listens() {
    // Deterministic form of the race above: this test plays a server that has taken the lock
    // and bound its socket but does not accept yet (connecting is refused, as for a stale
    // socket). A server starting now must refuse, and leave that socket file alone.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("starting.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap()); // bound, not accepting
    let inode = std::fs::symlink_metadata(&path).unwrap().ino();
    let lock = std::fs::File::create(lock_file_of(&path)).unwrap();
    let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, errno)| errno)
        .unwrap();
    let failure = ServerProcess::try_start(&path, &[])
        .err()
        .expect("the path is locked by another server");
    assert_eq!(failure.status.code(), Some(1), "{}", failure.stderr);
    assert!(
        failure.stderr.contains("in use by a running server")
            && failure.stderr.contains(path.to_str().unwrap()),
        "{}",
        failure.stderr
    );
    assert_eq!(
        std::fs::symlink_metadata(&path).unwrap().ino(),
        inode,
        "the other server's socket was not unlinked"
    );
}

fn lock_file_of(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    name.into()
}

#[test]
fn settings_out_of_range_are_refused_at_start_naming_the_flag_and_creating_nothing() {
    let too_big = (isize::MAX as u64 + 1).to_string();
    let max_ms = u64::MAX.to_string();
    let cases: &[&[&str]] = &[
        &["--max-outbound-bytes", "0"],
        &["--max-message-bytes", "0"],
        &["--max-message-bytes", &too_big],
        &["--max-connections", "0"],
        &["--max-in-flight", "0"],
        &["--threads", "0"],
        &["--spin-us", "0"],
        &["--spin-us", "1001"],
        &["--exit-timeout-ms", &max_ms],
        &["--handler-timeout-ms", "0"],
        &["--partial-message-timeout-ms", &max_ms],
        &["--slow-threshold-ms", &max_ms],
        &["--stats-interval", "5"],
        &["--ws", "127.0.0.1:0", "--ws-ping-interval-ms", "0"],
        &["--ws", "127.0.0.1:0", "--ws-idle-timeout-ms", &max_ms],
        &["--ws", "127.0.0.1:0", "--ws-backlog", "0"],
    ];
    for args in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("limits.sock");
        let failure = ServerProcess::try_start(&path, args)
            .err()
            .unwrap_or_else(|| panic!("{args:?} must be refused"));
        assert_eq!(
            failure.status.code(),
            Some(1),
            "{args:?}: {}",
            failure.stderr
        );
        let flag = args[args.len() - 2];
        assert!(
            failure.stderr.contains("invalid setting") && failure.stderr.contains(flag),
            "{args:?}: names {flag}: {}",
            failure.stderr
        );
        assert!(!failure.stderr.contains("panicked"), "{}", failure.stderr);
        assert!(!path.exists(), "{args:?}: no socket created");
    }
}

#[test]
fn a_start_that_fails_at_chgrp_leaves_no_socket_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chgrp.sock");
    let group = "4242"; // Not a group of ours: chown(2) refuses it to anyone but root.
    let mut command = if nix::unistd::geteuid().is_root() {
        // Root may chown to any group: run the server as nobody, in a directory nobody may use.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let mut command = Command::new("setpriv");
        command.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
        command.arg(server_binary());
        command
    } else {
        Command::new(server_binary())
    };
    command.arg("--socket").arg(&path).args(["--group", group]);
    let failure = ServerProcess::spawn(command, &path)
        .err()
        .expect("chgrp to a foreign group must fail");
    assert_eq!(failure.status.code(), Some(1), "{}", failure.stderr);
    assert!(
        failure.stderr.contains("cannot set the group of"),
        "{}",
        failure.stderr
    );
    assert!(
        !path.exists(),
        "the socket file of a failed start is removed"
    );
}

#[test]
fn a_regular_file_at_the_path_is_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("precious.txt");
    std::fs::write(&path, "do not delete").unwrap();
    let failure = ServerProcess::try_start(&path, &[])
        .err()
        .expect("must refuse");
    assert_eq!(failure.status.code(), Some(1));
    assert!(
        failure.stderr.contains("regular file, not a socket"),
        "{}",
        failure.stderr
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "do not delete");
}

#[test]
fn a_directory_at_the_path_is_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a-dir");
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("inside"), "x").unwrap();
    let failure = ServerProcess::try_start(&path, &[])
        .err()
        .expect("must refuse");
    assert!(
        failure.stderr.contains("directory, not a socket"),
        "{}",
        failure.stderr
    );
    assert!(path.join("inside").exists());
}

#[test]
fn a_path_over_the_os_limit_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x".repeat(120));
    let failure = ServerProcess::try_start(&path, &[])
        .err()
        .expect("must refuse");
    assert!(
        failure
            .stderr
            .contains("the limit on this system is 107 bytes"),
        "{}",
        failure.stderr
    );
    // One line, not a backtrace.
    assert_eq!(
        failure
            .stderr
            .trim()
            .lines()
            .filter(|l| l.contains("pixl-ipc-server:"))
            .count(),
        1,
        "{}",
        failure.stderr
    );
}

#[test]
fn default_mode_is_owner_only_and_the_banner_says_how_to_open_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mode.sock");
    let server = ServerProcess::start(&path, &[]);
    assert_eq!(mode_of(&path), 0o600);
    assert!(server.banner.contains("mode 0600"), "{}", server.banner);
    assert!(server.banner.contains("--chmod 777"), "{}", server.banner);
}

#[test]
fn chmod_accepts_the_originals_and_tremors_forms() {
    for (given, expected) in [
        ("777", 0o777),
        ("0660", 0o660),
        ("=640", 0o640),
        ("600", 0o600),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mode.sock");
        let server = ServerProcess::start(&path, &["--chmod", given]);
        assert_eq!(mode_of(&path), expected, "--chmod {given}");
        assert!(echo_works(&server));
    }
    let dir = tempfile::tempdir().unwrap();
    let failure = ServerProcess::try_start(&dir.path().join("bad.sock"), &["--chmod", "u+rw"])
        .err()
        .expect("refused");
    assert!(
        failure.stderr.contains("invalid socket mode"),
        "{}",
        failure.stderr
    );
    assert!(
        !dir.path().join("bad.sock").exists(),
        "nothing created for a bad mode"
    );
}

#[test]
fn group_ownership_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("group.sock");
    // Root may give the socket any group; anyone else, a group of their own.
    let gid = if nix::unistd::geteuid().is_root() {
        4242
    } else {
        nix::unistd::getegid().as_raw()
    };
    let _server = ServerProcess::start(&path, &["--group", &gid.to_string(), "--chmod", "660"]);
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert_eq!(meta.gid(), gid);
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);

    let failure = ServerProcess::try_start(
        &dir.path().join("g2.sock"),
        &["--group", "no-such-group-xyz"],
    )
    .err()
    .expect("refused");
    assert!(
        failure.stderr.contains("no group named"),
        "{}",
        failure.stderr
    );
}

#[test]
fn the_socket_is_never_more_open_than_configured_while_it_is_set_up() {
    // Watch the path from before the server creates it until it is listening, recording every
    // mode seen. With a default umask (022) a plain bind would show 0755 for a moment.
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("window.sock");
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watcher = {
            let (path, done) = (path.clone(), done.clone());
            std::thread::spawn(move || {
                let mut seen = std::collections::BTreeSet::new();
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Ok(meta) = std::fs::symlink_metadata(&path) {
                        seen.insert(meta.permissions().mode() & 0o777);
                    }
                }
                seen
            })
        };
        let server = ServerProcess::start(&path, &["--chmod", "640"]);
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut seen = watcher.join().unwrap();
        // Under load the watcher may not get a sample in after the final chmod: add it here.
        let final_mode = mode_of(&path);
        assert_eq!(final_mode, 0o640);
        seen.insert(final_mode);
        for mode in &seen {
            assert_eq!(
                mode & !0o640,
                0,
                "socket was briefly {mode:04o}, more open than 0640: {seen:?}"
            );
        }
        drop(server);
    }
}

#[test]
fn the_originals_config_file_shape_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cfg.sock");
    let config = dir.path().join("config.json");
    let body = json!({
        "log_dir": "/var/tmp", "debug_level": 9,
        "IPCServer": {"socket_path": path, "socket_chmod": "0660", "exit_timeout": 500, "log_stats_interval": "minute"}
    });
    std::fs::write(&config, body.to_string()).unwrap();
    let mut command = Command::new(server_binary());
    command.arg("--config").arg(&config);
    let server = ServerProcess::spawn(command, &path)
        .ok()
        .expect("starts from the config file");
    assert_eq!(mode_of(&path), 0o660);
    assert!(echo_works(&server));
    // A flag wins over the file.
    drop(server);
    let other = dir.path().join("flag.sock");
    let mut command = Command::new(server_binary());
    command
        .arg("--config")
        .arg(&config)
        .arg("--socket")
        .arg(&other)
        .arg("--chmod")
        .arg("600");
    let _server = ServerProcess::spawn(command, &other).ok().expect("starts");
    assert_eq!(mode_of(&other), 0o600);
}

#[test]
fn sigterm_drains_in_flight_requests_then_removes_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drain.sock");
    let server = ServerProcess::start(&path, &[]);
    let mut busy = server.connect();
    let mut idle = server.connect();
    busy.send(r#"{"ipcReqID":"rq0","uri":"/ipcserver/test/delay","data":{"delay":400}}"#);
    std::thread::sleep(Duration::from_millis(100));
    let signalled = Instant::now();
    server.signal(Signal::SIGTERM);
    // The request that was in flight is answered, then the connection closes.
    assert_eq!(
        busy.read_line(),
        r#"{"ipcReqID":"rq0","data":{"delay":400}}"#
    );
    busy.expect_eof();
    idle.expect_eof();
    let mut server = server;
    let (status, log) = server.wait();
    assert!(status.success(), "{log}");
    assert!(signalled.elapsed() < Duration::from_secs(2));
    assert!(!path.exists(), "socket removed on exit");
    assert!(log.contains("drained=true"), "{log}");
    // Deleting the lock file would let two later servers lock two different files.
    assert!(
        lock_file_of(&path).exists(),
        "the lock file is never deleted"
    );
}

/// Sends 20 slow requests, then `signal`; returns the connection and the request ids.
fn twenty_in_flight_then(server: &ServerProcess, signal: Signal) -> common::Conn {
    let mut conn = server.connect();
    for index in 0..20 {
        conn.send(&format!(
            r#"{{"ipcReqID":"rq{index}","uri":"/ipcserver/test/delay","data":{{"delay":300}}}}"#
        ));
    }
    std::thread::sleep(Duration::from_millis(100));
    server.signal(signal);
    conn
}

fn expect_twenty_replies(conn: &mut common::Conn, signal: Signal) {
    let mut ids: Vec<String> = (0..20)
        .map(|_| conn.read_json()["ipcReqID"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    let mut expected: Vec<String> = (0..20).map(|index| format!("rq{index}")).collect();
    expected.sort();
    assert_eq!(
        ids, expected,
        "{signal}: every in-flight request answered once"
    );
}

#[test]
fn sighup_reloads_and_sigusr_are_ignored_without_losing_a_reply() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hup.sock");
    let mut server = ServerProcess::start(&path, &[]);
    for signal in [Signal::SIGHUP, Signal::SIGUSR1, Signal::SIGUSR2] {
        let mut conn = twenty_in_flight_then(&server, signal);
        expect_twenty_replies(&mut conn, signal);
        assert!(server.is_running(), "{signal} must not stop the server");
        assert!(echo_works(&server), "still serving after {signal}");
    }
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
    for name in ["SIGUSR1", "SIGUSR2"] {
        assert!(
            log.contains(&format!("signal=\"{name}\"")) && log.contains("ignored"),
            "logs {name}: {log}"
        );
    }
    // Nothing to re-read (no --config, no --ws-token-file): the reload says so.
    assert!(
        log.contains("reload: nothing changed") && log.contains("signal=\"SIGHUP\""),
        "logs SIGHUP: {log}"
    );
    assert!(!path.exists(), "socket removed on exit");
}

#[test]
fn sigquit_drains_like_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quit.sock");
    let mut server = ServerProcess::start(&path, &[]);
    let mut conn = twenty_in_flight_then(&server, Signal::SIGQUIT);
    expect_twenty_replies(&mut conn, Signal::SIGQUIT);
    conn.expect_eof();
    let (status, log) = server.wait();
    assert!(status.success(), "{log}");
    assert!(log.contains("drained=true"), "{log}");
    assert!(!path.exists(), "socket removed on exit");
}

#[test]
fn a_closed_stdout_does_not_stop_the_server() {
    // As in `pixl-ipc-server | true`: the banner cannot be written.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nostdout.sock");
    let mut child = Command::new(server_binary())
        .arg("--socket")
        .arg(&path)
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // Closed long before the server gets to its banner.
    common::eventually("server listening", || {
        std::os::unix::net::UnixStream::connect(&path).is_ok()
    });
    let mut conn = common::Conn::open(&path);
    assert_eq!(
        conn.call(r#"{"ipcReqID":"rq0","uri":"/ipcserver/test/echo","data":"alive"}"#),
        r#"{"ipcReqID":"rq0","data":"alive"}"#
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        Signal::SIGTERM,
    )
    .unwrap();
    let status = common::wait_with_timeout(&mut child, common::TIMEOUT).expect("exits");
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
    assert!(status.success(), "{status}: {log}");
    assert!(!log.contains("panicked"), "{log}");
    assert!(!path.exists(), "socket removed on exit");
}

#[test]
fn connections_spread_over_worker_threads_are_all_served_and_drained() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("workers.sock");
    let server = ServerProcess::start(&path, &["--threads", "3"]);
    let threads = std::fs::read_dir(format!("/proc/{}/task", server.pid()))
        .unwrap()
        .count();
    assert!(threads >= 4, "main thread and 3 workers, found {threads}");
    // Six connections land on the three workers in turn; each answers on its own.
    let mut conns: Vec<_> = (0..6).map(|_| server.connect()).collect();
    for (index, conn) in conns.iter_mut().enumerate() {
        let reply = conn.call(&format!(
            r#"{{"ipcReqID":"rq{index}","uri":"/ipcserver/test/echo","data":{index}}}"#
        ));
        assert_eq!(
            reply,
            format!(r#"{{"ipcReqID":"rq{index}","data":{index}}}"#)
        );
    }
    // A slow request on every connection, then SIGTERM: every worker drains its own.
    for (index, conn) in conns.iter_mut().enumerate() {
        conn.send(&format!(
            r#"{{"ipcReqID":"slow{index}","uri":"/ipcserver/test/delay","data":{{"delay":300}}}}"#
        ));
    }
    std::thread::sleep(Duration::from_millis(100));
    server.signal(Signal::SIGTERM);
    for (index, conn) in conns.iter_mut().enumerate() {
        assert_eq!(
            conn.read_line(),
            format!(r#"{{"ipcReqID":"slow{index}","data":{{"delay":300}}}}"#)
        );
        conn.expect_eof();
    }
    let mut server = server;
    let (status, log) = server.wait();
    assert!(status.success(), "{log}");
    assert!(log.contains("drained=true"), "{log}");
    assert!(!path.exists(), "socket removed on exit");
}

#[test]
fn exit_timeout_bounds_the_drain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slow.sock");
    let server = ServerProcess::start(&path, &["--exit-timeout-ms", "300"]);
    let mut conn = server.connect();
    conn.send(r#"{"ipcReqID":"rq0","uri":"/ipcserver/test/delay","data":{"delay":10000}}"#);
    std::thread::sleep(Duration::from_millis(100));
    let signalled = Instant::now();
    let (status, log) = server.stop();
    let took = signalled.elapsed();
    assert!(status.success(), "{log}");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "took {took:?}"
    );
    assert!(log.contains("drained=false"), "{log}");
    conn.expect_eof();
    assert!(!path.exists());
}

#[test]
fn new_connections_are_refused_while_draining() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("closing.sock");
    let server = ServerProcess::start(&path, &[]);
    let mut conn = server.connect();
    conn.send(r#"{"ipcReqID":"rq0","uri":"/ipcserver/test/delay","data":{"delay":500}}"#);
    std::thread::sleep(Duration::from_millis(100));
    server.signal(Signal::SIGTERM);
    common::eventually("listener closed", || {
        std::os::unix::net::UnixStream::connect(&path).is_err()
    });
    assert_eq!(
        conn.read_line(),
        r#"{"ipcReqID":"rq0","data":{"delay":500}}"#
    );
}

#[test]
fn shutdown_leaves_a_socket_that_is_no_longer_ours_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("moved.sock");
    let server = ServerProcess::start(&path, &[]);
    // Someone replaces the path while we run (an operator, or a newer instance).
    std::fs::rename(&path, dir.path().join("old.sock")).unwrap();
    std::fs::write(&path, "new owner").unwrap();
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains("socket_removed=false"), "{log}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "new owner");
}

#[test]
fn a_second_signal_stops_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("twice.sock");
    let mut server = ServerProcess::start(&path, &["--exit-timeout-ms", "10000"]);
    let mut conn = server.connect();
    conn.send(r#"{"ipcReqID":"rq0","uri":"/ipcserver/test/delay","data":{"delay":10000}}"#);
    std::thread::sleep(Duration::from_millis(100));
    server.signal(Signal::SIGINT);
    std::thread::sleep(Duration::from_millis(100));
    let signalled = Instant::now();
    server.signal(Signal::SIGINT);
    let (status, log) = server.wait();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(signalled.elapsed() < Duration::from_secs(2));
}

trait SocketLike {
    fn is_socket_like(&self) -> bool;
}

impl SocketLike for std::fs::FileType {
    fn is_socket_like(&self) -> bool {
        std::os::unix::fs::FileTypeExt::is_socket(self)
    }
}

//! Linux abstract sockets (`--socket @name`): the real binary on a name of its own, reached by
//! raw connections and by the PHP client; no file is ever created; the kernel refuses a second
//! server on the name; `--chmod`/`--group` are refused; the uid/gid allow-list applies. (The
//! Rust client and the CLI are tested in client-rs/tests, Node in client-node/test.)
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use pixl_ipc_test_utils::{Conn, ServerProcess};
use serde_json::{json, Value};

/// `pixl-ipc-test-<pid>-<n>`: unique on the host while this process lives.
fn unique_name() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "pixl-ipc-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn start(name: &str, args: &[&str]) -> ServerProcess {
    ServerProcess::start(Path::new(&format!("@{name}")), args)
}

fn connect(name: &str) -> std::io::Result<Conn> {
    let address = SocketAddr::from_abstract_name(name.as_bytes())?;
    let stream = UnixStream::connect_addr(&address)?;
    Ok(Conn::from_stream(stream))
}

const ECHO: &str = r#"{"ipcReqID":"a","uri":"/ipcserver/test/echo","data":{"x":1}}"#;

#[test]
fn a_server_on_an_abstract_name_serves_without_any_file() {
    let name = unique_name();
    let cwd = tempfile::tempdir().unwrap();
    let mut command = Command::new(pixl_ipc_test_utils::server_binary());
    command
        .arg("--socket")
        .arg(format!("@{name}"))
        .current_dir(cwd.path());
    let server = match ServerProcess::spawn(command, Path::new(&format!("@{name}"))) {
        Ok(server) => server,
        Err(failure) => panic!("server failed to start: {}", failure.stderr),
    };
    // The banner names the socket and says who may connect, and how to limit it.
    assert!(
        server.banner.contains(&format!("listening on @{name} (")),
        "{}",
        server.banner
    );
    // No file mode: by default only our own uid may connect, as a socket file is owner-only.
    let own_uid = nix::unistd::geteuid().as_raw();
    assert!(
        server.banner.contains(&format!("only uid {own_uid}")),
        "{}",
        server.banner
    );
    assert!(server.banner.contains("--allow-uid"), "{}", server.banner);

    let mut conn = connect(&name).unwrap();
    assert_eq!(conn.call(ECHO), r#"{"ipcReqID":"a","data":{"x":1}}"#);
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
    // Neither a socket file nor a lock file, where a relative path would have put them.
    let left: Vec<PathBuf> = std::fs::read_dir(cwd.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // The kernel freed the name when the server exited.
    let err = connect(&name).err().expect("nobody listens any more");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[test]
fn a_second_server_on_the_same_name_fails_clearly_and_the_first_keeps_serving() {
    let name = unique_name();
    let first = start(&name, &[]);
    let Err(failure) = ServerProcess::try_start(Path::new(&format!("@{name}")), &[]) else {
        panic!("a second server started on @{name}");
    };
    assert_eq!(failure.status.code(), Some(1), "{}", failure.stderr);
    assert!(
        failure.stderr.contains(&format!(
            "abstract socket @{name} is in use by another process"
        )),
        "{}",
        failure.stderr
    );
    let mut conn = connect(&name).unwrap();
    assert_eq!(conn.call(ECHO), r#"{"ipcReqID":"a","data":{"x":1}}"#);
    first.stop();
}

#[test]
fn chmod_and_group_are_refused_for_an_abstract_socket() {
    for args in [&["--chmod", "660"][..], &["--group", "0"][..]] {
        let name = unique_name();
        let Err(failure) = ServerProcess::try_start(Path::new(&format!("@{name}")), args) else {
            panic!("{args:?} was accepted for an abstract socket");
        };
        assert_eq!(failure.status.code(), Some(1), "{}", failure.stderr);
        assert!(
            failure
                .stderr
                .contains("cannot apply to the abstract socket")
                && failure.stderr.contains("--allow-"),
            "{args:?}: {}",
            failure.stderr
        );
        assert!(connect(&name).is_err(), "nothing listens on @{name}");
    }
}

#[test]
fn the_allow_list_guards_an_abstract_socket() {
    let uid = nix::unistd::geteuid().as_raw();
    let gid = nix::unistd::getegid().as_raw();
    let other_uid = if uid == 4242 { 4243 } else { 4242 };

    let name = unique_name();
    let server = start(&name, &["--allow-uid", &other_uid.to_string()]);
    assert!(
        server.banner.contains(&format!("only uid {other_uid}")),
        "{}",
        server.banner
    );
    assert!(!server.banner.contains("anyone"), "{}", server.banner);
    let mut refused = connect(&name).unwrap();
    let error = refused.read_json();
    assert_eq!(error["code"], json!("peer_not_allowed"), "{error}");
    assert_eq!(
        error["message"],
        json!(format!("uid {uid} / gid {gid} may not use this server"))
    );
    refused.expect_eof();
    server.stop();

    let name = unique_name();
    let server = start(&name, &["--allow-uid", &uid.to_string()]);
    let mut allowed = connect(&name).unwrap();
    assert_eq!(allowed.call(ECHO), r#"{"ipcReqID":"a","data":{"x":1}}"#);
    server.stop();
}

#[test]
fn the_php_client_reaches_an_abstract_socket() {
    let name = unique_name();
    let server = start(&name, &[]);
    let autoload = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../client-php/autoload.php");
    let script = r#"
        require $argv[1];
        $out = [];
        foreach (['@', 'unix:@', 'unix://@'] as $prefix) {
            $ipc = new PixlIPCClient($prefix . $argv[2]);
            $request = ['via' => $prefix];
            $out[] = $ipc->send('/ipcserver/test/echo', $request);
            $ipc->close();
        }
        echo json_encode($out);
    "#;
    let mut child = Command::new("php")
        .arg("-r")
        .arg(script)
        .arg(&autoload)
        .arg(&name)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("php must be installed (scripts/test.sh installs php-cli)");
    let status = pixl_ipc_test_utils::wait_with_timeout(&mut child, pixl_ipc_test_utils::TIMEOUT)
        .expect("php finishes");
    let output = child.wait_with_output().unwrap();
    assert!(
        status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let replies: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        replies,
        json!([{"via": "@"}, {"via": "unix:@"}, {"via": "unix://@"}])
    );
    server.stop();
}

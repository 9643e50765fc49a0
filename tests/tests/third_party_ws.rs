//! A WebSocket client that is not ours (Node's `ws` package, from tests/drivers) exchanges
//! messages with the real server binary.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use pixl_ipc_test_utils::{wait_with_timeout, ServerProcess, TIMEOUT};
use serde_json::{json, Value};

fn drivers() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("drivers");
    assert!(
        dir.join("node_modules/ws").is_dir(),
        "tests/drivers has no node_modules: run `npm ci` there (scripts/test.sh does)"
    );
    dir
}

#[test]
fn nodes_ws_package_talks_to_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("node-ws.sock"), &["--ws", "127.0.0.1:0"]);
    let url = server.ws_url().unwrap();

    let mut child = Command::new("node")
        .arg(drivers().join("ws-client.js"))
        .args([&url, "3"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node must be installed");
    let requests = [
        r#"{"ipcReqID":"rq0","uri":"/ipcserver/test/echo","data":{"from":"node ws"}}"#,
        r#"{"ipcReqID":"rq1","uri":"/nowhere"}"#,
        r#"binary:{"ipcReqID":"rq2","uri":"/ipcserver/test/delay","data":{"delay":5}}"#,
    ];
    let mut stdin = child.stdin.take().unwrap();
    for request in requests {
        writeln!(stdin, "{request}").unwrap();
    }
    let status = wait_with_timeout(&mut child, TIMEOUT).expect("the node client finishes");
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    assert!(
        status.success(),
        "node client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let mut frames: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    frames.sort_by_key(|frame| frame["payload"].as_str().unwrap().to_owned());
    let replies: Vec<(Value, bool)> = frames
        .iter()
        .map(|frame| {
            (
                serde_json::from_str(frame["payload"].as_str().unwrap()).unwrap(),
                frame["binary"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        replies,
        vec![
            (json!({"ipcReqID":"rq0","data":{"from":"node ws"}}), false),
            (
                json!({"ipcReqID":"rq1","data":{"code":"no_handler_found","message":"No handler found for /nowhere"}}),
                false
            ),
            (json!({"ipcReqID":"rq2","data":{"delay":5}}), true),
        ]
    );
}

//! Our PHP client against the server library, whose handler records what the server saw:
//! the default and custom user agents, and the claimed pid beside the kernel's.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::path::PathBuf;
use std::process::Command;

use pixl_ipc_server::{HandlerResult, Request, RequestContext, Server, ServerConfig};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_sees_the_php_clients_user_agents_and_pid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("php.sock");
    let server = Server::new(ServerConfig::new(&path));
    server
        .add_uri_handler(
            "/whoami",
            "whoami",
            |req: Request, ctx: RequestContext| async move {
                HandlerResult::Ok(json!({
                    "userAgent": req.user_agent,
                    "claimedPid": req.pid,
                    "kernelPid": ctx.connection.peer.and_then(|peer| peer.pid),
                    "data": req.data,
                }))
            },
        )
        .unwrap();
    let running = server.start().await.unwrap();

    let driver = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("drivers/php-whoami.php");
    let workdir = tempfile::tempdir().unwrap();
    let output = tokio::time::timeout(
        pixl_ipc_test_utils::TIMEOUT,
        tokio::process::Command::from({
            let mut command = Command::new("php");
            command.arg(&driver).arg(&path).current_dir(workdir.path());
            command
        })
        .output(),
    )
    .await
    .expect("php finishes")
    .expect("php must be installed (scripts/test.sh installs php-cli)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let replies: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();

    let cwd = workdir.path().canonicalize().unwrap().display().to_string();
    assert_eq!(
        replies[0]["userAgent"],
        json!(format!("PHP/PixlIPCClient{cwd}"))
    );
    assert_eq!(replies[1]["userAgent"], json!("phpTestAgent"));
    for reply in &replies {
        assert_eq!(reply["data"], json!({"probe": true}));
        assert_eq!(
            reply["claimedPid"], reply["kernelPid"],
            "PHP's getmypid() is the real pid"
        );
    }
    running.shutdown().await;
}

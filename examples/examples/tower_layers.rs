//! Tower middleware around every handler: `Server::layer`.
//!
//! Shows:
//! - `TimeoutLayer`: a handler still running after its limit is cancelled and answered
//!   `handler_timeout`;
//! - `ConcurrencyLimitLayer` under `LoadShedLayer`: at most N handlers run at once, and a
//!   request that finds them all busy is answered `overloaded` at once instead of queueing;
//! - a layer of one's own (`tower::util::MapRequestLayer`) that sees each `IpcRequest` (uri,
//!   route name, connection) before its handler, here counting requests per route;
//! - the layer order: each `layer` call wraps the ones before it (the last is the outermost),
//!   and the layers wrap every routed handler, the built-in `/ipcserver/*` ones included (not
//!   streamed replies: a layer sees one reply per request).
//!
//! Run it (it prints the socket path and keeps running until Ctrl-C):
//!
//! ```sh
//! cargo run -p pixl-ipc-examples --example tower_layers                  # $TMPDIR/pixl-ipc-tower.sock
//! cargo run -p pixl-ipc-examples --example tower_layers -- /tmp/my.sock  # or $PIXL_IPC_EXAMPLE_SOCKET
//! ```
//!
//! then, in another terminal: `pixl-ipc --socket /tmp/my.sock call /work/sleep 5000` (answered
//! `handler_timeout` after a second).
//!
//! `--demo` runs the server on a temporary socket, shows each layer at work, checks the
//! answers, prints `demo ok` and exits (non-zero on a wrong answer).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{ensure, Context};
use pixl_ipc_server::{Data, HandlerError, IpcRequest, Server, ServerConfig};
use serde_json::json;
use tower::limit::ConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::timeout::TimeoutLayer;
use tower::util::MapRequestLayer;

/// How long a handler may run.
const LIMIT: Duration = Duration::from_secs(1);
/// How many handlers may run at once.
const AT_ONCE: usize = 2;

/// Requests seen per route name, by the counting layer.
type Counts = Arc<Mutex<HashMap<String, u64>>>;

/// The server with its routes and layers.
fn build_server(path: &Path, counts: &Counts) -> anyhow::Result<Server> {
    let server = Server::new(ServerConfig::new(path));
    // `/work/sleep`: sleeps `data` milliseconds, then answers with them.
    server.add_handler("/work/sleep", "sleep", |Data(ms): Data<u64>| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok::<_, HandlerError>(ms)
    })?;
    server.add_handler("/work/quick", "quick", || async {
        Ok::<_, HandlerError>("done")
    })?;
    let counts = counts.clone();
    let count = move |request: IpcRequest| {
        let mut counts = counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *counts.entry(request.route_name().to_owned()).or_default() += 1;
        request
    };
    // Innermost first: the timeout around the handler, the limit around that, load shedding
    // around the limit (it refuses when the limit is not ready), and the counter outermost.
    Ok(server
        .layer(TimeoutLayer::new(LIMIT))
        .layer(ConcurrencyLimitLayer::new(AT_ONCE))
        .layer(LoadShedLayer::new())
        .layer(MapRequestLayer::new(count)))
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
async fn stop_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result?,
        _ = terminate.recv() => {}
    }
    Ok(())
}

/// The socket path: the first argument, else `$PIXL_IPC_EXAMPLE_SOCKET`, else
/// `$TMPDIR/pixl-ipc-tower.sock`.
fn socket_path(arg: Option<String>) -> PathBuf {
    arg.map(PathBuf::from)
        .or_else(|| std::env::var_os("PIXL_IPC_EXAMPLE_SOCKET").map(PathBuf::from))
        .unwrap_or_else(|| std::env::temp_dir().join("pixl-ipc-tower.sock"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|arg| arg == "--demo") {
        return demo().await;
    }
    let path = socket_path(args.into_iter().next());
    let running = build_server(&path, &Counts::default())?
        .start()
        .await
        .with_context(|| format!("cannot start the server on {}", path.display()))?;
    println!("listening on {}", running.handle().socket_path().display());
    stop_signal().await?;
    running.shutdown().await;
    Ok(())
}

/// Starts the server on a temporary socket and shows each layer at work.
async fn demo() -> anyhow::Result<()> {
    use pixl_ipc_client::Client;

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("demo.sock");
    let counts = Counts::default();
    let running = build_server(&path, &counts)?.start().await?;
    let client = Client::connect(&path).await?;

    // The timeout: a handler that would run 10 s is cancelled after LIMIT.
    let reply = client.send("/work/sleep", json!(10_000)).await?;
    println!("/work/sleep 10000 -> {reply}");
    ensure!(reply["code"] == "handler_timeout", "no timeout");

    // The limit and load shedding: AT_ONCE slow calls take every slot (the client sends the
    // three requests in this order on its one connection); the third is refused at once.
    let (first, second, third) = tokio::join!(
        client.send("/work/sleep", json!(300)),
        client.send("/work/sleep", json!(300)),
        client.send("/work/quick", json!(null)),
    );
    let (first, second, third) = (first?, second?, third?);
    println!("two slow calls -> {first}, {second}; the quick one beside them -> {third}");
    ensure!(
        first == json!(300) && second == json!(300),
        "slow calls failed"
    );
    ensure!(third["code"] == "overloaded", "no load shedding");
    // With the slots free again, calls run.
    let reply = client.send("/work/quick", json!(null)).await?;
    ensure!(reply == json!("done"), "the quick call failed");

    // The built-ins go through the layers too.
    let reply = client
        .send("/ipcserver/test/echo", json!({"echo": 1}))
        .await?;
    ensure!(reply == json!({"echo": 1}), "echo failed");

    let seen = counts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    println!("requests per route: {seen:?}");
    ensure!(seen.get("sleep") == Some(&3), "wrong count for sleep");
    ensure!(seen.get("quick") == Some(&2), "wrong count for quick");
    ensure!(
        seen.get("IPCServer") == Some(&1),
        "the echo was not counted"
    );

    client.close().await;
    running.shutdown().await;
    println!("demo ok");
    Ok(())
}

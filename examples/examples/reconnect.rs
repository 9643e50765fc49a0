//! A client that survives a server restart: the reconnect policy and connection states.
//!
//! Shows:
//! - `ReconnectPolicy::Backoff`: the first retry after 100 ms, doubling up to 2 s apart, ±20%
//!   jitter so many clients do not come back in lockstep, giving up after 30 attempts (the
//!   default policy, `ReconnectPolicy::original()`, retries every second forever, like the
//!   original Node client's `autoReconnect`; `ReconnectPolicy::Off` never retries);
//! - `connect_timeout` (each attempt) and `request_timeout` (each call, including any wait for
//!   a reconnect: a call made while the server is down waits for it within its timeout);
//! - `state_changes()`: `Connected`, `Reconnecting { attempt }`, `Closed(reason)`;
//! - a call in flight when the connection drops fails with `Error::ConnectionLost` and is not
//!   re-sent (it may or may not have run).
//!
//! Start the `embedded_server` example first, then this one; then stop the server with Ctrl-C
//! and start it again. This client calls the server every half second, prints what happens,
//! and exits once a call is answered after the restart (or on Ctrl-C):
//!
//! ```sh
//! cargo run -p pixl-ipc-examples --example embedded_server            # terminal 1
//! cargo run -p pixl-ipc-examples --example reconnect                  # terminal 2
//! # terminal 1: Ctrl-C, then start embedded_server again
//! ```
//!
//! The socket path is the first argument, else `$PIXL_IPC_EXAMPLE_SOCKET`, else
//! `$TMPDIR/pixl-ipc-example.sock`.
//!
//! `--demo` does it all in one process: starts a server on a temporary socket, connects,
//! stops the server, starts it again, checks that the client reconnected, prints `demo ok`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context};
use pixl_ipc_client::{Backoff, Client, ConnectionState, ReconnectPolicy};
use serde_json::json;

/// The client, with the reconnect settings this example is about.
async fn connect(path: &Path) -> Result<Client, pixl_ipc_client::Error> {
    Client::builder()
        .reconnect(ReconnectPolicy::Backoff(Backoff {
            interval: Duration::from_millis(100),
            growth_rate: 2.0,
            max_delay: Duration::from_secs(2),
            jitter: 0.2,
            max_retries: Some(30),
        }))
        .connect_timeout(Duration::from_secs(2))
        .request_timeout(Duration::from_secs(5))
        .connect(path)
        .await
}

/// Prints every state change; sets `outage` when the connection is lost.
fn watch_states(client: &Client, outage: Arc<AtomicBool>) {
    let mut states = client.state_changes();
    tokio::spawn(async move {
        while states.changed().await.is_ok() {
            let state = states.borrow_and_update().clone();
            println!("state: {state:?}");
            match state {
                ConnectionState::Reconnecting { .. } => outage.store(true, Ordering::SeqCst),
                ConnectionState::Closed(_) => break,
                ConnectionState::Connected => {}
            }
        }
    });
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|arg| arg == "--demo") {
        return demo().await;
    }
    let path = args
        .into_iter()
        .next()
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("PIXL_IPC_EXAMPLE_SOCKET").map(PathBuf::from))
        .unwrap_or_else(|| std::env::temp_dir().join("pixl-ipc-example.sock"));

    let client = connect(&path).await.with_context(|| {
        format!(
            "is the embedded_server example running on {}?",
            path.display()
        )
    })?;
    let outage = Arc::new(AtomicBool::new(false));
    watch_states(&client, Arc::clone(&outage));
    println!("connected to {}: now restart the server", path.display());

    let mut timer = tokio::time::interval(Duration::from_millis(500));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    for call in 1u64.. {
        tokio::select! {
            _ = timer.tick() => {}
            _ = &mut ctrl_c => break,
        }
        match client
            .send("/ipcserver/test/echo", json!({"call": call}))
            .await
        {
            Ok(_) if outage.load(Ordering::SeqCst) => {
                println!("reconnected: call {call} answered after the restart");
                break;
            }
            Ok(_) => {}
            // In flight when the server went away (`ConnectionLost`), or the policy gave up
            // (`ReconnectFailed`: then every later call fails the same way).
            Err(err) => {
                println!("call {call} failed: {err}");
                if matches!(client.state(), ConnectionState::Closed(_)) {
                    anyhow::bail!("gave up: {err}");
                }
            }
        }
    }
    client.close().await;
    Ok(())
}

/// Server, client, restart, all in one process.
async fn demo() -> anyhow::Result<()> {
    use pixl_ipc_server::{Server, ServerConfig};

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("restart.sock");
    let server = Server::new(ServerConfig::new(&path)).start().await?;
    let client = connect(&path).await?;
    let outage = Arc::new(AtomicBool::new(false));
    watch_states(&client, Arc::clone(&outage));
    client.send("/ipcserver/test/echo", json!(1)).await?;
    println!("call answered; stopping the server");

    server.shutdown().await;
    let mut states = client.state_changes();
    tokio::time::timeout(
        Duration::from_secs(5),
        states.wait_for(|state| matches!(state, ConnectionState::Reconnecting { .. })),
    )
    .await
    .context("the client did not notice the server leaving")??;

    println!("starting the server again");
    let server = Server::new(ServerConfig::new(&path)).start().await?;
    // Waits (within the request timeout) for the reconnect, then goes out.
    let reply = client.send("/ipcserver/test/echo", json!(2)).await?;
    println!("call answered after the restart: {reply}");
    ensure!(reply == 2, "wrong echo");
    ensure!(
        client.state() == ConnectionState::Connected,
        "not connected"
    );
    ensure!(outage.load(Ordering::SeqCst), "no reconnect was seen");

    client.close().await;
    server.shutdown().await;
    println!("demo ok");
    Ok(())
}

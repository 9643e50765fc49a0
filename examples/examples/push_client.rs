//! Receiving server pushes with `Client::subscribe`.
//!
//! Shows:
//! - `client.subscribe()`, a stream of every line the server sends without an `ipcReqID`;
//! - a push meant for this connection only (`/news/welcome`, after calling `/news/subscribe`),
//!   one sent to everybody (`/news/item`, after calling `/news/publish`), and the server's timed
//!   broadcasts (`/news/tick`);
//! - waiting for a push with a timeout, and `SubscriptionError::Lagged` for a subscriber that
//!   fell behind.
//!
//! Start the `push_server` example first, then this one against the same socket; it prints
//! the pushes it gets and exits after `--ticks N` ticks (default 3):
//!
//! ```sh
//! cargo run -p pixl-ipc-examples --example push_server              # terminal 1, keeps running
//! cargo run -p pixl-ipc-examples --example push_client              # terminal 2
//! cargo run -p pixl-ipc-examples --example push_client -- /tmp/news.sock --ticks 10
//! ```
//!
//! The path defaults to `$PIXL_IPC_EXAMPLE_SOCKET`, else `$TMPDIR/pixl-ipc-example-push.sock`.
//! Run two clients at once to see each one's welcome reach only itself while items and ticks
//! reach both.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use pixl_ipc_client::{Client, Push, Subscription, SubscriptionError};
use serde_json::json;

/// Waits up to `within` for the next push whose uri is `uri`, printing every push it sees.
async fn wait_for(pushes: &mut Subscription, uri: &str, within: Duration) -> anyhow::Result<Push> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let next = tokio::time::timeout_at(deadline, pushes.recv())
            .await
            .with_context(|| format!("no {uri} push within {within:?}"))?;
        match next {
            Ok(push) => {
                println!(
                    "push {} {}",
                    push.uri.as_deref().unwrap_or("(no uri)"),
                    push.data
                );
                if push.uri.as_deref() == Some(uri) {
                    return Ok(push);
                }
            }
            // Not reading for a while loses the oldest pushes, and says how many.
            Err(SubscriptionError::Lagged(missed)) => println!("missed {missed} pushes"),
            Err(SubscriptionError::Closed) => anyhow::bail!("the client was closed"),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut path = None;
    let mut ticks = 3u32;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--ticks" => ticks = args.next().context("--ticks needs a value")?.parse()?,
            _ => path = Some(PathBuf::from(arg)),
        }
    }
    let path = path
        .or_else(|| std::env::var_os("PIXL_IPC_EXAMPLE_SOCKET").map(PathBuf::from))
        .unwrap_or_else(|| std::env::temp_dir().join("pixl-ipc-example-push.sock"));

    let client = Client::connect(&path)
        .await
        .with_context(|| format!("is the push_server example running on {}?", path.display()))?;
    // Subscribe first: a subscription sees the pushes that arrive after it was made.
    let mut pushes = client.subscribe();
    let within = Duration::from_secs(10);

    // A push to this connection only.
    let reply = client.send("/news/subscribe", json!(null)).await?;
    println!("subscribed as connection {}", reply["connection"]);
    wait_for(&mut pushes, "/news/welcome", within).await?;

    // A push to everybody, this client included.
    let reply = client
        .send(
            "/news/publish",
            json!({"headline": format!("hello from pid {}", std::process::id())}),
        )
        .await?;
    println!("published to {} connections", reply["delivered"]);
    wait_for(&mut pushes, "/news/item", within).await?;

    // The server's own broadcasts.
    for _ in 0..ticks {
        wait_for(&mut pushes, "/news/tick", within).await?;
    }
    client.close().await;
    println!("push client done");
    Ok(())
}

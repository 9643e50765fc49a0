//! A client reading streamed replies: one request, many answers (`Client::stream`).
//!
//! Shows:
//! - `client.stream(uri, data)`: a `futures` `Stream` of each item, then the final value;
//! - `client.stream_as::<_, T>(..)`: the same, each item decoded into your type;
//! - stopping early: dropping the stream sends the cancel, and the server stops the handler;
//! - errors: a failing final line is an `Err` after the items, and ends the stream;
//! - the server's `/ipcserver/stats/watch` stream, the statistics every interval.
//!
//! Start the `embedded_server` example first (any pixl-ipc-server with streamed replies will
//! do: this uses only its built-in routes), then this one:
//!
//! ```sh
//! cargo run -p pixl-ipc-examples --example embedded_server            # terminal 1
//! cargo run -p pixl-ipc-examples --example stream_client              # terminal 2
//! ```
//!
//! The socket path is the first argument, else `$PIXL_IPC_EXAMPLE_SOCKET`, else
//! `$TMPDIR/pixl-ipc-example.sock`.
//!
//! `--demo` does it all in one process: starts a server with a streaming route of its own on a
//! temporary socket, reads it, stops one early, checks what came, prints `demo ok`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context};
use futures_util::StreamExt;
use pixl_ipc_client::{Client, Error};
use serde::Deserialize;
use serde_json::{json, Value};

/// An item of `/ipcserver/test/stream`: `{"i": k}`, and `{"done": n}` last.
#[derive(Debug, Deserialize)]
struct Tick {
    i: Option<u64>,
    done: Option<u64>,
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
    let client = Client::connect(&path).await.with_context(|| {
        format!(
            "is the embedded_server example running on {}?",
            path.display()
        )
    })?;

    // Five items 200 ms apart, then the final value. The client's request timeout applies to
    // the wait for each line, not to the whole stream.
    let mut ticks = client.stream_as::<_, Tick>(
        "/ipcserver/test/stream",
        &json!({"count": 5, "interval": 200}),
    );
    while let Some(tick) = ticks.next().await {
        match tick? {
            Tick { i: Some(i), .. } => println!("tick {i}"),
            Tick { done: Some(n), .. } => println!("done after {n} ticks"),
            other => println!("unexpected {other:?}"),
        }
    }

    // The server's statistics every half second; three of them, then the stream is dropped,
    // which cancels it on the server.
    let mut stats = client.stream("/ipcserver/stats/watch", json!({"interval": 500}));
    for _ in 0..3 {
        let Some(snapshot) = stats.next().await else {
            break;
        };
        let snapshot = snapshot?;
        println!(
            "stats: {} connection(s), {} request(s) in the last interval",
            snapshot["connections"], snapshot["current"]["requests"]
        );
    }
    drop(stats);

    client.close().await;
    Ok(())
}

/// A server with its own streaming route, and the client reading it, in one process.
async fn demo() -> anyhow::Result<()> {
    use pixl_ipc_server::futures_util::stream;
    use pixl_ipc_server::{Data, HandlerError, IntoStreamItem, Last, Server, ServerConfig};

    #[derive(Deserialize)]
    struct Countdown {
        from: u64,
    }

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("stream.sock");
    let server = Server::new(ServerConfig::new(&path));
    // `/app/countdown`: from, from-1, ..., 1 as items, then "liftoff" as the final value.
    server.add_stream_handler(
        "/app/countdown",
        "countdown",
        |Data(params): Data<Countdown>| async move {
            if params.from > 1000 {
                return Err(HandlerError::new("too_far", "count down from 1000 at most"));
            }
            // Items and the final value as one type: `into_stream_item` marks which is which.
            let items = stream::iter((1..=params.from).rev())
                .map(|n| json!(n).into_stream_item())
                .chain(stream::once(async {
                    Last(json!("liftoff")).into_stream_item()
                }));
            Ok(items)
        },
    )?;
    // `/app/ticker`: an item every 20 ms until cancelled; says when its stream is dropped.
    let stopped = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stopped);
    server.add_stream_handler("/app/ticker", "ticker", move || {
        let guard = SetOnDrop(Arc::clone(&flag));
        async move {
            Ok(stream::unfold((guard, 0u64), |(guard, n)| async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Some((Ok::<_, HandlerError>(json!(n)), (guard, n + 1)))
            }))
        }
    })?;
    let running = server.start().await?;
    let client = Client::connect(&path).await?;

    let items: Vec<Value> = client
        .stream("/app/countdown", json!({"from": 3}))
        .map(|item| item.map_err(anyhow::Error::from))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    println!("countdown: {items:?}");
    ensure!(
        items == [json!(3), json!(2), json!(1), json!("liftoff")],
        "wrong countdown"
    );

    // A failing stream: the error is the last item.
    let mut refused = client.stream("/app/countdown", json!({"from": 5000}));
    match refused.next().await {
        Some(Err(Error::Server { code, message, .. })) => println!("refused: {code}: {message}"),
        other => anyhow::bail!("expected too_far, got {other:?}"),
    }
    ensure!(
        refused.next().await.is_none(),
        "the stream goes on after its error"
    );

    // Stop early: take three ticks, drop the stream; the server drops the handler.
    let ticks: Vec<Value> = client
        .stream("/app/ticker", json!({}))
        .take(3)
        .map(|tick| tick.map_err(anyhow::Error::from))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    println!("ticks before stopping: {ticks:?}");
    tokio::time::timeout(Duration::from_secs(5), async {
        while !stopped.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .context("the server did not stop the ticker")?;
    println!("the server stopped the ticker");
    // The connection carries on.
    ensure!(
        client.send("/ipcserver/test/echo", json!(1)).await? == 1,
        "echo failed"
    );

    client.close().await;
    running.shutdown().await;
    println!("demo ok");
    Ok(())
}

/// Sets its flag when dropped: here, when the server drops the ticker's stream.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

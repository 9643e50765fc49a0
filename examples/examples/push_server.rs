//! Server pushes: messages the server sends on its own, to one connection or to all.
//!
//! Shows:
//! - `ServerHandle::push(connection_id, &Push)`: `/news/subscribe` answers, and also pushes a
//!   `/news/welcome` to the caller's connection only (the id comes from `RequestContext`);
//! - `ServerHandle::broadcast(&Push)`: `/news/publish` sends its data to every connection as
//!   `/news/item`, and a timer broadcasts `/news/tick` every second;
//! - routes added after `start()`, through `handle.router()`, so a handler can hold the handle;
//! - what a push is on the wire: a line without `ipcReqID`, `{"uri":"/news/tick","data":{..}}`.
//!   The Rust client hands them to `Client::subscribe`, the Node client emits them as `data`
//!   events.
//!
//! Run it (it prints the socket path and keeps running until Ctrl-C), then start one or more
//! `push_client`s against the same path:
//!
//! ```sh
//! cargo run -p pixl-ipc-examples --example push_server              # terminal 1
//! cargo run -p pixl-ipc-examples --example push_client              # terminal 2 (and 3, ...)
//! cargo run -p pixl-ipc-examples --example push_server -- /tmp/news.sock --tick-ms 200
//! ```
//!
//! The path defaults to `$PIXL_IPC_EXAMPLE_SOCKET`, else `$TMPDIR/pixl-ipc-example-push.sock`.
//! `pixl-ipc --socket PATH watch` prints the pushes too.
//!
//! `--demo` runs the server and two clients in this process, checks that the welcome reaches
//! only the client that subscribed and a published item reaches both, prints `demo ok` and
//! exits (non-zero when a push goes astray).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Context};
use pixl_ipc_server::{
    HandlerResult, Push, Request, RequestContext, RunningServer, Server, ServerConfig, ServerHandle,
};
use serde_json::json;

/// Adds the `/news/...` routes to a started server.
fn add_news_routes(handle: &ServerHandle) -> anyhow::Result<()> {
    // `/news/subscribe`: reply with the caller's connection id, and push a welcome to that
    // connection alone.
    let server = handle.clone();
    handle.router().add_uri_handler(
        "/news/subscribe",
        "subscribe",
        move |_request, ctx: RequestContext| {
            let server = server.clone();
            async move {
                let id = ctx.connection.id;
                let welcome = Push {
                    uri: Some("/news/welcome".to_owned()),
                    data: json!({"connection": id, "text": "welcome, you will get the news"}),
                };
                // Fails only when the connection is gone or not reading its replies.
                server.push(id, &welcome)?;
                HandlerResult::Ok(json!({"subscribed": true, "connection": id}))
            }
        },
    )?;

    // `/news/publish`: send the request's data to every connection.
    let server = handle.clone();
    handle.router().add_uri_handler(
        "/news/publish",
        "publish",
        move |request: Request, _ctx| {
            let server = server.clone();
            async move {
                let item = Push {
                    uri: Some("/news/item".to_owned()),
                    data: request.data,
                };
                // Connections that are not reading are skipped, not waited for.
                let report = server.broadcast(&item);
                HandlerResult::Ok(json!({"delivered": report.delivered, "skipped": report.skipped}))
            }
        },
    )?;
    Ok(())
}

/// Broadcasts `/news/tick` every `interval` until the server shuts down.
fn spawn_ticker(handle: ServerHandle, interval: Duration) {
    tokio::spawn(async move {
        let mut timer = tokio::time::interval(interval);
        timer.tick().await; // The first tick is immediate; start one interval from now.
        let mut count = 0u64;
        while !handle.is_shutting_down() {
            timer.tick().await;
            count += 1;
            let tick = Push {
                uri: Some("/news/tick".to_owned()),
                data: json!({"tick": count, "connections": handle.connections().len()}),
            };
            handle.broadcast(&tick);
        }
    });
}

/// Starts a server on `path` with the news routes.
async fn start(path: PathBuf) -> anyhow::Result<RunningServer> {
    let running = Server::new(ServerConfig::new(&path))
        .start()
        .await
        .with_context(|| format!("cannot start the server on {}", path.display()))?;
    // Routes may be added after start; a request arriving before this line would get the
    // built-in `no_handler_found`, so print where we listen only afterwards.
    add_news_routes(&running.handle())?;
    Ok(running)
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut path = None;
    let mut tick = Duration::from_secs(1);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--demo" => return demo().await,
            "--tick-ms" => {
                let ms: u64 = args.next().context("--tick-ms needs a value")?.parse()?;
                tick = Duration::from_millis(ms.max(1));
            }
            _ => path = Some(PathBuf::from(arg)),
        }
    }
    let path = path
        .or_else(|| std::env::var_os("PIXL_IPC_EXAMPLE_SOCKET").map(PathBuf::from))
        .unwrap_or_else(|| std::env::temp_dir().join("pixl-ipc-example-push.sock"));

    let running = start(path).await?;
    spawn_ticker(running.handle(), tick);
    println!("listening on {}", running.handle().socket_path().display());
    println!("broadcasting /news/tick every {tick:?}; start push_client to receive it");

    stop_signal().await?;
    running.shutdown().await;
    println!("stopped");
    Ok(())
}

/// The server and two clients in one process: a push to one reaches one, a broadcast all.
async fn demo() -> anyhow::Result<()> {
    use pixl_ipc_client::Client;

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("news.sock");
    let running = start(path.clone()).await?;
    let alice = Client::connect(&path).await?;
    let bob = Client::connect(&path).await?;
    // Subscribe before anything is sent: a subscription sees pushes from then on.
    let mut alice_pushes = alice.subscribe();
    let mut bob_pushes = bob.subscribe();
    let next = Duration::from_secs(5);

    let reply = alice.send("/news/subscribe", json!(null)).await?;
    println!("alice: /news/subscribe -> {reply}");
    let push = tokio::time::timeout(next, alice_pushes.recv()).await??;
    println!("alice: push {:?} {}", push.uri, push.data);
    ensure!(push.uri.as_deref() == Some("/news/welcome"), "no welcome");

    let reply = bob
        .send("/news/publish", json!({"headline": "pushes work"}))
        .await?;
    println!("bob: /news/publish -> {reply}");
    ensure!(reply["delivered"] == 2, "not delivered to both connections");
    for (name, pushes) in [("alice", &mut alice_pushes), ("bob", &mut bob_pushes)] {
        // Bob's first push is the item: the welcome went to alice's connection only.
        let push = tokio::time::timeout(next, pushes.recv()).await??;
        println!("{name}: push {:?} {}", push.uri, push.data);
        ensure!(
            push.uri.as_deref() == Some("/news/item"),
            "{name}: wrong push"
        );
        ensure!(push.data["headline"] == "pushes work", "{name}: wrong item");
    }

    alice.close().await;
    bob.close().await;
    running.shutdown().await;
    println!("demo ok");
    Ok(())
}

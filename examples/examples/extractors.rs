//! Extractor handlers: a handler takes what it needs as arguments, in any order.
//!
//! Shows:
//! - `Server::add_handler(pattern, name, handler)` with a plain `async fn` and a closure whose
//!   arguments are extractors: `Data<T>` (the request's `data` decoded from its JSON text into
//!   any `serde::Deserialize` type; `invalid_data` with the field path when it does not fit, the
//!   handler not run), `Meta` (uri, `ipcReqID`, claimed `pid`, `userAgent`), `Connection` (id,
//!   transport, kernel-verified peer uid), `State<S>` (registered once with
//!   `Server::with_state`) and `ServerHandle` (push to the caller, broadcast to everyone);
//! - a handler asking for a state that was never registered is refused when it is registered
//!   (`RouteError::MissingState`), not when it is called.
//!
//! Run it (it prints the socket path and keeps running until Ctrl-C):
//!
//! ```sh
//! cargo run -p pixl-ipc-examples --example extractors                  # $TMPDIR/pixl-ipc-extractors.sock
//! cargo run -p pixl-ipc-examples --example extractors -- /tmp/my.sock  # or $PIXL_IPC_EXAMPLE_SOCKET
//! ```
//!
//! then, in another terminal: `pixl-ipc --socket /tmp/my.sock call /room/say '{"text":"hi"}'`
//! (and `pixl-ipc --socket /tmp/my.sock watch` in a third to see the broadcasts).
//!
//! `--demo` runs the server on a temporary socket, calls each route, checks the replies and
//! pushes, prints `demo ok` and exits (non-zero on a wrong answer).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{ensure, Context};
use pixl_ipc_server::{
    Connection, Data, HandlerError, Meta, Push, RouteError, Server, ServerConfig, ServerHandle,
    State,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The room's shared state: one instance for every request, cloned per request (cheaply: it
/// is an `Arc`).
#[derive(Clone, Default)]
struct Room {
    said: Arc<AtomicU64>,
}

/// `/room/say`'s data.
#[derive(Debug, Deserialize, Serialize)]
struct Say {
    text: String,
}

/// `/room/say`'s reply.
#[derive(Debug, Deserialize, Serialize)]
struct Said {
    number: u64,
    heard_by: usize,
}

/// `/room/say`: counts the message, pushes a receipt to the caller only and broadcasts the
/// text to every connection. The arguments come in whatever order reads best.
async fn say(
    Data(say): Data<Say>,
    State(room): State<Room>,
    conn: Connection,
    server: ServerHandle,
) -> Result<Said, HandlerError> {
    let number = room.said.fetch_add(1, Ordering::Relaxed) + 1;
    let receipt = Push {
        uri: Some("/room/receipt".into()),
        data: json!({"number": number}),
    };
    server.push(conn.id, &receipt)?;
    let heard = server.broadcast(&Push {
        uri: Some("/room/message".into()),
        data: json!({"from": conn.id, "text": say.text}),
    });
    Ok(Said {
        number,
        heard_by: heard.delivered,
    })
}

/// The server with its state and routes.
fn build_server(path: &Path) -> anyhow::Result<Server> {
    let server = Server::new(ServerConfig::new(path)).with_state(Room::default());
    server.add_handler("/room/say", "say", say)?;
    // A closure works the same; this one has no data, only the envelope and the peer.
    server.add_handler(
        "/room/whoami",
        "whoami",
        |meta: Meta, conn: Connection| async move {
            Ok::<_, HandlerError>(json!({
                "connection": conn.id,
                "uid": conn.peer.map(|peer| peer.uid),
                "user_agent": meta.user_agent,
                "claimed_pid": meta.pid,
            }))
        },
    )?;
    // A state that was never registered is refused here, at registration.
    let refused = server.add_handler("/oops", "oops", |State(n): State<u8>| async move {
        Ok::<_, HandlerError>(n)
    });
    match refused {
        Err(RouteError::MissingState { type_name }) => {
            println!("refused at registration: State<{type_name}> is not registered");
        }
        other => anyhow::bail!("a missing state was accepted: {:?}", other.err()),
    }
    Ok(server)
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
/// `$TMPDIR/pixl-ipc-extractors.sock`.
fn socket_path(arg: Option<String>) -> PathBuf {
    arg.map(PathBuf::from)
        .or_else(|| std::env::var_os("PIXL_IPC_EXAMPLE_SOCKET").map(PathBuf::from))
        .unwrap_or_else(|| std::env::temp_dir().join("pixl-ipc-extractors.sock"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|arg| arg == "--demo") {
        return demo().await;
    }
    let path = socket_path(args.into_iter().next());
    let running = build_server(&path)?
        .start()
        .await
        .with_context(|| format!("cannot start the server on {}", path.display()))?;
    println!("listening on {}", running.handle().socket_path().display());
    stop_signal().await?;
    running.shutdown().await;
    Ok(())
}

/// Starts the server on a temporary socket, calls each route, checks replies and pushes.
async fn demo() -> anyhow::Result<()> {
    use pixl_ipc_client::Client;

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("demo.sock");
    let running = build_server(&path)?.start().await?;
    let alice = Client::connect(&path).await?;
    let bob = Client::connect(&path).await?;
    let mut alice_pushes = alice.subscribe();
    let mut bob_pushes = bob.subscribe();

    let me = alice.send("/room/whoami", json!(null)).await?;
    println!("/room/whoami -> {me}");
    ensure!(
        me["uid"] == json!(nix::unistd::geteuid().as_raw()),
        "the peer uid is not ours"
    );
    // Bob has been served once, so both are connected for the broadcast.
    bob.send("/room/whoami", json!(null)).await?;

    let said: Said = alice.call("/room/say", &Say { text: "hi".into() }).await?;
    println!("/room/say -> {said:?}");
    ensure!(said.number == 1 && said.heard_by == 2, "wrong reply");
    let next = std::time::Duration::from_secs(5);
    let receipt = tokio::time::timeout(next, alice_pushes.recv()).await??;
    println!("alice: push {:?} {}", receipt.uri, receipt.data);
    ensure!(
        receipt.uri.as_deref() == Some("/room/receipt"),
        "no receipt"
    );
    for (name, pushes) in [("alice", &mut alice_pushes), ("bob", &mut bob_pushes)] {
        let push = tokio::time::timeout(next, pushes.recv()).await??;
        println!("{name}: push {:?} {}", push.uri, push.data);
        ensure!(push.data["text"] == "hi", "{name}: wrong broadcast");
    }
    // The state is shared: bob's message is number 2.
    let said: Said = bob
        .call(
            "/room/say",
            &Say {
                text: "hello".into(),
            },
        )
        .await?;
    ensure!(said.number == 2, "the state is not shared");

    // Data that does not fit `Say`: `invalid_data`, and the handler did not run.
    let reply = alice.send("/room/say", json!({"text": 5})).await?;
    println!("/room/say (text: 5) -> {reply}");
    ensure!(reply["code"] == "invalid_data", "bad data accepted");
    let said: Said = alice.call("/room/say", &Say { text: "x".into() }).await?;
    ensure!(said.number == 3, "the handler ran for bad data");

    alice.close().await;
    bob.close().await;
    running.shutdown().await;
    println!("demo ok");
    Ok(())
}

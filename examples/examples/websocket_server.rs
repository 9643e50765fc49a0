//! A server that also listens for WebSockets, with a bearer token.
//!
//! Shows:
//! - `WebSocketConfig::default().listen_on(addr).with_token(token)`: the same routes and
//!   messages over `ws://`, each JSON message in one text frame; an upgrade without
//!   `Authorization: Bearer <token>` (or `?token=<token>` in the URL) gets HTTP 401;
//! - `ServerHandle::ws_urls()`, the URL to give clients (with the real port when 0 was asked);
//! - a handler telling UNIX-socket and WebSocket callers apart (`Transport::WebSocket` carries
//!   the peer's address and the upgrade's path).
//!
//! The UNIX socket is always served as well. Listen on loopback (`127.0.0.1`) unless the
//! clients are elsewhere: then serve `wss://` only, with a certificate and key:
//! `WebSocketConfig::with_tls("cert.pem", "key.pem")` here, `--tls-cert FILE --tls-key FILE`
//! for the `pixl-ipc-server` binary, and `ClientBuilder::tls_ca_file` on a client that should
//! trust a private CA.
//!
//! Run it (it prints the socket path and the WebSocket URL and keeps running until Ctrl-C),
//! then the `websocket_client` example with the printed URL:
//!
//! ```sh
//! cargo run -p pixl-ipc-examples --example websocket_server                      # ws://127.0.0.1:7070/
//! cargo run -p pixl-ipc-examples --example websocket_client                      # terminal 2
//! cargo run -p pixl-ipc-examples --example websocket_server -- --listen 127.0.0.1:0 /tmp/ws.sock
//! ```
//!
//! The token is `$PIXL_IPC_WS_TOKEN` (the variable the binaries read too), else the fixed
//! example token `example-token`: set your own for anything but trying this out. The socket
//! path defaults to `$PIXL_IPC_EXAMPLE_SOCKET`, else `$TMPDIR/pixl-ipc-example-ws.sock`.
//!
//! `--demo` runs the server on a free loopback port and a client in this process, checks
//! that the token is required and a call works, prints `demo ok` and exits.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{ensure, Context};
use pixl_ipc_server::{
    HandlerResult, RequestContext, RunningServer, Server, ServerConfig, Transport, WebSocketConfig,
};
use serde_json::json;

/// The token used when `$PIXL_IPC_WS_TOKEN` is not set. Fine on loopback for a try-out only.
const EXAMPLE_TOKEN: &str = "example-token";

/// Starts the server on `path` and the WebSocket listener on `listen`, requiring `token`.
async fn start(path: PathBuf, listen: SocketAddr, token: &str) -> anyhow::Result<RunningServer> {
    let websocket = WebSocketConfig::default()
        .listen_on(listen)
        .with_token(token);
    // For wss://: `.with_tls("cert.pem", "key.pem")`; every listener then speaks TLS only.
    let server = Server::new(ServerConfig::new(&path).with_websocket(websocket));
    server.add_uri_handler("/ws/whoami", "whoami", |_request, ctx: RequestContext| async move {
        let answer = match &ctx.connection.transport {
            Transport::WebSocket {
                peer, tls, path, ..
            } => json!({"transport": if *tls { "wss" } else { "ws" }, "peer": peer.to_string(), "path": path}),
            Transport::Unix { path } => json!({"transport": "unix", "socket": path}),
            other => json!({"transport": format!("{other:?}")}),
        };
        HandlerResult::Ok(answer)
    })?;
    server
        .start()
        .await
        .with_context(|| format!("cannot start the server on {} and {listen}", path.display()))
}

/// The token: `$PIXL_IPC_WS_TOKEN`, else [`EXAMPLE_TOKEN`].
fn token() -> String {
    std::env::var("PIXL_IPC_WS_TOKEN")
        .ok()
        .filter(|token| !token.is_empty())
        .unwrap_or_else(|| EXAMPLE_TOKEN.to_owned())
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
    let mut listen: SocketAddr = ([127, 0, 0, 1], 7070).into();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--demo" => return demo().await,
            "--listen" => listen = args.next().context("--listen needs an address")?.parse()?,
            _ => path = Some(PathBuf::from(arg)),
        }
    }
    let path = path
        .or_else(|| std::env::var_os("PIXL_IPC_EXAMPLE_SOCKET").map(PathBuf::from))
        .unwrap_or_else(|| std::env::temp_dir().join("pixl-ipc-example-ws.sock"));
    let token = token();

    let running = start(path, listen, &token).await?;
    let handle = running.handle();
    println!("listening on {}", handle.socket_path().display());
    for url in handle.ws_urls() {
        println!("websocket {url}");
    }
    if token == EXAMPLE_TOKEN {
        println!("token: the example token (set PIXL_IPC_WS_TOKEN to choose one)");
    }

    stop_signal().await?;
    running.shutdown().await;
    println!("stopped");
    Ok(())
}

/// Server and client in one process, on a free loopback port.
async fn demo() -> anyhow::Result<()> {
    use pixl_ipc_client::{Client, ReconnectPolicy};

    let dir = tempfile::tempdir()?;
    let token = "demo-token";
    let running = start(
        dir.path().join("ws.sock"),
        ([127, 0, 0, 1], 0).into(),
        token,
    )
    .await?;
    let url = running
        .handle()
        .ws_urls()
        .into_iter()
        .next()
        .context("no WebSocket listener")?;
    println!("websocket {url}");

    let refused = Client::builder()
        .reconnect(ReconnectPolicy::Off)
        .connect(url.as_str())
        .await;
    match refused {
        Err(err) => println!("without the token: {err}"),
        Ok(_) => anyhow::bail!("connected without the token"),
    }

    let client = Client::builder()
        .bearer_token(token)
        .connect(url.as_str())
        .await?;
    let reply = client.send("/ws/whoami", json!(null)).await?;
    println!("/ws/whoami -> {reply}");
    ensure!(reply["transport"] == "ws", "not a WebSocket connection");

    client.close().await;
    running.shutdown().await;
    println!("demo ok");
    Ok(())
}

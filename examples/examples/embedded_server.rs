//! The server embedded in an application: its own handlers sharing the application's state.
//!
//! Shows:
//! - an `Arc<AppState>` (a setting handlers read and change, counters they bump) passed to
//!   every handler;
//! - exact-uri routes (`"/app/hello"`: a string pattern must match the whole uri) and a regex
//!   route (`^/app/counter/(name)/(get|incr)$`, whose captures the handler reads);
//! - typed request data (`serde_json::from_value(request.data)?`: bad data becomes a
//!   `handler_error` reply through `?`) and a handler's own error code
//!   (`HandlerError::new("invalid_greeting", ..)`);
//! - what a handler learns about its caller (`RequestContext`: connection id, transport,
//!   kernel-verified uid);
//! - a default handler answering every uri no route matches;
//! - shutdown on Ctrl-C (or SIGTERM) that lets requests in flight finish.
//!
//! Run it (it prints the socket path and keeps running until Ctrl-C):
//!
//! ```sh
//! cargo run -p pixl-ipc-examples --example embedded_server                  # $TMPDIR/pixl-ipc-example.sock
//! cargo run -p pixl-ipc-examples --example embedded_server -- /tmp/my.sock  # or $PIXL_IPC_EXAMPLE_SOCKET
//! ```
//!
//! then, in another terminal, the `client` example (or `reconnect`) against the same path:
//! `cargo run -p pixl-ipc-examples --example client`. The `pixl-ipc` command line works too:
//! `pixl-ipc --socket /tmp/my.sock call /app/hello '{"name":"Ada"}'`.
//!
//! `--demo` runs the server on a temporary socket, calls every route once with a client,
//! checks the answers, prints `demo ok` and exits (non-zero on a wrong answer).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use anyhow::{ensure, Context};
use pixl_ipc_server::Regex;
use pixl_ipc_server::{
    HandlerError, HandlerResult, Request, RequestContext, Server, ServerConfig, Transport,
};
use serde::Deserialize;
use serde_json::json;

/// The application's state, shared by every handler (and anything else in the program).
struct AppState {
    /// A setting: read by `/app/hello`, changed by `/app/config`.
    greeting: RwLock<String>,
    /// How many times `/app/hello` has answered.
    hello_calls: AtomicU64,
    /// Named counters for `/app/counter/<name>/...`.
    counters: Mutex<HashMap<String, u64>>,
}

impl AppState {
    fn new() -> Arc<AppState> {
        Arc::new(AppState {
            greeting: RwLock::new("Hello".to_owned()),
            hello_calls: AtomicU64::new(0),
            counters: Mutex::new(HashMap::new()),
        })
    }
}

/// `/app/hello`'s data, decoded from the request's JSON.
#[derive(Deserialize)]
struct HelloRequest {
    name: String,
}

/// `/app/hello`: greets `data.name` with the configured greeting.
async fn hello(state: Arc<AppState>, request: Request) -> HandlerResult {
    // Data that does not fit (no `name`, not a string) fails here: `?` turns the serde error
    // into a `handler_error` reply, and the connection carries on.
    let data: HelloRequest = serde_json::from_value(request.data)?;
    let greeting = state
        .greeting
        .read()
        .map_err(|_| HandlerError::new("internal", "state lock poisoned"))?
        .clone();
    let calls = state.hello_calls.fetch_add(1, Ordering::Relaxed) + 1;
    Ok(json!({"message": format!("{greeting}, {}!", data.name), "calls": calls}))
}

/// `/app/config`'s data.
#[derive(Deserialize)]
struct ConfigRequest {
    greeting: String,
}

/// `/app/config`: changes the greeting; refuses an empty one with its own error code.
async fn set_config(state: Arc<AppState>, request: Request) -> HandlerResult {
    let data: ConfigRequest = serde_json::from_value(request.data)?;
    if data.greeting.trim().is_empty() {
        return Err(HandlerError::new(
            "invalid_greeting",
            "the greeting must not be empty",
        ));
    }
    let mut greeting = state
        .greeting
        .write()
        .map_err(|_| HandlerError::new("internal", "state lock poisoned"))?;
    let old = std::mem::replace(&mut *greeting, data.greeting);
    Ok(json!({"old": old, "new": *greeting}))
}

/// `/app/counter/<name>/get` and `/app/counter/<name>/incr`: the route's regex captures the
/// counter's name and the operation.
async fn counter(state: Arc<AppState>, pattern: Regex, request: Request) -> HandlerResult {
    let uri = request.uri.unwrap_or_default();
    // The router matched this regex already; the captures are read again here.
    let captures = pattern
        .captures(&uri)
        .ok_or_else(|| HandlerError::new("internal", "route and pattern disagree"))?;
    let (name, op) = (&captures[1], &captures[2]);
    let mut counters = state
        .counters
        .lock()
        .map_err(|_| HandlerError::new("internal", "state lock poisoned"))?;
    let value = counters.entry(name.to_owned()).or_insert(0);
    if op == "incr" {
        *value += 1;
    }
    Ok(json!({"counter": name, "value": *value}))
}

/// `/app/whoami`: what the server knows about the caller's connection.
async fn whoami(ctx: RequestContext) -> HandlerResult {
    let connection = &ctx.connection;
    let transport = match &connection.transport {
        Transport::Unix { path } => format!("unix socket {}", path.display()),
        Transport::WebSocket { peer, tls, .. } => {
            format!("{} from {peer}", if *tls { "wss" } else { "ws" })
        }
        other => format!("{other:?}"),
    };
    Ok(json!({
        "connection": connection.id,
        "transport": transport,
        // Kernel-verified on UNIX sockets, unlike the `pid` a request claims.
        "uid": connection.peer.map(|peer| peer.uid),
    }))
}

/// The server with the application's routes. The built-in `/ipcserver/...` routes come first.
fn build_server(path: &Path, state: &Arc<AppState>) -> anyhow::Result<Server> {
    let server = Server::new(ServerConfig::new(path));

    // A string pattern must match the whole uri (`^/app/hello$`).
    let shared = Arc::clone(state);
    server.add_uri_handler("/app/hello", "hello", move |request, _ctx| {
        hello(Arc::clone(&shared), request)
    })?;
    let shared = Arc::clone(state);
    server.add_uri_handler("/app/config", "config", move |request, _ctx| {
        set_config(Arc::clone(&shared), request)
    })?;
    server.add_uri_handler("/app/whoami", "whoami", |_request, ctx| whoami(ctx))?;

    // A compiled `Regex` is searched in the uri, so it anchors itself with `^` and `$`.
    let pattern = Regex::new(r"^/app/counter/([a-z0-9_]+)/(get|incr)$")?;
    let shared = Arc::clone(state);
    let captures = pattern.clone();
    server.add_uri_handler(pattern, "counter", move |request, _ctx| {
        counter(Arc::clone(&shared), captures.clone(), request)
    })?;

    // Every other uri: the handler's own error instead of the built-in `no_handler_found`.
    server.set_default_handler(|request: Request, _ctx| async move {
        let uri = request.uri.unwrap_or_default();
        HandlerResult::Err(HandlerError::new(
            "unknown_api",
            format!("nothing answers {uri}; try /app/hello"),
        ))
    });
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
/// `$TMPDIR/pixl-ipc-example.sock`.
fn socket_path(arg: Option<String>) -> PathBuf {
    arg.map(PathBuf::from)
        .or_else(|| std::env::var_os("PIXL_IPC_EXAMPLE_SOCKET").map(PathBuf::from))
        .unwrap_or_else(|| std::env::temp_dir().join("pixl-ipc-example.sock"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|arg| arg == "--demo") {
        return demo().await;
    }
    let path = socket_path(args.into_iter().next());
    let state = AppState::new();
    let running = build_server(&path, &state)?
        .start()
        .await
        .with_context(|| format!("cannot start the server on {}", path.display()))?;
    println!("listening on {}", running.handle().socket_path().display());
    println!(
        "try: cargo run -p pixl-ipc-examples --example client -- {}",
        path.display()
    );

    stop_signal().await?;
    let report = running.shutdown().await;
    println!(
        "stopped after {} hello calls (drained: {}, socket removed: {})",
        state.hello_calls.load(Ordering::Relaxed),
        report.drained,
        report.socket_removed
    );
    Ok(())
}

/// Starts the server on a temporary socket, calls each route, checks the answers.
async fn demo() -> anyhow::Result<()> {
    use pixl_ipc_client::{Client, Error};

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("demo.sock");
    let state = AppState::new();
    let running = build_server(&path, &state)?.start().await?;
    let client = Client::connect(&path).await?;

    let reply = client.send("/app/hello", json!({"name": "Ada"})).await?;
    println!("/app/hello -> {reply}");
    ensure!(reply["message"] == "Hello, Ada!", "unexpected greeting");

    let reply = client
        .send("/app/config", json!({"greeting": "Hi"}))
        .await?;
    println!("/app/config -> {reply}");
    let reply = client.send("/app/hello", json!({"name": "Ada"})).await?;
    ensure!(
        reply["message"] == "Hi, Ada!",
        "the new greeting is not used"
    );
    ensure!(reply["calls"] == 2, "the call counter did not count");

    for _ in 0..2 {
        client.send("/app/counter/clicks/incr", json!(null)).await?;
    }
    let reply = client.send("/app/counter/clicks/get", json!(null)).await?;
    println!("/app/counter/clicks/get -> {reply}");
    ensure!(reply["value"] == 2, "the counter did not count");

    let reply = client.send("/app/whoami", json!(null)).await?;
    println!("/app/whoami -> {reply}");
    ensure!(reply["connection"].is_u64(), "no connection id");

    // Handler errors: `send` returns the error object as data; `call` makes it an `Err`.
    let reply = client.send("/app/config", json!({"greeting": ""})).await?;
    println!("/app/config (empty) -> {reply}");
    ensure!(
        reply["code"] == "invalid_greeting",
        "empty greeting accepted"
    );
    let err = client
        .call::<_, serde_json::Value>("/app/hello", &json!({"nom": "Ada"}))
        .await
        .err()
        .context("bad data accepted")?;
    println!("/app/hello (bad data) -> {err}");
    ensure!(matches!(err, Error::Server { ref code, .. } if code == "handler_error"));
    let reply = client.send("/no/such/uri", json!(null)).await?;
    println!("/no/such/uri -> {reply}");
    ensure!(
        reply["code"] == "unknown_api",
        "the default handler did not answer"
    );

    client.close().await;
    let report = running.shutdown().await;
    ensure!(report.socket_removed, "the socket was not removed");
    println!("demo ok");
    Ok(())
}

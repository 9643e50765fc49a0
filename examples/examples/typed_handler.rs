//! Typed handlers: `data` decoded into the handler's own type, any `Serialize` as the reply.
//!
//! Shows:
//! - `Server::add_typed_handler(pattern, name, |data: T, ctx| async move { .. })`: `T` is any
//!   `serde::Deserialize` type, decoded straight from the request's JSON text (no
//!   `serde_json::Value` is built), and the reply is any `serde::Serialize` type;
//! - data that does not fit `T` (a wrong type, a missing field, a bad nested item) answered
//!   with the error `invalid_data`, whose message names the field path (`items[1].qty`), without
//!   the handler running;
//! - a typed handler's own error code (`HandlerError::new("empty_order", ..)`);
//! - an untyped handler (`Request` with `data` as a `Value`) beside the typed ones, unchanged.
//!
//! Run it (it prints the socket path and keeps running until Ctrl-C):
//!
//! ```sh
//! cargo run -p pixl-ipc-examples --example typed_handler                  # $TMPDIR/pixl-ipc-typed.sock
//! cargo run -p pixl-ipc-examples --example typed_handler -- /tmp/my.sock  # or $PIXL_IPC_EXAMPLE_SOCKET
//! ```
//!
//! then, in another terminal:
//! `pixl-ipc --socket /tmp/my.sock call /shop/total '{"items":[{"sku":"tea","qty":2,"cents":350}]}'`
//! or, to see `invalid_data`: `... call /shop/total '{"items":[{"sku":"tea","qty":-1,"cents":350}]}'`.
//!
//! `--demo` runs the server on a temporary socket, calls each route with good and bad data,
//! checks the answers, prints `demo ok` and exits (non-zero on a wrong answer).

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context};
use pixl_ipc_server::{HandlerError, HandlerResult, Request, RequestContext, Server, ServerConfig};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// `/shop/total`'s data: `{"items":[{"sku":"tea","qty":2,"cents":350}],"coupon":"TEN"}`.
#[derive(Debug, Deserialize, Serialize)]
struct Order {
    items: Vec<Item>,
    /// Optional: absent and `null` both mean none.
    #[serde(default)]
    coupon: Option<String>,
}

/// One line of an order.
#[derive(Debug, Deserialize, Serialize)]
struct Item {
    sku: String,
    /// A negative quantity does not decode into a `u32`: the caller gets `invalid_data`.
    qty: u32,
    cents: u64,
}

/// `/shop/total`'s reply.
#[derive(Debug, Deserialize, Serialize)]
struct Total {
    lines: usize,
    cents: u64,
}

/// `/shop/total`: adds the order up. Only ever sees data that fits `Order`.
async fn total(order: Order, _ctx: RequestContext) -> Result<Total, HandlerError> {
    if order.items.is_empty() {
        return Err(HandlerError::new("empty_order", "an order needs an item"));
    }
    let mut cents: u64 = order
        .items
        .iter()
        .map(|item| u64::from(item.qty).saturating_mul(item.cents))
        .fold(0, u64::saturating_add);
    if order.coupon.as_deref() == Some("TEN") {
        cents -= cents / 10;
    }
    Ok(Total {
        lines: order.items.len(),
        cents,
    })
}

/// The server with a typed route, a typed route taking a plain string, and an untyped one.
fn build_server(path: &Path) -> anyhow::Result<Server> {
    let server = Server::new(ServerConfig::new(path));
    // A plain `async fn` registers as it is.
    server.add_typed_handler("/shop/total", "total", total)?;
    // So does a closure; here `T` is a `String` and the reply a tuple (a JSON array).
    server.add_typed_handler("/shop/shout", "shout", |text: String, _ctx| async move {
        Ok::<_, HandlerError>((text.to_uppercase(), text.len()))
    })?;
    // Untyped handlers work as before, with `data` as a `Value`.
    server.add_uri_handler("/shop/raw", "raw", |request: Request, _ctx| async move {
        HandlerResult::Ok(json!({"you_sent": request.data}))
    })?;
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
/// `$TMPDIR/pixl-ipc-typed.sock`.
fn socket_path(arg: Option<String>) -> PathBuf {
    arg.map(PathBuf::from)
        .or_else(|| std::env::var_os("PIXL_IPC_EXAMPLE_SOCKET").map(PathBuf::from))
        .unwrap_or_else(|| std::env::temp_dir().join("pixl-ipc-typed.sock"))
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

/// Starts the server on a temporary socket, calls each route, checks the answers.
async fn demo() -> anyhow::Result<()> {
    use pixl_ipc_client::{Client, Error};

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("demo.sock");
    let running = build_server(&path)?.start().await?;
    let client = Client::connect(&path).await?;

    // Good data: the typed reply. The client can be typed too, with the same structs.
    let order = Order {
        items: vec![
            Item {
                sku: "tea".into(),
                qty: 2,
                cents: 350,
            },
            Item {
                sku: "cake".into(),
                qty: 1,
                cents: 300,
            },
        ],
        coupon: Some("TEN".into()),
    };
    let reply: Total = client.call("/shop/total", &order).await?;
    println!("/shop/total -> {reply:?}");
    ensure!(reply.lines == 2 && reply.cents == 900, "wrong total");

    let reply = client.send("/shop/shout", json!("hello")).await?;
    println!("/shop/shout -> {reply}");
    ensure!(reply == json!(["HELLO", 5]), "wrong shout");

    // Bad data: `invalid_data` with the field path; the handler never ran.
    let bad = json!({"items": [{"sku": "tea", "qty": 2, "cents": 350}, {"sku": "cake", "qty": -1, "cents": 300}]});
    let reply = client.send("/shop/total", &bad).await?;
    println!("/shop/total (negative qty) -> {reply}");
    ensure!(reply["code"] == "invalid_data", "bad data accepted");
    let message = reply["message"].as_str().unwrap_or_default();
    ensure!(
        message.starts_with("invalid data at items[1].qty: invalid value: integer `-1`"),
        "no field path in {message:?}"
    );
    // Through `call`, the same reply is an `Err` with the code.
    let err = client
        .call::<_, Total>("/shop/total", &json!({"coupon": "TEN"}))
        .await
        .err()
        .context("an order without items accepted")?;
    println!("/shop/total (no items) -> {err}");
    ensure!(matches!(err, Error::Server { ref code, ref message, .. }
        if code == "invalid_data" && message.contains("missing field `items`")));
    let reply = client.send("/shop/shout", json!(42)).await?;
    println!("/shop/shout (a number) -> {reply}");
    ensure!(reply["code"] == "invalid_data", "a number accepted as text");

    // The handler's own error code, in the same shape.
    let reply = client.send("/shop/total", json!({"items": []})).await?;
    println!("/shop/total (empty) -> {reply}");
    ensure!(reply["code"] == "empty_order", "empty order accepted");

    // Untyped handlers are unchanged.
    let reply = client
        .send("/shop/raw", json!({"any": [1, "thing"]}))
        .await?;
    println!("/shop/raw -> {reply}");
    ensure!(reply["you_sent"]["any"][1] == "thing", "wrong raw reply");

    client.close().await;
    running.shutdown().await;
    println!("demo ok");
    Ok(())
}

//! The client calling a server: untyped and typed calls, errors, timeouts.
//!
//! Shows:
//! - `Client::builder()` with a request timeout and a user agent;
//! - `send` (JSON in, the reply's `data` as a `serde_json::Value` out) and `call` (any
//!   `Serialize` in, any `Deserialize` out);
//! - the two kinds of failure a server reports: `send` hands a handler's `{"code", "message"}`
//!   back as data, `call` turns it into `Error::Server` (the original clients' `codeToErr`);
//! - `send_with_timeout` giving up on a slow handler with `Error::Timeout`, and the client
//!   carrying on afterwards;
//! - `notify`, a one-way message nobody answers.
//!
//! Start the `embedded_server` example first, then this one against the same socket; it makes
//! its calls, prints what it got and exits:
//!
//! ```sh
//! cargo run -p pixl-ipc-examples --example embedded_server            # terminal 1, keeps running
//! cargo run -p pixl-ipc-examples --example client                     # terminal 2
//! cargo run -p pixl-ipc-examples --example client -- /tmp/my.sock    # or $PIXL_IPC_EXAMPLE_SOCKET
//! ```
//!
//! It exits non-zero when an answer is not what the `embedded_server` example gives.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use pixl_ipc_client::{Client, Error};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// `/app/hello`'s request, as a Rust type.
#[derive(Serialize)]
struct Hello<'a> {
    name: &'a str,
}

/// `/app/hello`'s reply, as a Rust type.
#[derive(Deserialize)]
struct Greeting {
    message: String,
    calls: u64,
}

/// `/app/counter/<name>/...`'s reply.
#[derive(Deserialize)]
struct Counter {
    value: u64,
}

/// The socket path: the first argument, else `$PIXL_IPC_EXAMPLE_SOCKET`, else
/// `$TMPDIR/pixl-ipc-example.sock` (where `embedded_server` listens by default).
fn socket_path() -> PathBuf {
    std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("PIXL_IPC_EXAMPLE_SOCKET").map(PathBuf::from))
        .unwrap_or_else(|| std::env::temp_dir().join("pixl-ipc-example.sock"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let path = socket_path();
    let client = Client::builder()
        // Every call settles within this, reply or not (default 10 s).
        .request_timeout(Duration::from_secs(5))
        .user_agent("pixl-ipc-examples/client")
        .connect(&path)
        .await
        .with_context(|| {
            format!(
                "is the embedded_server example running on {}?",
                path.display()
            )
        })?;
    println!("connected to {}", client.address());

    // Untyped: a `Value` in, the reply's `data` as a `Value` out.
    let reply = client.send("/app/hello", json!({"name": "Ada"})).await?;
    println!("send /app/hello -> {reply}");

    // Typed: a `Serialize` in, decoded straight into a `Deserialize` type.
    let greeting: Greeting = client.call("/app/hello", &Hello { name: "Grace" }).await?;
    println!(
        "call /app/hello -> message {:?}, {} calls so far",
        greeting.message, greeting.calls
    );

    // The regex route: the counter's name is part of the uri.
    let before: Counter = client.call("/app/counter/clicks/get", &()).await?;
    let after: Counter = client.call("/app/counter/clicks/incr", &()).await?;
    println!("counter clicks: {} -> {}", before.value, after.value);
    ensure!(after.value == before.value + 1, "the counter did not count");

    // A handler's own error: data for `send`, an `Err` for `call`.
    let reply = client.send("/app/config", json!({"greeting": ""})).await?;
    println!("send /app/config with an empty greeting -> {reply}");
    match client
        .call::<_, serde_json::Value>("/app/config", &json!({"greeting": ""}))
        .await
    {
        Err(Error::Server { code, message, .. }) => {
            println!("call /app/config with an empty greeting -> error {code}: {message}");
            ensure!(code == "invalid_greeting", "unexpected code {code}");
        }
        other => anyhow::bail!("expected a server error, got {other:?}"),
    }
    // Data the handler cannot decode: its `?` made it a `handler_error`.
    if let Err(err) = client.call::<_, Greeting>("/app/hello", &json!({})).await {
        println!("call /app/hello without a name -> {err}");
    }
    // No route: the server's default handler answers.
    if let Err(err) = client.call::<_, serde_json::Value>("/app/nope", &()).await {
        println!("call /app/nope -> {err}");
    }

    // A timeout shorter than the handler takes: the call gives up, the late reply is dropped.
    let started = Instant::now();
    match client
        .send_with_timeout(
            "/ipcserver/test/delay",
            json!({"delay": 1000}),
            Duration::from_millis(200),
        )
        .await
    {
        Err(Error::Timeout { uri, timeout }) => println!(
            "send_with_timeout {uri} -> timed out after {:?} (limit {timeout:?})",
            started.elapsed()
        ),
        other => anyhow::bail!("expected a timeout, got {other:?}"),
    }
    // The connection is fine: the next call is answered.
    let reply = client
        .send("/ipcserver/test/echo", json!({"still": "here"}))
        .await?;
    println!("send /ipcserver/test/echo after the timeout -> {reply}");

    // One-way: queued and forgotten, no reply.
    client
        .notify("/app/counter/notified/incr", json!(null))
        .await?;

    client.close().await;
    println!("client done");
    Ok(())
}

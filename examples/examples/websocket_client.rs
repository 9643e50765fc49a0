//! The client over a WebSocket, with a bearer token.
//!
//! Shows:
//! - the same `Client` on a `ws://` URL: only the address changes (`wss://` for TLS, with
//!   `tls_ca_file` to trust a private CA and `tls_domain` when the certificate names another
//!   host);
//! - `bearer_token`, sent as `Authorization: Bearer <token>` with the upgrade, and what a
//!   refused upgrade looks like (a `Connect` error naming HTTP 401);
//! - calls and pushes work as on a UNIX socket.
//!
//! Start the `websocket_server` example first, then this one with the URL it printed; it makes
//! a few calls, prints what it got and exits:
//!
//! ```sh
//! cargo run -p pixl-ipc-examples --example websocket_server                          # terminal 1
//! cargo run -p pixl-ipc-examples --example websocket_client                          # ws://127.0.0.1:7070/
//! cargo run -p pixl-ipc-examples --example websocket_client -- ws://127.0.0.1:40123/ # or $PIXL_IPC_EXAMPLE_URL
//! ```
//!
//! The token is `$PIXL_IPC_WS_TOKEN`, else the `websocket_server` example's `example-token`.

use std::time::Duration;

use anyhow::Context;
use pixl_ipc_client::{Client, ReconnectPolicy};
use serde_json::json;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("PIXL_IPC_EXAMPLE_URL").ok())
        .unwrap_or_else(|| "ws://127.0.0.1:7070/".to_owned());
    let token = std::env::var("PIXL_IPC_WS_TOKEN")
        .ok()
        .filter(|token| !token.is_empty())
        .unwrap_or_else(|| "example-token".to_owned());

    // Without the token the server refuses the upgrade.
    match Client::builder()
        .reconnect(ReconnectPolicy::Off)
        .connect(url.as_str())
        .await
    {
        Err(err) => println!("without the token: {err}"),
        Ok(_) => println!("without the token: connected (the server asks for none)"),
    }

    let client = Client::builder()
        .bearer_token(token)
        .request_timeout(Duration::from_secs(5))
        .connect(url.as_str())
        .await
        .with_context(|| format!("is the websocket_server example running on {url}?"))?;
    println!("connected to {}", client.address());

    let reply = client.send("/ws/whoami", json!(null)).await?;
    println!("/ws/whoami -> {reply}");
    let reply = client
        .send("/ipcserver/test/echo", json!({"over": "websocket"}))
        .await?;
    println!("/ipcserver/test/echo -> {reply}");

    client.close().await;
    println!("websocket client done");
    Ok(())
}

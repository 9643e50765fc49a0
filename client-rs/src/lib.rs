//! An async client for pixl-ipc servers (this project's `pixl-ipc-server` or the original
//! Node.js pixl-ipc): newline-delimited JSON over a UNIX domain socket.
//!
//! ```
//! use pixl_ipc_client::Client;
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let path = std::path::PathBuf::from("/var/tmp/my_ipc_server.sock");
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("doc.sock");
//! # let _server = pixl_ipc_server::Server::new(pixl_ipc_server::ServerConfig::new(&path)).start().await?;
//! let client = Client::connect(&path).await?;
//! let reply = client.send("/ipcserver/test/echo", json!({"welcome": 42})).await?;
//! assert_eq!(reply, json!({"welcome": 42}));
//! # Ok(())
//! # }
//! ```
//!
//! - [`Client`] is a cheap `Clone` handle; any number of calls may be in flight at once.
//! - Every call settles: reply, [`Error::Timeout`], or an error saying why. A call in flight
//!   when the connection drops fails at once with [`Error::ConnectionLost`]; nothing is re-sent.
//! - [`ReconnectPolicy`] decides whether later calls get a new connection (default: retry every
//!   second, like the original's `autoReconnect`).
//! - Server pushes arrive on [`Client::subscribe`].
//! - Streamed replies (`ipcStream`: many reply lines to one request) come from
//!   [`Client::stream`] as a [`futures_util::Stream`]; dropping it cancels the request.
//! - The `pixl-ipc` binary in this crate is a command-line client built on it.

mod address;
mod builder;
mod client;
mod close;
mod error;
mod lines;
mod notes;
mod pending;
mod pushes;
mod reconnect;
mod settings;
mod state;
mod stream;
mod task;
mod transport;
mod wire;

pub use address::{shown_url, Address, ToAddress};
pub use builder::ClientBuilder;
pub use client::{Client, Subscription, SubscriptionError};
pub use error::Error;
pub use pixl_ipc_protocol::Push;
pub use reconnect::{Backoff, ReconnectPolicy};
pub use settings::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_PUSH_BUFFER_BYTES, DEFAULT_MAX_REPLY_BYTES,
    DEFAULT_REQUEST_TIMEOUT, MAX_PUSH_BUFFER_PUSHES,
};
pub use state::{CloseReason, ConnectionState};
pub use stream::{ReplyStream, STREAM_BUFFER_LINES};
/// The crate the API speaks in, so a user's Cargo.toml need not guess a matching version:
/// data is [`serde_json::Value`].
pub use {serde_json, serde_json::Value};

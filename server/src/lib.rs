//! A pixl-ipc compatible RPC server over UNIX domain sockets and WebSockets.
//!
//! Clients written for the original Node.js pixl-ipc (its Node and PHP clients) work unchanged:
//! newline-delimited JSON requests `{"ipcReqID","uri","data","pid","userAgent"}` are routed by
//! uri pattern to async handlers, and each reply carries the request's `ipcReqID`.
//!
//! ```no_run
//! use pixl_ipc_server::{HandlerResult, Request, RequestContext, Server, ServerConfig};
//! use serde_json::json;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let server = Server::new(ServerConfig::new("/tmp/myapp.sock"));
//!     server.add_uri_handler(pixl_ipc_server::Regex::new("^/myapi/")?, "myapi", |req: Request, ctx: RequestContext| async move {
//!         HandlerResult::Ok(json!({"uri": req.uri, "peer_uid": ctx.connection.peer.map(|p| p.uid)}))
//!     })?;
//!     let running = server.start().await?;
//!     tokio::signal::ctrl_c().await?;
//!     running.shutdown().await;
//!     Ok(())
//! }
//! ```
//!
//! A handler can also take `data` as a type of its own: [`Server::add_typed_handler`] decodes
//! any `T: Deserialize` straight from the request's JSON text (no `Value` is built) and replies
//! with any `Serialize` value; data that does not fit `T` is answered `invalid_data`, naming the
//! field path, without the handler running.
//!
//! [`Server::add_handler`] takes handlers whose arguments are extractors, in any order:
//! [`Data<T>`] (decoded like a typed handler's data), [`Meta`], [`Connection`], [`State<S>`]
//! (registered with [`Server::with_state`]), [`ServerHandle`] (pushes from a handler) and
//! [`RequestContext`]; see the [`extract`] module. [`Server::layer`] wraps every routed handler in
//! a [`tower`] layer (timeouts, concurrency limits, load shedding, tracing); see [`IpcRequest`].
//!
//! Under systemd, [`Listeners::from_env`] takes the sockets of a `.socket` unit (socket
//! activation) and [`Notifier::from_env`] the `NOTIFY_SOCKET` of a `Type=notify` service; hand
//! them to [`Server::with_listeners`] and [`Server::with_notifier`].
//!
//! The wire protocol, every error code and the differences from pixl-ipc 1.1.3 are specified in
//! `protocol.md` at the repository root.

mod access;
mod activation;
mod admission;
mod builtin;
mod config;
mod connection;
mod context;
mod error;
pub mod extract;
mod fd_limit;
#[cfg(feature = "forward")]
mod forward;
mod handler;
mod middleware;
mod notify;
mod outbound;
mod registry;
mod router;
mod server;
mod stats;
mod stream;
mod transport;
mod validate;
mod workers;

pub use access::{ReloadReport, Reloadable};
pub use activation::{ActivationError, Listeners};
pub use config::{
    parse_socket_mode, InvalidSocketMode, ServerConfig, TlsFiles, WebSocketConfig,
    DEFAULT_EXIT_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_HELD_BYTES_PER_CONNECTION,
    DEFAULT_MAX_HELD_BYTES_TOTAL, DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_MAX_OUTBOUND_BYTES, DEFAULT_MAX_STREAMS, DEFAULT_PARTIAL_MESSAGE_TIMEOUT,
    DEFAULT_SLOW_THRESHOLD, DEFAULT_SOCKET_MODE, DEFAULT_STATS_INTERVAL, DEFAULT_UID_SHARE_DIVISOR,
    DEFAULT_WS_BACKLOG, DEFAULT_WS_IDLE_TIMEOUT, DEFAULT_WS_MAX_HANDSHAKES,
    DEFAULT_WS_PING_INTERVAL,
};
pub use error::ServerError;
pub use extract::{
    Connection, Data, ExtractHandler, FromRequest, HandlerEnv, Meta, RequestParts, State,
};
pub use fd_limit::raise_descriptor_limit;
#[cfg(feature = "forward")]
pub use forward::{ForwardError, ForwardSpec, DEFAULT_FORWARD_TIMEOUT};
pub use handler::{
    BoxedHandler, ConnectionInfo, Handler, HandlerError, HandlerFuture, HandlerResult,
    IntoStreamItem, Last, PeerCredentials, RequestContext, StreamItem, Transport,
};
pub use middleware::{BoxError, HandlerService, IpcReply, IpcRequest, Routes};
pub use notify::Notifier;
pub use pixl_ipc_protocol::{Push, Request};
pub use registry::{BroadcastReport, PushError};
pub use router::{Matched, RouteError, RouteInfo, Router, UriPattern};
pub use server::{RunningServer, Server, ServerHandle, ShutdownReport};
pub use stats::{ForwardStats, IntervalStats, LatencySummary, StatsSnapshot, TotalStats};
pub use validate::{
    MAX_ABSTRACT_NAME_BYTES, MAX_READ_SPIN, MAX_TIMEOUT, MAX_WORKER_THREADS, MIN_STATS_INTERVAL,
    MIN_TIMER,
};
/// The crates the API speaks in, so a user's Cargo.toml need not guess matching versions:
/// patterns are [`regex::Regex`]es, data is [`serde_json::Value`], streams are
/// [`futures_util::Stream`]s, middleware are [`tower::Layer`]s.
pub use {futures_util, regex, regex::Regex, serde_json, serde_json::Value, tower};

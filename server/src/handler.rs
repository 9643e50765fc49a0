//! What a handler is, what it receives and how it fails.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use pixl_ipc_protocol::quote::bounded;
use pixl_ipc_protocol::{ErrorCode, RawRequest, Request};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// How a connection reached the server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transport {
    /// A UNIX domain socket; `path` is the socket the server listens on (`@name` for an
    /// abstract socket).
    Unix {
        /// The listening socket's path.
        path: PathBuf,
    },
    /// A WebSocket (the metadata tremor's ws connectors expose).
    WebSocket {
        /// The listener's address.
        local: SocketAddr,
        /// The peer's host and port.
        peer: SocketAddr,
        /// Whether the connection is `wss://`.
        tls: bool,
        /// The path of the upgrade request (`/` or e.g. `/rpc`), without its query.
        path: String,
    },
}

/// The peer's identity as the kernel reports it for a UNIX socket (`SO_PEERCRED`), taken when
/// the connection was accepted. Unlike a request's `pid` field, the client cannot forge it.
///
/// A WebSocket peer on this machine has one when the server checks a uid allow-list
/// ([`ServerConfig::allowed_uids`](crate::ServerConfig::allowed_uids)): `uid` is the owner of
/// the peer's TCP socket as the kernel lists it (`/proc/net/tcp`), `gid` is
/// [`UNKNOWN_GID`](Self::UNKNOWN_GID) and `pid` is `None`, since TCP does not tell them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCredentials {
    /// The peer process's effective user id (for a TCP peer: the user that created its
    /// socket).
    pub uid: u32,
    /// The peer process's effective group id ([`UNKNOWN_GID`](Self::UNKNOWN_GID) for a
    /// WebSocket peer).
    pub gid: u32,
    /// The peer process's id, where the platform reports it.
    pub pid: Option<i32>,
}

impl PeerCredentials {
    /// The `gid` of a peer whose group is not known: `(gid_t)-1`, which POSIX reserves and no
    /// group has.
    pub const UNKNOWN_GID: u32 = u32::MAX;
}

/// Facts about one connection, shared by every request on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// Unique for the server's lifetime; the id to [`push`](crate::ServerHandle::push) to.
    pub id: u64,
    /// How the peer connected.
    pub transport: Transport,
    /// Kernel-verified credentials: on UNIX sockets; on WebSockets from this machine when a
    /// uid allow-list is set (see [`PeerCredentials`]).
    pub peer: Option<PeerCredentials>,
}

/// What a handler gets besides the request: where it came from.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The connection the request arrived on.
    pub connection: Arc<ConnectionInfo>,
}

/// A handler's failure. It becomes the reply `{"ipcReqID":..,"data":{"code":..,"message":..}}`,
/// the shape the original clients' `codeToErr` recognises; the connection carries on.
///
/// Any `std::error::Error` converts into one with the code `handler_error`, so handlers can use
/// `?` on I/O, parsing and similar errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError {
    /// A stable machine-readable code for the caller to act on.
    pub code: String,
    /// A human-readable explanation.
    pub message: String,
}

impl HandlerError {
    /// An error with the handler's own `code`.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        HandlerError {
            code: code.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for HandlerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl<E: std::error::Error> From<E> for HandlerError {
    fn from(err: E) -> Self {
        HandlerError::new(ErrorCode::HandlerError.as_str(), err.to_string())
    }
}

/// What a handler returns: the reply's `data`, or an error.
pub type HandlerResult = Result<Value, HandlerError>;

/// The boxed future a type-erased handler returns.
pub type HandlerFuture = Pin<Box<dyn Future<Output = HandlerResult> + Send + 'static>>;

/// A type-erased handler, as the router stores it.
pub type BoxedHandler = Arc<dyn Fn(Request, RequestContext) -> HandlerFuture + Send + Sync>;

/// Anything that can handle requests: implemented for every
/// `Fn(Request, RequestContext) -> impl Future<Output = HandlerResult>` that is `Send + Sync`.
///
/// ```
/// use pixl_ipc_server::{HandlerResult, Request, RequestContext};
/// use serde_json::json;
///
/// async fn hello(request: Request, ctx: RequestContext) -> HandlerResult {
///     Ok(json!({"hello": request.data, "connection": ctx.connection.id}))
/// }
/// # fn takes<H: pixl_ipc_server::Handler>(_: H) {}
/// # takes(hello);
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Runs the handler for one request.
    fn call(&self, request: Request, ctx: RequestContext) -> HandlerFuture;
}

impl<F, Fut> Handler for F
where
    F: Fn(Request, RequestContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    fn call(&self, request: Request, ctx: RequestContext) -> HandlerFuture {
        Box::pin(self(request, ctx))
    }
}

/// Erases a handler's type so the router can store handlers of different types together.
pub(crate) fn boxed(handler: impl Handler) -> BoxedHandler {
    Arc::new(move |request, ctx| handler.call(request, ctx))
}

/// A reply's `data` as a handler produced it: a tree (untyped handlers) or JSON text already
/// written (typed handlers, which serialize their reply straight to text).
pub(crate) enum ReplyData {
    /// An untyped handler's `Value`.
    Tree(Value),
    /// A typed handler's reply, serialized.
    Text(Box<RawValue>),
}

impl From<Value> for ReplyData {
    fn from(value: Value) -> Self {
        ReplyData::Tree(value)
    }
}

/// The boxed future a typed handler becomes: decode already done, reply serialized at the end.
pub(crate) type TextFuture = Pin<Box<dyn Future<Output = Result<ReplyData, HandlerError>> + Send>>;

/// A typed handler as the router stores it: it takes the request with `data` still as text.
pub(crate) type BoxedTextHandler =
    Arc<dyn Fn(RawRequest, RequestContext) -> TextFuture + Send + Sync>;

/// A typed handler, erased two ways: `text` decodes `T` straight from the request's JSON text
/// (what connections run), `tree` from an already parsed [`Request`] (what
/// [`Matched::handler`](crate::Matched::handler) offers to callers of [`Router::route`](crate::Router::route)).
pub(crate) fn typed<T, R, F, Fut>(handler: F) -> (BoxedHandler, BoxedTextHandler)
where
    T: DeserializeOwned + Send + 'static,
    R: Serialize + 'static,
    F: Fn(T, RequestContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, HandlerError>> + Send + 'static,
{
    let handler = Arc::new(handler);
    let for_text = handler.clone();
    let text: BoxedTextHandler = Arc::new(move |request: RawRequest, ctx| {
        let handler = for_text.clone();
        // Everything happens in the future, so the connection's panic guard around its first
        // poll covers the decode (a `Deserialize` impl may panic) and the handler's call.
        Box::pin(async move {
            let data = crate::extract::decode::<T>(request.data.as_deref())?;
            // The text is not needed any more while the handler runs.
            drop(request);
            let reply = handler(data, ctx).await?;
            to_text(&reply).map(ReplyData::Text)
        })
    });
    let tree: BoxedHandler = Arc::new(move |request: Request, ctx| {
        match serde_path_to_error::deserialize::<_, T>(&request.data) {
            Ok(data) => {
                let reply = handler(data, ctx);
                Box::pin(async move {
                    let reply = reply.await?;
                    serde_json::to_value(&reply).map_err(|err| unencodable(&err))
                })
            }
            Err(err) => {
                let error = invalid_data(err.path(), err.inner());
                Box::pin(std::future::ready(Err(error)))
            }
        }
    });
    (tree, text)
}

/// The final item of a streamed reply: yielded by a streaming handler's stream, it is sent as
/// the stream's final line (`{"ipcReqID":..,"data":..}`, without `ipcMore`) and the stream is
/// dropped without being polled again. A stream that simply ends sends `"data": null` instead.
///
/// `/ipcserver/test/stream` ends this way with `{"done": N}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Last<R>(pub R);

/// What a streaming handler's stream may yield: any `R: Serialize` (an item, sent with
/// `"ipcMore": true`) or [`Last<R>`] (the final line).
pub trait IntoStreamItem: Send + 'static {
    /// The item as JSON text, and whether it is the last one.
    ///
    /// # Errors
    /// `handler_error` when serde cannot write the item as JSON.
    fn into_stream_item(self) -> Result<StreamItem, HandlerError>;
}

/// One item of a streamed reply, written as JSON text.
#[derive(Debug)]
pub struct StreamItem {
    pub(crate) data: Box<RawValue>,
    pub(crate) last: bool,
}

impl<R: Serialize + Send + 'static> IntoStreamItem for R {
    fn into_stream_item(self) -> Result<StreamItem, HandlerError> {
        Ok(StreamItem {
            data: to_text(&self)?,
            last: false,
        })
    }
}

/// An item already written (what [`IntoStreamItem::into_stream_item`] returns), so one stream
/// can mix items and its [`Last`] value.
impl IntoStreamItem for StreamItem {
    fn into_stream_item(self) -> Result<StreamItem, HandlerError> {
        Ok(self)
    }
}

impl<R: Serialize + Send + 'static> IntoStreamItem for Last<R> {
    fn into_stream_item(self) -> Result<StreamItem, HandlerError> {
        Ok(StreamItem {
            data: to_text(&self.0)?,
            last: true,
        })
    }
}

/// A streaming handler's items, erased: each already JSON text.
pub(crate) type ItemStream =
    Pin<Box<dyn futures_util::Stream<Item = Result<StreamItem, HandlerError>> + Send>>;

/// The boxed future a streaming handler becomes: data decoded, then the handler's stream.
pub(crate) type StreamFuture =
    Pin<Box<dyn Future<Output = Result<ItemStream, HandlerError>> + Send>>;

/// A streaming handler as the router stores it.
pub(crate) type BoxedStreamHandler =
    Arc<dyn Fn(RawRequest, RequestContext) -> StreamFuture + Send + Sync>;

/// What a plain call to a streaming route gets (through [`Matched::handler`](crate::Matched)):
/// the `stream_required` error, in `data` like other route-level errors.
pub(crate) fn stream_required(name: &str) -> HandlerError {
    HandlerError::new(
        ErrorCode::StreamRequired.as_str(),
        format!("handler '{name}' answers with a stream of replies: send the request with \"ipcStream\": true"),
    )
}

/// A typed handler's reply as JSON text.
pub(crate) fn to_text<R: Serialize>(reply: &R) -> Result<Box<RawValue>, HandlerError> {
    serde_json::value::to_raw_value(reply).map_err(|err| unencodable(&err))
}

/// The error for a reply serde cannot write as JSON (a map with non-string keys, a failing
/// `Serialize` impl): the handler's bug, reported as `handler_error`.
pub(crate) fn unencodable(err: &serde_json::Error) -> HandlerError {
    HandlerError::new(
        ErrorCode::HandlerError.as_str(),
        format!("the handler's reply could not be written as JSON: {err}"),
    )
}

/// The `invalid_data` error for data that does not decode into a typed handler's type: the
/// field path (peer text when it goes through map keys) and serde's message (which quotes the
/// peer's values), each cut to [`QUOTE_LIMIT`](pixl_ipc_protocol::quote::QUOTE_LIMIT) bytes.
pub(crate) fn invalid_data(
    path: &serde_path_to_error::Path,
    err: &serde_json::Error,
) -> HandlerError {
    let path = path.to_string();
    let err = err.to_string();
    HandlerError::new(
        ErrorCode::InvalidData.as_str(),
        format!("invalid data at {}: {}", bounded(&path), bounded(&err)),
    )
}

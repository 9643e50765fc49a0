//! Handlers that take what they need as arguments, axum-style: [`Data<T>`] (the request's
//! `data`, decoded from its text), [`Meta`], [`Connection`], [`State<S>`], [`ServerHandle`] and
//! [`RequestContext`], in any order, registered with
//! [`Server::add_handler`](crate::Server::add_handler) /
//! [`Router::add_handler`](crate::Router::add_handler).
//!
//! ```
//! use pixl_ipc_server::{Connection, Data, HandlerError, Meta, State, Router};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct Add { a: i64, b: i64 }
//!
//! async fn add(Data(add): Data<Add>, meta: Meta, State(base): State<i64>) -> Result<i64, HandlerError> {
//!     tracing::debug!(uri = %meta.uri, "adding");
//!     Ok(base + add.a + add.b)
//! }
//!
//! let router = Router::new();
//! router.insert_state(100_i64);
//! router.add_handler("/math/add", "add", add)?;
//! router.add_handler("/whoami", "whoami", |conn: Connection| async move {
//!     Ok::<_, HandlerError>(conn.peer.map(|peer| peer.uid))
//! })?;
//! # Ok::<(), pixl_ipc_server::RouteError>(())
//! ```

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use pixl_ipc_protocol::{ErrorCode, RawId, RawRequest, Request};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::handler::{
    invalid_data, to_text, unencodable, BoxedHandler, BoxedStreamHandler, BoxedTextHandler,
    ConnectionInfo, HandlerError, IntoStreamItem, ItemStream, ReplyData, RequestContext,
};
use crate::router::RouteError;
use crate::server::{ServerHandle, ServerLink};

/// What a router offers handlers besides the request: the shared states registered with
/// [`Router::insert_state`](crate::Router::insert_state) /
/// [`Server::with_state`](crate::Server::with_state), and the server it runs in. A handler
/// keeps the environment as it was when the handler was registered.
#[derive(Clone, Default)]
pub struct HandlerEnv {
    states: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
    pub(crate) server: ServerLink,
}

impl HandlerEnv {
    /// True when a state of type `S` is registered.
    pub fn has_state<S: 'static>(&self) -> bool {
        self.states.contains_key(&TypeId::of::<S>())
    }

    /// The registered state of type `S`.
    pub fn state<S: 'static>(&self) -> Option<&S> {
        self.states.get(&TypeId::of::<S>())?.downcast_ref()
    }

    /// This environment with `state` registered (replacing a state of the same type).
    pub(crate) fn with_state<S: Send + Sync + 'static>(&self, state: S) -> HandlerEnv {
        let mut env = self.clone();
        env.states.insert(TypeId::of::<S>(), Arc::new(state));
        env
    }
}

impl std::fmt::Debug for HandlerEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerEnv")
            .field("states", &self.states.len())
            .finish()
    }
}

/// What an extractor builds its argument from: the request with `data` still as JSON text,
/// the request's context, and the router's [`HandlerEnv`].
#[derive(Debug)]
pub struct RequestParts<'a> {
    request: &'a RawRequest,
    context: &'a RequestContext,
    env: &'a HandlerEnv,
}

impl RequestParts<'_> {
    /// The request as it arrived: `data` is its JSON text, not yet parsed.
    pub fn request(&self) -> &RawRequest {
        self.request
    }

    /// Where the request came from.
    pub fn context(&self) -> &RequestContext {
        self.context
    }

    /// The states and server the handler was registered with.
    pub fn env(&self) -> &HandlerEnv {
        self.env
    }
}

/// An argument a handler registered with [`Router::add_handler`](crate::Router::add_handler)
/// can take. Built synchronously before the handler runs; an `Err` becomes the reply (in
/// `data`, as any [`HandlerError`]) and the handler does not run.
pub trait FromRequest: Sized + Send + 'static {
    /// Builds the argument for one request.
    ///
    /// # Errors
    /// A [`HandlerError`] to answer with instead of running the handler.
    fn from_request(parts: &RequestParts<'_>) -> Result<Self, HandlerError>;

    /// Checked once, when a handler taking this argument is registered: an `Err` refuses the
    /// registration. The default accepts every environment.
    ///
    /// # Errors
    /// A [`RouteError`] saying what the environment lacks.
    fn check(env: &HandlerEnv) -> Result<(), RouteError> {
        let _ = env;
        Ok(())
    }
}

/// The request's `data` as any `T: DeserializeOwned`, decoded straight from the JSON text the
/// client sent (no [`Value`] tree is built), exactly as
/// [`add_typed_handler`](crate::Router::add_typed_handler) does: data that does not decode
/// (absent counts as `null`) is answered `invalid_data` with the field path, and the handler
/// does not run. `Data<serde_json::Value>` takes the data as a tree,
/// `Data<Box<serde_json::value::RawValue>>` as its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Data<T>(pub T);

impl<T: DeserializeOwned + Send + 'static> FromRequest for Data<T> {
    fn from_request(parts: &RequestParts<'_>) -> Result<Self, HandlerError> {
        decode(parts.request.data.as_deref()).map(Data)
    }
}

/// Decodes `T` from a request's `data` text (`null` when absent).
pub(crate) fn decode<T: DeserializeOwned>(data: Option<&RawValue>) -> Result<T, HandlerError> {
    let text = data.map_or("null", RawValue::get);
    let mut deserializer = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize::<_, T>(&mut deserializer)
        .map_err(|err| invalid_data(err.path(), err.inner()))
}

/// The request's envelope besides its `data`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Meta {
    /// The uri the request was routed by.
    pub uri: String,
    /// The client's `ipcReqID`, as a JSON value (`None` when absent or `null`).
    pub ipc_req_id: Option<Value>,
    /// The id's JSON text exactly as the client wrote it.
    pub ipc_req_id_json: Option<String>,
    /// The process id the client claims (`pid`; not verified: see [`Connection`] for the
    /// kernel's answer).
    pub pid: Option<u32>,
    /// The client's `userAgent`.
    pub user_agent: Option<String>,
    /// The client asked for no reply (`ipcNoReply`).
    pub no_reply: bool,
}

impl FromRequest for Meta {
    fn from_request(parts: &RequestParts<'_>) -> Result<Self, HandlerError> {
        let request = parts.request;
        Ok(Meta {
            uri: request.uri.clone().unwrap_or_default(),
            ipc_req_id: request
                .ipc_req_id
                .as_ref()
                .map(RawId::to_value)
                .filter(|id| !id.is_null()),
            ipc_req_id_json: request.ipc_req_id.as_ref().map(|id| id.json().to_owned()),
            pid: request.pid,
            user_agent: request.user_agent.clone(),
            no_reply: request.no_reply,
        })
    }
}

/// The connection the request arrived on: its id (to [`push`](ServerHandle::push) to), its
/// transport and the peer's kernel-verified credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection(pub Arc<ConnectionInfo>);

impl std::ops::Deref for Connection {
    type Target = ConnectionInfo;

    fn deref(&self) -> &ConnectionInfo {
        &self.0
    }
}

impl FromRequest for Connection {
    fn from_request(parts: &RequestParts<'_>) -> Result<Self, HandlerError> {
        Ok(Connection(parts.context.connection.clone()))
    }
}

impl FromRequest for RequestContext {
    fn from_request(parts: &RequestParts<'_>) -> Result<Self, HandlerError> {
        Ok(parts.context.clone())
    }
}

/// A state shared by every request, registered once with
/// [`Server::with_state`](crate::Server::with_state) (or
/// [`Router::insert_state`](crate::Router::insert_state)) before the handlers that take it;
/// each request gets a clone (put what changes behind an `Arc`). Registering a handler that
/// takes a `State<S>` for an `S` not registered fails with [`RouteError::MissingState`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State<S>(pub S);

impl<S: Clone + Send + Sync + 'static> FromRequest for State<S> {
    fn from_request(parts: &RequestParts<'_>) -> Result<Self, HandlerError> {
        parts.env.state::<S>().cloned().map(State).ok_or_else(|| {
            // Only reachable through a hand-written `FromRequest` that skips `check`.
            HandlerError::new(ErrorCode::HandlerError.as_str(), missing_state::<S>())
        })
    }

    fn check(env: &HandlerEnv) -> Result<(), RouteError> {
        if env.has_state::<S>() {
            Ok(())
        } else {
            Err(RouteError::MissingState {
                type_name: std::any::type_name::<S>(),
            })
        }
    }
}

fn missing_state<S>() -> String {
    format!(
        "no state of type {} is registered (Server::with_state)",
        std::any::type_name::<S>()
    )
}

/// The running server, for pushes ([`ServerHandle::push`] to the caller's own connection id,
/// [`ServerHandle::broadcast`]) from inside a handler. A handler called outside a started
/// server (through [`Router::route`](crate::Router::route) on a router of its own) gets a
/// `handler_error`.
impl FromRequest for ServerHandle {
    fn from_request(parts: &RequestParts<'_>) -> Result<Self, HandlerError> {
        ServerHandle::from_link(&parts.env.server).ok_or_else(|| {
            HandlerError::new(
                ErrorCode::HandlerError.as_str(),
                "the handler asked for the ServerHandle but its router is not in a running server",
            )
        })
    }
}

/// A function of extractors: implemented for every `Fn(A, B, ...) -> impl Future<Output =
/// Result<R, HandlerError>>` (0 to 8 arguments, each [`FromRequest`], in any order), closures
/// and `async fn`s alike. `Args` is the tuple of argument types; it only tells the
/// implementations apart. [`add_handler`](crate::Router::add_handler) takes one whose `R` is
/// `Serialize` (the reply), [`add_stream_handler`](crate::Router::add_stream_handler) one whose
/// `R` is a `Stream` of items.
pub trait ExtractHandler<Args>: Send + Sync + 'static {
    /// What the handler's future answers with.
    type Reply: Send + 'static;
    /// The handler's future.
    type Future: Future<Output = Result<Self::Reply, HandlerError>> + Send + 'static;

    /// Checks every argument's [`FromRequest::check`] against `env`.
    ///
    /// # Errors
    /// The first argument's refusal.
    fn check(env: &HandlerEnv) -> Result<(), RouteError>;

    /// Builds the arguments and calls the handler.
    ///
    /// # Errors
    /// The first argument that could not be built; the handler was not called.
    fn invoke(&self, parts: &RequestParts<'_>) -> Result<Self::Future, HandlerError>;
}

macro_rules! extract_handler {
    ($($arg:ident),*) => {
        impl<F, Fut, R, $($arg,)*> ExtractHandler<($($arg,)*)> for F
        where
            F: Fn($($arg),*) -> Fut + Send + Sync + 'static,
            Fut: Future<Output = Result<R, HandlerError>> + Send + 'static,
            R: Send + 'static,
            $($arg: FromRequest,)*
        {
            type Reply = R;
            type Future = Fut;

            fn check(env: &HandlerEnv) -> Result<(), RouteError> {
                let _ = env;
                $($arg::check(env)?;)*
                Ok(())
            }

            #[allow(non_snake_case)]
            fn invoke(&self, parts: &RequestParts<'_>) -> Result<Fut, HandlerError> {
                let _ = parts;
                $(let $arg = $arg::from_request(parts)?;)*
                Ok(self($($arg),*))
            }
        }
    };
}

extract_handler!();
extract_handler!(A1);
extract_handler!(A1, A2);
extract_handler!(A1, A2, A3);
extract_handler!(A1, A2, A3, A4);
extract_handler!(A1, A2, A3, A4, A5);
extract_handler!(A1, A2, A3, A4, A5, A6);
extract_handler!(A1, A2, A3, A4, A5, A6, A7);
extract_handler!(A1, A2, A3, A4, A5, A6, A7, A8);

/// An extractor handler, erased two ways like a typed one: `text` runs from the request's JSON
/// text (what connections run), `tree` from a parsed [`Request`] (for callers of
/// [`Router::route`](crate::Router::route); its data is written back to text for the
/// extractors, which only that path pays for).
pub(crate) fn extracting<Args, H>(handler: H, env: HandlerEnv) -> (BoxedHandler, BoxedTextHandler)
where
    Args: 'static,
    H: ExtractHandler<Args>,
    H::Reply: Serialize,
{
    let handler = Arc::new(handler);
    let env = Arc::new(env);
    let text: BoxedTextHandler = Arc::new(move |request: RawRequest, ctx: RequestContext| {
        let (handler, env) = (handler.clone(), env.clone());
        // Everything happens in the future, so the connection's panic guard around its first
        // poll covers the extractors (a `Deserialize` impl may panic) and the handler's call.
        Box::pin(async move {
            let future = handler.invoke(&RequestParts {
                request: &request,
                context: &ctx,
                env: &env,
            })?;
            // The request's text is not needed any more while the handler runs.
            drop(request);
            let reply = future.await?;
            to_text(&reply).map(ReplyData::Text)
        })
    });
    let for_tree = text.clone();
    let tree: BoxedHandler = Arc::new(move |request: Request, ctx| {
        let text = for_tree.clone();
        Box::pin(async move {
            let raw = raw_from(request)?;
            match text(raw, ctx).await? {
                ReplyData::Tree(value) => Ok(value),
                ReplyData::Text(text) => {
                    serde_json::from_str(text.get()).map_err(|err| unencodable(&err))
                }
            }
        })
    });
    (tree, text)
}

/// A parsed request back as a [`RawRequest`], its data written to text.
// Field by field: a field added to `RawRequest` later keeps its default here.
#[allow(clippy::field_reassign_with_default)]
fn raw_from(request: Request) -> Result<RawRequest, HandlerError> {
    let mut raw = RawRequest::default();
    raw.ipc_req_id = request.ipc_req_id.as_ref().map(RawId::from_value);
    raw.uri = request.uri;
    raw.data =
        Some(serde_json::value::to_raw_value(&request.data).map_err(|err| unencodable(&err))?);
    raw.pid = request.pid;
    raw.user_agent = request.user_agent;
    raw.no_reply = request.no_reply;
    raw.close_after_reply = request.close_after_reply;
    raw.stream = request.stream;
    Ok(raw)
}

/// A streaming extractor handler, erased: the arguments are built from the request's text,
/// then the handler's stream has its items written to text as they come.
pub(crate) fn extracting_stream<Args, H, I>(handler: H, env: HandlerEnv) -> BoxedStreamHandler
where
    Args: 'static,
    H: ExtractHandler<Args>,
    H::Reply: futures_util::Stream<Item = Result<I, HandlerError>>,
    I: IntoStreamItem,
{
    use futures_util::StreamExt;
    let handler = Arc::new(handler);
    let env = Arc::new(env);
    Arc::new(move |request: RawRequest, ctx: RequestContext| {
        let (handler, env) = (handler.clone(), env.clone());
        Box::pin(async move {
            let future = handler.invoke(&RequestParts {
                request: &request,
                context: &ctx,
                env: &env,
            })?;
            drop(request);
            let items = future.await?;
            let items: ItemStream =
                Box::pin(items.map(|item| item.and_then(IntoStreamItem::into_stream_item)));
            Ok(items)
        })
    })
}

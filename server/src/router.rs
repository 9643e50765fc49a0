//! URI routing: ordered patterns, first match wins, a replaceable default handler.

use std::sync::{Arc, RwLock};

use pixl_ipc_protocol::quote::bounded;
use pixl_ipc_protocol::ErrorCode;
use regex::Regex;
use serde_json::json;

use std::future::Future;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::extract::{extracting, extracting_stream, ExtractHandler, HandlerEnv};
use crate::handler::{
    boxed, stream_required, typed, BoxedHandler, BoxedStreamHandler, BoxedTextHandler, Handler,
    HandlerError, HandlerResult, IntoStreamItem, RequestContext,
};
use pixl_ipc_protocol::Request;

/// How a handler's uri pattern is given.
///
/// - A `&str` or `String` becomes the regex `^pattern$`, as in the original (the text is regex
///   source, not escaped: `"/api/.*"` matches every uri under `/api/`).
/// - A compiled [`Regex`] is *searched* in the uri, like JavaScript's `regex.test`: it matches
///   anywhere unless it anchors itself with `^` / `$`.
#[derive(Debug, Clone)]
pub enum UriPattern {
    /// Regex source that must match the whole uri.
    Exact(String),
    /// A regex searched anywhere in the uri.
    Regex(Regex),
}

impl From<&str> for UriPattern {
    fn from(pattern: &str) -> Self {
        UriPattern::Exact(pattern.to_owned())
    }
}

impl From<String> for UriPattern {
    fn from(pattern: String) -> Self {
        UriPattern::Exact(pattern)
    }
}

impl From<Regex> for UriPattern {
    fn from(regex: Regex) -> Self {
        UriPattern::Regex(regex)
    }
}

impl UriPattern {
    fn compile(self) -> Result<Regex, RouteError> {
        match self {
            UriPattern::Regex(regex) => Ok(regex),
            UriPattern::Exact(source) => {
                Regex::new(&format!("^{source}$")).map_err(|err| RouteError::InvalidPattern {
                    pattern: source,
                    reason: err.to_string(),
                })
            }
        }
    }
}

/// Why a handler could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// The pattern is not a valid regular expression (Rust `regex` syntax: no look-around or
    /// back-references).
    #[error("invalid uri pattern {pattern:?}: {reason}")]
    InvalidPattern {
        /// The pattern as given.
        pattern: String,
        /// What the regex compiler objected to.
        reason: String,
    },
    /// The handler takes a [`State<S>`](crate::State) for a type `S` that was not registered
    /// ([`Server::with_state`](crate::Server::with_state), [`Router::insert_state`]) before it.
    #[error("the handler takes State<{type_name}>, but no state of that type is registered (Server::with_state / Router::insert_state, before the handler)")]
    MissingState {
        /// The state's type, as `std::any::type_name` gives it.
        type_name: &'static str,
    },
}

/// One registered route, as listed by [`Router::routes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    /// The regex as matched against the uri (`^...$` for string patterns).
    pub pattern: String,
    /// The name given at registration, used in logs.
    pub name: String,
}

struct Route {
    regex: Regex,
    name: Arc<str>,
    handler: BoxedHandler,
    text: Option<BoxedTextHandler>,
    stream: Option<BoxedStreamHandler>,
    echoes_data: bool,
}

/// The handler chosen for a uri.
#[derive(Clone)]
pub struct Matched {
    /// The route's name (`"DefaultHandler"` for the default handler).
    pub name: Arc<str>,
    /// The handler to run. For a typed handler this one decodes from the parsed
    /// [`Request::data`]; connections run it from the data's text instead.
    pub handler: BoxedHandler,
    /// A typed handler's entry that decodes straight from the request's JSON text.
    pub(crate) text: Option<BoxedTextHandler>,
    /// A streaming handler: requests with `ipcStream` get its items; others `stream_required`
    /// (which is what [`handler`](Self::handler) answers for such a route).
    pub(crate) stream: Option<BoxedStreamHandler>,
    /// The handler answers with the request's `data` unchanged (the built-in echo), so the
    /// connection may write the data back as received instead of running it.
    pub(crate) echoes_data: bool,
}

impl std::fmt::Debug for Matched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matched").field("name", &self.name).finish()
    }
}

/// The routing table. Routes are tried in registration order and the first match wins; a uri
/// that matches none goes to the default handler. Handlers can be added while the server runs.
pub struct Router {
    routes: RwLock<Vec<Route>>,
    default: RwLock<Matched>,
    /// The states and server extractor handlers are registered with.
    env: RwLock<HandlerEnv>,
}

/// The name the default handler is logged under.
const DEFAULT_HANDLER_NAME: &str = "DefaultHandler";

impl Router {
    /// An empty router whose default handler answers `no_handler_found` like the original.
    pub fn new() -> Self {
        Router {
            routes: RwLock::new(Vec::new()),
            default: RwLock::new(Matched {
                name: Arc::from(DEFAULT_HANDLER_NAME),
                handler: boxed(no_handler_found),
                text: None,
                stream: None,
                echoes_data: false,
            }),
            env: RwLock::new(HandlerEnv::default()),
        }
    }

    /// Registers `handler` for uris matching `pattern`, after every route already registered.
    ///
    /// # Errors
    /// [`RouteError::InvalidPattern`] when a string pattern is not a valid regex; nothing is
    /// registered then.
    pub fn add_uri_handler(
        &self,
        pattern: impl Into<UriPattern>,
        name: impl Into<String>,
        handler: impl Handler,
    ) -> Result<(), RouteError> {
        self.add_route(pattern.into(), name.into(), boxed(handler), None, false)
    }

    /// Registers a streaming handler for uris matching `pattern`, after every route already
    /// registered: one request, many replies. The handler takes extractors in any order as
    /// [`add_handler`](Self::add_handler) does ([`Data<T>`](crate::Data) for the request's
    /// data, [`State`](crate::State), [`Connection`](crate::Connection), ...) and returns a
    /// [`Stream`](futures_util::Stream) whose items are sent as they come, each as
    /// `{"ipcReqID":..,"data":item,"ipcMore":true}`, paced by the connection: while the client
    /// has the reply limit of bytes unread, the stream is not polled.
    ///
    /// The stream's end sends the final line `{"ipcReqID":..,"data":null}`; an item wrapped in
    /// [`Last`](crate::Last) is sent as the final line instead, and the stream is dropped; an
    /// `Err` item ends the stream with that error (in `data`, as any handler error). The stream
    /// is dropped (stopping whatever it does) when the client cancels it (`"ipcCancel": true`,
    /// final line `cancelled`), disconnects, or the server shuts down (`shutting_down`).
    ///
    /// Clients must ask for a stream (`"ipcStream": true`, with an `ipcReqID`); a plain call
    /// (every original pixl-ipc client) gets one reply, the error `stream_required`. A connection
    /// runs at most `max_streams_per_connection` streams, beside its requests. The server's
    /// handler timeout bounds the handler's future up to the stream, not the stream; tower
    /// layers ([`Server::layer`](crate::Server::layer)) are not applied to streams.
    ///
    /// ```
    /// use pixl_ipc_server::futures_util::{stream, StreamExt};
    /// use pixl_ipc_server::{Data, HandlerError, Router};
    /// use serde::Deserialize;
    /// use serde_json::json;
    ///
    /// #[derive(Deserialize)]
    /// struct Count { to: u32 }
    ///
    /// let router = Router::new();
    /// router.add_stream_handler("/count", "count", |Data(count): Data<Count>| async move {
    ///     let items = stream::iter(0..count.to).map(|n| Ok::<_, HandlerError>(json!({"n": n})));
    ///     Ok::<_, HandlerError>(items)
    /// })?;
    /// # Ok::<(), pixl_ipc_server::RouteError>(())
    /// ```
    ///
    /// # Errors
    /// [`RouteError::InvalidPattern`] when a string pattern is not a valid regex;
    /// [`RouteError::MissingState`] for a `State<S>` argument whose `S` is not registered.
    pub fn add_stream_handler<Args, H, I>(
        &self,
        pattern: impl Into<UriPattern>,
        name: impl Into<String>,
        handler: H,
    ) -> Result<(), RouteError>
    where
        Args: 'static,
        H: ExtractHandler<Args>,
        H::Reply: futures_util::Stream<Item = Result<I, HandlerError>>,
        I: IntoStreamItem,
    {
        let env = read(&self.env).clone();
        H::check(&env)?;
        let name = name.into();
        let plain_call = {
            let name = name.clone();
            move |_: Request, _: RequestContext| {
                let error = stream_required(&name);
                async move { Err(error) }
            }
        };
        let route = Route {
            regex: pattern.into().compile()?,
            name: Arc::from(name),
            handler: boxed(plain_call),
            text: None,
            stream: Some(extracting_stream(handler, env)),
            echoes_data: false,
        };
        write(&self.routes).push(route);
        Ok(())
    }

    /// Registers a typed handler for uris matching `pattern`, after every route already
    /// registered: it takes the request's `data` as any `T: DeserializeOwned` and answers with
    /// any `R: Serialize` (as axum's `Json<T>` does).
    ///
    /// `T` is decoded straight from the JSON text the client sent, without building a
    /// [`Value`](serde_json::Value) tree first, and `R` is written straight to JSON text.
    /// Data that does not decode (wrong type, missing field, absent `data` for a `T` that
    /// needs one) is answered with the error `invalid_data` in `data`, its message naming the
    /// field path and serde's reason, and the handler does not run.
    ///
    /// ```
    /// use pixl_ipc_server::{HandlerError, RequestContext, Router};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Deserialize)]
    /// struct Add { a: i64, b: i64 }
    /// #[derive(Serialize)]
    /// struct Sum { sum: i64 }
    ///
    /// let router = Router::new();
    /// router.add_typed_handler("/math/add", "add", |add: Add, _ctx: RequestContext| async move {
    ///     Ok::<_, HandlerError>(Sum { sum: add.a + add.b })
    /// })?;
    /// # Ok::<(), pixl_ipc_server::RouteError>(())
    /// ```
    ///
    /// # Errors
    /// [`RouteError::InvalidPattern`] when a string pattern is not a valid regex; nothing is
    /// registered then.
    pub fn add_typed_handler<T, R, F, Fut>(
        &self,
        pattern: impl Into<UriPattern>,
        name: impl Into<String>,
        handler: F,
    ) -> Result<(), RouteError>
    where
        T: DeserializeOwned + Send + 'static,
        R: Serialize + 'static,
        F: Fn(T, RequestContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, HandlerError>> + Send + 'static,
    {
        let (tree, text) = typed(handler);
        self.add_route(pattern.into(), name.into(), tree, Some(text), false)
    }

    /// Registers a handler that takes its arguments as extractors ([`Data<T>`](crate::Data),
    /// [`Meta`](crate::Meta), [`Connection`](crate::Connection), [`State<S>`](crate::State),
    /// [`ServerHandle`](crate::ServerHandle), [`RequestContext`], or any
    /// [`FromRequest`](crate::FromRequest)), in any order, and answers with any
    /// `R: Serialize`, for uris matching `pattern`, after every route already registered.
    /// Closures and `async fn`s alike; see the [`extract`](crate::extract) module.
    ///
    /// Arguments are built before the handler runs, in order; the first that fails (data that
    /// does not decode: `invalid_data`, as for [`add_typed_handler`](Self::add_typed_handler))
    /// is the reply and the handler does not run. `Data<T>` decodes from the request's text
    /// and the reply is written straight to text: no `Value` tree is built.
    ///
    /// # Errors
    /// [`RouteError::InvalidPattern`] when a string pattern is not a valid regex;
    /// [`RouteError::MissingState`] when the handler takes a `State<S>` whose `S` is not
    /// registered yet. Nothing is registered then.
    pub fn add_handler<Args: 'static, H: ExtractHandler<Args>>(
        &self,
        pattern: impl Into<UriPattern>,
        name: impl Into<String>,
        handler: H,
    ) -> Result<(), RouteError>
    where
        H::Reply: Serialize,
    {
        let env = read(&self.env).clone();
        H::check(&env)?;
        let (tree, text) = extracting(handler, env);
        self.add_route(pattern.into(), name.into(), tree, Some(text), false)
    }

    /// Registers `state` for the [`State<S>`](crate::State) extractor of handlers registered
    /// from now on (replacing a state of the same type for them; handlers already registered
    /// keep the one they were registered with).
    pub fn insert_state<S: Clone + Send + Sync + 'static>(&self, state: S) {
        let mut env = write(&self.env);
        *env = env.with_state(state);
    }

    /// The environment handlers registered now get, for [`ServerHandle`](crate::ServerHandle).
    pub(crate) fn server_link(&self) -> crate::server::ServerLink {
        read(&self.env).server.clone()
    }

    /// Registers `handler`, which must answer with the request's `data` unchanged, as
    /// [`Router::add_uri_handler`] does; requests it matches are answered by writing their
    /// data back as received, without building a JSON tree.
    pub(crate) fn add_echo_handler(
        &self,
        pattern: impl Into<UriPattern>,
        name: impl Into<String>,
        handler: impl Handler,
    ) -> Result<(), RouteError> {
        self.add_route(pattern.into(), name.into(), boxed(handler), None, true)
    }

    fn add_route(
        &self,
        pattern: UriPattern,
        name: String,
        handler: BoxedHandler,
        text: Option<BoxedTextHandler>,
        echoes_data: bool,
    ) -> Result<(), RouteError> {
        let route = Route {
            regex: pattern.compile()?,
            name: Arc::from(name),
            handler,
            text,
            stream: None,
            echoes_data,
        };
        write(&self.routes).push(route);
        Ok(())
    }

    /// Replaces the handler for uris that match no route.
    pub fn set_default_handler(&self, handler: impl Handler) {
        *write(&self.default) = Matched {
            name: Arc::from(DEFAULT_HANDLER_NAME),
            handler: boxed(handler),
            text: None,
            stream: None,
            echoes_data: false,
        };
    }

    /// The handler for `uri`: the first route whose pattern matches, else the default handler.
    pub fn route(&self, uri: &str) -> Matched {
        let routes = read(&self.routes);
        match routes.iter().find(|route| route.regex.is_match(uri)) {
            Some(route) => Matched {
                name: route.name.clone(),
                handler: route.handler.clone(),
                text: route.text.clone(),
                stream: route.stream.clone(),
                echoes_data: route.echoes_data,
            },
            None => read(&self.default).clone(),
        }
    }

    /// The registered routes, in the order they are tried.
    pub fn routes(&self) -> Vec<RouteInfo> {
        read(&self.routes)
            .iter()
            .map(|route| RouteInfo {
                pattern: route.regex.as_str().to_owned(),
                name: route.name.to_string(),
            })
            .collect()
    }

    /// How many routes are registered (the original's `handlers` statistic).
    pub fn len(&self) -> usize {
        read(&self.routes).len()
    }

    /// True when no route is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for Router {
    fn default() -> Self {
        Router::new()
    }
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("routes", &self.routes())
            .finish()
    }
}

/// The original's default answer, sent in `data` so `codeToErr` sees it.
async fn no_handler_found(request: Request, _ctx: RequestContext) -> HandlerResult {
    let uri = request.uri.unwrap_or_default();
    Ok(json!({
        "code": ErrorCode::NoHandlerFound.as_str(),
        // The uri is the peer's text: quoted bounded, so an unknown 1 MiB uri does not make a
        // 1 MiB reply.
        "message": format!("No handler found for {}", bounded(&uri)),
    }))
}

// The locks only guard plain data and are never held across an await, so a poisoned lock (a
// panic while pushing to a Vec) leaves consistent data behind; carry on with it.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

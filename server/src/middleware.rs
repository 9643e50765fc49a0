//! Tower middleware around the server's handlers: [`Server::layer`](crate::Server::layer).
//!
//! Every routed request (user routes, the built-in `/ipcserver/*` ones, forwards and the
//! default handler) but streamed replies (a stream is many replies; it does its own checks and
//! has its own limits) goes through the layers as an [`IpcRequest`] and comes back as an
//! [`IpcReply`]; a layer's error becomes the reply: tower's timeout `Elapsed` is
//! `handler_timeout`, load-shed's `Overloaded` is `overloaded`, any other error
//! `handler_error`. Requests refused before routing (no uri, too large, undecodable lines) never
//! reach them. With no layer, requests do not go through tower at all.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pixl_ipc_protocol::quote::bounded;
use pixl_ipc_protocol::{ErrorCode, RawRequest};
use serde_json::value::RawValue;
use serde_json::Value;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};

use crate::extract::decode;
use crate::handler::{HandlerError, ReplyData, RequestContext, TextFuture};
use crate::router::Matched;

/// An error from a middleware layer, as tower passes them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One routed request on its way to its handler through the layers.
pub struct IpcRequest {
    request: RawRequest,
    context: RequestContext,
    route: Matched,
}

impl IpcRequest {
    /// The request as it arrived, `data` still as JSON text.
    pub fn request(&self) -> &RawRequest {
        &self.request
    }

    /// The uri it was routed by.
    pub fn uri(&self) -> &str {
        self.request.uri.as_deref().unwrap_or_default()
    }

    /// The name of the route that will handle it (`"IPCServer"` for the built-ins,
    /// `"DefaultHandler"` when no route matched).
    pub fn route_name(&self) -> &str {
        &self.route.name
    }

    /// Where it came from.
    pub fn context(&self) -> &RequestContext {
        &self.context
    }
}

impl std::fmt::Debug for IpcRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpcRequest")
            .field("uri", &self.uri())
            .field("route", &self.route_name())
            .field("connection", &self.context.connection.id)
            .finish()
    }
}

/// A handler's answer on its way back through the layers: the reply's `data`, or the
/// handler's error (which is a reply too, not a tower error).
pub struct IpcReply(pub(crate) Result<ReplyData, HandlerError>);

impl IpcReply {
    /// A reply with `data`, for a layer that answers by itself.
    pub fn data(data: Value) -> IpcReply {
        IpcReply(Ok(ReplyData::Tree(data)))
    }

    /// An error reply (`{"code","message"}` in `data`), for a layer that refuses by itself.
    pub fn error(error: HandlerError) -> IpcReply {
        IpcReply(Err(error))
    }

    /// The handler's error, when it failed.
    pub fn as_error(&self) -> Option<&HandlerError> {
        self.0.as_ref().err()
    }
}

impl std::fmt::Debug for IpcReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Ok(_) => f.write_str("IpcReply(Ok(..))"),
            Err(err) => write!(f, "IpcReply(Err({err}))"),
        }
    }
}

/// The innermost service: runs the request's route, as a connection does without layers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Routes;

impl Service<IpcRequest> for Routes {
    type Response = IpcReply;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<IpcReply, std::convert::Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: IpcRequest) -> Self::Future {
        let IpcRequest {
            request,
            context,
            route,
        } = request;
        if route.echoes_data {
            // The echo answers with the data's text as received; absent data is `null`.
            let data = request.data.unwrap_or_else(null);
            return Box::pin(std::future::ready(Ok(IpcReply(Ok(ReplyData::Text(data))))));
        }
        if let Some(text) = &route.text {
            let reply = text(request, context);
            return Box::pin(async move { Ok(IpcReply(reply.await)) });
        }
        // The tree an untyped handler takes; data nested deeper than serde_json's limit (the
        // only way this fails) is `invalid_data` here, as for typed handlers.
        let data: Value = match decode(request.data.as_deref()) {
            Ok(data) => data,
            Err(err) => return Box::pin(std::future::ready(Ok(IpcReply(Err(err))))),
        };
        let mut parsed = pixl_ipc_protocol::Request::new(request.uri.unwrap_or_default(), data);
        parsed.ipc_req_id = request
            .ipc_req_id
            .map(|id| id.to_value())
            .filter(|id| !id.is_null());
        parsed.pid = request.pid;
        parsed.user_agent = request.user_agent;
        parsed.no_reply = request.no_reply;
        parsed.close_after_reply = request.close_after_reply;
        let reply = (route.handler)(parsed, context);
        Box::pin(async move { Ok(IpcReply(reply.await.map(ReplyData::Tree))) })
    }
}

fn null() -> Box<RawValue> {
    RawValue::NULL.to_owned()
}

/// The handlers with every layer given so far around them: what [`Server::layer`](crate::Server::layer)
/// wraps next, and what connections call.
pub type HandlerService = BoxCloneSyncService<IpcRequest, IpcReply, BoxError>;

/// `Routes`, boxed: what the first layer wraps.
pub(crate) fn base() -> HandlerService {
    BoxCloneSyncService::new(Routes.map_err(BoxError::from))
}

/// Runs `request` on its route through the layers. Everything happens in the future, so the
/// connection's panic guard and handler timeout cover the layers too.
pub(crate) fn call(
    service: &HandlerService,
    request: RawRequest,
    context: RequestContext,
    route: Matched,
) -> TextFuture {
    let service = service.clone();
    Box::pin(async move {
        let name = route.name.clone();
        let request = IpcRequest {
            request,
            context,
            route,
        };
        match service.oneshot(request).await {
            Ok(IpcReply(reply)) => reply,
            Err(err) => Err(layer_error(&name, &*err)),
        }
    })
}

/// The reply for a layer's error.
fn layer_error(name: &str, err: &(dyn std::error::Error + Send + Sync + 'static)) -> HandlerError {
    if err.is::<tower::timeout::error::Elapsed>() {
        tracing::warn!(handler = %name, "handler timed out in the timeout middleware and was cancelled");
        return HandlerError::new(
            ErrorCode::HandlerTimeout.as_str(),
            format!("handler '{name}' did not finish within its time limit (timeout middleware)"),
        );
    }
    if err.is::<tower::load_shed::error::Overloaded>() {
        tracing::debug!(handler = %name, "request shed: handlers at capacity");
        return HandlerError::new(
            ErrorCode::Overloaded.as_str(),
            format!("handler '{name}' is overloaded; try again later"),
        );
    }
    let message = err.to_string();
    tracing::debug!(handler = %name, error = %bounded(&message), "middleware failed the request");
    HandlerError::new(
        ErrorCode::HandlerError.as_str(),
        format!("handler '{name}': {}", bounded(&message)),
    )
}

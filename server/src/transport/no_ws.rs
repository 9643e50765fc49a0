//! The WebSocket side of a server built without the `ws` feature: it has no listeners, and a
//! configuration that asks for one is refused at start, naming the feature.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use super::Listener;
use crate::access::Reloadable;
use crate::admission::Refusal;
use crate::config::ServerConfig;
use crate::context::ConnectionContext;
use crate::error::ServerError;

/// No WebSocket listeners.
pub(crate) struct WebSockets;

/// A WebSocket listener, of which this build has none.
pub(crate) enum WsListener {}

impl WebSockets {
    /// Refuses a configuration with WebSocket listeners, configured or passed in; otherwise
    /// there is nothing to bind.
    pub(crate) async fn bind(
        config: &ServerConfig,
        passed: Vec<std::net::TcpListener>,
    ) -> Result<(WebSockets, Vec<WsListener>), ServerError> {
        if config.websocket.listen.is_empty() && passed.is_empty() {
            Ok((WebSockets, Vec::new()))
        } else {
            Err(ServerError::FeatureDisabled {
                what: "a WebSocket listener",
                feature: "ws",
            })
        }
    }

    /// Nothing to announce.
    pub(crate) fn announce(&self, _: &Reloadable) {}

    /// No listeners, so no rule to refuse.
    pub(crate) fn check_rules(&self, _: &Reloadable) -> Result<(), ServerError> {
        Ok(())
    }

    /// No addresses.
    pub(crate) fn addrs(&self) -> &[SocketAddr] {
        &[]
    }

    /// No URLs.
    pub(crate) fn urls(&self) -> Vec<String> {
        Vec::new()
    }

    /// No listeners to describe.
    pub(crate) fn access(&self, _: &Reloadable) -> Vec<String> {
        Vec::new()
    }
}

impl Listener for WsListener {
    type Io = std::convert::Infallible;
    type Ticket = std::convert::Infallible;

    // No value of this type exists, so none of these is ever called.
    fn accept(&mut self) -> impl Future<Output = io::Result<Self::Io>> + Send {
        std::future::pending()
    }

    fn admit(&self, _: &ConnectionContext, io: &Self::Io) -> Result<Self::Ticket, Refusal> {
        match *io {}
    }

    fn refuse(&self, io: Self::Io, _: &Refusal) {
        match io {}
    }

    fn serve(
        _: Arc<ConnectionContext>,
        _: u64,
        _: Self::Io,
        _: Self::Ticket,
    ) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }
}

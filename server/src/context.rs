//! What every connection is served with, whatever its transport: the routes, the statistics,
//! the limits and budgets, the push registry, and the shutdown signals. The server builds one
//! at start and hands it to its listeners; transports and the connection core read it and never
//! reach back into the server.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::access::{AccessRules, Reloadable};
use crate::admission::Admission;
use crate::config::ServerConfig;
use crate::outbound::{Budget, OutboundLimits};
use crate::registry::Registry;
use crate::router::Router;
use crate::stats::Stats;

/// The context connections are served in, shared by every connection of a server.
pub(crate) struct ConnectionContext {
    pub(crate) router: Arc<Router>,
    pub(crate) stats: Arc<Stats>,
    /// The token and allow-list in force, which a reload can swap.
    pub(crate) access: AccessRules,
    /// The open connections, for pushes.
    pub(crate) registry: Registry,
    /// Connection slots, per-uid shares and the WebSocket handshake pool.
    pub(crate) admission: Admission,
    /// What each connection's outbound gauge enforces, with the server-wide budget.
    pub(crate) outbound_limits: OutboundLimits,
    pub(crate) max_in_flight: usize,
    /// Most streams running at once on one connection.
    pub(crate) max_streams: usize,
    pub(crate) max_message_bytes: usize,
    pub(crate) handler_timeout: Option<Duration>,
    pub(crate) partial_message_timeout: Duration,
    /// The low-latency mode's window for UNIX-socket reads (`None`: off).
    pub(crate) read_spin: Option<Duration>,
    /// Cancelled when the server starts shutting down: stop reading, finish in-flight work.
    pub(crate) shutdown: CancellationToken,
    /// Cancelled when `exit_timeout` has passed: drop whatever is still running.
    pub(crate) abort: CancellationToken,
    /// The handlers inside the user's tower layers ([`Server::layer`](crate::Server::layer));
    /// `None` (no tower in the request path) without layers.
    pub(crate) layered: Option<crate::HandlerService>,
}

impl ConnectionContext {
    /// The context for connections of a server configured by `config` (already validated).
    pub(crate) fn new(config: &ServerConfig, router: Arc<Router>, stats: Arc<Stats>) -> Self {
        ConnectionContext {
            router,
            stats,
            access: AccessRules::new(Reloadable::from_config(config)),
            registry: Registry::new(),
            admission: Admission::new(
                config.max_connections,
                config.uid_connection_cap(),
                config.websocket.max_handshakes,
            ),
            outbound_limits: OutboundLimits {
                replies: config.max_outbound_bytes_per_connection,
                held: config.max_held_bytes_per_connection,
                server: Budget::new(config.max_held_bytes_total),
            },
            max_in_flight: config.max_in_flight_per_connection,
            max_streams: config.max_streams_per_connection,
            max_message_bytes: config.max_message_bytes,
            handler_timeout: config.handler_timeout,
            partial_message_timeout: config.partial_message_timeout,
            read_spin: config.read_spin,
            shutdown: CancellationToken::new(),
            abort: CancellationToken::new(),
            layered: None,
        }
    }
}

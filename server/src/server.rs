//! The server: binds the socket, accepts connections, keeps the push registry, and shuts down
//! in order (stop accepting, stop reading, drain within `exit_timeout`, remove our socket).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use std::net::SocketAddr;

use pixl_ipc_protocol::{encode_line, Push};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::Admission;
use crate::builtin;
use crate::config::ServerConfig;
use crate::connection::ConnectionEnv;
use crate::error::ServerError;
use crate::fd_limit;
use crate::handler::{ConnectionInfo, Handler};
use crate::outbound::{Budget, Line, Outbound, OutboundLimits, QueueError, WeakOutbound};
use crate::router::{RouteError, Router, UriPattern};
use crate::stats::{Stats, StatsSnapshot};
use crate::transport::unix::{self, BoundSocket};
use crate::transport::{accept_loop, ws};
use crate::workers::Workers;

/// A configured server with its routes, not yet listening.
///
/// ```no_run
/// use pixl_ipc_server::{HandlerResult, Request, RequestContext, Server, ServerConfig};
/// use serde_json::json;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let server = Server::new(ServerConfig::new("/tmp/myapp.sock"));
/// server.add_uri_handler("/myapi/hello", "hello", |req: Request, _ctx: RequestContext| async move {
///     HandlerResult::Ok(json!({"hello": req.data}))
/// })?;
/// let running = server.start().await?;
/// // ... later, from anywhere holding a handle:
/// running.handle().shutdown();
/// running.wait().await;
/// # Ok(())
/// # }
/// ```
pub struct Server {
    config: ServerConfig,
    router: Arc<Router>,
    stats: Arc<Stats>,
}

impl Server {
    /// A server with the built-in routes (`/ipcserver/test/echo`, `/ipcserver/test/delay`,
    /// `/ipcserver/stats`, `/ipcserver/info`) registered first, as the original does.
    pub fn new(config: ServerConfig) -> Self {
        let router = Arc::new(Router::new());
        let stats = Arc::new(Stats::new(config.slow_threshold));
        builtin::register(&router, &stats);
        Server {
            config,
            router,
            stats,
        }
    }

    /// Registers `handler` for `pattern` after all routes registered so far; see [`Router`].
    ///
    /// # Errors
    /// [`RouteError::InvalidPattern`] for a string pattern that is not a valid regex.
    pub fn add_uri_handler(
        &self,
        pattern: impl Into<UriPattern>,
        name: impl Into<String>,
        handler: impl Handler,
    ) -> Result<&Self, RouteError> {
        self.router.add_uri_handler(pattern, name, handler)?;
        Ok(self)
    }

    /// Replaces the answer for uris no route matches (default: `no_handler_found`).
    pub fn set_default_handler(&self, handler: impl Handler) -> &Self {
        self.router.set_default_handler(handler);
        self
    }

    /// The routing table; routes can also be added after the server has started.
    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// The settings the server was created with.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Creates the socket (see [`ServerConfig`] for the safety rules) and starts serving in
    /// background tasks. Must be called inside a Tokio runtime.
    ///
    /// # Errors
    /// [`ServerError::InvalidSetting`] for a setting out of range (see
    /// [`ServerConfig::validate`]); otherwise a [`ServerError`] naming the path when the socket
    /// cannot be created: in use by a live server, not a socket, path too long, or an OS error.
    /// A failed start leaves no socket file behind.
    pub async fn start(mut self) -> Result<RunningServer, ServerError> {
        self.config.validate()?;
        fit_connections_to_descriptors(&mut self.config)?;
        let config = &self.config;
        // Everything that can fail is prepared before the UNIX socket exists, so a bad TLS file
        // or a taken port leaves no socket file behind.
        let ws_setup = ws::WsSetup::new(config)?;
        let workers = match config.worker_threads {
            Some(count) => Workers::start(count)
                .await
                .map_err(|source| ServerError::Workers { count, source })?,
            None => Workers::caller(),
        };
        let ws_listeners = ws::bind_all(&config.websocket).await?;
        let bound = unix::bind(&config.socket_path, config.socket_mode, config.socket_group)?;
        tracing::info!(
            path = %bound.file.path.display(),
            mode = format_args!("{:04o}", config.socket_mode),
            "listening"
        );
        let ws_addrs: Vec<SocketAddr> = ws_listeners
            .iter()
            .filter_map(|listener| listener.local_addr().ok())
            .collect();
        for addr in &ws_addrs {
            tracing::info!(url = %ws_setup.url_for(*addr), "listening");
            ws::warn_if_exposed(*addr, &config.websocket);
        }
        let shutdown = CancellationToken::new();
        let shared = Arc::new(Shared {
            env: ConnectionEnv {
                router: self.router.clone(),
                stats: self.stats.clone(),
                max_in_flight: config.max_in_flight_per_connection,
                handler_timeout: config.handler_timeout,
                shutdown: shutdown.clone(),
                abort: CancellationToken::new(),
            },
            socket_path: bound.file.path.clone(),
            ws_addrs,
            ws: ws_setup,
            registry: Mutex::new(HashMap::new()),
            next_connection_id: AtomicU64::new(1),
            connections: TaskTracker::new(),
            workers,
            outbound_limits: OutboundLimits {
                replies: self.config.max_outbound_bytes_per_connection,
                held: self.config.max_held_bytes_per_connection,
                server: Budget::new(self.config.max_held_bytes_total),
            },
            admission: Admission::new(
                self.config.max_connections,
                self.config.uid_connection_cap(),
                self.config.websocket.max_handshakes,
            ),
            config: self.config,
        });
        let task = tokio::spawn(run(shared.clone(), bound, ws_listeners));
        Ok(RunningServer {
            handle: ServerHandle { shared },
            task,
        })
    }
}

/// Keeps `max_connections` within what the descriptor limit can serve, so the server never runs
/// out of descriptors before it reaches its own limit (at which point accepts, and the UNIX
/// writers' and WebSocket watches' duplicates, would start failing for everyone).
fn fit_connections_to_descriptors(config: &mut ServerConfig) -> Result<(), ServerError> {
    let Some(limit) = fd_limit::current_limit() else {
        return Ok(());
    };
    let allowed = fd_limit::connections_for(limit);
    if allowed == 0 {
        return Err(ServerError::DescriptorLimit {
            limit,
            reserved: fd_limit::RESERVED_DESCRIPTORS,
        });
    }
    let allowed = usize::try_from(allowed).unwrap_or(usize::MAX);
    if config.max_connections > allowed {
        tracing::warn!(
            asked = config.max_connections,
            serving = allowed,
            descriptor_limit = limit,
            "max_connections lowered to what the descriptor limit allows (each connection may use 2 descriptors, {} are kept for the server); raise the limit (ulimit -n, LimitNOFILE=) to serve more",
            fd_limit::RESERVED_DESCRIPTORS
        );
        config.max_connections = allowed;
    }
    Ok(())
}

/// A started server. Dropping it does not stop the server; call [`ServerHandle::shutdown`].
pub struct RunningServer {
    handle: ServerHandle,
    task: JoinHandle<ShutdownReport>,
}

impl RunningServer {
    /// A cloneable handle for shutdown, pushes and statistics.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// Resolves when the server has stopped (after [`ServerHandle::shutdown`]).
    pub async fn wait(self) -> ShutdownReport {
        self.task.await.unwrap_or(ShutdownReport {
            drained: false,
            socket_removed: false,
        })
    }

    /// Starts a graceful shutdown and waits for it to finish.
    pub async fn shutdown(self) -> ShutdownReport {
        self.handle.shutdown();
        self.wait().await
    }
}

/// How a shutdown went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Every accepted request was answered before `exit_timeout`.
    pub drained: bool,
    /// The socket file was removed (false when another process had replaced it).
    pub socket_removed: bool,
}

/// Why a push was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// No open connection has that id.
    #[error("no open connection with id {0}")]
    NoSuchConnection(u64),
    /// The peer has not read what is already queued for it; the push was not queued.
    #[error("connection {0} is not reading; push refused")]
    PeerBehind(u64),
    /// The message could not be encoded as JSON.
    #[error("push could not be encoded as JSON")]
    Encode,
}

/// What a broadcast reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BroadcastReport {
    /// Connections the push was queued for.
    pub delivered: usize,
    /// Connections skipped because they were not reading.
    pub skipped: usize,
}

/// A cheap, cloneable handle to a running server.
#[derive(Clone)]
pub struct ServerHandle {
    shared: Arc<Shared>,
}

struct Registered {
    info: Arc<ConnectionInfo>,
    outbound: WeakOutbound,
}

/// State shared by the accept loops, the connections and the handles.
pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    pub(crate) env: ConnectionEnv,
    pub(crate) socket_path: PathBuf,
    pub(crate) ws_addrs: Vec<SocketAddr>,
    pub(crate) ws: ws::WsSetup,
    registry: Mutex<HashMap<u64, Registered>>,
    next_connection_id: AtomicU64,
    /// Every connection task of every transport, so shutdown can wait for all of them.
    pub(crate) connections: TaskTracker,
    /// What each connection's outbound gauge enforces, with the server-wide budget.
    pub(crate) outbound_limits: OutboundLimits,
    /// Connection slots, per-uid shares and the WebSocket handshake pool.
    pub(crate) admission: Admission,
    /// Where connections run.
    pub(crate) workers: Workers,
}

impl Shared {
    fn registry(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Registered>> {
        self.registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Ids follow accept order, so they tell connections apart in a stable way.
    pub(crate) fn next_connection_id(&self) -> u64 {
        self.next_connection_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Makes a connection reachable for pushes; `unregister` when it ends.
    pub(crate) fn register(&self, info: &Arc<ConnectionInfo>, outbound: &Outbound) {
        self.env.stats.connection_opened();
        self.registry().insert(
            info.id,
            Registered {
                info: info.clone(),
                outbound: outbound.downgrade(),
            },
        );
    }

    pub(crate) fn unregister(&self, id: u64) {
        self.registry().remove(&id);
        self.env.stats.connection_closed();
    }
}

impl ServerHandle {
    /// Starts a graceful shutdown: stop accepting, stop reading new requests, let in-flight
    /// requests finish and their replies go out for up to `exit_timeout`, then close every
    /// connection and remove the socket if it is still ours. Returns at once.
    pub fn shutdown(&self) {
        self.shared.env.shutdown.cancel();
    }

    /// True once [`shutdown`](Self::shutdown) has been called.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.env.shutdown.is_cancelled()
    }

    /// The socket path the server listens on.
    pub fn socket_path(&self) -> &Path {
        &self.shared.socket_path
    }

    /// The addresses the WebSocket listeners are bound to (with the actual port when 0 was
    /// asked for).
    pub fn ws_addrs(&self) -> &[SocketAddr] {
        &self.shared.ws_addrs
    }

    /// The `ws://` or `wss://` URL of each WebSocket listener.
    pub fn ws_urls(&self) -> Vec<String> {
        self.shared
            .ws_addrs
            .iter()
            .map(|addr| self.shared.ws.url_for(*addr))
            .collect()
    }

    /// For each WebSocket listener, its URL and who can reach it, e.g. `ws://127.0.0.1:7070/
    /// (any local user; browsers: same-origin pages only)`.
    pub fn ws_access(&self) -> Vec<String> {
        self.shared
            .ws_addrs
            .iter()
            .map(|addr| {
                format!(
                    "{} ({})",
                    self.shared.ws.url_for(*addr),
                    self.shared.ws.reach(*addr)
                )
            })
            .collect()
    }

    /// The routing table, for adding routes while running.
    pub fn router(&self) -> &Arc<Router> {
        &self.shared.env.router
    }

    /// The same statistics `/ipcserver/stats` answers.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.env.stats.snapshot(self.shared.env.router.len())
    }

    /// The open connections.
    pub fn connections(&self) -> Vec<Arc<ConnectionInfo>> {
        let mut list: Vec<_> = self
            .shared
            .registry()
            .values()
            .map(|entry| entry.info.clone())
            .collect();
        list.sort_by_key(|info| info.id);
        list
    }

    /// Sends `push` (a line without `ipcReqID`) to one connection.
    ///
    /// # Errors
    /// [`PushError`] when the connection is gone or not reading; nothing is queued then.
    pub fn push(&self, connection_id: u64, push: &Push) -> Result<(), PushError> {
        let line = encode_line(push).map_err(|_| PushError::Encode)?;
        let outbound = self
            .shared
            .registry()
            .get(&connection_id)
            .and_then(|entry| entry.outbound.upgrade())
            .ok_or(PushError::NoSuchConnection(connection_id))?;
        outbound
            .try_push(Line {
                bytes: line,
                binary: false,
            })
            .map_err(|err| match err {
                QueueError::Full => PushError::PeerBehind(connection_id),
                QueueError::Closed => PushError::NoSuchConnection(connection_id),
            })
    }

    /// Sends `push` to every open connection that is keeping up with its replies.
    pub fn broadcast(&self, push: &Push) -> BroadcastReport {
        let Ok(line) = encode_line(push) else {
            return BroadcastReport::default();
        };
        let targets: Vec<Outbound> = self
            .shared
            .registry()
            .values()
            .filter_map(|entry| entry.outbound.upgrade())
            .collect();
        let mut report = BroadcastReport::default();
        for outbound in targets {
            match outbound.try_push(Line {
                bytes: line.clone(),
                binary: false,
            }) {
                Ok(()) => report.delivered += 1,
                Err(_) => report.skipped += 1,
            }
        }
        report
    }
}

/// Accepts on every listener until shutdown, then drains.
async fn run(
    shared: Arc<Shared>,
    bound: BoundSocket,
    ws_listeners: Vec<tokio::net::TcpListener>,
) -> ShutdownReport {
    let stats_task = tokio::spawn(log_stats(shared.clone()));
    let BoundSocket { listener, file } = bound;
    let mut accepting = tokio::task::JoinSet::new();
    accepting.spawn(accept_loop(shared.clone(), unix::UnixTransport(listener)));
    for listener in ws_listeners {
        accepting.spawn(accept_loop(shared.clone(), ws::WsTransport(listener)));
    }
    shared.env.shutdown.cancelled().await;
    // The accept loops return on shutdown, dropping (closing) their listeners.
    while accepting.join_next().await.is_some() {}
    let connections = &shared.connections;
    tracing::info!(
        open = connections.len(),
        exit_timeout_ms = shared.config.exit_timeout.as_millis() as u64,
        "shutting down: no longer accepting; finishing in-flight requests"
    );
    connections.close();
    let drained = tokio::time::timeout(shared.config.exit_timeout, connections.wait())
        .await
        .is_ok();
    if !drained {
        shared.env.abort.cancel();
        connections.wait().await;
    }
    stats_task.abort();
    shared.workers.stop();
    let socket_removed = file.remove_if_ours();
    tracing::info!(drained, socket_removed, "stopped");
    ShutdownReport {
        drained,
        socket_removed,
    }
}

/// Rolls the interval statistics and logs them, like the original's `log_stats_interval`.
async fn log_stats(shared: Arc<Shared>) {
    // At least MIN_STATS_INTERVAL: `ServerConfig::validate` saw to it.
    let period = shared.config.stats_interval;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        ticker.tick().await;
        let finished = shared.env.stats.roll_interval();
        let json = serde_json::to_string(&finished).unwrap_or_default();
        tracing::info!(
            connections = shared.registry().len(),
            handlers = shared.env.router.len(),
            stats = %json,
            "IPCServer Stats"
        );
    }
}

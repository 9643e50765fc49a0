//! The server: binds the socket, accepts connections, keeps the push registry, and shuts down
//! in order (stop accepting, stop reading, drain within `exit_timeout`, remove our socket).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pixl_ipc_protocol::{encode_line, ErrorCode, ErrorReply, JsonLinesCodec, Push, Request};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::codec::{BytesCodec, FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::builtin;
use crate::config::ServerConfig;
use crate::connection::{self, ConnectionEnv};
use crate::error::ServerError;
use crate::handler::{ConnectionInfo, Handler, PeerCredentials, Transport};
use crate::outbound::{Outbound, QueueError, WeakOutbound};
use crate::router::{RouteError, Router, UriPattern};
use crate::stats::{Stats, StatsSnapshot};
use crate::transport::unix::{self, BoundSocket};

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
    /// A [`ServerError`] naming the path when the socket cannot be created: in use by a live
    /// server, not a socket, path too long, or an OS error.
    pub async fn start(self) -> Result<RunningServer, ServerError> {
        let config = &self.config;
        let bound = unix::bind(&config.socket_path, config.socket_mode, config.socket_group)?;
        tracing::info!(
            path = %bound.file.path.display(),
            mode = format_args!("{:04o}", config.socket_mode),
            "listening"
        );
        let shutdown = CancellationToken::new();
        let shared = Arc::new(Shared {
            env: ConnectionEnv {
                router: self.router.clone(),
                stats: self.stats.clone(),
                max_in_flight: config.max_in_flight_per_connection,
                shutdown: shutdown.clone(),
                abort: CancellationToken::new(),
            },
            socket_path: bound.file.path.clone(),
            registry: Mutex::new(HashMap::new()),
            next_connection_id: AtomicU64::new(1),
            config: self.config,
        });
        let task = tokio::spawn(run(shared.clone(), bound));
        Ok(RunningServer {
            handle: ServerHandle { shared },
            task,
        })
    }
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

struct Shared {
    config: ServerConfig,
    env: ConnectionEnv,
    socket_path: PathBuf,
    registry: Mutex<HashMap<u64, Registered>>,
    next_connection_id: AtomicU64,
}

impl Shared {
    fn registry(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Registered>> {
        self.registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
        outbound.try_push(line).map_err(|err| match err {
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
            match outbound.try_push(line.clone()) {
                Ok(()) => report.delivered += 1,
                Err(_) => report.skipped += 1,
            }
        }
        report
    }
}

/// Accepts until shutdown, then drains.
async fn run(shared: Arc<Shared>, bound: BoundSocket) -> ShutdownReport {
    let connections = TaskTracker::new();
    let limit = Arc::new(Semaphore::new(shared.config.max_connections));
    let stats_task = tokio::spawn(log_stats(shared.clone()));
    let shutdown = shared.env.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = bound.listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => match limit.clone().try_acquire_owned() {
                Ok(permit) => {
                    // Ids follow accept order, so they tell connections apart in a stable way.
                    let id = shared.next_connection_id.fetch_add(1, Ordering::Relaxed);
                    connections.spawn(unix_connection(shared.clone(), id, stream, permit));
                }
                Err(_) => {
                    tokio::spawn(refuse(stream, shared.config.max_connections));
                }
            },
            Err(err) => {
                // Out of file descriptors and similar: keep serving the connections we have.
                tracing::warn!(error = %err, "accept failed; retrying shortly");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        }
    }
    tracing::info!(
        open = connections.len(),
        exit_timeout_ms = shared.config.exit_timeout.as_millis() as u64,
        "shutting down: no longer accepting; finishing in-flight requests"
    );
    let BoundSocket { listener, file } = bound;
    drop(listener);
    connections.close();
    let drained = tokio::time::timeout(shared.config.exit_timeout, connections.wait())
        .await
        .is_ok();
    if !drained {
        shared.env.abort.cancel();
        connections.wait().await;
    }
    stats_task.abort();
    let socket_removed = file.remove_if_ours();
    tracing::info!(drained, socket_removed, "stopped");
    ShutdownReport {
        drained,
        socket_removed,
    }
}

async fn unix_connection(
    shared: Arc<Shared>,
    id: u64,
    stream: UnixStream,
    _permit: OwnedSemaphorePermit,
) {
    let peer = stream.peer_cred().ok().map(|cred| PeerCredentials {
        uid: cred.uid(),
        gid: cred.gid(),
        pid: cred.pid(),
    });
    let info = Arc::new(ConnectionInfo {
        id,
        transport: Transport::Unix {
            path: shared.socket_path.clone(),
        },
        peer,
    });
    tracing::debug!(conn = id, ?peer, "connection opened");
    shared.env.stats.connection_opened();

    let (read, write) = stream.into_split();
    let codec = JsonLinesCodec::<Request>::with_max_length(shared.config.max_message_bytes);
    let requests = FramedRead::new(read, codec);
    let sink = FramedWrite::new(write, BytesCodec::new());
    let (outbound, queue) = Outbound::new(shared.config.max_outbound_bytes_per_connection);
    shared.registry().insert(
        id,
        Registered {
            info: info.clone(),
            outbound: outbound.downgrade(),
        },
    );

    connection::serve(info, &shared.env, requests, sink, outbound, queue).await;

    shared.registry().remove(&id);
    shared.env.stats.connection_closed();
    tracing::debug!(conn = id, "connection closed");
}

/// Tells a connection over the limit why it is being closed.
async fn refuse(mut stream: UnixStream, limit: usize) {
    tracing::warn!(limit, "connection refused: too many connections");
    let reply = ErrorReply::new(
        None,
        ErrorCode::TooManyConnections,
        format!("server is at its limit of {limit} connections"),
    );
    if let Ok(line) = encode_line(&reply) {
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&line)).await;
    }
}

/// Rolls the interval statistics and logs them, like the original's `log_stats_interval`.
async fn log_stats(shared: Arc<Shared>) {
    let period = shared.config.stats_interval.max(Duration::from_millis(10));
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

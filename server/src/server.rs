//! The server: binds its listeners, runs their accept loops, hands each admitted connection to
//! a worker, and shuts down in order (stop accepting, stop reading, drain within
//! `exit_timeout`, remove our socket). It also tells a service manager how it is doing, when
//! given a [`Notifier`]. It depends on the transports, which depend on the
//! connection core and its [`ConnectionContext`]; nothing depends back on it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pixl_ipc_protocol::Push;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use crate::access::{ReloadReport, Reloadable};
use crate::activation::Listeners;
use crate::builtin;
use crate::config::ServerConfig;
use crate::context::ConnectionContext;
use crate::error::ServerError;
use crate::fd_limit;
use crate::handler::{ConnectionInfo, Handler, RequestContext};
use crate::notify::Notifier;
use crate::registry::{BroadcastReport, PushError};
use crate::router::{RouteError, Router, UriPattern};
use crate::stats::{Stats, StatsSnapshot};
use crate::transport::unix::{SocketFile, SocketListener};
use crate::transport::ws::{WebSockets, WsListener};
use crate::transport::Listener;
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
    /// The listeners `/ipcserver/info` reports, filled in by [`Server::start`].
    listening: builtin::Listening,
    /// Sockets handed in to serve instead of (UNIX) or besides (WebSocket) binding.
    listeners: Listeners,
    notifier: Option<Notifier>,
    /// The handlers wrapped in the layers given to [`Server::layer`]; `None` without layers.
    layered: Option<crate::HandlerService>,
}

impl Server {
    /// A server with the built-in routes (`/ipcserver/test/echo`, `/ipcserver/test/delay`,
    /// `/ipcserver/stats`, `/ipcserver/info`) registered first, as the original does.
    pub fn new(config: ServerConfig) -> Self {
        let router = Arc::new(Router::new());
        let stats = Arc::new(Stats::new(config.slow_threshold));
        let listening = builtin::Listening::default();
        builtin::register(&router, &stats, &listening);
        Server {
            config,
            router,
            stats,
            listening,
            listeners: Listeners::default(),
            notifier: None,
            layered: None,
        }
    }

    /// Serves these already-listening sockets: the UNIX one instead of binding `socket_path`
    /// (its file, if any, is never unlinked, chmod'ed or chown'ed, and no `<socket>.lock` is
    /// taken: whoever created it owns it, so `socket_mode` and `socket_group` do not apply),
    /// the TCP ones as WebSocket listeners beside `websocket.listen`. For systemd socket
    /// activation pass [`Listeners::from_env`].
    pub fn with_listeners(mut self, listeners: Listeners) -> Self {
        self.listeners = listeners;
        self
    }

    /// Tells the service manager behind `notifier` how the server is doing: `READY=1` once it
    /// listens (before the first accept), a `STATUS=` line with its connections and requests at
    /// each statistics interval, `STOPPING=1` when it starts draining, and `WATCHDOG=1` at half
    /// the manager's watchdog period, from the runtime that accepts connections (so a wedged
    /// server stops sending it). For systemd pass [`Notifier::from_env`].
    pub fn with_notifier(mut self, notifier: Notifier) -> Self {
        self.notifier = Some(notifier);
        self
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

    /// Registers a typed handler for `pattern` after all routes registered so far: it takes
    /// `data` as any `T: DeserializeOwned` (decoded from the request's text, no `Value` tree)
    /// and answers with any `R: Serialize`; data that does not decode gets `invalid_data`
    /// without the handler running. See [`Router::add_typed_handler`].
    ///
    /// # Errors
    /// [`RouteError::InvalidPattern`] for a string pattern that is not a valid regex.
    pub fn add_typed_handler<T, R, F, Fut>(
        &self,
        pattern: impl Into<UriPattern>,
        name: impl Into<String>,
        handler: F,
    ) -> Result<&Self, RouteError>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
        R: serde::Serialize + 'static,
        F: Fn(T, RequestContext) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<R, crate::HandlerError>> + Send + 'static,
    {
        self.router.add_typed_handler(pattern, name, handler)?;
        Ok(self)
    }

    /// Registers a streaming handler for `pattern` after all routes registered so far: one
    /// request (sent with `"ipcStream": true`), many replies. See
    /// [`Router::add_stream_handler`].
    ///
    /// # Errors
    /// [`RouteError::InvalidPattern`] for a string pattern that is not a valid regex;
    /// [`RouteError::MissingState`] for a `State<S>` argument whose `S` is not registered.
    pub fn add_stream_handler<Args, H, I>(
        &self,
        pattern: impl Into<UriPattern>,
        name: impl Into<String>,
        handler: H,
    ) -> Result<&Self, RouteError>
    where
        Args: 'static,
        H: crate::ExtractHandler<Args>,
        H::Reply: futures_util::Stream<Item = Result<I, crate::HandlerError>>,
        I: crate::IntoStreamItem,
    {
        self.router.add_stream_handler(pattern, name, handler)?;
        Ok(self)
    }

    /// Wraps every routed handler in `layer`, a [`tower::Layer`]: `TimeoutLayer`,
    /// `ConcurrencyLimitLayer`, `LoadShedLayer`, tracing layers, or one of your own. Each call
    /// wraps what the earlier ones built, so the last layer added is the outermost.
    ///
    /// The layers see every routed request as an [`IpcRequest`](crate::IpcRequest): user
    /// routes, the built-in `/ipcserver/*` ones, forwards and the default handler (the
    /// built-in echo then answers through them too, from its data's text). A layer's error
    /// is the reply, in `data`: tower's timeout `Elapsed` is `handler_timeout`,
    /// load-shed's `Overloaded` is `overloaded`, anything else `handler_error`. Without
    /// layers, requests do not go through tower at all. Streamed replies
    /// ([`add_stream_handler`](Self::add_stream_handler)) do not go through the layers either:
    /// a layer sees one reply per request, and streams have their own limits. The server's own
    /// [`handler_timeout`](ServerConfig::handler_timeout), the panic guard and the per-connection
    /// limits still apply, around the layers.
    ///
    /// ```
    /// use pixl_ipc_server::{Server, ServerConfig};
    /// use std::time::Duration;
    ///
    /// let server = Server::new(ServerConfig::new("/tmp/myapp.sock"))
    ///     .layer(tower::timeout::TimeoutLayer::new(Duration::from_secs(5)));
    /// ```
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: tower::Layer<crate::HandlerService>,
        L::Service: tower::Service<crate::IpcRequest, Response = crate::IpcReply, Future: Send + 'static>
            + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as tower::Service<crate::IpcRequest>>::Error: Into<crate::BoxError>,
    {
        use tower::ServiceExt;
        let inner = self.layered.take().unwrap_or_else(crate::middleware::base);
        self.layered = Some(tower::util::BoxCloneSyncService::new(
            layer.layer(inner).map_err(Into::into),
        ));
        self
    }

    /// Registers `state` for the [`State<S>`](crate::State) extractor: every handler registered
    /// after this with [`add_handler`](Self::add_handler) or
    /// [`add_stream_handler`](Self::add_stream_handler) can take a `State<S>`, a clone of it per
    /// request. One state per type; several types may be registered.
    pub fn with_state<S: Clone + Send + Sync + 'static>(self, state: S) -> Self {
        self.router.insert_state(state);
        self
    }

    /// Registers a handler that takes its arguments as extractors, in any order, and answers
    /// with any `R: Serialize`, after all routes registered so far. See
    /// [`Router::add_handler`] and the [`extract`](crate::extract) module.
    ///
    /// ```no_run
    /// use pixl_ipc_server::{Connection, Data, HandlerError, Server, ServerConfig, ServerHandle, State, Push};
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::sync::Arc;
    ///
    /// async fn hit(Data(n): Data<u64>, State(hits): State<Arc<AtomicU64>>, conn: Connection, server: ServerHandle) -> Result<u64, HandlerError> {
    ///     let total = hits.fetch_add(n, Ordering::Relaxed) + n;
    ///     server.push(conn.id, &Push { uri: Some("hits".into()), data: serde_json::json!({"total": total}) })?;
    ///     Ok(total)
    /// }
    ///
    /// let server = Server::new(ServerConfig::new("/tmp/myapp.sock")).with_state(Arc::new(AtomicU64::new(0)));
    /// server.add_handler("/hit", "hit", hit)?;
    /// # Ok::<(), pixl_ipc_server::RouteError>(())
    /// ```
    ///
    /// # Errors
    /// [`RouteError::InvalidPattern`] for a string pattern that is not a valid regex;
    /// [`RouteError::MissingState`] for a `State<S>` argument whose `S` is not registered.
    pub fn add_handler<Args: 'static, H: crate::ExtractHandler<Args>>(
        &self,
        pattern: impl Into<UriPattern>,
        name: impl Into<String>,
        handler: H,
    ) -> Result<&Self, RouteError>
    where
        H::Reply: serde::Serialize,
    {
        self.router.add_handler(pattern, name, handler)?;
        Ok(self)
    }

    /// Forwards requests whose uri matches `spec.pattern` to the pixl-ipc server at
    /// `spec.address`, after all routes registered so far (see [`ForwardSpec`](crate::ForwardSpec)
    /// for the pattern and address syntax, and the module docs of what a caller gets). Starts
    /// connecting at once, in the background: an upstream that is not running yet is no error;
    /// calls get `upstream_unavailable` until it is. Feature `forward`.
    ///
    /// # Errors
    /// [`ForwardError`](crate::ForwardError) for a bad pattern or address, a zero timeout, or
    /// a call outside a Tokio runtime; nothing is registered then.
    #[cfg(feature = "forward")]
    pub fn add_forward(&self, spec: &crate::ForwardSpec) -> Result<&Self, crate::ForwardError> {
        let own = match &self.config.abstract_name {
            Some(name) => pixl_ipc_client::Address::Abstract(name.clone()),
            None => pixl_ipc_client::Address::Unix(self.config.socket_path.clone()),
        };
        if spec.client_address().is_ok_and(|upstream| upstream == own) {
            return Err(crate::ForwardError::ToItself {
                address: spec.shown_address(),
            });
        }
        crate::forward::register(
            &self.router,
            &self.stats,
            spec,
            self.config.max_message_bytes,
        )?;
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

    /// Creates the socket (see [`ServerConfig`] for the safety rules), or takes the one handed
    /// in with [`with_listeners`](Self::with_listeners), and starts serving in background
    /// tasks. Must be called inside a Tokio runtime.
    ///
    /// # Errors
    /// [`ServerError::InvalidSetting`] for a setting out of range (see
    /// [`ServerConfig::validate`]); otherwise a [`ServerError`] naming the path when the socket
    /// cannot be created: in use by a live server, not a socket, path too long, or an OS error.
    /// A failed start leaves no socket file behind.
    pub async fn start(mut self) -> Result<RunningServer, ServerError> {
        self.config.validate()?;
        let websocket_listeners =
            self.config.websocket.listen.len() + self.listeners.websocket.len();
        fit_connections_to_descriptors(&mut self.config, websocket_listeners)?;
        let config = &self.config;
        // Everything that can fail is prepared before the UNIX socket exists, so a bad TLS file
        // or a taken port leaves no socket file behind.
        let passed_ws = std::mem::take(&mut self.listeners.websocket);
        let (websockets, ws_listeners) = WebSockets::bind(config, passed_ws).await?;
        let workers = match config.worker_threads {
            Some(count) => Workers::start(count)
                .await
                .map_err(|source| ServerError::Workers { count, source })?,
            None => Workers::caller(),
        };
        let (unix_listener, file, socket_inherited) = match self.listeners.unix.take() {
            Some(passed) => (SocketListener::inherit(config, passed)?, None, true),
            None => {
                let (listener, file) = SocketListener::bind(config)?;
                (listener, file, false)
            }
        };
        websockets.announce(&Reloadable::from_config(config));
        let _ = self.listening.set(builtin::listener_entries(
            unix_listener.path(),
            websockets.urls(),
        ));
        let mut context = ConnectionContext::new(config, self.router.clone(), self.stats.clone());
        context.layered = self.layered.take();
        let context = Arc::new(context);
        let socket_path = unix_listener.path().to_path_buf();
        if let Some(notifier) = &self.notifier {
            // Listening now, and nothing accepted yet: the accept loops start below.
            tell(
                notifier,
                &format!("READY=1\nSTATUS=listening on {}", socket_path.display()),
            );
        }
        let shared = Arc::new(Shared {
            context,
            socket_inherited,
            socket_path,
            notifier: self.notifier.take(),
            websockets,
            connections: TaskTracker::new(),
            workers,
            exit_timeout: config.exit_timeout,
            stats_interval: config.stats_interval,
        });
        // A second start of the same router (not possible through this API) keeps the first.
        let _ = self.router.server_link().set(Arc::downgrade(&shared));
        let task = tokio::spawn(run(shared.clone(), unix_listener, ws_listeners, file));
        Ok(RunningServer {
            handle: ServerHandle { shared },
            task,
        })
    }
}

/// Keeps `max_connections` within what the descriptor limit can serve, so the server never runs
/// out of descriptors before it reaches its own limit (at which point accepts, and the UNIX
/// writers' and WebSocket watches' duplicates, would start failing for everyone).
fn fit_connections_to_descriptors(
    config: &mut ServerConfig,
    websocket_listeners: usize,
) -> Result<(), ServerError> {
    let Some(limit) = fd_limit::current_limit() else {
        return Ok(());
    };
    let reserved = fd_limit::reserved(config.websocket.max_handshakes, websocket_listeners);
    let allowed = fd_limit::connections_for(limit, reserved);
    if allowed == 0 {
        return Err(ServerError::DescriptorLimit { limit, reserved });
    }
    let allowed = usize::try_from(allowed).unwrap_or(usize::MAX);
    if config.max_connections > allowed {
        let kept_for = if websocket_listeners == 0 {
            "the server"
        } else {
            "the server and its WebSocket handshakes"
        };
        tracing::warn!(
            asked = config.max_connections,
            serving = allowed,
            descriptor_limit = limit,
            "max_connections lowered to what the descriptor limit allows (each connection may use 2 descriptors, {reserved} are kept for {kept_for}); raise the limit (ulimit -n, LimitNOFILE=) to serve more"
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
    /// The socket file was removed (false when another process had replaced it, for an
    /// abstract socket, which has no file, and for a socket handed in with
    /// [`Server::with_listeners`], which is its creator's to remove).
    pub socket_removed: bool,
}

/// A cheap, cloneable handle to a running server. Handlers registered with
/// [`Server::add_handler`] can take one as an argument.
#[derive(Clone)]
pub struct ServerHandle {
    shared: Arc<Shared>,
}

/// Where a router's extractor handlers find their running server: set once by
/// [`Server::start`]. Weak, so the routes (which the server holds) do not keep it alive.
pub(crate) type ServerLink = Arc<std::sync::OnceLock<std::sync::Weak<Shared>>>;

/// What the server's handles and its accept loops share.
pub(crate) struct Shared {
    /// What every connection is served with.
    context: Arc<ConnectionContext>,
    socket_path: PathBuf,
    /// The UNIX socket was handed in, not created: it is left in place at shutdown.
    socket_inherited: bool,
    /// Where readiness, status and watchdog notifications go.
    notifier: Option<Notifier>,
    websockets: WebSockets,
    /// Every connection task of every listener, so shutdown can wait for all of them.
    connections: TaskTracker,
    /// Where connections run.
    workers: Workers,
    exit_timeout: Duration,
    stats_interval: Duration,
}

impl ServerHandle {
    /// The handle of the server behind `link`, while it runs.
    pub(crate) fn from_link(link: &ServerLink) -> Option<ServerHandle> {
        let shared = link.get()?.upgrade()?;
        Some(ServerHandle { shared })
    }

    /// Starts a graceful shutdown: stop accepting, stop reading new requests, let in-flight
    /// requests finish and their replies go out for up to `exit_timeout`, then close every
    /// connection and remove the socket if it is still ours. Returns at once.
    pub fn shutdown(&self) {
        self.shared.context.shutdown.cancel();
    }

    /// True once [`shutdown`](Self::shutdown) has been called.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.context.shutdown.is_cancelled()
    }

    /// The socket path the server listens on: `@name` for an abstract socket; for a socket
    /// handed in, its path (or the configured path when it has no name).
    pub fn socket_path(&self) -> &Path {
        &self.shared.socket_path
    }

    /// True when the UNIX socket was handed in ([`Server::with_listeners`], e.g. by systemd)
    /// rather than created: its mode, owner and removal are its creator's.
    pub fn socket_inherited(&self) -> bool {
        self.shared.socket_inherited
    }

    /// The addresses the WebSocket listeners are bound to (with the actual port when 0 was
    /// asked for).
    pub fn ws_addrs(&self) -> &[SocketAddr] {
        self.shared.websockets.addrs()
    }

    /// The `ws://` or `wss://` URL of each WebSocket listener.
    pub fn ws_urls(&self) -> Vec<String> {
        self.shared.websockets.urls()
    }

    /// For each WebSocket listener, its URL and who can reach it, e.g. `ws://127.0.0.1:7070/
    /// (any local user; browsers: same-origin pages only)`.
    pub fn ws_access(&self) -> Vec<String> {
        let rules = self.shared.context.access.current();
        self.shared.websockets.access(&rules)
    }

    /// The token and uid/gid allow-list in force.
    pub fn reloadable(&self) -> Reloadable {
        Reloadable::clone(&self.shared.context.access.current())
    }

    /// Puts new access rules in force without dropping a connection: connections accepted (and
    /// WebSocket upgrades begun) from now on are admitted under `rules`; connections already
    /// admitted keep going. Returns what changed.
    ///
    /// # Errors
    /// The same checks as [`Server::start`], and then nothing changes:
    /// [`ServerError::AllowListNeedsToken`] when an allow-list would be set with no token while
    /// a WebSocket listener is reachable from other machines, and
    /// [`ServerError::PeerLookupUnavailable`] when an allow-list would apply to WebSocket peers
    /// and `/proc/net/tcp` cannot be read.
    pub fn reload(&self, rules: Reloadable) -> Result<ReloadReport, ServerError> {
        self.shared.websockets.check_rules(&rules)?;
        Ok(self.shared.context.access.replace(rules))
    }

    /// The routing table, for adding routes while running.
    pub fn router(&self) -> &Arc<Router> {
        &self.shared.context.router
    }

    /// The same statistics `/ipcserver/stats` answers.
    pub fn stats(&self) -> StatsSnapshot {
        let context = &self.shared.context;
        context.stats.snapshot(context.router.len())
    }

    /// The open connections.
    pub fn connections(&self) -> Vec<Arc<ConnectionInfo>> {
        self.shared.context.registry.connections()
    }

    /// Sends `push` (a line without `ipcReqID`) to one connection.
    ///
    /// # Errors
    /// [`PushError`] when the connection is gone or not reading; nothing is queued then.
    pub fn push(&self, connection_id: u64, push: &Push) -> Result<(), PushError> {
        self.shared.context.registry.push(connection_id, push)
    }

    /// Sends `push` to every open connection that is keeping up with its replies.
    pub fn broadcast(&self, push: &Push) -> BroadcastReport {
        self.shared.context.registry.broadcast(push)
    }
}

/// Accepts on every listener until shutdown, then drains.
async fn run(
    shared: Arc<Shared>,
    unix_listener: SocketListener,
    ws_listeners: Vec<WsListener>,
    file: Option<SocketFile>,
) -> ShutdownReport {
    let context = &shared.context;
    let stats_task = tokio::spawn(log_stats(
        context.clone(),
        shared.stats_interval,
        shared.notifier.clone(),
    ));
    // On this runtime, the one that accepts: if it wedges, the manager stops hearing from us.
    let watchdog_task = shared.notifier.clone().and_then(|notifier| {
        let period = notifier.watchdog_interval()?;
        Some(tokio::spawn(keep_watchdog(notifier, period)))
    });
    let mut accepting = tokio::task::JoinSet::new();
    accepting.spawn(accept_loop(shared.clone(), unix_listener));
    for listener in ws_listeners {
        accepting.spawn(accept_loop(shared.clone(), listener));
    }
    context.shutdown.cancelled().await;
    // The accept loops return on shutdown, dropping (closing) their listeners.
    while accepting.join_next().await.is_some() {}
    let connections = &shared.connections;
    tracing::info!(
        open = connections.len(),
        exit_timeout_ms = shared.exit_timeout.as_millis() as u64,
        "shutting down: no longer accepting; finishing in-flight requests"
    );
    if let Some(notifier) = &shared.notifier {
        tell(
            notifier,
            &format!(
                "STOPPING=1\nSTATUS=draining {} connections",
                connections.len()
            ),
        );
    }
    connections.close();
    let drained = tokio::time::timeout(shared.exit_timeout, connections.wait())
        .await
        .is_ok();
    if !drained {
        context.abort.cancel();
        connections.wait().await;
    }
    stats_task.abort();
    if let Some(task) = watchdog_task {
        task.abort();
    }
    shared.workers.stop();
    // A socket handed in is left to its creator (systemd removes it, if told to, when the
    // socket unit stops; until then it queues connections for the next start).
    let socket_removed = file.is_some_and(|file| file.remove_if_ours());
    tracing::info!(drained, socket_removed, "stopped");
    ShutdownReport {
        drained,
        socket_removed,
    }
}

/// Accepts on `listener` until shutdown, and has each admitted connection served on a worker.
/// A failed accept (out of file descriptors, say) is logged and retried after a pause, so one
/// bad moment never stops the server.
async fn accept_loop<L: Listener>(shared: Arc<Shared>, mut listener: L) {
    let context = &shared.context;
    let shutdown = context.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok(io) => match listener.admit(context, &io) {
                Ok(ticket) => {
                    let id = context.registry.next_id();
                    shared.workers.spawn(
                        &shared.connections,
                        L::serve(context.clone(), id, io, ticket),
                    );
                }
                Err(refusal) => {
                    refusal.record(&context.stats);
                    listener.refuse(io, &refusal);
                }
            },
            Err(err) => {
                tracing::warn!(error = %err, "accept failed; retrying shortly");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        }
    }
}

/// Rolls the interval statistics and logs them, like the original's `log_stats_interval`; with
/// a notifier, also sends them as the service's status line.
async fn log_stats(context: Arc<ConnectionContext>, period: Duration, notifier: Option<Notifier>) {
    // At least MIN_STATS_INTERVAL: `ServerConfig::validate` saw to it.
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        ticker.tick().await;
        let finished = context.stats.roll_interval();
        let json = serde_json::to_string(&finished).unwrap_or_default();
        tracing::info!(
            connections = context.registry.len(),
            handlers = context.router.len(),
            stats = %json,
            "IPCServer Stats"
        );
        if let Some(notifier) = &notifier {
            let status = format!(
                "STATUS={} connections; {} requests in the last {} ms, {} in all",
                context.registry.len(),
                finished.requests,
                period.as_millis(),
                context.stats.snapshot(context.router.len()).total.requests,
            );
            if let Err(err) = notifier.notify(&status) {
                tracing::debug!(error = %err, "cannot send the status to the service manager");
            }
        }
    }
}

/// Sends `WATCHDOG=1` every `period` (half the manager's watchdog timeout), the first at once.
/// A failure is logged when it starts and when it ends, not at every tick.
async fn keep_watchdog(notifier: Notifier, period: Duration) {
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        ticker.tick().await;
        match notifier.notify("WATCHDOG=1") {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("WATCHDOG=1 reaches the service manager again");
            }
            Ok(()) => {}
            Err(err) if !failing => {
                failing = true;
                tracing::warn!(error = %err, "cannot send WATCHDOG=1 to the service manager (logged once until it works again)");
            }
            Err(_) => {}
        }
    }
}

/// Sends a notification the service manager acts on (readiness, stopping), logging a failure.
fn tell(notifier: &Notifier, state: &str) {
    if let Err(err) = notifier.notify(state) {
        tracing::warn!(error = %err, ?notifier, state, "cannot notify the service manager");
    }
}

//! Server settings, every default in one place.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default longest request the server accepts: 8 MiB (the original has no limit; jsonrpsee
/// defaults to 10 MB, sd-varlink caps a connection's buffer at 16 MiB). Lower than the
/// clients' 64 MiB limit for replies, because this bounds what a peer can make the server
/// buffer before it knows anything about the message: with
/// [`DEFAULT_MAX_HELD_BYTES_PER_CONNECTION`] it keeps one connection under 56 MiB and 16 of
/// them under 1 GiB (docs/RELIABILITY.md, Bounds).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;
/// Default bytes one connection may make the server hold before it reads no more requests:
/// unread replies, plus a charge for each request being handled (its text, and the `Value`
/// tree a handler's data is parsed into, estimated before parsing). A request whose charge
/// alone is larger is refused with `message_too_large` without being parsed.
pub const DEFAULT_MAX_HELD_BYTES_PER_CONNECTION: usize = 32 * 1024 * 1024;
/// Default bytes all connections together may make the server hold (as above); past it, a
/// connection that holds anything takes no new request until it is done with what it holds.
pub const DEFAULT_MAX_HELD_BYTES_TOTAL: usize = 512 * 1024 * 1024;

/// Default `exit_timeout`: how long shutdown waits for in-flight requests (the original's 2000 ms).
pub const DEFAULT_EXIT_TIMEOUT: Duration = Duration::from_millis(2000);
/// Default socket mode: owner only. The original's default is 0777; pass `"777"` to get it.
pub const DEFAULT_SOCKET_MODE: u32 = 0o600;
/// Default connection limit.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default share of `max_connections` one uid may hold on the UNIX socket: a quarter (as
/// sd-varlink does), so one user's runaway client leaves room for everyone else.
pub const DEFAULT_UID_SHARE_DIVISOR: usize = 4;
/// Default limit of requests running at once on one connection. When it is reached the server
/// stops reading that connection until one finishes.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;
/// Default limit of streamed replies running at once on one connection (besides its requests):
/// a stream beyond it is refused with `invalid_request`. Each stream may have one item on its
/// way past the unread-reply limit, so this bounds what a reader that stops reading costs.
pub const DEFAULT_MAX_STREAMS: usize = 32;
/// Default limit of reply bytes queued for one connection that the peer has not read yet. Past
/// it the server stops reading that connection's requests (counted as `streamBackpressure`).
pub const DEFAULT_MAX_OUTBOUND_BYTES: usize = 16 * 1024 * 1024;
/// Default partial-message timeout: how long a started line may stay without its newline.
pub const DEFAULT_PARTIAL_MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default statistics interval (the original's `log_stats_interval: "minute"`).
pub const DEFAULT_STATS_INTERVAL: Duration = Duration::from_secs(60);
/// Default threshold above which a response counts as slow (the original's 20 ms).
pub const DEFAULT_SLOW_THRESHOLD: Duration = Duration::from_millis(20);

/// Everything the server can be told. Build it with [`ServerConfig::new`] and the `with_*`
/// methods; each says its default.
///
/// ```
/// use std::time::Duration;
/// use pixl_ipc_server::ServerConfig;
///
/// let config = ServerConfig::new("/run/myapp/ipc.sock")
///     .with_socket_mode(0o660)
///     .with_exit_timeout(Duration::from_secs(5));
/// assert_eq!(config.socket_mode, 0o660);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Where the UNIX socket is created. For an abstract socket ([`ServerConfig::new_abstract`])
    /// this is `@name`, the name as `ss -x` shows it, and no file is created.
    pub socket_path: PathBuf,
    /// When set (Linux only), the server listens on this abstract socket name instead of
    /// creating a file at `socket_path` (see [`ServerConfig::new_abstract`]).
    pub abstract_name: Option<String>,
    /// Permission bits of the socket file (default [`DEFAULT_SOCKET_MODE`], 0600). The socket
    /// never has more permissions than this, not even briefly while it is being created.
    pub socket_mode: u32,
    /// Group that owns the socket file (default: the process's group).
    pub socket_group: Option<u32>,
    /// How long shutdown waits for in-flight requests (default [`DEFAULT_EXIT_TIMEOUT`]).
    pub exit_timeout: Duration,
    /// Longest accepted message in bytes, without its newline (default
    /// [`DEFAULT_MAX_MESSAGE_BYTES`], 8 MiB).
    pub max_message_bytes: usize,
    /// Most connections at once (default [`DEFAULT_MAX_CONNECTIONS`]); the next one gets a
    /// `too_many_connections` error line and is closed.
    pub max_connections: usize,
    /// Most connections one peer uid may hold at once (default: `max_connections` /
    /// [`DEFAULT_UID_SHARE_DIVISOR`], at least 1). Applies wherever the peer's uid is known:
    /// the UNIX socket, and loopback WebSocket peers when an allow-list is set.
    pub max_connections_per_uid: Option<usize>,
    /// Most requests running at once on one connection (default [`DEFAULT_MAX_IN_FLIGHT`]).
    pub max_in_flight_per_connection: usize,
    /// Most streamed replies running at once on one connection (default
    /// [`DEFAULT_MAX_STREAMS`]).
    pub max_streams_per_connection: usize,
    /// Most unread reply bytes queued for one connection before the server stops reading it
    /// (default [`DEFAULT_MAX_OUTBOUND_BYTES`]).
    pub max_outbound_bytes_per_connection: usize,
    /// Most bytes one connection may make the server hold (unread replies and requests being
    /// handled) before it stops reading it (default [`DEFAULT_MAX_HELD_BYTES_PER_CONNECTION`]).
    pub max_held_bytes_per_connection: usize,
    /// Most bytes all connections together may make the server hold (default
    /// [`DEFAULT_MAX_HELD_BYTES_TOTAL`]).
    pub max_held_bytes_total: usize,
    /// How often the interval statistics roll over and are logged (default
    /// [`DEFAULT_STATS_INTERVAL`]).
    pub stats_interval: Duration,
    /// Responses slower than this count as `slowResponses` (default [`DEFAULT_SLOW_THRESHOLD`]).
    pub slow_threshold: Duration,
    /// WebSocket listeners (default: none).
    pub websocket: WebSocketConfig,
    /// A handler still running after this long is cancelled and its request answered with
    /// `handler_timeout` (default: none; clients have their own request timeouts).
    pub handler_timeout: Option<Duration>,
    /// A connection whose last line stays incomplete (no newline) this long gets
    /// `partial_message_timeout` and is closed (default [`DEFAULT_PARTIAL_MESSAGE_TIMEOUT`]).
    pub partial_message_timeout: Duration,
    /// When this or `allowed_gids` is not empty, only UNIX-socket peers whose kernel-verified
    /// uid is listed here, or whose gid is in `allowed_gids`, are served; others get
    /// `peer_not_allowed` and are closed before any request is read (default: everyone the
    /// socket's permissions let in).
    ///
    /// It applies to WebSocket peers too: a peer on this machine is served only when the uid
    /// owning its TCP socket (read from `/proc/net/tcp`) is listed here; others, and peers
    /// whose uid cannot be found, get HTTP 403 before the upgrade. A TCP peer's gid is not
    /// known, so `allowed_gids` never admits one. A peer on another machine has no uid here:
    /// with an allow-list set, a WebSocket listener off the loopback interface needs a token
    /// ([`WebSocketConfig::with_token`]), or [`Server::start`](crate::Server::start) refuses.
    pub allowed_uids: Vec<u32>,
    /// See `allowed_uids`.
    pub allowed_gids: Vec<u32>,
    /// Serve connections on this many threads of the server's own, each running a
    /// single-threaded runtime, connections spread over them in turn (default: none, and
    /// connections run on the runtime that called [`Server::start`](crate::Server::start)).
    /// A connection stays on its thread, so a request and its reply never hop between
    /// threads; handlers that block should use `tokio::task::spawn_blocking`.
    pub worker_threads: Option<usize>,
    /// The low-latency mode (default: off): for this long after a UNIX-socket connection
    /// received a line, its reads busy-poll the socket instead of letting the worker thread
    /// park, so a client that calls one request at a time is read without a thread wake-up.
    /// Costs CPU: up to this much per line received (none while connections are idle).
    /// At most [`MAX_READ_SPIN`](crate::MAX_READ_SPIN). WebSocket connections do not spin.
    pub read_spin: Option<Duration>,
}

impl ServerConfig {
    /// Settings for a server on `socket_path`, everything else at its default.
    pub fn new(socket_path: impl AsRef<Path>) -> Self {
        ServerConfig {
            socket_path: socket_path.as_ref().to_path_buf(),
            abstract_name: None,
            socket_mode: DEFAULT_SOCKET_MODE,
            socket_group: None,
            exit_timeout: DEFAULT_EXIT_TIMEOUT,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_uid: None,
            max_in_flight_per_connection: DEFAULT_MAX_IN_FLIGHT,
            max_streams_per_connection: DEFAULT_MAX_STREAMS,
            max_outbound_bytes_per_connection: DEFAULT_MAX_OUTBOUND_BYTES,
            max_held_bytes_per_connection: DEFAULT_MAX_HELD_BYTES_PER_CONNECTION,
            max_held_bytes_total: DEFAULT_MAX_HELD_BYTES_TOTAL,
            stats_interval: DEFAULT_STATS_INTERVAL,
            slow_threshold: DEFAULT_SLOW_THRESHOLD,
            websocket: WebSocketConfig::default(),
            handler_timeout: None,
            partial_message_timeout: DEFAULT_PARTIAL_MESSAGE_TIMEOUT,
            allowed_uids: Vec::new(),
            allowed_gids: Vec::new(),
            worker_threads: None,
            read_spin: None,
        }
    }

    /// Settings for a server on the Linux abstract socket `name` (what clients write as
    /// `@name` or `unix:@name`), everything else at its default.
    ///
    /// An abstract socket has no file: nothing is created, probed, locked or removed, and the
    /// kernel refuses a second server on the same name (`bind` fails with "address in use",
    /// [`ServerError::AbstractNameInUse`](crate::ServerError::AbstractNameInUse)). Without a
    /// file there are no permissions either, so the allow-list starts as our own uid only (as a
    /// socket file is owner-only by default); [`with_allowed_peers`](Self::with_allowed_peers)
    /// names who else may (kernel-verified peer credentials, as on a socket file), and empty
    /// lists open it to every process on the host in the same network namespace. A socket mode or
    /// group is refused by [`validate`](Self::validate), as is any use on other systems.
    /// (`ServerConfig::new("@name")` is still the file path `@name`; the binary's
    /// `--socket @name` is what calls this.)
    ///
    /// ```
    /// use pixl_ipc_server::ServerConfig;
    ///
    /// let config = ServerConfig::new_abstract("myapp").with_allowed_peers(vec![1000], vec![]);
    /// assert_eq!(config.abstract_name.as_deref(), Some("myapp"));
    /// assert_eq!(config.socket_path.to_str(), Some("@myapp"));
    /// ```
    pub fn new_abstract(name: impl Into<String>) -> Self {
        let name = name.into();
        let mut config = ServerConfig::new(format!("@{name}"));
        config.abstract_name = Some(name);
        // No file mode to keep others out: admit only our own uid until told otherwise, as a
        // socket file is owner-only by default.
        config.allowed_uids = vec![nix::unistd::geteuid().as_raw()];
        config
    }

    /// Serves only peers with these uids or `gids` (default: no restriction beyond the socket's
    /// permissions).
    pub fn with_allowed_peers(mut self, uids: Vec<u32>, gids: Vec<u32>) -> Self {
        self.allowed_uids = uids;
        self.allowed_gids = gids;
        self
    }

    /// True when a peer with these credentials may be served.
    pub fn allows_peer(&self, uid: u32, gid: u32) -> bool {
        peer_allowed(&self.allowed_uids, &self.allowed_gids, uid, gid)
    }

    /// Cancels handlers that run longer than `timeout` (default: never).
    pub fn with_handler_timeout(mut self, timeout: Duration) -> Self {
        self.handler_timeout = Some(timeout);
        self
    }

    /// Turns on the low-latency mode (see [`ServerConfig::read_spin`]); a zero window turns it
    /// off.
    pub fn with_read_spin(mut self, window: Duration) -> Self {
        self.read_spin = (!window.is_zero()).then_some(window);
        self
    }

    /// Closes connections whose last line stays incomplete this long (default 30 s).
    pub fn with_partial_message_timeout(mut self, timeout: Duration) -> Self {
        self.partial_message_timeout = timeout;
        self
    }

    /// Sets the socket's permission bits (default 0600). See [`parse_socket_mode`] for the
    /// string forms a configuration file may use.
    pub fn with_socket_mode(mut self, mode: u32) -> Self {
        self.socket_mode = mode & 0o777;
        self
    }

    /// Sets the socket file's group (default: the process's group).
    pub fn with_socket_group(mut self, gid: u32) -> Self {
        self.socket_group = Some(gid);
        self
    }

    /// Sets how long shutdown waits for in-flight requests (default 2 s).
    pub fn with_exit_timeout(mut self, timeout: Duration) -> Self {
        self.exit_timeout = timeout;
        self
    }

    /// Sets what one connection, and all together, may make the server hold (defaults 32 MiB
    /// and 512 MiB).
    pub fn with_max_held_bytes(mut self, per_connection: usize, total: usize) -> Self {
        self.max_held_bytes_per_connection = per_connection;
        self.max_held_bytes_total = total;
        self
    }

    /// Sets the longest accepted message (default 8 MiB).
    pub fn with_max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// Sets the connection limit (default 10,000).
    pub fn with_max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections;
        self
    }

    /// Sets how many connections one uid may hold (default a quarter of `max_connections`).
    pub fn with_max_connections_per_uid(mut self, connections: usize) -> Self {
        self.max_connections_per_uid = Some(connections);
        self
    }

    /// The per-uid cap in force: the one set, or a quarter of `max_connections` (at least 1).
    pub fn uid_connection_cap(&self) -> usize {
        self.max_connections_per_uid
            .unwrap_or((self.max_connections / DEFAULT_UID_SHARE_DIVISOR).max(1))
    }

    /// Sets the per-connection limit of requests running at once (default 1024; 0 is refused
    /// by [`validate`](Self::validate)).
    pub fn with_max_in_flight_per_connection(mut self, requests: usize) -> Self {
        self.max_in_flight_per_connection = requests;
        self
    }

    /// Sets the per-connection limit of streamed replies running at once (default 32; 0 is
    /// refused by [`validate`](Self::validate)).
    pub fn with_max_streams_per_connection(mut self, streams: usize) -> Self {
        self.max_streams_per_connection = streams;
        self
    }

    /// Sets the per-connection limit of unread reply bytes (default 16 MiB).
    pub fn with_max_outbound_bytes_per_connection(mut self, bytes: usize) -> Self {
        self.max_outbound_bytes_per_connection = bytes;
        self
    }

    /// Sets the statistics interval (default 60 s).
    pub fn with_stats_interval(mut self, interval: Duration) -> Self {
        self.stats_interval = interval;
        self
    }

    /// Adds WebSocket listeners (default: none).
    pub fn with_websocket(mut self, websocket: WebSocketConfig) -> Self {
        self.websocket = websocket;
        self
    }

    /// Sets the slow-response threshold (default 20 ms).
    pub fn with_slow_threshold(mut self, threshold: Duration) -> Self {
        self.slow_threshold = threshold;
        self
    }
}

/// A socket mode string that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid socket mode {given:?}: expected octal permission bits such as \"600\", \"0660\", \"777\" or \"=600\"")]
pub struct InvalidSocketMode {
    /// The text as given.
    pub given: String,
}

/// Parses a socket mode the way both seeds write it: the original's octal strings (`"777"`,
/// `"0660"`) and tremor's `"=600"`. Only permission bits (at most `0777`) are accepted.
///
/// ```
/// use pixl_ipc_server::parse_socket_mode;
/// assert_eq!(parse_socket_mode("777"), Ok(0o777));
/// assert_eq!(parse_socket_mode("0660"), Ok(0o660));
/// assert_eq!(parse_socket_mode("=600"), Ok(0o600));
/// assert!(parse_socket_mode("rw-rw----").is_err());
/// ```
///
/// # Errors
/// [`InvalidSocketMode`] for anything else.
pub fn parse_socket_mode(text: &str) -> Result<u32, InvalidSocketMode> {
    let invalid = || InvalidSocketMode {
        given: text.to_owned(),
    };
    let digits = text.trim();
    let digits = digits.strip_prefix('=').unwrap_or(digits);
    let digits = digits.strip_prefix("0o").unwrap_or(digits);
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return Err(invalid());
    }
    let mode = u32::from_str_radix(digits, 8).map_err(|_| invalid())?;
    if mode > 0o777 {
        return Err(invalid());
    }
    Ok(mode)
}

/// Default WebSocket listen backlog (tremor's `backlog` option).
pub const DEFAULT_WS_BACKLOG: u32 = 1024;
/// Default number of WebSocket handshakes (TCP accepted, upgrade not yet done) in progress at
/// once; more are closed at once. They take no connection slot until the upgrade is through.
pub const DEFAULT_WS_MAX_HANDSHAKES: usize = 64;
/// Default interval between the server's WebSocket pings.
pub const DEFAULT_WS_PING_INTERVAL: Duration = Duration::from_secs(20);
/// Default time a WebSocket peer may stay silent (no frame, not even a pong) before it is
/// dropped.
pub const DEFAULT_WS_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// WebSocket listeners and the rules a network-facing listener needs. Off unless `listen` names
/// at least one address.
///
/// Who may connect, by default: any client that sends no `Origin` header (non-browser
/// programs), and web pages whose origin has the host and port the request was sent to (the
/// `Host` header; a host name other than `localhost` only over TLS, so DNS rebinding cannot
/// make another site's page same-origin). Any other page gets HTTP 403 before a handler runs:
/// otherwise every web site open in the user's browser could call every handler. Add pages
/// with [`allow_origin`](Self::allow_origin); [`allow_any_origin`](Self::allow_any_origin)
/// lets every page in (the server logs a warning). The uid allow-list of
/// [`ServerConfig::allowed_uids`] applies to peers on this machine as well.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WebSocketConfig {
    /// Addresses to listen on (`127.0.0.1:7070`, port 0 for any free port).
    pub listen: Vec<SocketAddr>,
    /// Certificate and key: when set, every WebSocket listener speaks `wss://` only.
    pub tls: Option<TlsFiles>,
    /// When set, the upgrade request must carry `Authorization: Bearer <token>`, the
    /// subprotocol entry `pixl-ipc.bearer.<base64url(token) without padding>` (next to
    /// `pixl-ipc`, which the server then selects; browsers can send it, and it stays out of
    /// URLs) or `?token=<token>`; otherwise it gets HTTP 401.
    pub token: Option<String>,
    /// Origins allowed besides the same-origin ones (see the type's documentation), e.g.
    /// `http://localhost:8080`: compared exactly, or as scheme, case-insensitive host and port
    /// (default ports filled in). An upgrade whose `Origin` is neither same-origin nor listed
    /// gets HTTP 403; requests without an `Origin` header (which browsers always send) are
    /// allowed.
    pub allowed_origins: Vec<String>,
    /// Accept upgrades from every `Origin`: any web page may call every handler (default
    /// false). Set it with [`allow_any_origin`](Self::allow_any_origin).
    pub any_origin: bool,
    /// Listen backlog (default [`DEFAULT_WS_BACKLOG`]).
    pub backlog: u32,
    /// Handshakes in progress at once (default [`DEFAULT_WS_MAX_HANDSHAKES`]).
    pub max_handshakes: usize,
    /// How often the server pings each peer (default [`DEFAULT_WS_PING_INTERVAL`]).
    pub ping_interval: Duration,
    /// A peer silent for this long is disconnected (default [`DEFAULT_WS_IDLE_TIMEOUT`]).
    pub idle_timeout: Duration,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        WebSocketConfig {
            listen: Vec::new(),
            tls: None,
            token: None,
            allowed_origins: Vec::new(),
            any_origin: false,
            backlog: DEFAULT_WS_BACKLOG,
            max_handshakes: DEFAULT_WS_MAX_HANDSHAKES,
            ping_interval: DEFAULT_WS_PING_INTERVAL,
            idle_timeout: DEFAULT_WS_IDLE_TIMEOUT,
        }
    }
}

impl std::fmt::Debug for WebSocketConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketConfig")
            .field("listen", &self.listen)
            .field("tls", &self.tls)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("allowed_origins", &self.allowed_origins)
            .field("any_origin", &self.any_origin)
            .field("backlog", &self.backlog)
            .field("max_handshakes", &self.max_handshakes)
            .field("ping_interval", &self.ping_interval)
            .field("idle_timeout", &self.idle_timeout)
            .finish()
    }
}

impl WebSocketConfig {
    /// Adds a listen address.
    pub fn listen_on(mut self, address: SocketAddr) -> Self {
        self.listen.push(address);
        self
    }

    /// Serves `wss://` with this PEM certificate chain and private key.
    pub fn with_tls(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls = Some(TlsFiles {
            cert: cert.into(),
            key: key.into(),
        });
        self
    }

    /// Requires this bearer token at the upgrade.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Also allows upgrade requests from this `Origin` (e.g. `http://localhost:8080`), besides
    /// same-origin pages. `"*"` is [`allow_any_origin`](Self::allow_any_origin).
    pub fn allow_origin(mut self, origin: impl Into<String>) -> Self {
        let origin = origin.into();
        if origin == "*" {
            return self.allow_any_origin();
        }
        self.allowed_origins.push(origin);
        self
    }

    /// Allows upgrade requests from every `Origin`: every web page open in a browser that can
    /// reach the listener may call every handler (with the token, when one is set). The server
    /// logs a warning at start.
    pub fn allow_any_origin(mut self) -> Self {
        self.any_origin = true;
        self
    }

    /// Sets the ping interval and the idle timeout.
    pub fn with_keepalive(mut self, ping_interval: Duration, idle_timeout: Duration) -> Self {
        self.ping_interval = ping_interval;
        self.idle_timeout = idle_timeout;
        self
    }

    /// Sets how many handshakes may be in progress at once.
    pub fn with_max_handshakes(mut self, handshakes: usize) -> Self {
        self.max_handshakes = handshakes;
        self
    }

    /// Sets the listen backlog.
    pub fn with_backlog(mut self, backlog: u32) -> Self {
        self.backlog = backlog;
        self
    }
}

/// PEM files for `wss://`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The allow-list rule: no list admits everyone; otherwise the uid or the gid must be listed.
pub(crate) fn peer_allowed(uids: &[u32], gids: &[u32], uid: u32, gid: u32) -> bool {
    (uids.is_empty() && gids.is_empty()) || uids.contains(&uid) || gids.contains(&gid)
}

//! Command-line flags and the optional JSON config file (including the original's pixl-server
//! shape), merged into a [`ServerConfig`]: flags win over the file, the file over defaults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use pixl_ipc_server::{parse_socket_mode, ServerConfig, WebSocketConfig};
use serde::Deserialize;
use serde_json::Value;

/// Signals, files and limits, printed after the flag list.
const AFTER_HELP: &str = "\
Signals: SIGTERM, SIGINT and SIGQUIT drain (answer what was read, within --exit-timeout-ms) and
stop; a second one stops at once. SIGHUP, SIGUSR1 and SIGUSR2 are logged and ignored.
Files: the socket, and <socket>.lock beside it, an flock held while the server runs so two
servers never share a path. The lock file is never deleted (deleting it would let two servers
lock two different files); the socket is removed at exit if it is still ours.
Limits: a zero or out-of-range value is refused at start with the range allowed; durations are
at most a year.";

/// A pixl-ipc compatible RPC server on a UNIX domain socket.
#[derive(Debug, Parser)]
#[command(name = "pixl-ipc-server", version, about, long_about = None, after_help = AFTER_HELP)]
pub(crate) struct Args {
    /// Socket path [default: $XDG_RUNTIME_DIR/pixl-ipc.sock, or /tmp/pixl-ipc.sock]
    #[arg(long, env = "PIXL_IPC_SOCKET")]
    pub(crate) socket: Option<PathBuf>,
    /// Socket permissions: octal ("600", "0660", "777") or "=600" [default: 600, owner only]
    #[arg(long, value_name = "MODE")]
    pub(crate) chmod: Option<String>,
    /// Group owning the socket file, by name or numeric id
    #[arg(long, value_name = "GROUP")]
    pub(crate) group: Option<String>,
    /// How long shutdown waits for in-flight requests [default: 2000]
    #[arg(long, value_name = "MS")]
    pub(crate) exit_timeout_ms: Option<u64>,
    /// Longest accepted message in bytes [default: 8388608 (8 MiB)]
    #[arg(long, value_name = "BYTES")]
    pub(crate) max_message_bytes: Option<usize>,
    /// Most connections at once [default: 10000]
    #[arg(long, value_name = "N")]
    pub(crate) max_connections: Option<usize>,
    /// Most connections one peer uid may hold (UNIX socket; loopback WebSocket peers when an
    /// allow-list is set) [default: a quarter of --max-connections]
    #[arg(long, value_name = "N")]
    pub(crate) max_connections_per_uid: Option<usize>,
    /// Most requests running at once on one connection [default: 1024]
    #[arg(long, value_name = "N")]
    pub(crate) max_in_flight: Option<usize>,
    /// Unread reply bytes per connection before its reading pauses [default: 16777216]
    #[arg(long, value_name = "BYTES")]
    pub(crate) max_outbound_bytes: Option<usize>,
    /// Bytes one connection may make the server hold (unread replies, requests being handled,
    /// their data parsed for handlers) before its reading pauses [default: 33554432 (32 MiB)]
    #[arg(long, value_name = "BYTES")]
    pub(crate) max_held_bytes: Option<usize>,
    /// Bytes all connections together may make the server hold [default: 536870912 (512 MiB)]
    #[arg(long, value_name = "BYTES")]
    pub(crate) max_held_bytes_total: Option<usize>,
    /// Statistics interval: "second", "minute", "hour", or milliseconds [default: minute]
    #[arg(long, value_name = "INTERVAL")]
    pub(crate) stats_interval: Option<String>,
    /// Responses slower than this count as slow [default: 20]
    #[arg(long, value_name = "MS")]
    pub(crate) slow_threshold_ms: Option<u64>,
    /// JSON config file: flat keys, or the original's {"IPCServer": {...}} section
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Also serve WebSockets on ADDR, e.g. 127.0.0.1:7070 (repeatable; off by default)
    #[arg(long = "ws", value_name = "ADDR")]
    pub(crate) ws: Vec<std::net::SocketAddr>,
    /// PEM certificate chain: WebSocket listeners speak wss:// only (needs --tls-key)
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// File holding the bearer token WebSocket clients must present (or set PIXL_IPC_WS_TOKEN):
    /// as `Authorization: Bearer <token>`, as the subprotocols `pixl-ipc,
    /// pixl-ipc.bearer.<base64url(token), unpadded>` (browsers; kept out of URLs) or as
    /// `?token=<token>`
    #[arg(long, value_name = "FILE")]
    pub(crate) ws_token_file: Option<PathBuf>,
    /// Also allow web pages from ORIGIN, e.g. http://localhost:8080, to open WebSockets
    /// (repeatable; '*' allows every page, with a warning) [default: same-origin pages only;
    /// clients that send no Origin are always allowed]
    #[arg(long = "ws-origin", value_name = "ORIGIN")]
    pub(crate) ws_origins: Vec<String>,
    /// WebSocket listen backlog [default: 1024]
    #[arg(long, value_name = "N")]
    pub(crate) ws_backlog: Option<u32>,
    /// Interval between WebSocket pings [default: 20000]
    #[arg(long, value_name = "MS")]
    pub(crate) ws_ping_interval_ms: Option<u64>,
    /// Drop a WebSocket peer silent for this long [default: 60000]
    #[arg(long, value_name = "MS")]
    pub(crate) ws_idle_timeout_ms: Option<u64>,
    /// Threads that serve connections, each connection staying on one [default: half the CPU
    /// cores, at least 1: the clients share the machine]
    #[arg(long, value_name = "N")]
    pub(crate) threads: Option<usize>,
    /// Cancel handlers running longer than this and answer handler_timeout [default: never]
    #[arg(long, value_name = "MS")]
    pub(crate) handler_timeout_ms: Option<u64>,
    /// Close connections whose last line stays incomplete this long [default: 30000]
    #[arg(long, value_name = "MS")]
    pub(crate) partial_message_timeout_ms: Option<u64>,
    /// Serve only peers with this uid: UNIX-socket peers, and WebSocket peers on this machine
    /// (uid of their TCP socket); remote WebSocket peers then need the token (repeatable; with
    /// --allow-gid: either matches)
    #[arg(long = "allow-uid", value_name = "UID")]
    pub(crate) allow_uids: Vec<u32>,
    /// Serve only UNIX-socket peers with this gid (repeatable; a WebSocket peer's gid is
    /// unknown, so it never admits one)
    #[arg(long = "allow-gid", value_name = "GID")]
    pub(crate) allow_gids: Vec<u32>,
    /// Forward requests whose uri matches PATTERN to the pixl-ipc server at ADDRESS (unix:PATH,
    /// ws://HOST:PORT/, wss://HOST:PORT/), relaying its replies; repeatable, tried in order
    /// after the built-ins. PATTERN starting with ^ is a regex searched in the uri (^/myapi/:
    /// every uri under /myapi/), else it must match the whole uri (/myapi/hello). An upstream
    /// that is down is answered upstream_unavailable at once while the server reconnects
    #[arg(long = "forward", value_name = "PATTERN=ADDRESS")]
    pub(crate) forwards: Vec<String>,
    /// How long a forwarded request waits for its upstream's reply before upstream_timeout
    /// [default: 10000]
    #[arg(long, value_name = "MS")]
    pub(crate) forward_timeout_ms: Option<u64>,
}

/// The keys a config file may set, named as the original's `IPCServer` section names them.
#[derive(Debug, Default, Deserialize)]
struct FileConfig {
    socket_path: Option<PathBuf>,
    socket_chmod: Option<Value>,
    socket_group: Option<Value>,
    exit_timeout: Option<u64>,
    max_message_bytes: Option<usize>,
    max_connections: Option<usize>,
    max_connections_per_uid: Option<usize>,
    max_in_flight: Option<usize>,
    max_outbound_bytes: Option<usize>,
    max_held_bytes: Option<usize>,
    max_held_bytes_total: Option<usize>,
    log_stats_interval: Option<Value>,
    slow_threshold_ms: Option<u64>,
    forward: Option<Vec<FileForward>>,
    forward_timeout_ms: Option<u64>,
}

/// One entry of the config file's `"forward"` list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileForward {
    pattern: String,
    address: String,
}

const FILE_KEYS: &[&str] = &[
    "socket_path",
    "socket_chmod",
    "socket_group",
    "exit_timeout",
    "max_message_bytes",
    "max_connections",
    "max_connections_per_uid",
    "max_in_flight",
    "max_outbound_bytes",
    "max_held_bytes",
    "max_held_bytes_total",
    "log_stats_interval",
    "slow_threshold_ms",
    "forward",
    "forward_timeout_ms",
];

/// Builds the server settings from the flags and the config file they name.
pub(crate) fn resolve(args: &Args) -> anyhow::Result<ServerConfig> {
    let file = match &args.config {
        Some(path) => read_file_config(path)?,
        None => FileConfig::default(),
    };
    let socket = args
        .socket
        .clone()
        .or(file.socket_path)
        .unwrap_or_else(pixl_ipc_io::default_socket_path);
    let mut config = ServerConfig::new(socket);

    let chmod = match (&args.chmod, &file.socket_chmod) {
        (Some(flag), _) => Some(flag.clone()),
        (None, Some(Value::String(text))) => Some(text.clone()),
        (None, Some(Value::Number(number))) => Some(number.to_string()),
        (None, Some(other)) => bail!("socket_chmod must be a string such as \"660\", not {other}"),
        (None, None) => None,
    };
    if let Some(chmod) = chmod {
        config = config.with_socket_mode(parse_socket_mode(&chmod)?);
    }
    let group = match (&args.group, &file.socket_group) {
        (Some(flag), _) => Some(flag.clone()),
        (None, Some(Value::String(text))) => Some(text.clone()),
        (None, Some(Value::Number(number))) => Some(number.to_string()),
        (None, Some(other)) => bail!("socket_group must be a group name or id, not {other}"),
        (None, None) => None,
    };
    if let Some(group) = group {
        config = config.with_socket_group(resolve_group(&group)?);
    }
    if let Some(ms) = args.exit_timeout_ms.or(file.exit_timeout) {
        config = config.with_exit_timeout(Duration::from_millis(ms));
    }
    if let Some(bytes) = args.max_message_bytes.or(file.max_message_bytes) {
        config = config.with_max_message_bytes(bytes);
    }
    if let Some(count) = args.max_connections.or(file.max_connections) {
        config = config.with_max_connections(count);
    }
    if let Some(count) = args
        .max_connections_per_uid
        .or(file.max_connections_per_uid)
    {
        config = config.with_max_connections_per_uid(count);
    }
    if let Some(count) = args.max_in_flight.or(file.max_in_flight) {
        config = config.with_max_in_flight_per_connection(count);
    }
    if let Some(bytes) = args.max_outbound_bytes.or(file.max_outbound_bytes) {
        config = config.with_max_outbound_bytes_per_connection(bytes);
    }
    let held = args.max_held_bytes.or(file.max_held_bytes);
    let held_total = args.max_held_bytes_total.or(file.max_held_bytes_total);
    if held.is_some() || held_total.is_some() {
        let per_connection = held.unwrap_or(config.max_held_bytes_per_connection);
        let total = held_total.unwrap_or(config.max_held_bytes_total);
        config = config.with_max_held_bytes(per_connection, total);
    }
    let interval = match (&args.stats_interval, file.log_stats_interval) {
        (Some(flag), _) => Some(Value::String(flag.clone())),
        (None, file_value) => file_value,
    };
    if let Some(interval) = interval {
        config = config.with_stats_interval(parse_interval(&interval)?);
    }
    if let Some(ms) = args.slow_threshold_ms.or(file.slow_threshold_ms) {
        config = config.with_slow_threshold(Duration::from_millis(ms));
    }
    if let Some(ms) = args.handler_timeout_ms {
        config = config.with_handler_timeout(Duration::from_millis(ms));
    }
    if let Some(ms) = args.partial_message_timeout_ms {
        config = config.with_partial_message_timeout(Duration::from_millis(ms));
    }
    config = config.with_allowed_peers(args.allow_uids.clone(), args.allow_gids.clone());
    config.worker_threads = Some(args.threads.unwrap_or_else(default_worker_threads));
    Ok(config.with_websocket(websocket(args)?))
}

/// The forwards to set up: the `--forward` flags, or when there is none the config file's
/// `"forward"` list (flags win over the file, as for every setting).
pub(crate) fn forwards(args: &Args) -> anyhow::Result<Vec<pixl_ipc_server::ForwardSpec>> {
    let file = match &args.config {
        Some(path) => read_file_config(path)?,
        None => FileConfig::default(),
    };
    let timeout = match args.forward_timeout_ms.or(file.forward_timeout_ms) {
        Some(0) => bail!("--forward-timeout-ms must be more than 0"),
        Some(ms) => Duration::from_millis(ms),
        None => pixl_ipc_server::DEFAULT_FORWARD_TIMEOUT,
    };
    let specs = if args.forwards.is_empty() {
        file.forward
            .unwrap_or_default()
            .into_iter()
            .map(|entry| pixl_ipc_server::ForwardSpec::new(entry.pattern, entry.address))
            .collect()
    } else {
        let mut specs = Vec::with_capacity(args.forwards.len());
        for text in &args.forwards {
            specs.push(text.parse::<pixl_ipc_server::ForwardSpec>()?);
        }
        specs
    };
    Ok(specs
        .into_iter()
        .map(|spec| spec.with_timeout(timeout))
        .collect())
}

/// Half the cores, at least one. The callers of a local server run on the same machine: with
/// a worker per core the server's threads competed with them (cargo run -p pixl-ipc-benches
/// --bin load on 2 cores: 16 connections x 128 in flight, 208k req/s with 2 workers, 282k
/// with 1).
fn default_worker_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |cores| (cores.get() / 2).max(1))
}

fn websocket(args: &Args) -> anyhow::Result<WebSocketConfig> {
    let mut ws = WebSocketConfig::default();
    for address in &args.ws {
        ws = ws.listen_on(*address);
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        ws = ws.with_tls(cert, key);
    }
    let file = args.ws_token_file.as_deref();
    let token = pixl_ipc_io::read_token(file).with_context(|| {
        format!(
            "cannot read the token file {}",
            file.unwrap_or(Path::new("")).display()
        )
    })?;
    if let Some(token) = token {
        ws = ws.with_token(token);
    }
    for origin in &args.ws_origins {
        ws = ws.allow_origin(origin);
    }
    if let Some(backlog) = args.ws_backlog {
        ws = ws.with_backlog(backlog);
    }
    let ping = args
        .ws_ping_interval_ms
        .map_or(ws.ping_interval, Duration::from_millis);
    let idle = args
        .ws_idle_timeout_ms
        .map_or(ws.idle_timeout, Duration::from_millis);
    Ok(ws.with_keepalive(ping, idle))
}

fn read_file_config(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let root: Value = serde_json::from_str(&text)
        .with_context(|| format!("config file {} is not valid JSON", path.display()))?;
    // The original's pixl-server config nests our settings under "IPCServer" beside settings
    // of other components, which are none of our business.
    let section = match root.get("IPCServer") {
        Some(section) => section.clone(),
        None => root,
    };
    let Value::Object(map) = &section else {
        bail!("config file {}: expected a JSON object", path.display());
    };
    for key in map.keys().filter(|key| !FILE_KEYS.contains(&key.as_str())) {
        tracing::warn!(key, file = %path.display(), "ignoring unknown config key");
    }
    serde_json::from_value(section).with_context(|| {
        format!(
            "config file {}: a setting has the wrong type",
            path.display()
        )
    })
}

/// Accepts pixl-server's event names or a number of milliseconds.
fn parse_interval(value: &Value) -> anyhow::Result<Duration> {
    let ms = match value {
        Value::Number(number) => number.as_u64(),
        Value::String(text) => match text.as_str() {
            "second" => Some(1_000),
            "minute" => Some(60_000),
            "hour" => Some(3_600_000),
            "day" => Some(86_400_000),
            other => other.parse().ok(),
        },
        _ => None,
    };
    match ms {
        Some(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
        _ => bail!("invalid stats interval {value}: use \"second\", \"minute\", \"hour\", \"day\" or milliseconds"),
    }
}

fn resolve_group(group: &str) -> anyhow::Result<u32> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(group) {
        Ok(Some(found)) => Ok(found.gid.as_raw()),
        Ok(None) => bail!("no group named {group:?}"),
        Err(err) => bail!("cannot look up group {group:?}: {err}"),
    }
}

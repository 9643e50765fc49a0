//! Command-line flags and the optional JSON config file (including the original's pixl-server
//! shape), merged into a [`ServerConfig`]: flags win over the file, the file over defaults.

use std::net::{SocketAddr, ToSocketAddrs};
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
stop; a second one stops at once. SIGHUP reloads, keeping every connection: it re-reads
--ws-token-file and the --config file's allowed_uids, allowed_gids and log_level (flags, and
PIXL_IPC_WS_TOKEN, are fixed for the life of the process and win over the file), applies them
to new connections, and logs what changed (never the token); a reload that fails (unreadable or
empty token file, invalid config) keeps every old setting and logs why. SIGUSR1 and SIGUSR2 are
logged and ignored.
Logs: on stderr, as text or (--log-format json) one JSON object a line with timestamp, level,
target, message and the event's fields. The level: --log-level, else RUST_LOG, else the config
file's log_level, else info; each an EnvFilter directive such as 'debug' or
'info,pixl_ipc_server=debug'. A fatal error is one line (a JSON object with --log-format json).
WebSockets: --ws takes an IP address or a host name with a port; a name is resolved at start
and every address it gives is bound (localhost: 127.0.0.1 and ::1 where both are listed); if
one cannot be bound the server does not start. Name one address to bind only it.
Files: the socket, and <socket>.lock beside it, an flock held while the server runs so two
servers never share a path. The lock file is never deleted (deleting it would let two servers
lock two different files); the socket is removed at exit if it is still ours. An abstract
socket (--socket @NAME, Linux) has neither: the kernel refuses a second server on the name.
systemd: with LISTEN_FDS/LISTEN_PID (a .socket unit) the passed UNIX socket is served instead of
--socket, and passed TCP sockets as WebSocket listeners; a passed socket is never chmod'ed,
chown'ed, locked or removed (the .socket unit owns it). With NOTIFY_SOCKET (Type=notify) the
server sends READY=1 once listening, STATUS= each stats interval, STOPPING=1 when draining, and
WATCHDOG=1 every half WATCHDOG_USEC. Unit files: contrib/systemd/ in the repository.
Limits: a zero or out-of-range value is refused at start with the range allowed; durations are
at most a year.";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines (colored on a terminal).
    Text,
    /// One JSON object a line: timestamp, level, target, message and the event's fields.
    Json,
}

/// A pixl-ipc compatible RPC server on a UNIX domain socket.
#[derive(Debug, Parser)]
#[command(name = "pixl-ipc-server", version, about, long_about = None, after_help = AFTER_HELP)]
pub(crate) struct Args {
    /// Socket path, or @NAME for a Linux abstract socket (no file; use --allow-uid/--allow-gid
    /// to limit who connects; ./@x is a file named @x) [default: $XDG_RUNTIME_DIR/pixl-ipc.sock,
    /// or /tmp/pixl-ipc.sock]
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
    /// Most streamed replies running at once on one connection; more are refused
    /// [default: 32]
    #[arg(long, value_name = "N")]
    pub(crate) max_streams: Option<usize>,
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
    /// Also serve WebSockets on ADDR, e.g. 127.0.0.1:7070 or localhost:7070: a host name
    /// binds every address it resolves to (repeatable; off by default)
    #[arg(long = "ws", value_name = "ADDR")]
    pub(crate) ws: Vec<String>,
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
    /// Low-latency mode: after a UNIX-socket connection receives a line, busy-poll it this
    /// long for the next instead of sleeping (1-1000; costs up to that much CPU per line
    /// received; only worth it with clients on other CPUs) [default: off]
    #[arg(long, value_name = "US")]
    pub(crate) spin_us: Option<u64>,
    /// Serve only peers with this uid: UNIX-socket peers, and WebSocket peers on this machine
    /// (uid of their TCP socket); remote WebSocket peers then need the token (repeatable; with
    /// --allow-gid: either matches)
    #[arg(long = "allow-uid", value_name = "UID")]
    pub(crate) allow_uids: Vec<u32>,
    /// Serve only UNIX-socket peers with this gid (repeatable; a WebSocket peer's gid is
    /// unknown, so it never admits one)
    #[arg(long = "allow-gid", value_name = "GID")]
    pub(crate) allow_gids: Vec<u32>,
    /// Log line format on stderr
    #[arg(long, value_enum, value_name = "FORMAT", default_value = "text")]
    pub(crate) log_format: LogFormat,
    /// Log level or filter, e.g. debug or "info,pixl_ipc_server=debug"; overrides RUST_LOG and
    /// the config file's log_level, and is then fixed (SIGHUP does not change it) [default:
    /// RUST_LOG, else the config file's log_level, else info]
    #[arg(long, value_name = "LEVEL", value_parser = parse_log_level)]
    pub(crate) log_level: Option<String>,
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

/// Accepts what `EnvFilter` accepts, so a typo fails at the flag, not silently later.
fn parse_log_level(text: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(text)
        .map(|_| text.to_owned())
        .map_err(|err| format!("not a log level or filter: {err}"))
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
    max_streams: Option<usize>,
    max_outbound_bytes: Option<usize>,
    max_held_bytes: Option<usize>,
    max_held_bytes_total: Option<usize>,
    log_stats_interval: Option<Value>,
    slow_threshold_ms: Option<u64>,
    allowed_uids: Option<Vec<u32>>,
    allowed_gids: Option<Vec<u32>>,
    log_level: Option<String>,
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
    "max_streams",
    "max_outbound_bytes",
    "max_held_bytes",
    "max_held_bytes_total",
    "log_stats_interval",
    "slow_threshold_ms",
    "allowed_uids",
    "allowed_gids",
    "log_level",
    "forward",
    "forward_timeout_ms",
];

/// Builds the server settings from the flags and the config file they name.
pub(crate) fn resolve(args: &Args) -> anyhow::Result<ServerConfig> {
    let file = match &args.config {
        Some(path) => read_file_config(path, true)?,
        None => FileConfig::default(),
    };
    let (uids, gids) = allow_list(args, &file);
    let socket = args
        .socket
        .clone()
        .or(file.socket_path)
        .unwrap_or_else(pixl_ipc_io::default_socket_path);
    let abstract_name = socket
        .to_str()
        .and_then(|text| text.strip_prefix('@'))
        .map(str::to_owned);
    let mut config = match abstract_name {
        Some(name) => {
            // There is no file to give a mode or a group: say so rather than ignore the flag.
            if args.chmod.is_some() || file.socket_chmod.is_some() {
                bail!("--chmod (socket_chmod) cannot apply to the abstract socket {}: it has no file; limit who may connect with --allow-uid/--allow-gid", socket.display());
            }
            if args.group.is_some() || file.socket_group.is_some() {
                bail!("--group (socket_group) cannot apply to the abstract socket {}: it has no file; limit who may connect with --allow-gid", socket.display());
            }
            ServerConfig::new_abstract(name)
        }
        None => ServerConfig::new(&socket),
    };

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
    if let Some(count) = args.max_streams.or(file.max_streams) {
        config = config.with_max_streams_per_connection(count);
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
    // Set as given, not through `with_read_spin`, so `--spin-us 0` is refused, not read as off.
    config.read_spin = args.spin_us.map(Duration::from_micros);
    config = config.with_allowed_peers(uids, gids);
    config.worker_threads = Some(args.threads.unwrap_or_else(default_worker_threads));
    Ok(config.with_websocket(websocket(args)?))
}

/// The forwards to set up: the `--forward` flags, or when there is none the config file's
/// `"forward"` list (flags win over the file, as for every setting).
pub(crate) fn forwards(args: &Args) -> anyhow::Result<Vec<pixl_ipc_server::ForwardSpec>> {
    let file = match &args.config {
        Some(path) => read_file_config(path, false)?,
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

/// The uid/gid allow-list: the flags when either is given (fixed for the process's life), else
/// the config file's `allowed_uids` and `allowed_gids`. An abstract socket with neither admits
/// only our own uid: it has no file mode, so without a list anyone in the network namespace
/// could connect, where a socket file is owner-only by default.
fn allow_list(args: &Args, file: &FileConfig) -> (Vec<u32>, Vec<u32>) {
    let (uids, gids) = if !args.allow_uids.is_empty() || !args.allow_gids.is_empty() {
        (args.allow_uids.clone(), args.allow_gids.clone())
    } else {
        (
            file.allowed_uids.clone().unwrap_or_default(),
            file.allowed_gids.clone().unwrap_or_default(),
        )
    };
    let socket = args.socket.as_ref().or(file.socket_path.as_ref());
    let is_abstract = socket.is_some_and(|path| path.to_string_lossy().starts_with('@'));
    if is_abstract && uids.is_empty() && gids.is_empty() {
        return (vec![nix::unistd::geteuid().as_raw()], gids);
    }
    (uids, gids)
}

/// Where the log level in force comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LevelSource {
    /// `--log-level`: fixed.
    Flag,
    /// `RUST_LOG`: fixed.
    Env,
    /// The config file's `log_level`: a reload re-reads it.
    File,
    /// Nothing set: `info`.
    Default,
}

/// The log filter before the config file is read: `--log-level`, else `RUST_LOG`, else `info`.
pub(crate) fn initial_log_level(args: &Args) -> (String, LevelSource) {
    log_level(args, None)
}

fn log_level(args: &Args, file: Option<&str>) -> (String, LevelSource) {
    if let Some(level) = &args.log_level {
        return (level.clone(), LevelSource::Flag);
    }
    match std::env::var("RUST_LOG") {
        Ok(env) if !env.trim().is_empty() => (env, LevelSource::Env),
        _ => match file {
            Some(level) => (level.to_owned(), LevelSource::File),
            None => ("info".to_owned(), LevelSource::Default),
        },
    }
}

/// The log filter once the config file is known: as [`initial_log_level`], with the file's
/// `log_level` before the default.
pub(crate) fn start_log_level(args: &Args) -> anyhow::Result<(String, LevelSource)> {
    let file = match &args.config {
        // `resolve` read it already, and warned.
        Some(path) => read_file_config(path, false)?,
        None => FileConfig::default(),
    };
    let level = log_level(args, file.log_level.as_deref());
    if let Err(err) = tracing_subscriber::EnvFilter::try_new(&level.0) {
        // An invalid RUST_LOG was already reported when logging started ("logging at info"):
        // keep that promise rather than refuse the start naming the config key.
        if level.1 == LevelSource::Env {
            return Ok(("info".to_owned(), LevelSource::Default));
        }
        bail!(
            "log_level {:?} is not a log level or filter: {err}",
            level.0
        );
    }
    Ok(level)
}

/// What a reload (SIGHUP) re-reads: the token file, and the config file's allow-list and log
/// level. Flags and `PIXL_IPC_WS_TOKEN` are fixed for the process's life.
pub(crate) struct Reload {
    /// The token from `--ws-token-file`; `None` when no token file is named (the token in
    /// force, if any, came from the environment and stays).
    pub(crate) token: Option<String>,
    /// The uid/gid allow-list (see [`allow_list`]).
    pub(crate) allowed_uids: Vec<u32>,
    /// See `allowed_uids`.
    pub(crate) allowed_gids: Vec<u32>,
    /// The log filter, checked, and where it comes from.
    pub(crate) log_level: (String, LevelSource),
}

/// Re-reads what a reload may change; any error leaves the caller's settings as they are.
pub(crate) fn reload(args: &Args) -> anyhow::Result<Reload> {
    let file = match &args.config {
        Some(path) => read_file_config(path, true)?,
        None => FileConfig::default(),
    };
    let token = match &args.ws_token_file {
        Some(path) => {
            let token = pixl_ipc_io::read_token(Some(path))
                .with_context(|| format!("cannot read the token file {}", path.display()))?;
            // An empty file would remove the token and open the listeners to everyone: more
            // likely a file caught half-written than a wish.
            let Some(token) = token else {
                bail!("the token file {} is empty", path.display());
            };
            Some(token)
        }
        None => None,
    };
    let level = log_level(args, file.log_level.as_deref());
    if let Err(err) = tracing_subscriber::EnvFilter::try_new(&level.0) {
        bail!(
            "log_level {:?} is not a log level or filter: {err}",
            level.0
        );
    }
    let (allowed_uids, allowed_gids) = allow_list(args, &file);
    Ok(Reload {
        token,
        allowed_uids,
        allowed_gids,
        log_level: level,
    })
}

/// Resolves each `--ws` address: an IP address with a port as it is, a host name to every
/// address it has (as nginx does). Resolution runs once, at start, before anything listens, so
/// the blocking lookup holds nothing up.
fn ws_addresses(given: &[String]) -> anyhow::Result<Vec<SocketAddr>> {
    let mut addresses = Vec::new();
    for text in given {
        let resolved: Vec<SocketAddr> = text
            .to_socket_addrs()
            .with_context(|| {
                format!("--ws {text}: cannot resolve it (expected HOST:PORT, e.g. 127.0.0.1:7070 or localhost:7070)")
            })?
            .collect();
        if resolved.is_empty() {
            bail!("--ws {text}: the name has no address");
        }
        for address in resolved {
            if !addresses.contains(&address) {
                addresses.push(address);
            }
        }
    }
    Ok(addresses)
}

fn websocket(args: &Args) -> anyhow::Result<WebSocketConfig> {
    let mut ws = WebSocketConfig::default();
    for address in ws_addresses(&args.ws)? {
        ws = ws.listen_on(address);
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
    // An empty file given on purpose would silently open the listeners to everyone (a reload
    // refuses it for the same reason).
    if let (Some(path), None) = (file, &token) {
        bail!(
            "the token file {} is empty: put the token in it, or drop --ws-token-file",
            path.display()
        );
    }
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

/// Reads the config file; `warn`: log each key it does not know (once per reading that matters:
/// not again when the same start reads it a second time).
fn read_file_config(path: &Path, warn: bool) -> anyhow::Result<FileConfig> {
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
    for key in map
        .keys()
        .filter(|key| warn && !FILE_KEYS.contains(&key.as_str()))
    {
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

//! Why the server could not start.
//!
//! Each error's `Display` says what failed, and only that; the OS error that caused it is its
//! [`source`](std::error::Error::source), never repeated in the text. Print the whole chain
//! (anyhow's `{:#}`, or walk `source()`) to show both, each once: an error that also wrote its
//! source into its own text printed the cause twice (`...(os error 98): ...(os error 98)`).

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A failure to start the server. Each names the socket path and says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Another process is accepting connections on the path, or another server holds the
    /// path's lock file (`<path>.lock`: it is running or starting on the path).
    #[error("{path} is in use by a running server (a connection to it succeeded, or another server holds {path}.lock); stop that server or choose another --socket")]
    SocketInUse {
        /// The socket path.
        path: PathBuf,
    },
    /// Another socket is bound to the abstract name: the kernel refused the bind. There is no
    /// file and no lock file for an abstract socket; the name itself is the lock.
    #[error("abstract socket @{name} is in use by another process (bind: address in use); stop that server or choose another --socket @NAME")]
    AbstractNameInUse {
        /// The abstract name, without the `@`.
        name: String,
    },
    /// The path exists and is not a socket; it is left untouched.
    #[error("{path} exists and is a {kind}, not a socket; refusing to replace it")]
    NotASocket {
        /// The path.
        path: PathBuf,
        /// What it is instead ("regular file", "directory", ...).
        kind: &'static str,
    },
    /// The path is longer than a UNIX socket address can hold.
    #[error(
        "socket path {path} is {length} bytes long; the limit on this system is {limit} bytes"
    )]
    PathTooLong {
        /// The path.
        path: PathBuf,
        /// Its length in bytes.
        length: usize,
        /// The longest path a socket address holds.
        limit: usize,
    },
    /// An existing socket could not be probed (for example no permission to connect to it), so
    /// it is left alone.
    #[error("cannot tell whether {path} belongs to a running server")]
    CannotProbe {
        /// The path.
        path: PathBuf,
        /// The OS error from connecting to it.
        source: io::Error,
    },
    /// Creating, binding or setting up the socket failed.
    #[error("cannot {action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The connection threads could not be started.
    #[error("cannot start {count} connection threads")]
    Workers {
        /// Threads asked for.
        count: usize,
        /// The OS error.
        source: io::Error,
    },
    /// The process may open too few descriptors to serve any connection.
    #[error("the descriptor limit ({limit}) leaves no room for connections: each needs up to 2, and {reserved} are kept for the server itself (64) and its WebSocket handshakes (2 per place in the handshake pool, 64 places by default, and 1 per listener, if any); at least {} are needed: raise it with `ulimit -n` or LimitNOFILE= in the service unit", reserved + 2)]
    DescriptorLimit {
        /// The soft limit in force.
        limit: u64,
        /// Descriptors kept for the server itself and its WebSocket handshakes.
        reserved: u64,
    },
    /// A socket handed in (socket activation) could not be set up for serving.
    #[error("cannot serve {what} passed in by the service manager")]
    PassedSocket {
        /// Which kind of listener, e.g. "a WebSocket (TCP) listener".
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// A WebSocket listener could not be bound.
    #[error("cannot listen for WebSockets on {address}")]
    WebSocketBind {
        /// The address.
        address: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// A uid/gid allow-list is set and a WebSocket listener without a token is reachable from
    /// other machines, whose users the server cannot identify: the allow-list would not hold.
    #[error("the uid/gid allow-list (--allow-uid/--allow-gid) cannot check peers on other machines, and the WebSocket listener on {address} is reachable from them without a token: set a token (--ws-token-file or PIXL_IPC_WS_TOKEN) so remote peers must present it, or listen on a loopback address such as 127.0.0.1")]
    AllowListNeedsToken {
        /// The listener's address.
        address: SocketAddr,
    },
    /// A uid/gid allow-list is set, WebSocket listeners are asked for, and the table that
    /// tells which user owns a TCP connection (`/proc/net/tcp`) cannot be read.
    #[error("the uid/gid allow-list (--allow-uid/--allow-gid) needs /proc/net/tcp to tell which user owns a WebSocket connection, and it cannot be read (mount /proc, or drop --ws or the allow-list)")]
    PeerLookupUnavailable {
        /// The OS error.
        source: io::Error,
    },
    /// The TLS certificate or key could not be loaded.
    #[error("cannot use TLS file {path}: {reason}")]
    Tls {
        /// The certificate or key file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// The configuration asks for something this build of the library was compiled without
    /// (WebSockets need the `ws` cargo feature, `wss://` the `tls` feature).
    #[error("{what} needs pixl-ipc-server's `{feature}` cargo feature, which this build was compiled without")]
    FeatureDisabled {
        /// What the configuration asked for, e.g. "a WebSocket listener".
        what: &'static str,
        /// The cargo feature that provides it.
        feature: &'static str,
    },
    /// A setting is outside the range the server can honour; nothing was created. See
    /// [`ServerConfig::validate`](crate::ServerConfig::validate).
    #[error("invalid setting {setting} ({flag}) = {value}: allowed {allowed}")]
    InvalidSetting {
        /// The [`ServerConfig`](crate::ServerConfig) field, e.g. `max_outbound_bytes_per_connection`.
        setting: &'static str,
        /// The `pixl-ipc-server` flag that sets it, e.g. `--max-outbound-bytes`.
        flag: &'static str,
        /// The value given.
        value: String,
        /// The range allowed, and why when it is not obvious.
        allowed: String,
    },
}

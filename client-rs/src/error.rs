//! What can go wrong with a call, one variant per thing a caller can do about it.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

/// A failed call or connection attempt.
///
/// Which method reports what:
/// - every method: transport failures (`Connect`, `NotConnected`, `ConnectionLost`,
///   `ReconnectFailed`, `Closed`, `Timeout`, `MessageTooLarge`, `ReplyTooLarge`, `Protocol`,
///   `Encode`);
/// - [`ClientBuilder::connect`](crate::ClientBuilder::connect): `InvalidOption` for a setting
///   out of range;
/// - [`Client::send`](crate::Client::send) and [`Client::call`](crate::Client::call):
///   `Server` for a reply with a top-level `code` (request-level errors such as `no_uri`);
/// - [`Client::call`](crate::Client::call) only: also `Server` when the reply's `data` is an
///   object with a `code` (handler-level errors such as `no_handler_found`, the original's
///   `codeToErr` rule), and `Decode` when `data` does not fit the requested type;
/// - [`Client::stream`](crate::Client::stream) and [`Client::stream_as`](crate::Client::stream_as):
///   the `call` rule for the final line, `Decode` for an item that does not fit the type; each
///   as the stream's last item.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The connection could not be opened.
    #[error("cannot connect to {address}: {source}")]
    Connect {
        /// Where the client tried to connect.
        address: String,
        /// The OS reason.
        #[source]
        source: Arc<io::Error>,
    },
    /// The connection was lost earlier and the reconnect policy is off.
    #[error("not connected to {address}: {reason}")]
    NotConnected {
        /// The server's address.
        address: String,
        /// Why the connection ended.
        reason: String,
    },
    /// The connection ended while this request was waiting for its reply. The request may or
    /// may not have run on the server; it is not re-sent.
    #[error("connection to {address} lost while the request was in flight: {reason}")]
    ConnectionLost {
        /// The server's address.
        address: String,
        /// Why the connection ended. When the server's last line was an error naming no request
        /// (`too_many_connections`, `peer_not_allowed`), it leads: "the server closed the
        /// connection after reporting too_many_connections: ... (write failed: ...)".
        reason: String,
    },
    /// The reconnect policy's `max_retries` ran out.
    #[error("gave up reconnecting to {address} after {attempts} attempts: {last_error}")]
    ReconnectFailed {
        /// The server's address.
        address: String,
        /// Attempts made.
        attempts: u32,
        /// The last attempt's error.
        last_error: String,
    },
    /// [`Client::close`](crate::Client::close) was called.
    #[error("the client was closed")]
    Closed,
    /// No reply within the request timeout (for a stream: no next line within it; the stream
    /// is cancelled). A reply that arrives later is dropped.
    #[error("no reply to {uri} within {timeout:?}")]
    Timeout {
        /// The request's uri.
        uri: String,
        /// The timeout that passed.
        timeout: Duration,
    },
    /// The request is larger than the maximum message size; it was not sent.
    #[error("request of {size} bytes exceeds the maximum message size of {limit} bytes")]
    MessageTooLarge {
        /// The encoded request's size.
        size: usize,
        /// The configured maximum.
        limit: usize,
    },
    /// The reply is longer than [`max_reply_bytes`](crate::ClientBuilder::max_reply_bytes): it
    /// was dropped without being decoded, because decoding a large reply of many small values
    /// can cost dozens of times its size in memory.
    #[error("reply of {size} bytes exceeds max_reply_bytes ({limit} bytes); it was not decoded")]
    ReplyTooLarge {
        /// The reply line's size.
        size: usize,
        /// The configured maximum.
        limit: usize,
    },
    /// A [`ClientBuilder`](crate::ClientBuilder) setting is out of range; nothing was started.
    #[error("invalid option {option}: {reason}")]
    InvalidOption {
        /// The setting's name (`reconnect.jitter`, `request_timeout`, ...).
        option: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// The server answered with an error code.
    #[error("server error {code}: {message}")]
    Server {
        /// The error code (`no_uri`, `no_handler_found`, a handler's own code, ...).
        code: String,
        /// The server's message.
        message: String,
        /// The reply's whole `data`, for handler-level errors.
        data: Option<Value>,
    },
    /// The server sent something that is not a valid reply (see protocol.md).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The request could not be encoded as JSON.
    #[error("cannot encode the request as JSON: {0}")]
    Encode(Arc<serde_json::Error>),
    /// The reply's `data` does not have the type the caller asked for.
    #[error("cannot decode the reply: {0}")]
    Decode(Arc<serde_json::Error>),
    /// The address is not one this client can use.
    #[error("unsupported address {address:?}: {reason}")]
    UnsupportedAddress {
        /// The address as given.
        address: String,
        /// Why it cannot be used.
        reason: String,
    },
}

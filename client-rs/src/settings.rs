//! The client's settings, as the builder collects them and the running client reads them.

use std::time::Duration;

use pixl_ipc_protocol::DEFAULT_MAX_MESSAGE_BYTES;

use crate::error::Error;
use crate::reconnect::ReconnectPolicy;
#[cfg(feature = "ws")]
use crate::transport::WsOptions;

/// Default time a call waits for its reply: 10 s, like the original Node client.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time to wait for a connection to open.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default largest reply a call decodes: 8 MiB. Decoding JSON made of many tiny values into a
/// [`serde_json::Value`] tree costs up to ~64 times its size (a 24 MiB reply of `{}`s: 1.5 GiB),
/// so 8 MiB bounds that at about 0.5 GiB, while leaving 8 times the largest message the
/// original's own tests use (1 MiB echoes). Raise it for larger replies.
pub const DEFAULT_MAX_REPLY_BYTES: usize = 8 * 1024 * 1024;
/// Default bytes of pushes buffered per subscriber that has not taken them yet: 8 MiB.
pub const DEFAULT_MAX_PUSH_BUFFER_BYTES: usize = 8 * 1024 * 1024;
/// Pushes buffered per subscriber that has not taken them yet, whatever their size.
pub const MAX_PUSH_BUFFER_PUSHES: usize = 1024;

/// Every setting of a client; [`ClientBuilder`](crate::ClientBuilder) documents each.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) request_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) user_agent: String,
    pub(crate) max_message_bytes: usize,
    pub(crate) max_reply_bytes: usize,
    pub(crate) max_push_buffer_bytes: usize,
    pub(crate) reconnect: ReconnectPolicy,
    #[cfg(feature = "ws")]
    pub(crate) ws: WsOptions,
}

impl Default for Settings {
    fn default() -> Self {
        let cwd = std::env::current_dir()
            .map(|dir| dir.display().to_string())
            .unwrap_or_default();
        Settings {
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            user_agent: format!("Rust/pixl-ipc-client{cwd}"),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_reply_bytes: DEFAULT_MAX_REPLY_BYTES,
            max_push_buffer_bytes: DEFAULT_MAX_PUSH_BUFFER_BYTES,
            reconnect: ReconnectPolicy::original(),
            #[cfg(feature = "ws")]
            ws: WsOptions::default(),
        }
    }
}

impl Settings {
    /// Every setting in range, checked before anything starts.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let invalid = |option, reason: &str| {
            Err(Error::InvalidOption {
                option,
                reason: reason.to_owned(),
            })
        };
        if self.request_timeout.is_zero() {
            return invalid("request_timeout", "zero would fail every call at once");
        }
        if self.connect_timeout.is_zero() {
            return invalid(
                "connect_timeout",
                "zero would fail every connection attempt",
            );
        }
        if self.max_message_bytes == 0 {
            return invalid("max_message_bytes", "zero would refuse every message");
        }
        if self.max_reply_bytes == 0 {
            return invalid("max_reply_bytes", "zero would refuse every reply");
        }
        self.reconnect.validate()
    }
}

//! Client settings, with every default in one place.

use std::time::Duration;

use crate::address::ToAddress;
use crate::client::Client;
use crate::error::Error;
use crate::reconnect::ReconnectPolicy;
use crate::settings::Settings;

/// Builds a [`Client`].
///
/// | setting | default |
/// | --- | --- |
/// | [`request_timeout`](Self::request_timeout) | 10 s ([`DEFAULT_REQUEST_TIMEOUT`](crate::DEFAULT_REQUEST_TIMEOUT)) |
/// | [`connect_timeout`](Self::connect_timeout) | 5 s ([`DEFAULT_CONNECT_TIMEOUT`](crate::DEFAULT_CONNECT_TIMEOUT)) |
/// | [`user_agent`](Self::user_agent) | `"Rust/pixl-ipc-client"` + the current directory |
/// | [`max_message_bytes`](Self::max_message_bytes) | 64 MiB |
/// | [`max_reply_bytes`](Self::max_reply_bytes) | 8 MiB ([`DEFAULT_MAX_REPLY_BYTES`](crate::DEFAULT_MAX_REPLY_BYTES)) |
/// | [`max_push_buffer_bytes`](Self::max_push_buffer_bytes) | 8 MiB per subscriber ([`DEFAULT_MAX_PUSH_BUFFER_BYTES`](crate::DEFAULT_MAX_PUSH_BUFFER_BYTES)) |
/// | [`reconnect`](Self::reconnect) | every 1000 ms, forever ([`ReconnectPolicy::original`]) |
/// | `tls_ca_file` (feature `tls`) | the system's root certificates (`wss://` only) |
/// | `tls_domain` (feature `tls`) | the URL's host (`wss://` only) |
/// | `bearer_token` (feature `ws`) | none (WebSockets only) |
///
/// ```
/// use std::time::Duration;
/// use pixl_ipc_client::{Backoff, Client, ReconnectPolicy};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let path = std::path::PathBuf::from("/run/myapp/ipc.sock");
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("doc.sock");
/// # let _server = pixl_ipc_server::Server::new(pixl_ipc_server::ServerConfig::new(&path)).start().await?;
/// let client = Client::builder()
///     .request_timeout(Duration::from_secs(2))
///     .user_agent("billing-worker")
///     .reconnect(ReconnectPolicy::Backoff(Backoff { max_retries: Some(5), ..Backoff::default() }))
///     .connect(&path)
///     .await?;
/// assert_eq!(client.send("/ipcserver/test/echo", serde_json::json!(1)).await?, 1);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct ClientBuilder {
    settings: Settings,
}

impl ClientBuilder {
    /// How long a call waits for its reply, including any wait for a reconnect (default 10 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.settings.request_timeout = timeout;
        self
    }

    /// How long opening a connection may take (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.settings.connect_timeout = timeout;
        self
    }

    /// The `userAgent` sent with every request (default `"Rust/pixl-ipc-client"` + cwd).
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.settings.user_agent = user_agent.into();
        self
    }

    /// Largest message sent or accepted, in bytes (default 64 MiB). Larger requests fail with
    /// [`Error::MessageTooLarge`] without being sent.
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.settings.max_message_bytes = bytes;
        self
    }

    /// Largest reply a call takes, in bytes (default 8 MiB, [`DEFAULT_MAX_REPLY_BYTES`](crate::DEFAULT_MAX_REPLY_BYTES)). A
    /// longer reply fails its call with [`Error::ReplyTooLarge`] at once, without being
    /// decoded. Replies are also bounded by [`max_message_bytes`](Self::max_message_bytes).
    pub fn max_reply_bytes(mut self, bytes: usize) -> Self {
        self.settings.max_reply_bytes = bytes;
        self
    }

    /// Bytes of pushes each [`Subscription`](crate::Subscription) may hold before it has taken
    /// them (default 8 MiB; at most 1024 pushes either way). A subscriber that falls further
    /// behind misses the oldest pushes and is told how many; the newest push is always kept,
    /// so a subscriber holds at most this plus one push.
    pub fn max_push_buffer_bytes(mut self, bytes: usize) -> Self {
        self.settings.max_push_buffer_bytes = bytes;
        self
    }

    /// What to do after the connection is lost (default: retry every second, forever).
    pub fn reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.settings.reconnect = policy;
        self
    }

    /// For `wss://`: trust the CA certificates in this PEM file (tremor's `cafile`) instead of
    /// the system's roots. Feature `tls`.
    #[cfg(feature = "tls")]
    pub fn tls_ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.settings.ws.ca_file = Some(path.into());
        self
    }

    /// For `wss://`: the name the server certificate must be valid for (tremor's `domain`),
    /// when it differs from the URL's host. Feature `tls`.
    #[cfg(feature = "tls")]
    pub fn tls_domain(mut self, domain: impl Into<String>) -> Self {
        self.settings.ws.domain = Some(domain.into());
        self
    }

    /// For WebSockets: sends `Authorization: Bearer <token>` with the upgrade. Feature `ws`.
    #[cfg(feature = "ws")]
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.settings.ws.token = Some(token.into());
        self
    }

    /// Connects to `address` (a path, `unix:///path`, or an [`Address`](crate::Address)).
    ///
    /// # Errors
    /// [`Error::Connect`] with the path and the OS reason if the first connection fails (the
    /// reconnect policy applies only to connections lost later);
    /// [`Error::UnsupportedAddress`] for an address this client cannot use;
    /// [`Error::InvalidOption`] for a setting out of range (a zero timeout or size, a
    /// [`Backoff`](crate::Backoff) with a NaN or out-of-range `jitter` or `growth_rate`).
    pub async fn connect(self, address: impl ToAddress) -> Result<Client, Error> {
        self.settings.validate()?;
        Client::start(self.settings, address.to_address()?).await
    }
}

//! Client settings, with every default in one place.

use std::time::Duration;

use pixl_ipc_protocol::DEFAULT_MAX_MESSAGE_BYTES;

use crate::address::ToAddress;
use crate::client::Client;
use crate::error::Error;
use crate::reconnect::ReconnectPolicy;
use crate::transport::WsOptions;

/// Default time a call waits for its reply: 10 s, like the original Node client.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time to wait for a connection to open.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds a [`Client`].
///
/// | setting | default |
/// | --- | --- |
/// | [`request_timeout`](Self::request_timeout) | 10 s ([`DEFAULT_REQUEST_TIMEOUT`]) |
/// | [`connect_timeout`](Self::connect_timeout) | 5 s ([`DEFAULT_CONNECT_TIMEOUT`]) |
/// | [`user_agent`](Self::user_agent) | `"Rust/pixl-ipc-client"` + the current directory |
/// | [`max_message_bytes`](Self::max_message_bytes) | 64 MiB, the server's default |
/// | [`reconnect`](Self::reconnect) | every 1000 ms, forever ([`ReconnectPolicy::original`]) |
/// | [`tls_ca_file`](Self::tls_ca_file) | the system's root certificates (`wss://` only) |
/// | [`tls_domain`](Self::tls_domain) | the URL's host (`wss://` only) |
/// | [`bearer_token`](Self::bearer_token) | none (WebSockets only) |
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
#[derive(Debug, Clone)]
#[must_use]
pub struct ClientBuilder {
    pub(crate) request_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) user_agent: String,
    pub(crate) max_message_bytes: usize,
    pub(crate) reconnect: ReconnectPolicy,
    pub(crate) ws: WsOptions,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        let cwd = std::env::current_dir()
            .map(|dir| dir.display().to_string())
            .unwrap_or_default();
        ClientBuilder {
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            user_agent: format!("Rust/pixl-ipc-client{cwd}"),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            reconnect: ReconnectPolicy::original(),
            ws: WsOptions::default(),
        }
    }
}

impl ClientBuilder {
    /// How long a call waits for its reply, including any wait for a reconnect (default 10 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How long opening a connection may take (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The `userAgent` sent with every request (default `"Rust/pixl-ipc-client"` + cwd).
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// Largest message sent or accepted, in bytes (default 64 MiB). Larger requests fail with
    /// [`Error::MessageTooLarge`] without being sent.
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// What to do after the connection is lost (default: retry every second, forever).
    pub fn reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect = policy;
        self
    }

    /// For `wss://`: trust the CA certificates in this PEM file (tremor's `cafile`) instead of
    /// the system's roots.
    pub fn tls_ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.ws.ca_file = Some(path.into());
        self
    }

    /// For `wss://`: the name the server certificate must be valid for (tremor's `domain`),
    /// when it differs from the URL's host.
    pub fn tls_domain(mut self, domain: impl Into<String>) -> Self {
        self.ws.domain = Some(domain.into());
        self
    }

    /// For WebSockets: sends `Authorization: Bearer <token>` with the upgrade.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.ws.token = Some(token.into());
        self
    }

    /// Connects to `address` (a path, `unix:///path`, or an [`Address`](crate::Address)).
    ///
    /// # Errors
    /// [`Error::Connect`] with the path and the OS reason if the first connection fails (the
    /// reconnect policy applies only to connections lost later);
    /// [`Error::UnsupportedAddress`] for an address this client cannot use.
    pub async fn connect(self, address: impl ToAddress) -> Result<Client, Error> {
        Client::start(self, address.to_address()?).await
    }
}

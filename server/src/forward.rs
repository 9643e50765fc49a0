//! Forwarding: routes whose requests go to an upstream pixl-ipc server (`--forward
//! PATTERN=ADDRESS`), through one shared [`pixl_ipc_client::Client`] connection per forward.
//!
//! What a caller gets:
//! - the upstream's `data`, as is (a handler-level error in `data` included), with the
//!   caller's own `ipcReqID`;
//! - the upstream's top-level error (`code`, `message`) as a handler-level error (in `data`),
//!   since a handler answers in `data`;
//! - `upstream_unavailable` with the reason, at once, when there is no connection to the
//!   upstream (never started, lost, reconnecting) or it is lost while the call is in flight;
//!   nothing is re-sent;
//! - `upstream_timeout` when no reply came within the forward's timeout.
//!
//! The forwarder connects in the background and, once connected, the client reconnects with
//! its backoff; calls never wait for a connection.

use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use pixl_ipc_client::{Address, Backoff, Client, ConnectionState, ReconnectPolicy};
use pixl_ipc_protocol::quote::bounded;
use pixl_ipc_protocol::{ErrorCode, Request};
use serde_json::Value;

use crate::handler::{HandlerError, HandlerResult, RequestContext};
use crate::router::{RouteError, UriPattern};
use crate::stats::ForwardCounters;

/// How long a forwarded call waits for the upstream's reply unless told otherwise: the Rust
/// client's default request timeout, 10 s.
pub const DEFAULT_FORWARD_TIMEOUT: Duration = pixl_ipc_client::DEFAULT_REQUEST_TIMEOUT;

/// The reconnect schedule: 100 ms after a loss, doubling, at most 2 s apart, forever. A
/// restarted upstream is back in use within about 2 s.
fn reconnect_backoff() -> Backoff {
    Backoff {
        interval: Duration::from_millis(100),
        growth_rate: 2.0,
        max_retries: None,
        max_delay: Duration::from_secs(2),
        jitter: 0.2,
    }
}

/// How long one attempt to open the upstream connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a forward could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardError {
    /// `PATTERN=ADDRESS` has no `=` followed by an address this server can forward to.
    #[error("invalid forward {0:?}: expected PATTERN=ADDRESS, ADDRESS being unix:PATH, ws://HOST:PORT/... or wss://HOST:PORT/...")]
    Syntax(String),
    /// The pattern is not a valid regex.
    #[error(transparent)]
    Pattern(#[from] RouteError),
    /// The address is not one the client can use.
    #[error("invalid forward address {address:?}: {reason}")]
    Address {
        /// The address as given, without a URL's query (it may carry a token).
        address: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// [`Server::add_forward`](crate::Server::add_forward) was called outside a Tokio runtime,
    /// so the forward could not start connecting.
    #[error("a forward must be added inside a Tokio runtime (it starts connecting at once)")]
    NoRuntime,
    /// The upstream is this server's own socket: every forwarded request would come back to
    /// the forward and multiply until the connection's limits stop it.
    #[error("the forward's upstream {address} is this server's own socket")]
    ToItself {
        /// The address as given.
        address: String,
    },
    /// The timeout is zero.
    #[error("the forward timeout must be more than 0 ms")]
    ZeroTimeout,
}

/// One forward: requests whose uri matches `pattern` go to the pixl-ipc server at `address`.
///
/// ```
/// use pixl_ipc_server::ForwardSpec;
/// let spec: ForwardSpec = "^/myapi/=unix:/var/tmp/my_ipc_server.sock".parse().unwrap();
/// assert_eq!(spec.pattern, "^/myapi/");
/// assert_eq!(spec.address, "unix:/var/tmp/my_ipc_server.sock");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardSpec {
    /// The uri pattern. Starting with `^`, a regex searched in the uri (`^/myapi/` takes every
    /// uri that starts with `/myapi/`); otherwise as a string pattern of
    /// [`Server::add_uri_handler`](crate::Server::add_uri_handler): regex source that must
    /// match the whole uri (`/myapi/hello`, `/myapi/.*`).
    pub pattern: String,
    /// The upstream: `unix:PATH` (also `unix:///PATH`), `ws://HOST:PORT/PATH` or
    /// `wss://HOST:PORT/PATH`.
    pub address: String,
    /// How long a call waits for the upstream's reply before `upstream_timeout`.
    pub timeout: Duration,
}

impl ForwardSpec {
    /// A forward with the default timeout ([`DEFAULT_FORWARD_TIMEOUT`]).
    pub fn new(pattern: impl Into<String>, address: impl Into<String>) -> Self {
        ForwardSpec {
            pattern: pattern.into(),
            address: address.into(),
            timeout: DEFAULT_FORWARD_TIMEOUT,
        }
    }

    /// The same forward with another reply timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The pattern as the router takes it.
    pub(crate) fn uri_pattern(&self) -> Result<UriPattern, ForwardError> {
        if self.pattern.starts_with('^') {
            regex::Regex::new(&self.pattern)
                .map(UriPattern::Regex)
                .map_err(|err| {
                    ForwardError::Pattern(RouteError::InvalidPattern {
                        pattern: self.pattern.clone(),
                        reason: err.to_string(),
                    })
                })
        } else {
            Ok(UriPattern::Exact(self.pattern.clone()))
        }
    }

    /// The address as stats, route names, error replies and logs show it: a URL without its
    /// query or credentials, which may carry the upstream's token (callers of this server must
    /// never learn it).
    pub fn shown_address(&self) -> String {
        let is_url = self.address.starts_with("ws://") || self.address.starts_with("wss://");
        if is_url {
            // The client's own rule, so an upstream's URL reads the same in its errors and ours.
            pixl_ipc_client::shown_url(&self.address)
        } else {
            self.address.clone()
        }
    }

    /// The address as the client takes it.
    pub(crate) fn client_address(&self) -> Result<Address, ForwardError> {
        let invalid = |reason: String| ForwardError::Address {
            address: self
                .address
                .split('?')
                .next()
                .unwrap_or_default()
                .to_owned(),
            reason,
        };
        let text = &self.address;
        let url = if text.starts_with("ws://") || text.starts_with("wss://") {
            text.clone()
        } else if let Some(rest) = text.strip_prefix("unix:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(invalid("the unix: address has no path".into()));
            }
            format!("unix://{path}")
        } else {
            return Err(invalid(
                "expected unix:PATH, ws://HOST:PORT/... or wss://HOST:PORT/...".into(),
            ));
        };
        Address::parse(&url).map_err(|err| invalid(err.to_string()))
    }
}

/// Where an address starts in `PATTERN=ADDRESS`: the first `=` followed by one of these.
const SCHEMES: [&str; 3] = ["unix:", "ws://", "wss://"];

impl std::str::FromStr for ForwardSpec {
    type Err = ForwardError;

    /// Parses `PATTERN=ADDRESS`. The split is at the first `=` followed by `unix:`, `ws://` or
    /// `wss://`, so a pattern may contain `=` and an address may carry `?token=...`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let split = text.match_indices('=').find_map(|(at, _)| {
            let rest = &text[at + 1..];
            SCHEMES
                .iter()
                .any(|scheme| rest.starts_with(scheme))
                .then_some(at)
        });
        match split {
            Some(at) if at > 0 => Ok(ForwardSpec::new(&text[..at], &text[at + 1..])),
            _ => Err(ForwardError::Syntax(text.to_owned())),
        }
    }
}

/// The connection to the upstream, as calls see it.
enum Upstream {
    /// Not connected yet: the first connection is being tried, with the last reason it failed.
    Connecting(String),
    /// Connected once; the client reconnects by itself from then on.
    Client(Client),
}

/// One forward's state: its connection and its counters.
pub(crate) struct Forwarder {
    address: Address,
    timeout: Duration,
    max_message_bytes: usize,
    upstream: RwLock<Upstream>,
    counters: Arc<ForwardCounters>,
}

impl Forwarder {
    /// A forwarder for `spec` that starts connecting in the background. Must be called inside
    /// a Tokio runtime.
    pub(crate) fn start(
        spec: &ForwardSpec,
        max_message_bytes: usize,
        counters: Arc<ForwardCounters>,
    ) -> Result<Arc<Forwarder>, ForwardError> {
        if spec.timeout.is_zero() {
            return Err(ForwardError::ZeroTimeout);
        }
        let address = spec.client_address()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ForwardError::NoRuntime)?;
        let forwarder = Arc::new(Forwarder {
            address,
            timeout: spec.timeout,
            max_message_bytes,
            upstream: RwLock::new(Upstream::Connecting("not connected yet".into())),
            counters,
        });
        runtime.spawn(connect(Arc::downgrade(&forwarder)));
        Ok(forwarder)
    }

    /// Forwards one request and relays the upstream's answer.
    pub(crate) async fn forward(self: Arc<Self>, request: Request) -> HandlerResult {
        let counters = &self.counters;
        counters.forwarded.fetch_add(1, Ordering::Relaxed);
        let failure = match self.exchange(request).await {
            Ok(data) => return Ok(data),
            Err(failure) => failure,
        };
        let (counter, error) = match failure {
            Failure::Relayed(error) => return Err(error),
            Failure::Unavailable(reason) => (
                &counters.unavailable,
                HandlerError::new(
                    ErrorCode::UpstreamUnavailable.as_str(),
                    format!(
                        "upstream {} unavailable: {}",
                        self.address,
                        bounded(&reason)
                    ),
                ),
            ),
            Failure::Timeout(timeout) => (
                &counters.timeout,
                HandlerError::new(
                    ErrorCode::UpstreamTimeout.as_str(),
                    format!(
                        "upstream {} did not answer within {} ms",
                        self.address,
                        timeout.as_millis()
                    ),
                ),
            ),
            Failure::Other(code, err) => (
                &counters.failed,
                HandlerError::new(
                    code.as_str(),
                    format!("forwarding to {} failed: {err}", self.address),
                ),
            ),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Err(error)
    }

    async fn exchange(&self, request: Request) -> Result<Value, Failure> {
        let client = match &*read(&self.upstream) {
            Upstream::Client(client) => client.clone(),
            Upstream::Connecting(reason) => return Err(Failure::Unavailable(reason.clone())),
        };
        let mut states = client.state_changes();
        if let Some(reason) = not_connected(&states.borrow_and_update()) {
            return Err(Failure::Unavailable(reason));
        }
        // The router only hands requests with a uri to a route.
        let uri = request.uri.as_deref().unwrap_or_default();
        let call = client.send_with_timeout(uri, &request.data, self.timeout);
        // A call queued just as the connection dropped would wait for the reconnect: fail it
        // as soon as the connection is seen lost instead (its request is then never sent).
        let lost = async {
            let _ = states
                .wait_for(|state| not_connected(state).is_some())
                .await;
        };
        tokio::select! {
            biased;
            outcome = call => outcome.map_err(Failure::from),
            () = lost => Err(Failure::Unavailable(
                "the connection was lost while the call waited to be sent".into(),
            )),
        }
    }
}

/// Why a forwarded call did not bring back `data`.
enum Failure {
    /// The upstream answered with a top-level error: relayed as is.
    Relayed(HandlerError),
    /// No connection, or it was lost during the call.
    Unavailable(String),
    /// No reply within the timeout.
    Timeout(Duration),
    /// Anything else (a request or reply too large, a reply that is not valid).
    Other(ErrorCode, pixl_ipc_client::Error),
}

impl From<pixl_ipc_client::Error> for Failure {
    fn from(err: pixl_ipc_client::Error) -> Self {
        use pixl_ipc_client::Error;
        match err {
            Error::Server { code, message, .. } => {
                Failure::Relayed(HandlerError::new(code, message))
            }
            Error::Timeout { timeout, .. } => Failure::Timeout(timeout),
            Error::ConnectionLost { .. }
            | Error::NotConnected { .. }
            | Error::ReconnectFailed { .. }
            | Error::Connect { .. }
            | Error::Closed => Failure::Unavailable(err.to_string()),
            Error::MessageTooLarge { .. } => Failure::Other(ErrorCode::MessageTooLarge, err),
            other => Failure::Other(ErrorCode::HandlerError, other),
        }
    }
}

/// Why calls cannot go out now, if they cannot.
fn not_connected(state: &ConnectionState) -> Option<String> {
    match state {
        ConnectionState::Connected => None,
        ConnectionState::Reconnecting { attempt } => Some(format!(
            "the connection was lost; reconnecting (attempt {attempt})"
        )),
        ConnectionState::Closed(reason) => Some(format!("the connection is closed: {reason:?}")),
    }
}

/// Opens the first connection, retrying with the backoff until it succeeds or the forwarder
/// is gone; from then on the client reconnects by itself.
async fn connect(forwarder: Weak<Forwarder>) {
    let policy = ReconnectPolicy::Backoff(reconnect_backoff());
    let mut attempt = 0u32;
    loop {
        let Some(strong) = forwarder.upgrade() else {
            return;
        };
        attempt = attempt.saturating_add(1);
        let connected = Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .request_timeout(strong.timeout)
            .max_message_bytes(strong.max_message_bytes)
            .max_reply_bytes(strong.max_message_bytes)
            .user_agent(concat!(
                "pixl-ipc-server/",
                env!("CARGO_PKG_VERSION"),
                " forward"
            ))
            .reconnect(policy.clone())
            .connect(strong.address.clone())
            .await;
        match connected {
            Ok(client) => {
                tracing::info!(upstream = %strong.address, attempt, "forward connected");
                *write(&strong.upstream) = Upstream::Client(client);
                return;
            }
            Err(err) => {
                if attempt == 1 {
                    tracing::warn!(upstream = %strong.address, error = %err, "forward cannot connect yet; retrying in the background");
                } else {
                    tracing::debug!(upstream = %strong.address, attempt, error = %err, "forward connect failed");
                }
                *write(&strong.upstream) = Upstream::Connecting(err.to_string());
            }
        }
        drop(strong);
        let delay = policy.delay(attempt).unwrap_or(Duration::from_secs(2));
        tokio::time::sleep(delay).await;
    }
}

// The lock guards a plain value swapped whole and is never held across an await.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Registers the forward `spec` on `router`, its counters on `stats`.
pub(crate) fn register(
    router: &crate::router::Router,
    stats: &crate::stats::Stats,
    spec: &ForwardSpec,
    max_message_bytes: usize,
) -> Result<(), ForwardError> {
    let pattern = spec.uri_pattern()?;
    let counters = Arc::new(ForwardCounters {
        pattern: spec.pattern.clone(),
        address: spec.shown_address(),
        ..ForwardCounters::default()
    });
    let forwarder = Forwarder::start(spec, max_message_bytes, counters.clone())?;
    let name = format!("forward to {}", spec.shown_address());
    router.add_uri_handler(pattern, name, move |request: Request, _: RequestContext| {
        forwarder.clone().forward(request)
    })?;
    stats.add_forward(counters);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ForwardSpec, ForwardError> {
        text.parse()
    }

    #[test]
    fn the_split_is_at_the_first_equals_sign_before_an_address() {
        let spec = parse("^/a=b/=ws://127.0.0.1:7070/rpc?token=x=y").unwrap();
        assert_eq!(spec.pattern, "^/a=b/");
        assert_eq!(spec.address, "ws://127.0.0.1:7070/rpc?token=x=y");
        // The token never shows: stats, route names, errors and logs use this form.
        assert_eq!(spec.shown_address(), "ws://127.0.0.1:7070/rpc?...");
        let spec = parse("/exact=unix:/run/app.sock").unwrap();
        assert_eq!(spec.pattern, "/exact");
        assert_eq!(
            spec.client_address().unwrap(),
            Address::Unix("/run/app.sock".into())
        );
        assert_eq!(
            parse("^/x=unix:///run/app.sock")
                .unwrap()
                .client_address()
                .unwrap(),
            Address::Unix("/run/app.sock".into())
        );
        for bad in [
            "",
            "^/x",
            "=unix:/a.sock",
            "^/x=/run/app.sock",
            "^/x=http://h/",
        ] {
            assert!(
                matches!(parse(bad), Err(ForwardError::Syntax(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_leading_caret_makes_a_searched_regex_else_the_whole_uri_must_match() {
        let router = crate::router::Router::new();
        for (pattern, name) in [("^/pre/", "prefix"), ("/exact/.*", "whole")] {
            let spec = ForwardSpec::new(pattern, "unix:/x.sock");
            router
                .add_uri_handler(
                    spec.uri_pattern().unwrap(),
                    name,
                    |_: Request, _: RequestContext| async { HandlerResult::Ok(Value::Null) },
                )
                .unwrap();
        }
        assert_eq!(&*router.route("/pre/anything").name, "prefix");
        assert_eq!(&*router.route("/exact/a/b").name, "whole");
        assert_eq!(&*router.route("/x/exact/a").name, "DefaultHandler");
        assert_eq!(&*router.route("/x/pre/").name, "DefaultHandler");
        assert!(matches!(
            ForwardSpec::new("^(", "unix:/x.sock").uri_pattern(),
            Err(ForwardError::Pattern(_))
        ));
    }
}

//! The WebSocket transport: TCP (optionally TLS) listeners, the upgrade with its access checks,
//! and a per-connection driver that turns frames into the connection core's messages and back,
//! with ping keepalive and an idle timeout.
//!
//! Self-contained: [`WebSockets::bind`] builds everything from the server's config (TLS, access
//! rules, listeners), the server drives the returned [`WsListener`]s like any other
//! [`Listener`], and asks [`WebSockets`] for its addresses and URLs. Nothing here reaches into
//! the server.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use pixl_ipc_protocol::quote::bounded;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_tungstenite::tungstenite::handshake::server::{
    ErrorResponse, Request as Upgrade, Response,
};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig as WireConfig;

mod driver;
mod frames;
mod origin;
mod tcp_owner;
mod tls;

use driver::Driver;
use origin::OriginPolicy;

use super::Listener;
use crate::access::Reloadable;
use crate::admission::{Handshake, Refusal};
use crate::config::{ServerConfig, WebSocketConfig};
use crate::connection::{self, Inbound, PeerWatch};
use crate::context::ConnectionContext;
use crate::error::ServerError;
use crate::fd_limit;
use crate::handler::{ConnectionInfo, PeerCredentials, Transport};
use crate::outbound::Outbound;

/// How long a peer may take over the TLS handshake and the HTTP upgrade together.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Decoded messages a connection may have waiting for the core. One: the driver decodes a
/// frame's next message only when the core has taken the last, so what waits is bounded by one
/// message, not by a count of them.
const INBOUND_DEPTH: usize = 1;

/// The WebSocket side of a server: its shared setup and the addresses its listeners are bound
/// to (with the actual port when 0 was asked for).
pub(crate) struct WebSockets {
    setup: Arc<WsSetup>,
    addrs: Vec<SocketAddr>,
}

impl WebSockets {
    /// Loads the TLS files (if any) and checks the settings, so a bad file or setting fails the
    /// start, not the first connection; then binds every configured address with the configured
    /// backlog, and adds the `passed` listeners (socket activation). Returns the listeners to
    /// serve.
    pub(crate) async fn bind(
        config: &ServerConfig,
        passed: Vec<std::net::TcpListener>,
    ) -> Result<(WebSockets, Vec<WsListener>), ServerError> {
        let passed = passed
            .into_iter()
            .map(|listener| {
                let address = listener.local_addr();
                let registered = listener
                    .set_nonblocking(true)
                    .and_then(|()| TcpListener::from_std(listener));
                address.and_then(|address| registered.map(|listener| (address, listener)))
            })
            .collect::<io::Result<Vec<_>>>()
            .map_err(|source| ServerError::PassedSocket {
                what: "a WebSocket (TCP) listener",
                source,
            })?;
        // The access checks cover the passed listeners' addresses as well as the configured.
        let addresses: Vec<SocketAddr> = config
            .websocket
            .listen
            .iter()
            .copied()
            .chain(passed.iter().map(|(address, _)| *address))
            .collect();
        let setup = Arc::new(WsSetup::new(config, &addresses)?);
        let mut listeners = bind_all(&config.websocket).await?;
        listeners.extend(passed.into_iter().map(|(_, listener)| listener));
        let addrs = listeners
            .iter()
            .filter_map(|listener| listener.local_addr().ok())
            .collect();
        // Each listener's accept loop holds a place while it waits for a connection: one more
        // place per listener, or with more listeners than handshake places a loop could wait
        // for a live handshake to time out instead of accepting (and so evicting) it.
        setup.handshake_sockets.add_permits(listeners.len());
        let listeners = listeners
            .into_iter()
            .map(|listener| WsListener {
                listener,
                setup: setup.clone(),
            })
            .collect();
        Ok((WebSockets { setup, addrs }, listeners))
    }

    /// Logs each listener's URL, and says plainly what a listener off the loopback interface
    /// exposes under `rules`.
    pub(crate) fn announce(&self, rules: &Reloadable) {
        for addr in &self.addrs {
            tracing::info!(url = %self.setup.url_for(*addr), "listening");
            warn_if_exposed(self.setup.tls.is_some(), rules, *addr);
        }
    }

    /// Refuses access rules under which the uid allow-list would not hold for these listeners
    /// (the same checks as at start), before a reload puts them in force.
    pub(crate) fn check_rules(&self, rules: &Reloadable) -> Result<(), ServerError> {
        check_rules(&self.addrs, rules)
    }

    /// The addresses the listeners are bound to.
    pub(crate) fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The `ws://` or `wss://` URL of each listener.
    pub(crate) fn urls(&self) -> Vec<String> {
        self.addrs
            .iter()
            .map(|addr| self.setup.url_for(*addr))
            .collect()
    }

    /// For each listener, its URL and who can reach it under `rules`.
    pub(crate) fn access(&self, rules: &Reloadable) -> Vec<String> {
        self.addrs
            .iter()
            .map(|addr| {
                format!(
                    "{} ({})",
                    self.setup.url_for(*addr),
                    self.setup.reach(rules, *addr)
                )
            })
            .collect()
    }
}

/// What every WebSocket connection of this server shares: TLS, origins, limits. The token and
/// the uid allow-list are the context's ([`Reloadable`]), read at each connection, since a
/// reload can change them.
struct WsSetup {
    tls: Option<tls::Acceptor>,
    origins: OriginPolicy,
    ping_interval: Duration,
    idle_timeout: Duration,
    wire: WireConfig,
    max_message_bytes: usize,
    /// Sockets accepted and not yet upgraded or closed, across every WebSocket listener:
    /// `2 * max_handshakes` permits. The pool keeps `max_handshakes` handshakes live; one it
    /// drops keeps its socket until its task next runs, so a burst of connects could otherwise
    /// pile up closing sockets faster than the workers close them and run the process out of
    /// descriptors. With none free, the listeners stop accepting (the kernel's backlog holds
    /// the newcomers) until a socket is closed or upgraded.
    handshake_sockets: Arc<Semaphore>,
    /// Places for `/proc/net/tcp` lookups (allow-list checks) running at once, each on a
    /// blocking thread with the file open: [`UID_LOOKUPS`]. A lookup outlives a handshake dropped
    /// meanwhile (it cannot be interrupted), so without this a flood of silent connects could
    /// fill the blocking pool with threads each holding the file open.
    uid_lookups: Arc<Semaphore>,
}

/// Allow-list lookups of a WebSocket peer's uid running at once (threads, and open files).
const UID_LOOKUPS: usize = 4;

/// Bytes tungstenite offers each socket read. It zeroes that much before every read, so its
/// 128 KiB default cost more than the rest of a small message's handling (11% of the
/// server's CPU in perf); a large message's frame still reserves its full length.
const WS_READ_BUFFER: usize = 16 * 1024;

impl WsSetup {
    /// Loads the TLS files (if any), so a bad file fails the start, not the first connection,
    /// and refuses settings under which the uid allow-list would not hold.
    fn new(server: &ServerConfig, addresses: &[SocketAddr]) -> Result<Self, ServerError> {
        let config = &server.websocket;
        let max_message_bytes = server.max_message_bytes;
        let tls = config.tls.as_ref().map(tls::load).transpose()?;
        check_rules(addresses, &Reloadable::from_config(server))?;
        if config.any_origin && !addresses.is_empty() {
            tracing::warn!(
                "WebSocket upgrades are accepted from any Origin (--ws-origin '*'): every web page open in a browser on a machine that can reach the listener can call every handler{}",
                if config.token.is_some() { " once it has the token" } else { "" }
            );
        }
        Ok(WsSetup {
            tls,
            origins: OriginPolicy {
                any: config.any_origin,
                listed: config.allowed_origins.clone(),
            },
            ping_interval: config.ping_interval,
            idle_timeout: config.idle_timeout,
            wire: WireConfig::default()
                .read_buffer_size(WS_READ_BUFFER)
                .max_message_size(Some(max_message_bytes))
                .max_frame_size(Some(max_message_bytes)),
            max_message_bytes,
            handshake_sockets: Arc::new(Semaphore::new(fd_limit::handshake_sockets(
                config.max_handshakes,
            ))),
            uid_lookups: Arc::new(Semaphore::new(UID_LOOKUPS)),
        })
    }

    /// The URL clients use for a listener on `addr`.
    fn url_for(&self, addr: SocketAddr) -> String {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        format!("{scheme}://{addr}/")
    }

    /// Who can reach the listener on `addr`, for the startup banner: "any local user;
    /// browsers: same-origin pages only".
    fn reach(&self, rules: &Reloadable, addr: SocketAddr) -> String {
        let token = if rules.ws_token.is_some() {
            " with the token"
        } else {
            ""
        };
        let uids = &rules.allowed_uids;
        let local = if !rules.has_allow_list() {
            "any local user".to_owned()
        } else if uids.is_empty() {
            "no local user".to_owned()
        } else {
            let list: Vec<String> = uids.iter().map(u32::to_string).collect();
            let noun = if uids.len() == 1 { "uid" } else { "uids" };
            format!("local {noun} {} only", list.join(", "))
        };
        let users = if is_loopback(&addr) {
            format!("{local}{token}")
        } else if rules.has_allow_list() {
            format!("{local}, or anyone on the network,{token}")
        } else {
            format!("anyone who can reach {addr}{token}")
        };
        let browsers = if self.origins.any {
            "any web page".to_owned()
        } else if self.origins.listed.is_empty() {
            "same-origin pages only".to_owned()
        } else {
            format!("same-origin pages and {}", self.origins.listed.join(", "))
        };
        format!("{users}; browsers: {browsers}")
    }

    /// The upgrade's access rules: token (401), then Origin (403). `None` lets it through.
    fn check(
        &self,
        rules: &Reloadable,
        upgrade: &Upgrade,
        tls: bool,
    ) -> Option<(StatusCode, &'static str)> {
        if let Some(token) = &rules.ws_token {
            if !presented_tokens(upgrade).any(|given| same_secret(&given, token)) {
                return Some((StatusCode::UNAUTHORIZED, "missing or wrong bearer token"));
            }
        }
        if let Some(origin) = upgrade.headers().get("origin") {
            let host = upgrade
                .headers()
                .get("host")
                .and_then(|host| host.to_str().ok());
            let allowed = origin
                .to_str()
                .is_ok_and(|origin| self.origins.allows(origin, host, tls));
            if !allowed {
                return Some((StatusCode::FORBIDDEN, "origin not allowed"));
            }
        }
        None
    }

    /// The uid allow-list for a peer at `peer` connected to our `local`: its credentials when it
    /// may go on (`None`: no allow-list, or a peer on another machine, which the token checks),
    /// or why it is refused.
    async fn check_peer(
        &self,
        rules: &Reloadable,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> Result<Option<PeerCredentials>, String> {
        if !rules.has_allow_list() {
            return Ok(None);
        }
        let allowed = &rules.allowed_uids;
        // Never closed: the error arm only avoids a panic path.
        let place = self
            .uid_lookups
            .clone()
            .acquire_owned()
            .await
            .map_err(|err| format!("the peer's uid cannot be determined: {err}"))?;
        // The table is as long as the machine has TCP sockets: read it off the reactor. The
        // place is held until the read ends, even if this handshake is dropped meanwhile.
        let lookup = tokio::task::spawn_blocking(move || {
            let _place = place;
            tcp_owner::owner_uid(peer, local)
        })
        .await;
        match lookup {
            Ok(Ok(Some(uid))) if allowed.contains(&uid) => Ok(Some(PeerCredentials {
                uid,
                gid: PeerCredentials::UNKNOWN_GID,
                pid: None,
            })),
            Ok(Ok(Some(uid))) => Err(format!("uid {uid} may not use this server")),
            // Not a socket of this machine: a remote peer, admitted only with the token (the
            // start refused a listener that remote peers reach without one).
            Ok(Ok(None)) if !is_loopback(&peer) && rules.ws_token.is_some() => Ok(None),
            Ok(Ok(None)) => Err(
                "the peer's uid cannot be determined (its socket is not in /proc/net/tcp)".into(),
            ),
            Ok(Err(err)) => Err(format!("the peer's uid cannot be determined: {err}")),
            Err(err) => Err(format!("the peer's uid cannot be determined: {err}")),
        }
    }
}

/// Loopback, including an IPv4-mapped `::ffff:127.x.y.z`.
fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

/// Says plainly what a listener on `addr`, if off the loopback interface, exposes.
fn warn_if_exposed(tls: bool, rules: &Reloadable, addr: SocketAddr) {
    if addr.ip().is_loopback() {
        return;
    }
    match (tls, rules.ws_token.is_some()) {
        (true, true) => {}
        (false, false) => {
            tracing::warn!(%addr, "WebSocket listener is reachable from the network with neither TLS nor a token: anyone who can reach this address can call every handler and read every reply in clear text")
        }
        (false, true) => {
            tracing::warn!(%addr, "WebSocket listener is reachable from the network without TLS: the token, requests and replies travel in clear text")
        }
        (true, false) => {
            tracing::warn!(%addr, "WebSocket listener is reachable from the network without a token: anyone who can reach this address can call every handler")
        }
    }
}

/// The checks that keep the uid allow-list meaningful for listeners on `listen`: a listener
/// reachable from other machines needs a token (their users cannot be identified), and the
/// owner of a loopback TCP connection must be readable from `/proc/net/tcp`.
fn check_rules(listen: &[SocketAddr], rules: &Reloadable) -> Result<(), ServerError> {
    if !rules.has_allow_list() || listen.is_empty() {
        return Ok(());
    }
    if rules.allowed_uids.is_empty() {
        tracing::warn!("only --allow-gid is set: it cannot admit WebSocket peers (a TCP peer's gid is unknown), so every WebSocket peer will be refused; add --allow-uid");
    }
    if rules.ws_token.is_none() {
        if let Some(address) = listen.iter().find(|addr| !is_loopback(addr)) {
            return Err(ServerError::AllowListNeedsToken { address: *address });
        }
    }
    tcp_owner::available().map_err(|source| ServerError::PeerLookupUnavailable { source })
}

/// Binds every configured address with the configured backlog.
async fn bind_all(config: &WebSocketConfig) -> Result<Vec<TcpListener>, ServerError> {
    config
        .listen
        .iter()
        .map(|address| {
            let bind_error = |source| ServerError::WebSocketBind {
                address: *address,
                source,
            };
            let socket = if address.is_ipv4() {
                TcpSocket::new_v4()
            } else {
                TcpSocket::new_v6()
            }
            .map_err(bind_error)?;
            socket.set_reuseaddr(true).map_err(bind_error)?;
            socket.bind(*address).map_err(bind_error)?;
            socket.listen(config.backlog).map_err(bind_error)
        })
        .collect()
}

/// The subprotocol a client offers to say it speaks this protocol; the server selects it.
const SUBPROTOCOL: &str = "pixl-ipc";
/// The prefix of the subprotocol entry that carries a token, base64url without padding (as
/// Kubernetes does): browsers cannot set headers on a WebSocket, and a query string is logged by
/// proxies, but `Sec-WebSocket-Protocol` is set by `new WebSocket(url, protocols)`.
const BEARER_PREFIX: &str = "pixl-ipc.bearer.";

/// The tokens an upgrade request presents: the bearer header, any `token=` query value and any
/// `pixl-ipc.bearer.<base64url>` subprotocol entry (one that does not decode presents nothing
/// that can match, so alone it is a wrong token: 401).
fn presented_tokens(upgrade: &Upgrade) -> impl Iterator<Item = Vec<u8>> + '_ {
    let header = upgrade
        .headers()
        .get_all("authorization")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| {
            // The scheme is case-insensitive (RFC 7235 section 2.1: `bearer` and `BEARER` are
            // `Bearer`) and may be followed by more than one space; the token is compared as is.
            let (scheme, token) = value.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim_start_matches(' '))
        })
        .map(|token| token.as_bytes().to_vec());
    let query = upgrade
        .uri()
        .query()
        .into_iter()
        .flat_map(|query| query.split('&'))
        .filter_map(|pair| pair.strip_prefix("token="))
        .map(|token| token.as_bytes().to_vec());
    let subprotocol = offered_subprotocols(upgrade)
        .filter_map(|entry| entry.strip_prefix(BEARER_PREFIX))
        .filter_map(base64url_decode);
    header.chain(query).chain(subprotocol)
}

/// The entries of every `Sec-WebSocket-Protocol` header (a comma-separated list, RFC 6455
/// section 4.1), trimmed.
fn offered_subprotocols(upgrade: &Upgrade) -> impl Iterator<Item = &str> {
    upgrade
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
}

/// Decodes unpadded base64url (RFC 4648 section 5); `None` for anything else, padding included
/// (`=` is not a token character, so it cannot appear in a subprotocol entry).
fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut bits, mut count) = (0u32, 0u32);
    for byte in text.bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(value);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    // A lone trailing character (6 bits) cannot end a valid encoding; leftover bits must be 0.
    (count < 6 && bits == 0).then_some(out)
}

/// Answers `pixl-ipc` when the client offered it: a browser that offered subprotocols fails
/// the connection unless the server selects one of them. The token entry is never echoed.
fn select_subprotocol(upgrade: &Upgrade, mut response: Response) -> Response {
    if offered_subprotocols(upgrade).any(|entry| entry == SUBPROTOCOL) {
        response.headers_mut().insert(
            "sec-websocket-protocol",
            tokio_tungstenite::tungstenite::http::HeaderValue::from_static(SUBPROTOCOL),
        );
    }
    response
}

/// Compares without stopping at the first difference, so timing does not reveal the token.
/// Runs over the longer of the two with the length difference folded in, so neither where
/// they differ nor how long the token is shows in the time taken.
fn same_secret(given: &[u8], expected: &str) -> bool {
    let expected = expected.as_bytes();
    let longest = given.len().max(expected.len());
    let byte = |bytes: &[u8], i: usize| bytes.get(i).copied().unwrap_or(0);
    let diff = (0..longest).fold(u8::from(given.len() != expected.len()), |diff, i| {
        diff | (byte(given, i) ^ byte(expected, i))
    });
    diff == 0
}

fn refusal(status: StatusCode, reason: &str) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(format!("{reason}\n")));
    *response.status_mut() = status;
    if status == StatusCode::UNAUTHORIZED {
        if let Ok(value) = "Bearer".parse() {
            response.headers_mut().insert("www-authenticate", value);
        }
    }
    response
}

/// One WebSocket listener, with the setup its connections share.
pub(crate) struct WsListener {
    listener: TcpListener,
    setup: Arc<WsSetup>,
}

/// A place in the handshake pool until the upgrade is through; the connection slot is taken
/// only then, so peers that never finish a handshake cannot crowd out served ones.
pub(crate) struct WsTicket {
    handshake: Handshake,
    setup: Arc<WsSetup>,
}

/// An accepted TCP connection, holding its place among the handshake sockets.
pub(crate) struct Accepted {
    tcp: TcpStream,
    peer: SocketAddr,
    socket_place: OwnedSemaphorePermit,
}

impl Listener for WsListener {
    type Io = Accepted;
    type Ticket = WsTicket;

    async fn accept(&mut self) -> io::Result<Accepted> {
        // The semaphore is never closed; the error arm is there only to avoid a panic path.
        let socket_place = self
            .setup
            .handshake_sockets
            .clone()
            .acquire_owned()
            .await
            .map_err(io::Error::other)?;
        let (tcp, peer) = self.listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        Ok(Accepted {
            tcp,
            peer,
            socket_place,
        })
    }

    fn admit(&self, ctx: &ConnectionContext, _io: &Self::Io) -> Result<WsTicket, Refusal> {
        let (handshake, evicted_one) = ctx.admission.handshake();
        if evicted_one {
            tracing::info!(
                "WebSocket handshake pool full: dropped the oldest handshake in progress"
            );
            ctx.stats.connection_refused();
        }
        Ok(WsTicket {
            handshake,
            setup: self.setup.clone(),
        })
    }

    /// Never called: `admit` always finds a handshake place (a full pool drops its oldest),
    /// and the connection limit is checked at the upgrade, where a 503 can be answered.
    fn refuse(&self, _io: Self::Io, _refusal: &Refusal) {}

    async fn serve(ctx: Arc<ConnectionContext>, id: u64, io: Self::Io, ticket: WsTicket) {
        let WsTicket { handshake, setup } = ticket;
        // A handshake the pool drops to make room ends here; once upgraded it has left the
        // pool and can no longer be dropped.
        let evicted = handshake.evicted();
        let peer = io.peer;
        tokio::select! {
            () = evicted.cancelled() => {
                tracing::debug!(conn = id, %peer, "handshake dropped to make room for a newer one");
            }
            () = handshake_and_serve(ctx, &setup, id, io, handshake) => {}
        }
    }
}

/// Runs one WebSocket connection: the allow-list, TLS, the upgrade, then the connection.
async fn handshake_and_serve(
    ctx: Arc<ConnectionContext>,
    setup: &WsSetup,
    id: u64,
    Accepted {
        tcp,
        peer,
        socket_place,
    }: Accepted,
    handshake: Handshake,
) {
    let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
    // The listener's runtime registered the socket; register it with this connection's
    // own (worker) runtime instead, or every event would hop threads to reach it.
    let tcp = match tcp.into_std().and_then(TcpStream::from_std) {
        Ok(tcp) => tcp,
        Err(err) => {
            tracing::warn!(conn = id, %peer, error = %err, "cannot set up the connection");
            return;
        }
    };
    let local = tcp.local_addr().unwrap_or(peer);
    // The token and allow-list in force now serve this connection to its end, whatever a
    // reload makes them later.
    let rules = ctx.access.current();
    // The allow-list comes before TLS and the upgrade: a refused peer reaches no handler.
    let credentials = match setup.check_peer(&rules, peer, local).await {
        Ok(credentials) => credentials,
        Err(reason) => {
            let _ = tokio::time::timeout_at(deadline, refuse_peer(&ctx, setup, tcp, peer, &reason))
                .await;
            return;
        }
    };
    let handshake = Pending {
        deadline,
        _handshake: handshake,
        _socket_place: socket_place,
        local,
        peer,
        credentials,
        rules,
    };
    match &setup.tls {
        None => upgrade_and_serve(ctx, setup, id, tcp, false, handshake).await,
        Some(acceptor) => match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => upgrade_and_serve(ctx, setup, id, tls, true, handshake).await,
            Ok(Err(err)) => {
                tracing::info!(%peer, error = %bounded(&err.to_string()), "TLS handshake failed")
            }
            Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
        },
    }
}

/// A WebSocket connection between accept and upgrade.
struct Pending {
    /// When the whole handshake (TLS and upgrade) must be done.
    deadline: tokio::time::Instant,
    _handshake: Handshake,
    /// Its place among the handshake sockets, until the upgrade or the socket's close.
    _socket_place: OwnedSemaphorePermit,
    local: SocketAddr,
    peer: SocketAddr,
    credentials: Option<PeerCredentials>,
    /// The token and allow-list this connection is admitted under.
    rules: Arc<Reloadable>,
}

/// An HTTP response with a JSON body that closes the connection.
fn http_response(status: &str, body: &[u8]) -> Vec<u8> {
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(body);
    response
}

/// Answers a peer the allow-list does not admit with HTTP 403 and the `peer_not_allowed` error
/// as its JSON body, logged and counted like a refused UNIX-socket peer.
async fn refuse_peer(
    ctx: &ConnectionContext,
    setup: &WsSetup,
    tcp: TcpStream,
    peer: SocketAddr,
    reason: &str,
) {
    tracing::warn!(%peer, reason, "connection refused: peer not on the uid/gid allow-list");
    ctx.stats.peer_rejected();
    let reply = pixl_ipc_protocol::ErrorReply::new(
        None,
        pixl_ipc_protocol::ErrorCode::PeerNotAllowed,
        reason.to_owned(),
    );
    let body = pixl_ipc_protocol::encode_line(&reply).unwrap_or_default();
    match &setup.tls {
        None => answer_http(tcp, "403 Forbidden", &body).await,
        Some(acceptor) => {
            if let Ok(tls) = acceptor.accept(tcp).await {
                answer_http(tls, "403 Forbidden", &body).await;
            }
        }
    }
}

/// Reads the request head (bounded), then answers with `status` and a JSON `body` and closes.
/// Closing with the request unread would reset the connection, and the peer could lose the
/// answer.
async fn answer_http<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, status: &str, body: &[u8]) {
    let mut head = Vec::new();
    let mut buffer = [0u8; 2048];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => head.extend_from_slice(&buffer[..read]),
        }
    }
    if stream.write_all(&http_response(status, body)).await.is_ok() {
        let _ = stream.shutdown().await;
    }
}

/// Runs the upgrade with its checks, then the connection.
async fn upgrade_and_serve<S>(
    ctx: Arc<ConnectionContext>,
    setup: &WsSetup,
    id: u64,
    stream: S,
    tls: bool,
    pending: Pending,
) where
    S: AsyncRead + AsyncWrite + AsRawFd + Unpin + Send + 'static,
{
    let Pending {
        deadline,
        _handshake,
        _socket_place,
        local,
        peer,
        credentials,
        rules,
    } = pending;
    let mut path = String::new();
    let mut slot = None;
    // The callback's error type is tungstenite's HTTP response, large or not.
    #[allow(clippy::result_large_err)]
    let callback = |upgrade: &Upgrade, response: Response| {
        path = upgrade.uri().path().to_owned();
        if let Some((status, reason)) = setup.check(&rules, upgrade, tls) {
            tracing::info!(peer = %peer, status = status.as_u16(), reason, "WebSocket upgrade refused");
            return Err(refusal(status, reason));
        }
        // Only now, with the peer through every check, does it take a connection slot.
        match ctx
            .admission
            .connection(credentials.map(|credentials| credentials.uid))
        {
            Ok(taken) => {
                slot = Some(taken);
                Ok(select_subprotocol(upgrade, response))
            }
            Err(over) => {
                over.record(&ctx.stats);
                let mut response =
                    ErrorResponse::new(Some(String::from_utf8_lossy(&over.line()).into_owned()));
                *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                Err(response)
            }
        }
    };
    // The frames the peer sends are watched below tungstenite, for a message left incomplete.
    let (stream, frames) = frames::Tracked::new(stream);
    let upgrade =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(setup.wire));
    let ws = match tokio::time::timeout_at(deadline, upgrade).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(err)) => {
            // Its message may quote the peer's request (a header name, for one).
            tracing::info!(%peer, error = %bounded(&err.to_string()), "WebSocket upgrade refused or failed");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "WebSocket upgrade timed out");
            return;
        }
    };
    // The handshake's places go back; the slot is held until the connection ends.
    drop(_handshake);
    drop(_socket_place);
    let _slot = slot;
    let info = Arc::new(ConnectionInfo {
        id,
        transport: Transport::WebSocket {
            local,
            peer,
            tls,
            path,
        },
        peer: credentials,
    });
    tracing::debug!(conn = id, %peer, "WebSocket connection opened");

    let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_DEPTH);
    let (outbound, replies) = Outbound::new(&ctx.outbound_limits);
    let driver = Driver {
        fd: ws.get_ref().as_raw_fd(),
        ws,
        inbound: inbound_tx,
        replies,
        ping_interval: setup.ping_interval,
        idle_timeout: setup.idle_timeout,
        frames,
        partial_timeout: ctx.partial_message_timeout,
        max_message_bytes: setup.max_message_bytes,
        going_away: ctx.shutdown.clone(),
    };
    // The driver owns the socket, so it is the writer: it ends once the last reply is out, or
    // with an error when the peer left first; it sees the peer leave on its own.
    let writer = tokio::spawn(driver.run(id));
    let requests = tokio_stream_from(inbound_rx);
    let watch = PeerWatch::new(writer, std::future::pending());
    connection::serve(info, &ctx, requests, outbound, watch).await;
    tracing::debug!(conn = id, "WebSocket connection closed");
}

/// A receiver as a `Stream`, without pulling in tokio-stream for one adapter.
fn tokio_stream_from(
    receiver: mpsc::Receiver<Inbound>,
) -> impl Stream<Item = Inbound> + Unpin + Send {
    futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{base64url_decode, same_secret, Listener, WebSockets};
    use crate::config::{ServerConfig, WebSocketConfig};

    /// A listener stops accepting once handshakes hold `2 * max_handshakes` sockets plus one
    /// per listener, whatever the workers have not yet closed, and goes on when one is closed.
    #[tokio::test]
    async fn handshakes_hold_at_most_twice_the_pool_in_sockets() {
        let config = ServerConfig::new("unused.sock").with_websocket(
            WebSocketConfig::default()
                .listen_on(([127, 0, 0, 1], 0).into())
                .with_max_handshakes(2),
        );
        let (websockets, mut listeners) = WebSockets::bind(&config, Vec::new()).await.unwrap();
        let address = websockets.addrs[0];
        let mut listener = listeners.remove(0);
        let peers: Vec<_> = (0..6)
            .map(|_| std::net::TcpStream::connect(address).unwrap())
            .collect();
        let mut held = Vec::new();
        for _ in 0..5 {
            held.push(listener.accept().await.unwrap());
        }
        let sixth = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
        assert!(sixth.is_err(), "a sixth socket was accepted with five held");
        held.pop();
        let sixth = tokio::time::timeout(Duration::from_secs(5), listener.accept()).await;
        assert!(
            matches!(sixth, Ok(Ok(_))),
            "no accept after a socket was closed"
        );
        drop(peers);
    }

    #[test]
    fn a_token_matches_only_itself_whatever_the_lengths() {
        assert!(same_secret(b"s3cret", "s3cret"));
        for given in [&b""[..], b"s3cre", b"s3cret!", b"s3creT", b"s3cret\0"] {
            assert!(!same_secret(given, "s3cret"), "{given:?}");
        }
    }

    #[test]
    fn base64url_without_padding_decodes_and_anything_else_does_not() {
        assert_eq!(base64url_decode("").as_deref(), Some(&b""[..]));
        assert_eq!(base64url_decode("Zg").as_deref(), Some(&b"f"[..]));
        assert_eq!(base64url_decode("Zm8").as_deref(), Some(&b"fo"[..]));
        assert_eq!(base64url_decode("Zm9v").as_deref(), Some(&b"foo"[..]));
        assert_eq!(base64url_decode("-_8").as_deref(), Some(&[0xfb, 0xff][..]));
        // Padding, the standard alphabet's + and /, a lone trailing character, stray bits.
        for bad in ["Zg==", "+/8", "Z", "Zm9vY", "Zh", "Zm9=", "Zm 9v"] {
            assert_eq!(base64url_decode(bad), None, "{bad}");
        }
    }
}

//! The access rules a running server can change without dropping a connection (the WebSocket
//! token and the uid/gid allow-list), held where every accept and every WebSocket upgrade reads
//! them. A new connection is admitted under the rules in force when it arrives; a connection
//! already admitted keeps going whatever they become.

use std::sync::{Arc, PoisonError, RwLock};

use crate::config::{peer_allowed, ServerConfig};

/// The settings [`ServerHandle::reload`](crate::ServerHandle::reload) can change while the
/// server runs. Get the ones in force with
/// [`ServerHandle::reloadable`](crate::ServerHandle::reloadable), change its fields, and hand
/// it back.
///
/// Everything else (listeners, limits, TLS files, origins) is fixed when the server starts.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reloadable {
    /// The bearer token WebSocket upgrades must present (see
    /// [`WebSocketConfig::token`](crate::WebSocketConfig::token)); `None`: no token.
    pub ws_token: Option<String>,
    /// See [`ServerConfig::allowed_uids`].
    pub allowed_uids: Vec<u32>,
    /// See [`ServerConfig::allowed_gids`].
    pub allowed_gids: Vec<u32>,
}

impl Reloadable {
    /// The reloadable settings of `config`, as the server starts with them.
    pub fn from_config(config: &ServerConfig) -> Self {
        Reloadable {
            ws_token: config.websocket.token.clone(),
            allowed_uids: config.allowed_uids.clone(),
            allowed_gids: config.allowed_gids.clone(),
        }
    }

    /// True when a uid/gid allow-list is set (either list not empty).
    pub fn has_allow_list(&self) -> bool {
        !self.allowed_uids.is_empty() || !self.allowed_gids.is_empty()
    }

    /// True when a peer with these credentials may be served.
    pub(crate) fn allows_peer(&self, uid: u32, gid: u32) -> bool {
        peer_allowed(&self.allowed_uids, &self.allowed_gids, uid, gid)
    }
}

impl std::fmt::Debug for Reloadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloadable")
            .field("ws_token", &self.ws_token.as_ref().map(|_| "<redacted>"))
            .field("allowed_uids", &self.allowed_uids)
            .field("allowed_gids", &self.allowed_gids)
            .finish()
    }
}

/// What a [`ServerHandle::reload`](crate::ServerHandle::reload) changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ReloadReport {
    /// The WebSocket token is a different one (or was set or removed).
    pub token_changed: bool,
    /// The uid or gid allow-list is different.
    pub allowed_peers_changed: bool,
}

/// The rules in force, swapped whole: a reader gets one consistent set. Read once per accepted
/// connection (UNIX) or per upgrade (WebSocket), never per request.
pub(crate) struct AccessRules(RwLock<Arc<Reloadable>>);

impl AccessRules {
    /// Holds `rules` as the ones in force.
    pub(crate) fn new(rules: Reloadable) -> Self {
        AccessRules(RwLock::new(Arc::new(rules)))
    }

    /// The rules in force now.
    pub(crate) fn current(&self) -> Arc<Reloadable> {
        // Nothing panics while holding the lock; if something did, the value is still whole.
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Puts `rules` in force and says what differs from the ones before.
    pub(crate) fn replace(&self, rules: Reloadable) -> ReloadReport {
        let mut slot = self.0.write().unwrap_or_else(PoisonError::into_inner);
        let report = ReloadReport {
            token_changed: slot.ws_token != rules.ws_token,
            allowed_peers_changed: slot.allowed_uids != rules.allowed_uids
                || slot.allowed_gids != rules.allowed_gids,
        };
        *slot = Arc::new(rules);
        report
    }
}

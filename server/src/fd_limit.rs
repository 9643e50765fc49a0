//! The process's descriptor limit, and how many connections it allows. Each connection needs
//! up to two descriptors at once: its socket, and for a while a second one (a UNIX writer
//! waiting for room registers a duplicate; a WebSocket whose frames wait for the core watches a
//! duplicate for the peer's FIN). With WebSocket listeners, the handshakes in progress hold
//! sockets of their own before they take a connection slot: see [`handshake_sockets`].
//!
//! So at most `RESERVED_DESCRIPTORS + 2 * max_connections + handshake_sockets(max_handshakes)
//! + websocket_listeners` descriptors are open (the last two terms only with WebSocket
//! listeners), and `max_connections` is lowered at start until that fits the limit.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Descriptors one connection may hold at once.
pub(crate) const DESCRIPTORS_PER_CONNECTION: u64 = 2;
/// Descriptors kept for everything that is not a connection: the listeners, the socket lock,
/// the runtimes' event queues and wakers, log files, a handler's own files.
pub(crate) const RESERVED_DESCRIPTORS: u64 = 64;

/// Sockets the WebSocket handshakes may hold at once: the `max_handshakes` live ones, and as
/// many that the pool dropped to make room and whose tasks have not closed them yet (the
/// listeners wait for one to close before accepting more).
pub(crate) fn handshake_sockets(max_handshakes: usize) -> usize {
    max_handshakes.max(1).saturating_mul(2)
}

/// Descriptors kept for everything but the connections' own: the server's
/// [`RESERVED_DESCRIPTORS`], and with `listeners` WebSocket listeners their handshakes' sockets,
/// plus one per listener (each accept loop holds a handshake place while it waits).
pub(crate) fn reserved(max_handshakes: usize, listeners: usize) -> u64 {
    if listeners == 0 {
        return RESERVED_DESCRIPTORS;
    }
    let sockets = handshake_sockets(max_handshakes).saturating_add(listeners);
    RESERVED_DESCRIPTORS.saturating_add(u64::try_from(sockets).unwrap_or(u64::MAX))
}

/// Raises the soft descriptor limit to the hard limit (what a daemon that serves many
/// connections wants; the soft default of 1024 is for interactive shells). Returns the limit in
/// force afterwards. The server binary calls this at start; an embedding program decides for
/// itself.
///
/// # Errors
/// The limit cannot be read or set.
pub fn raise_descriptor_limit() -> Result<u64, nix::Error> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(hard.max(soft))
}

/// The soft descriptor limit now in force (`None` if it cannot be read).
pub(crate) fn current_limit() -> Option<u64> {
    getrlimit(Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

/// How many connections `limit` descriptors can serve without running out, `reserved` of them
/// kept for the rest (see [`reserved`]).
pub(crate) fn connections_for(limit: u64, reserved: u64) -> u64 {
    limit.saturating_sub(reserved) / DESCRIPTORS_PER_CONNECTION
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_shared_out_after_the_reserve() {
        let unix_only = reserved(64, 0);
        assert_eq!(connections_for(1024, unix_only), 480);
        assert_eq!(connections_for(64, unix_only), 0);
        assert_eq!(connections_for(10, unix_only), 0);
        assert_eq!(connections_for(20_064, unix_only), 10_000);
        // The default 64 handshakes keep 128 sockets more, and one listener one more.
        assert_eq!(reserved(64, 1), 193);
        assert_eq!(connections_for(256, reserved(64, 1)), 31);
        assert_eq!(connections_for(194, reserved(64, 1)), 0);
        assert_eq!(connections_for(195, reserved(64, 1)), 1);
    }
}

//! The process's descriptor limit, and how many connections it allows. Each connection needs
//! up to two descriptors at once: its socket, and for a while a second one (a UNIX writer
//! waiting for room registers a duplicate; a WebSocket whose frames wait for the core watches a
//! duplicate for the peer's FIN).

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Descriptors one connection may hold at once.
pub(crate) const DESCRIPTORS_PER_CONNECTION: u64 = 2;
/// Descriptors kept for everything that is not a connection: the listeners, the socket lock,
/// the runtimes' event queues and wakers, log files, a handler's own files.
pub(crate) const RESERVED_DESCRIPTORS: u64 = 64;

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

/// How many connections `limit` descriptors can serve without running out.
pub(crate) fn connections_for(limit: u64) -> u64 {
    limit.saturating_sub(RESERVED_DESCRIPTORS) / DESCRIPTORS_PER_CONNECTION
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_shared_out_after_the_reserve() {
        assert_eq!(connections_for(1024), 480);
        assert_eq!(connections_for(64), 0);
        assert_eq!(connections_for(10), 0);
        assert_eq!(connections_for(20_064), 10_000);
    }
}

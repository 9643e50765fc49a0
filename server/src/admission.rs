//! Who is given a connection slot: the server-wide connection limit, the per-uid cap on the UNIX
//! socket, and the small pool of WebSocket handshakes in progress (which take no connection slot
//! until they are through). Every decision is taken at once, without waiting on the peer, so a
//! refused peer costs nothing that lasts. A full handshake pool makes room by dropping its
//! oldest handshake rather than refusing the newcomer: a real client finishes its handshake in
//! milliseconds, so peers that connect and stay silent cannot keep new clients out.

// The handshake pool serves only the WebSocket transport, absent without the `ws` feature.
#![cfg_attr(not(feature = "ws"), allow(dead_code))]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use pixl_ipc_protocol::{encode_line, ErrorCode, ErrorReply};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::stats::Stats;

/// The limits and what is taken of them.
pub(crate) struct Admission {
    slots: Arc<Semaphore>,
    max_connections: usize,
    per_uid: Arc<Mutex<HashMap<u32, usize>>>,
    uid_cap: usize,
    handshakes: Arc<Mutex<Handshakes>>,
}

/// The handshakes in progress, oldest first.
struct Handshakes {
    pending: VecDeque<(u64, CancellationToken)>,
    next_id: u64,
    limit: usize,
}

/// Why a connection was not taken on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Every connection slot is taken.
    ServerFull { limit: usize },
    /// This uid has its share of the slots already.
    UidFull { uid: u32, limit: usize },
    /// The peer's uid and gid are not on the allow-list.
    PeerNotAllowed { uid: u32, gid: u32 },
    /// An allow-list is set and the peer's credentials cannot be read: it cannot be let in.
    PeerUnknown,
}

impl Refusal {
    fn code(&self) -> ErrorCode {
        match self {
            Refusal::PeerNotAllowed { .. } | Refusal::PeerUnknown => ErrorCode::PeerNotAllowed,
            _ => ErrorCode::TooManyConnections,
        }
    }

    fn message(&self) -> String {
        match *self {
            Refusal::ServerFull { limit } => {
                format!("server is at its limit of {limit} connections")
            }
            Refusal::UidFull { uid, limit } => {
                format!("uid {uid} has its limit of {limit} connections open")
            }
            Refusal::PeerNotAllowed { uid, gid } => {
                format!("uid {uid} / gid {gid} may not use this server")
            }
            Refusal::PeerUnknown => {
                "the peer's uid and gid cannot be read, and this server admits only listed ones"
                    .to_owned()
            }
        }
    }

    /// The error line that tells the peer: `too_many_connections` or `peer_not_allowed`.
    pub(crate) fn line(&self) -> Bytes {
        let reply = ErrorReply::new(None, self.code(), self.message());
        encode_line(&reply).unwrap_or_default()
    }

    /// Logs the refusal and counts it (`refusedConnections`, or `rejectedPeers` for the
    /// allow-list).
    pub(crate) fn record(&self, stats: &Stats) {
        match *self {
            Refusal::PeerNotAllowed { uid, gid } => {
                tracing::warn!(
                    uid,
                    gid,
                    "connection refused: peer not on the uid/gid allow-list"
                );
                stats.peer_rejected();
            }
            Refusal::PeerUnknown => {
                tracing::warn!("connection refused: the peer's credentials cannot be read and a uid/gid allow-list is set");
                stats.peer_rejected();
            }
            _ => {
                tracing::warn!(reason = %self.message(), "connection refused");
                stats.connection_refused();
            }
        }
    }
}

/// A connection's place under the limits; dropping it gives the place back.
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
    _uid: Option<UidShare>,
}

/// One connection counted against its uid's cap.
struct UidShare {
    uid: u32,
    counts: Arc<Mutex<HashMap<u32, usize>>>,
}

impl Drop for UidShare {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        if let Some(count) = counts.get_mut(&self.uid) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.uid);
            }
        }
    }
}

/// A WebSocket handshake's place in the handshake pool; dropping it (once the upgrade is
/// through, or the handshake failed) gives the place back.
pub(crate) struct Handshake {
    id: u64,
    evicted: CancellationToken,
    pool: Arc<Mutex<Handshakes>>,
}

impl Handshake {
    /// Cancelled if the pool drops this handshake to make room for a newer one.
    pub(crate) fn evicted(&self) -> CancellationToken {
        self.evicted.clone()
    }
}

impl Drop for Handshake {
    fn drop(&mut self) {
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(at) = pool.pending.iter().position(|(id, _)| *id == self.id) {
            pool.pending.remove(at);
        }
    }
}

fn lock(counts: &Mutex<HashMap<u32, usize>>) -> MutexGuard<'_, HashMap<u32, usize>> {
    counts.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Admission {
    /// Limits of `max_connections` in all, `uid_cap` per uid, and `max_handshakes` WebSocket
    /// handshakes in progress.
    pub(crate) fn new(max_connections: usize, uid_cap: usize, max_handshakes: usize) -> Self {
        Admission {
            slots: Arc::new(Semaphore::new(max_connections)),
            max_connections,
            per_uid: Arc::default(),
            uid_cap,
            handshakes: Arc::new(Mutex::new(Handshakes {
                pending: VecDeque::new(),
                next_id: 0,
                limit: max_handshakes,
            })),
        }
    }

    /// A connection slot, counted against `uid`'s cap when the peer's uid is known.
    pub(crate) fn connection(&self, uid: Option<u32>) -> Result<Slot, Refusal> {
        let share = match uid {
            Some(uid) => {
                let mut counts = lock(&self.per_uid);
                let count = counts.entry(uid).or_insert(0);
                if *count >= self.uid_cap {
                    return Err(Refusal::UidFull {
                        uid,
                        limit: self.uid_cap,
                    });
                }
                *count += 1;
                Some(UidShare {
                    uid,
                    counts: self.per_uid.clone(),
                })
            }
            None => None,
        };
        // `share`, dropped on refusal, gives the uid's count back.
        let permit = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::ServerFull {
                limit: self.max_connections,
            })?;
        Ok(Slot {
            _permit: permit,
            _uid: share,
        })
    }

    /// A place in the WebSocket handshake pool. When the pool is full its oldest handshake is
    /// cancelled to make room (and `true` says so, for the caller to count).
    pub(crate) fn handshake(&self) -> (Handshake, bool) {
        let mut pool = self
            .handshakes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut evicted_one = false;
        while pool.pending.len() >= pool.limit.max(1) {
            if let Some((_, oldest)) = pool.pending.pop_front() {
                oldest.cancel();
                evicted_one = true;
            }
        }
        let id = pool.next_id;
        pool.next_id += 1;
        let evicted = CancellationToken::new();
        pool.pending.push_back((id, evicted.clone()));
        drop(pool);
        (
            Handshake {
                id,
                evicted,
                pool: self.handshakes.clone(),
            },
            evicted_one,
        )
    }

    /// Connections a uid has open now.
    #[cfg(test)]
    fn open_for(&self, uid: u32) -> usize {
        lock(&self.per_uid).get(&uid).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uid_gets_its_cap_and_gives_it_back() {
        let admission = Admission::new(10, 2, 1);
        let first = admission.connection(Some(7)).expect("first");
        let _second = admission.connection(Some(7)).expect("second");
        assert_eq!(
            admission.connection(Some(7)).err(),
            Some(Refusal::UidFull { uid: 7, limit: 2 })
        );
        // Another uid and peers of unknown uid are not affected.
        let _other = admission.connection(Some(8)).expect("other uid");
        let _unknown = admission.connection(None).expect("unknown uid");
        drop(first);
        assert_eq!(admission.open_for(7), 1);
        assert!(admission.connection(Some(7)).is_ok());
    }

    #[test]
    fn a_refusal_over_the_server_limit_does_not_count_against_the_uid() {
        let admission = Admission::new(1, 5, 1);
        let _only = admission.connection(Some(1)).expect("only slot");
        assert_eq!(
            admission.connection(Some(2)).err(),
            Some(Refusal::ServerFull { limit: 1 })
        );
        assert_eq!(admission.open_for(2), 0);
    }

    #[test]
    fn a_full_handshake_pool_drops_its_oldest_and_takes_no_slot() {
        let admission = Admission::new(1, 1, 2);
        let (first, evicted) = admission.handshake();
        assert!(!evicted);
        let (second, _) = admission.handshake();
        let (_third, evicted) = admission.handshake();
        assert!(evicted && first.evicted().is_cancelled());
        assert!(!second.evicted().is_cancelled());
        // A handshake that finished leaves the pool: the next one evicts nobody.
        drop(second);
        let (_fourth, evicted) = admission.handshake();
        assert!(!evicted);
        assert!(admission.connection(None).is_ok());
    }
}

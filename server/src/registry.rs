//! The push registry: every open connection of every transport, by id, with a handle on its
//! outbound queue that does not keep the queue open. [`ServerHandle`](crate::ServerHandle)'s
//! `push`, `broadcast` and `connections` read it; the connection core adds and removes entries.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use pixl_ipc_protocol::{encode_line, Push};

use crate::handler::ConnectionInfo;
use crate::outbound::{Line, Outbound, QueueError, WeakOutbound};

/// Why a push was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// No open connection has that id.
    #[error("no open connection with id {0}")]
    NoSuchConnection(u64),
    /// The peer has not read what is already queued for it; the push was not queued.
    #[error("connection {0} is not reading; push refused")]
    PeerBehind(u64),
    /// The message could not be encoded as JSON.
    #[error("push could not be encoded as JSON")]
    Encode,
}

/// What a broadcast reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BroadcastReport {
    /// Connections the push was queued for.
    pub delivered: usize,
    /// Connections skipped because they were not reading.
    pub skipped: usize,
}

struct Registered {
    info: Arc<ConnectionInfo>,
    outbound: WeakOutbound,
}

/// The open connections, and the ids given to new ones.
pub(crate) struct Registry {
    entries: Mutex<HashMap<u64, Registered>>,
    next_id: AtomicU64,
}

impl Registry {
    pub(crate) fn new() -> Registry {
        Registry {
            entries: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        }
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<u64, Registered>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new connection's id. Ids follow accept order, so they tell connections apart in a
    /// stable way.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Makes a connection reachable for pushes; [`remove`](Self::remove) it when it ends.
    pub(crate) fn insert(&self, info: &Arc<ConnectionInfo>, outbound: &Outbound) {
        self.entries().insert(
            info.id,
            Registered {
                info: info.clone(),
                outbound: outbound.downgrade(),
            },
        );
    }

    pub(crate) fn remove(&self, id: u64) {
        self.entries().remove(&id);
    }

    /// How many connections are open.
    pub(crate) fn len(&self) -> usize {
        self.entries().len()
    }

    /// The open connections, in id order.
    pub(crate) fn connections(&self) -> Vec<Arc<ConnectionInfo>> {
        let mut list: Vec<_> = self
            .entries()
            .values()
            .map(|entry| entry.info.clone())
            .collect();
        list.sort_by_key(|info| info.id);
        list
    }

    /// Queues `push` for one connection; see [`ServerHandle::push`](crate::ServerHandle::push).
    pub(crate) fn push(&self, connection_id: u64, push: &Push) -> Result<(), PushError> {
        let line = encode_line(push).map_err(|_| PushError::Encode)?;
        let outbound = self
            .entries()
            .get(&connection_id)
            .and_then(|entry| entry.outbound.upgrade())
            .ok_or(PushError::NoSuchConnection(connection_id))?;
        outbound
            .try_push(Line::new(line, false))
            .map_err(|err| match err {
                QueueError::Full => PushError::PeerBehind(connection_id),
                QueueError::Closed => PushError::NoSuchConnection(connection_id),
            })
    }

    /// Queues `push` for every connection that keeps up with its replies.
    pub(crate) fn broadcast(&self, push: &Push) -> BroadcastReport {
        let Ok(line) = encode_line(push) else {
            return BroadcastReport::default();
        };
        // Collected first, so no push is queued while the registry is locked.
        let targets: Vec<Outbound> = self
            .entries()
            .values()
            .filter_map(|entry| entry.outbound.upgrade())
            .collect();
        let mut report = BroadcastReport::default();
        for outbound in targets {
            match outbound.try_push(Line::new(line.clone(), false)) {
                Ok(()) => report.delivered += 1,
                Err(_) => report.skipped += 1,
            }
        }
        report
    }
}

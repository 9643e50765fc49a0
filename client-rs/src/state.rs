//! What a client's connection is doing, and why a closed client closed.

use crate::address::Address;
use crate::error::Error;

/// The connection's state, as [`Client::state`](crate::Client::state) and [`Client::state_changes`](crate::Client::state_changes) report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    /// Connected; calls go straight out.
    Connected,
    /// The connection was lost and the reconnect policy is trying again; calls wait (within
    /// their timeout) for the outcome.
    Reconnecting {
        /// The attempt in progress, from 1.
        attempt: u32,
    },
    /// For good: every call fails with the error this reason names.
    Closed(CloseReason),
}

/// Why a client is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// [`Client::close`](crate::Client::close) was called, or every handle was dropped.
    ByCaller,
    /// The connection was lost and the reconnect policy is off.
    ConnectionLost(String),
    /// The reconnect policy ran out of retries.
    ReconnectFailed {
        /// Attempts made.
        attempts: u32,
        /// The last attempt's error.
        last_error: String,
    },
}

impl CloseReason {
    /// The error calls get once the client is closed for this reason.
    pub(crate) fn to_error(&self, address: &Address) -> Error {
        match self {
            CloseReason::ByCaller => Error::Closed,
            CloseReason::ConnectionLost(reason) => Error::NotConnected {
                address: address.to_string(),
                reason: reason.clone(),
            },
            CloseReason::ReconnectFailed {
                attempts,
                last_error,
            } => Error::ReconnectFailed {
                address: address.to_string(),
                attempts: *attempts,
                last_error: last_error.clone(),
            },
        }
    }
}

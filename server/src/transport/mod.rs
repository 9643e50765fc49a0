//! Transports: how connections arrive and how their bytes become messages. Each transport is a
//! [`Listener`]: it accepts, admits (takes the places under the limits it needs), refuses in its
//! own way, and serves a connection by adapting its framing to the connection core. A listener
//! knows nothing about the server that drives it: it gets the [`ConnectionContext`] and its own
//! setup, and the server's accept loop does the rest.
//!
//! `ws` is self-contained: nothing outside it but the server's start, its handle's WebSocket
//! queries and [`crate::handler::Transport::WebSocket`] names a WebSocket type.

pub(crate) mod stall;
pub(crate) mod unix;
pub(crate) mod ws;

use std::future::Future;
use std::io;
use std::sync::Arc;

use crate::admission::Refusal;
use crate::context::ConnectionContext;

/// A bound listener of one transport: accepts connections and serves them with a
/// [`ConnectionContext`].
pub(crate) trait Listener: Send + 'static {
    /// An accepted connection, before any transport handshake.
    type Io: Send + 'static;
    /// What an admitted connection holds while it is served: its places under the limits, and
    /// whatever of the listener's setup serving it needs.
    type Ticket: Send + 'static;

    /// Waits for the next connection.
    fn accept(&mut self) -> impl Future<Output = io::Result<Self::Io>> + Send;

    /// Takes the connection on, or says why not, at once and without waiting on the peer.
    fn admit(&self, ctx: &ConnectionContext, io: &Self::Io) -> Result<Self::Ticket, Refusal>;

    /// Tells a refused peer why, as far as it can without waiting (a refusal must cost nothing
    /// that lasts), and closes the connection.
    fn refuse(&self, io: Self::Io, refusal: &Refusal);

    /// Serves one connection to its end, holding `ticket` until then.
    fn serve(
        ctx: Arc<ConnectionContext>,
        id: u64,
        io: Self::Io,
        ticket: Self::Ticket,
    ) -> impl Future<Output = ()> + Send;
}

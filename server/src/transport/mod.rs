//! Transports: how connections arrive and how their bytes become messages. The accept loop,
//! the connection limits and the connection core are shared; each transport supplies only
//! `accept`, `admit` (which places under the limits it needs), `serve` (adapt its framing to the
//! core) and `refuse` (say why in its own way, without waiting).

pub(crate) mod stall;
pub(crate) mod unix;
pub(crate) mod ws;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use crate::admission::Refusal;
use crate::server::Shared;

/// One listener of one transport.
pub(crate) trait Transport: Send + 'static {
    /// An accepted connection, before any transport handshake.
    type Io: Send + 'static;
    /// What an admitted connection holds while it is served (its places under the limits).
    type Ticket: Send + 'static;

    /// Waits for the next connection.
    fn accept(&mut self) -> impl Future<Output = io::Result<Self::Io>> + Send;

    /// Takes the connection on, or says why not, at once and without waiting on the peer.
    fn admit(shared: &Shared, io: &Self::Io) -> Result<Self::Ticket, Refusal>;

    /// Tells a refused peer why, as far as it can without waiting (a refusal must cost nothing
    /// that lasts), and closes the connection.
    fn refuse(shared: &Shared, io: Self::Io, refusal: &Refusal);

    /// Serves one connection to its end, holding `ticket` until then.
    fn serve(
        shared: Arc<Shared>,
        id: u64,
        io: Self::Io,
        ticket: Self::Ticket,
    ) -> impl Future<Output = ()> + Send;
}

/// Accepts until shutdown. A failed accept (out of file descriptors, say) is logged and retried
/// after a pause, so one bad moment never stops the server.
pub(crate) async fn accept_loop<T: Transport>(shared: Arc<Shared>, mut transport: T) {
    let shutdown = shared.env.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = transport.accept() => accepted,
        };
        match accepted {
            Ok(io) => match T::admit(&shared, &io) {
                Ok(ticket) => {
                    let id = shared.next_connection_id();
                    shared.workers.spawn(
                        &shared.connections,
                        T::serve(shared.clone(), id, io, ticket),
                    );
                }
                Err(refusal) => {
                    refusal.record(&shared.env.stats);
                    T::refuse(&shared, io, &refusal);
                }
            },
            Err(err) => {
                tracing::warn!(error = %err, "accept failed; retrying shortly");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        }
    }
}

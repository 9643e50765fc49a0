//! Transports: how connections arrive and how their bytes become messages. The accept loop,
//! the connection limit and the connection core are shared; each transport supplies only
//! `accept`, `serve` (adapt its framing to the core) and `refuse` (say "too many connections"
//! in its own way).

pub(crate) mod stall;
pub(crate) mod unix;
pub(crate) mod ws;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;

use crate::server::Shared;

/// One listener of one transport.
pub(crate) trait Transport: Send + 'static {
    /// An accepted connection, before any transport handshake.
    type Io: Send + 'static;

    /// Waits for the next connection.
    fn accept(&mut self) -> impl Future<Output = io::Result<Self::Io>> + Send;

    /// Serves one connection to its end. `permit` holds its place under the connection limit.
    fn serve(
        shared: Arc<Shared>,
        id: u64,
        io: Self::Io,
        permit: OwnedSemaphorePermit,
    ) -> impl Future<Output = ()> + Send;

    /// Tells a connection over the limit why it is closed.
    fn refuse(shared: Arc<Shared>, io: Self::Io) -> impl Future<Output = ()> + Send;
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
            Ok(io) => match shared.connection_limit.clone().try_acquire_owned() {
                Ok(permit) => {
                    let id = shared.next_connection_id();
                    shared.workers.spawn(
                        &shared.connections,
                        T::serve(shared.clone(), id, io, permit),
                    );
                }
                Err(_) => {
                    tracing::warn!(
                        limit = shared.config.max_connections,
                        "connection refused: too many connections"
                    );
                    tokio::spawn(T::refuse(shared.clone(), io));
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

/// The message sent to a connection over the limit.
pub(crate) fn too_many_connections_line(limit: usize) -> bytes::Bytes {
    let reply = pixl_ipc_protocol::ErrorReply::new(
        None,
        pixl_ipc_protocol::ErrorCode::TooManyConnections,
        format!("server is at its limit of {limit} connections"),
    );
    pixl_ipc_protocol::encode_line(&reply).unwrap_or_default()
}

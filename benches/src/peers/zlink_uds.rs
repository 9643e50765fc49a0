//! zlink (varlink) over a UNIX socket: a service with an `Echo` method taking and returning an
//! untyped JSON object, and the proxy a client derives for it. Varlink answers one call at a
//! time per connection, in order, so concurrency is more connections.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use zlink::introspect;

/// The reply of `Echo`.
#[derive(Debug, Serialize, Deserialize, introspect::Type)]
pub struct EchoReply {
    /// The data sent.
    pub data: Value,
}

/// The interface's error (never sent: the echo cannot fail).
#[derive(Debug, zlink::ReplyError, introspect::ReplyError)]
#[zlink(interface = "org.pixl.bench.Echo")]
pub enum EchoError {
    /// Unused.
    Failed,
}

/// The client side, as `#[proxy]` generates it for a `Connection`.
#[zlink::proxy("org.pixl.bench.Echo")]
pub trait EchoProxy {
    /// `org.pixl.bench.Echo.Echo(data) -> (data)`.
    async fn echo(&mut self, data: &Value) -> zlink::Result<Result<EchoReply, EchoError>>;
}

/// The service, in a module of its own: `#[service]` generates public enums for its calls and
/// replies, undocumented.
#[allow(missing_docs, unreachable_pub)]
mod service {
    use super::{EchoReply, Value};

    /// The service.
    pub(super) struct Echo;

    #[zlink::service(interface = "org.pixl.bench.Echo")]
    impl Echo {
        async fn echo(&self, data: Value) -> EchoReply {
            EchoReply { data }
        }
    }
}

/// Serves the echo on `socket` until killed. `Server::run` is not `Send`: it runs on a
/// current-thread runtime, one task serving every connection.
pub fn serve(socket: &Path) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = zlink::tokio::unix::bind(socket)?;
        let server = zlink::Server::new(listener, service::Echo);
        super::announce(&socket.display().to_string());
        server.run().await?;
        Ok(())
    })
}

/// One varlink connection.
pub struct Conn {
    connection: zlink::Connection<zlink::tokio::unix::Stream>,
}

impl Conn {
    /// Connects to `socket`.
    pub async fn connect(socket: &str) -> anyhow::Result<Conn> {
        Ok(Conn {
            connection: zlink::tokio::unix::connect(socket).await?,
        })
    }

    /// One `Echo` call; returns the data echoed.
    pub async fn call(&mut self, message: &Value) -> anyhow::Result<Value> {
        let reply = self
            .connection
            .echo(message)
            .await?
            .map_err(|error| anyhow::anyhow!("varlink error: {error:?}"))?;
        Ok(reply.data)
    }
}

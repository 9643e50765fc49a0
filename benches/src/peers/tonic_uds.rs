//! tonic gRPC over a UNIX socket: a unary `Echo` whose message carries the JSON text in a
//! `bytes` field.
//!
//! The message and the service are written by hand with tonic's lower-level API (what
//! `tonic-build` would generate from `service Echo { rpc Echo(EchoMessage) returns
//! (EchoMessage); }` and `message EchoMessage { bytes body = 1; }`), so no `protoc` is needed;
//! the request path at run time is the generated code's.

use std::convert::Infallible;
use std::path::Path;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper_util::rt::TokioIo;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::codegen::tokio_stream::wrappers::UnixListenerStream;
use tonic::codegen::{http, BoxFuture, Service};
use tonic::server::{NamedService, UnaryService};
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::Status;
use tonic_prost::ProstCodec;

/// The full method name.
const METHOD: &str = "/bench.Echo/Echo";

/// The request and reply message: the JSON text of the benchmark message.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoMessage {
    /// The JSON text.
    #[prost(bytes = "bytes", tag = "1")]
    pub body: Bytes,
}

/// Serves the echo on `socket` until killed, on a default multi-threaded runtime.
pub fn serve(socket: &Path) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let incoming = UnixListenerStream::new(tokio::net::UnixListener::bind(socket)?);
        super::announce(&socket.display().to_string());
        tonic::transport::Server::builder()
            .add_service(EchoServer)
            .serve_with_incoming(incoming)
            .await?;
        Ok(())
    })
}

/// The service, as the generated `EchoServer` routes it.
#[derive(Clone)]
struct EchoServer;

impl NamedService for EchoServer {
    const NAME: &'static str = "bench.Echo";
}

impl Service<http::Request<tonic::body::Body>> for EchoServer {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        if request.uri().path() != METHOD {
            return Box::pin(async { Ok(Status::unimplemented("no such method").into_http()) });
        }
        Box::pin(async move {
            let mut grpc =
                tonic::server::Grpc::new(ProstCodec::<EchoMessage, EchoMessage>::default());
            Ok(grpc.unary(Echo, request).await)
        })
    }
}

/// The handler: the request's message back.
struct Echo;

impl UnaryService<EchoMessage> for Echo {
    type Response = EchoMessage;
    type Future = std::future::Ready<Result<tonic::Response<EchoMessage>, Status>>;

    fn call(&mut self, request: tonic::Request<EchoMessage>) -> Self::Future {
        std::future::ready(Ok(tonic::Response::new(request.into_inner())))
    }
}

/// A gRPC client on one HTTP/2 connection (a `Channel`); clones share the connection, so
/// calls from several tasks are multiplexed on it.
#[derive(Clone)]
pub struct Conn {
    grpc: tonic::client::Grpc<Channel>,
}

impl Conn {
    /// Connects to `socket` (tonic's UNIX-socket recipe: an endpoint with a connector).
    pub async fn connect(socket: &str) -> anyhow::Result<Conn> {
        let socket = socket.to_owned();
        let channel = Endpoint::try_from("http://localhost")?
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let socket = socket.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(socket).await?,
                    ))
                }
            }))
            .await?;
        Ok(Conn {
            grpc: tonic::client::Grpc::new(channel),
        })
    }

    /// One unary call; returns the reply message.
    pub async fn call(&mut self, message: &EchoMessage) -> anyhow::Result<EchoMessage> {
        self.grpc
            .ready()
            .await
            .map_err(|error| anyhow::anyhow!("the channel is not ready: {error}"))?;
        let reply = self
            .grpc
            .unary(
                tonic::Request::new(message.clone()),
                PathAndQuery::from_static(METHOD),
                ProstCodec::<EchoMessage, EchoMessage>::default(),
            )
            .await?;
        Ok(reply.into_inner())
    }
}

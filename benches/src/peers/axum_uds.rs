//! axum on a UNIX socket, and a hyper HTTP/1.1 client with keep-alive over it: the shape of
//! Docker's API (JSON bodies over HTTP on a local socket).

use std::path::Path;

use anyhow::bail;
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// The echo route.
const ROUTE: &str = "/echo";

/// Serves `POST /echo` (a JSON body, parsed and written back) on `socket` until killed, on a
/// default multi-threaded runtime (`#[tokio::main]`'s).
pub fn serve(socket: &Path) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::UnixListener::bind(socket)?;
        let app = Router::new().route(ROUTE, post(echo));
        super::announce(&socket.display().to_string());
        axum::serve(listener, app).await?;
        Ok(())
    })
}

async fn echo(Json(body): Json<Value>) -> Json<Value> {
    Json(body)
}

/// One keep-alive HTTP/1.1 connection (one request at a time, as HTTP/1.1 allows).
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
}

impl Conn {
    /// Connects to `socket` and hands the connection's I/O to a task of its own (hyper's way).
    pub async fn connect(socket: &str) -> anyhow::Result<Conn> {
        let stream = tokio::net::UnixStream::connect(socket).await?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Conn { sender })
    }

    /// `POST /echo` with `message` as the JSON body; returns the parsed reply body.
    pub async fn call(&mut self, message: &Value) -> anyhow::Result<Value> {
        let request = hyper::Request::post(ROUTE)
            .header(hyper::header::HOST, "localhost")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(serde_json::to_vec(message)?)))?;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        if !response.status().is_success() {
            bail!("axum answered {}", response.status());
        }
        let body = response.into_body().collect().await?.to_bytes();
        Ok(serde_json::from_slice(&body)?)
    }
}

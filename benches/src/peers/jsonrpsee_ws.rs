//! jsonrpsee: one server answering JSON-RPC over WebSocket and HTTP on a loopback port, with
//! its WebSocket client (calls multiplexed on one connection) and its HTTP client (a pool of
//! HTTP/1.1 connections).

use std::sync::Arc;

use jsonrpsee::core::client::ClientT;
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use jsonrpsee::rpc_params;
use jsonrpsee::server::{RpcModule, Server, ServerConfig};
use jsonrpsee::ws_client::{WsClient, WsClientBuilder};
use serde_json::Value;

/// The method name.
const METHOD: &str = "echo";

/// Serves `echo(message) -> message` on a free loopback port until killed, on a default
/// multi-threaded runtime; announces `127.0.0.1:PORT`.
pub fn serve() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // The default limit (100 connections) is below the 16 x 16 HTTP row's.
        let config = ServerConfig::builder().max_connections(4096).build();
        let server = Server::builder()
            .set_config(config)
            .build("127.0.0.1:0")
            .await?;
        let address = server.local_addr()?;
        let mut module = RpcModule::new(());
        module.register_method(METHOD, |params, _, _| params.one::<Value>())?;
        let handle = server.start(module);
        super::announce(&address.to_string());
        handle.stopped().await;
        Ok(())
    })
}

/// A jsonrpsee client: WebSocket or HTTP; clones share it.
#[derive(Clone)]
pub enum Conn {
    /// One WebSocket connection, calls multiplexed on it.
    Ws(Arc<WsClient>),
    /// An HTTP client (its own pool of keep-alive connections).
    Http(Arc<HttpClient>),
}

impl Conn {
    /// A WebSocket client on `ws://address`.
    pub async fn connect_ws(address: &str) -> anyhow::Result<Conn> {
        let client = WsClientBuilder::default()
            .build(format!("ws://{address}"))
            .await?;
        Ok(Conn::Ws(Arc::new(client)))
    }

    /// An HTTP client for `http://address`.
    pub fn connect_http(address: &str) -> anyhow::Result<Conn> {
        let client = HttpClientBuilder::default().build(format!("http://{address}"))?;
        Ok(Conn::Http(Arc::new(client)))
    }

    /// One `echo` call with `message` as the only parameter; returns the result.
    pub async fn call(&self, message: &Value) -> anyhow::Result<Value> {
        Ok(match self {
            Conn::Ws(client) => client.request(METHOD, rpc_params![message]).await?,
            Conn::Http(client) => client.request(METHOD, rpc_params![message]).await?,
        })
    }
}

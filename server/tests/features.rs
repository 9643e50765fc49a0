//! What each cargo feature set does with a configuration that asks for WebSockets or TLS: the
//! library built without `ws` (or `tls`) refuses it at start naming the feature, and leaves no
//! socket file behind; built with them, it serves. CI runs this file with the default features
//! and with `--no-default-features`.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use pixl_ipc_server::{Server, ServerConfig, ServerError, WebSocketConfig};

fn loopback_any_port() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Starts a server on a temp socket with `websocket`, and says how the start ended.
async fn start_with(websocket: WebSocketConfig) -> (Result<(), ServerError>, bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("features.sock");
    let started = Server::new(ServerConfig::new(&path).with_websocket(websocket))
        .start()
        .await;
    let result = match started {
        Ok(running) => {
            running.shutdown().await;
            Ok(())
        }
        Err(err) => Err(err),
    };
    (result, path.exists())
}

#[tokio::test]
async fn a_websocket_listener_needs_the_ws_feature() {
    let (result, socket_left) =
        start_with(WebSocketConfig::default().listen_on(loopback_any_port())).await;
    if cfg!(feature = "ws") {
        result.unwrap();
    } else {
        let err = result.unwrap_err();
        assert!(
            matches!(err, ServerError::FeatureDisabled { feature: "ws", .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("`ws` cargo feature"), "{err}");
        assert!(!socket_left, "a refused start leaves no socket file");
    }
}

#[tokio::test]
async fn a_wss_listener_needs_the_tls_feature() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    let (result, socket_left) = start_with(
        WebSocketConfig::default()
            .listen_on(loopback_any_port())
            .with_tls(&cert, &key),
    )
    .await;
    if cfg!(feature = "tls") {
        result.unwrap();
    } else {
        let err = result.unwrap_err();
        let feature = if cfg!(feature = "ws") { "tls" } else { "ws" };
        assert!(
            matches!(err, ServerError::FeatureDisabled { feature: f, .. } if f == feature),
            "{err:?}"
        );
        assert!(!socket_left, "a refused start leaves no socket file");
    }
}

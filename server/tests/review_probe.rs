//! Review probe: with more WebSocket listeners than handshake places, a listener whose loop
//! already holds a place waits for a live handshake to time out (5 s) instead of evicting it.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use pixl_ipc_server::WebSocketConfig;

fn probe(listeners: usize, places: usize, silent_peers: usize) {
    let server = LibServer::start(
        |config| {
            let mut ws = WebSocketConfig::default();
            for _ in 0..listeners {
                ws = ws.listen_on(([127, 0, 0, 1], 0).into());
            }
            config.with_websocket(ws.with_max_handshakes(places))
        },
        |_| {},
    );
    let first = server.handle.ws_addrs()[0];
    std::thread::sleep(Duration::from_millis(200));
    // One silent peer on the first listener: it never sends its upgrade request.
    let _silent: Vec<_> = (0..silent_peers)
        .map(|_| TcpStream::connect(first).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let mut ws = WsConn::open(&format!("ws://{first}/"));
    ws.send(r#"{"ipcReqID":1,"uri":"/ipcserver/test/echo","data":1}"#);
    let _ = ws.read_json();
    let took = started.elapsed();
    eprintln!("{listeners} listeners, {places} places, {silent_peers} silent: client served after {took:?}");
    assert!(
        took < Duration::from_secs(1),
        "client served after {took:?}"
    );
}

#[test]
fn one_listener_one_place() {
    probe(1, 1, 1);
}

#[test]
fn two_listeners_one_place() {
    probe(2, 1, 1);
}

#[test]
fn two_listeners_two_places_two_silent() {
    probe(2, 2, 2);
}

#[test]
fn three_listeners_two_places_two_silent() {
    probe(3, 2, 2);
}

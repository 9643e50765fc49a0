//! Extractor handlers on the server library, spoken to over the raw wire: each extractor, shared
//! state, pushes from inside a handler, arguments in any order, `async fn`s and closures.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use common::LibServer;
use pixl_ipc_server::{
    Connection, Data, HandlerError, Meta, Push, RequestContext, RouteError, Router, Server,
    ServerHandle, State,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Deserialize)]
struct Add {
    a: i64,
    b: i64,
}

#[derive(Serialize)]
struct Sum {
    sum: i64,
}

/// A plain `async fn` taking only its data.
async fn add(Data(add): Data<Add>) -> Result<Sum, HandlerError> {
    Ok(Sum { sum: add.a + add.b })
}

/// The shared counter state, and an `async fn` taking state, data and meta in that order.
#[derive(Clone)]
struct Hits(Arc<AtomicU64>);

async fn hit(
    State(hits): State<Hits>,
    Data(n): Data<u64>,
    meta: Meta,
) -> Result<Value, HandlerError> {
    let total = hits.0.fetch_add(n, Ordering::SeqCst) + n;
    Ok(json!({"total": total, "uri": meta.uri}))
}

fn server(runs: Arc<AtomicUsize>) -> LibServer {
    LibServer::start(
        |config| config,
        move |server: &Server| {
            server
                .router()
                .insert_state(Hits(Arc::new(AtomicU64::new(0))));
            let counted = runs.clone();
            server
                .add_handler("/add", "add", add)
                .unwrap()
                .add_handler("/counted", "counted", move |Data(add): Data<Add>| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    async move { Ok::<_, HandlerError>(add.a * add.b) }
                })
                .unwrap()
                .add_handler("/hit", "hit", hit)
                .unwrap()
                .add_handler("/meta", "meta", |meta: Meta| async move {
                    Ok::<_, HandlerError>(json!({
                        "uri": meta.uri,
                        "id": meta.ipc_req_id,
                        "id_json": meta.ipc_req_id_json,
                        "pid": meta.pid,
                        "ua": meta.user_agent,
                    }))
                })
                .unwrap()
                .add_handler("/conn", "conn", |conn: Connection, ctx: RequestContext| async move {
                    Ok::<_, HandlerError>(json!({
                        "uid": conn.peer.map(|peer| peer.uid),
                        "id": conn.id,
                        "same": ctx.connection.id == conn.id,
                        "unix": matches!(conn.transport, pixl_ipc_server::Transport::Unix { .. }),
                    }))
                })
                .unwrap()
                // Every extractor, the data last and the connection first.
                .add_handler(
                    "/push",
                    "push",
                    |conn: Connection, server: ServerHandle, meta: Meta, Data(text): Data<String>| async move {
                        server.push(conn.id, &Push { uri: Some("mine".into()), data: json!({"to_me": text}) })?;
                        let report = server.broadcast(&Push { uri: Some("all".into()), data: json!({"from": meta.uri}) });
                        Ok::<_, HandlerError>(json!({"delivered": report.delivered}))
                    },
                )
                .unwrap()
                // The same arguments the other way round.
                .add_handler(
                    "/reversed",
                    "reversed",
                    |Data(text): Data<String>, meta: Meta, State(hits): State<Hits>, conn: Connection| async move {
                        Ok::<_, HandlerError>(json!([text, meta.uri, hits.0.load(Ordering::SeqCst), conn.id > 0]))
                    },
                )
                .unwrap()
                .add_handler("/none", "none", || async { Ok::<_, HandlerError>("no arguments") })
                .unwrap();
        },
    )
}

#[test]
fn data_decodes_into_the_handlers_type_from_an_async_fn_and_a_closure() {
    let runs = Arc::new(AtomicUsize::new(0));
    let server = server(runs.clone());
    let mut conn = server.connect();
    assert_eq!(
        conn.call(r#"{"ipcReqID":"rq0","uri":"/add","data":{"a":2,"b":40}}"#),
        r#"{"ipcReqID":"rq0","data":{"sum":42}}"#
    );
    assert_eq!(
        conn.call(r#"{"ipcReqID":7,"uri":"/counted","data":{"a":6,"b":7}}"#),
        r#"{"ipcReqID":7,"data":42}"#
    );
    assert_eq!(
        conn.call(r#"{"ipcReqID":8,"uri":"/none"}"#),
        r#"{"ipcReqID":8,"data":"no arguments"}"#
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[test]
fn bad_data_gets_invalid_data_and_the_handler_does_not_run() {
    let runs = Arc::new(AtomicUsize::new(0));
    let server = server(runs.clone());
    let mut conn = server.connect();
    assert_eq!(
        conn.call(r#"{"ipcReqID":"wrong-type","uri":"/counted","data":{"a":"two","b":40}}"#),
        r#"{"ipcReqID":"wrong-type","data":{"code":"invalid_data","message":"invalid data at a: invalid type: string \"two\", expected i64 at line 1 column 10"}}"#
    );
    assert_eq!(
        conn.call(r#"{"ipcReqID":"absent","uri":"/counted"}"#),
        r#"{"ipcReqID":"absent","data":{"code":"invalid_data","message":"invalid data at .: invalid type: null, expected struct Add at line 1 column 4"}}"#
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0, "the handler never ran");
}

#[test]
fn meta_has_the_envelope() {
    let server = server(Arc::new(AtomicUsize::new(0)));
    let mut conn = server.connect();
    let reply: Value = serde_json::from_str(
        &conn.call(r#"{"ipcReqID":{"k":[1, 2]},"uri":"/meta","pid":4242,"userAgent":"tests/1.0"}"#),
    )
    .unwrap();
    assert_eq!(
        reply["data"],
        json!({"uri": "/meta", "id": {"k": [1, 2]}, "id_json": "{\"k\":[1, 2]}", "pid": 4242, "ua": "tests/1.0"})
    );
    let reply: Value =
        serde_json::from_str(&conn.call(r#"{"uri":"/meta","ipcReqID":null}"#)).unwrap();
    assert_eq!(
        reply["data"],
        json!({"uri": "/meta", "id": null, "id_json": null, "pid": null, "ua": null})
    );
}

#[test]
fn connection_has_the_kernels_peer_credentials() {
    let server = server(Arc::new(AtomicUsize::new(0)));
    let mut conn = server.connect();
    let reply: Value = serde_json::from_str(&conn.call(r#"{"ipcReqID":1,"uri":"/conn"}"#)).unwrap();
    assert_eq!(reply["data"]["uid"], json!(nix::unistd::geteuid().as_raw()));
    assert_eq!(reply["data"]["same"], json!(true));
    assert_eq!(reply["data"]["unix"], json!(true));
    assert_eq!(
        reply["data"]["id"],
        json!(server.handle.connections()[0].id),
        "the id pushes go to"
    );
}

#[test]
fn state_is_shared_across_requests_and_connections() {
    let server = server(Arc::new(AtomicUsize::new(0)));
    let (mut one, mut two) = (server.connect(), server.connect());
    assert_eq!(
        one.call(r#"{"ipcReqID":1,"uri":"/hit","data":5}"#),
        r#"{"ipcReqID":1,"data":{"total":5,"uri":"/hit"}}"#
    );
    assert_eq!(
        two.call(r#"{"ipcReqID":2,"uri":"/hit","data":3}"#),
        r#"{"ipcReqID":2,"data":{"total":8,"uri":"/hit"}}"#
    );
    // The other order of arguments sees the same state.
    assert_eq!(
        one.call(r#"{"ipcReqID":3,"uri":"/reversed","data":"x"}"#),
        format!(r#"{{"ipcReqID":3,"data":["x","/reversed",8,true]}}"#)
    );
}

#[test]
fn a_handler_pushes_to_its_caller_and_broadcasts() {
    let server = server(Arc::new(AtomicUsize::new(0)));
    let mut caller = server.connect();
    let mut other = server.connect();
    // Both are registered once each has had a reply.
    assert!(other
        .call(r#"{"ipcReqID":0,"uri":"/none"}"#)
        .contains("no arguments"));
    caller.send(r#"{"ipcReqID":1,"uri":"/push","data":"hello"}"#);
    // The push and broadcast are queued before the reply.
    assert_eq!(
        caller.read_line(),
        r#"{"uri":"mine","data":{"to_me":"hello"}}"#
    );
    assert_eq!(
        caller.read_line(),
        r#"{"uri":"all","data":{"from":"/push"}}"#
    );
    assert_eq!(
        caller.read_line(),
        r#"{"ipcReqID":1,"data":{"delivered":2}}"#
    );
    assert_eq!(
        other.read_line(),
        r#"{"uri":"all","data":{"from":"/push"}}"#
    );
}

#[tokio::test]
async fn a_state_that_is_not_registered_is_refused_at_registration() {
    let router = Router::new();
    let err = router.add_handler("/hit", "hit", hit).unwrap_err();
    assert!(
        matches!(err, RouteError::MissingState { type_name } if type_name.ends_with("Hits")),
        "{err}"
    );
    assert!(err.to_string().contains("State<"), "{err}");
    assert!(router.is_empty(), "nothing registered");
    router.insert_state(Hits(Arc::new(AtomicU64::new(1))));
    router.add_handler("/hit", "hit", hit).unwrap();
    assert_eq!(router.len(), 1);
}

/// Called through `Router::route` (no server): the extractors work from the parsed request,
/// and asking for the `ServerHandle` is a clear error.
#[tokio::test]
async fn an_extractor_route_called_through_the_router() {
    let router = Router::new();
    router.add_handler("/add", "add", add).unwrap();
    router
        .add_handler("/server", "server", |_: ServerHandle| async {
            Ok::<_, HandlerError>(())
        })
        .unwrap();
    let ctx = RequestContext {
        connection: Arc::new(pixl_ipc_server::ConnectionInfo {
            id: 1,
            transport: pixl_ipc_server::Transport::Unix { path: "/x".into() },
            peer: None,
        }),
    };
    let handler = router.route("/add").handler;
    let good = handler(
        pixl_ipc_server::Request::new("/add", json!({"a": 1, "b": 2})),
        ctx.clone(),
    )
    .await;
    assert_eq!(good, Ok(json!({"sum": 3})));
    let handler = router.route("/server").handler;
    let err = handler(pixl_ipc_server::Request::new("/server", Value::Null), ctx)
        .await
        .unwrap_err();
    assert_eq!(err.code, "handler_error");
    assert!(
        err.message.contains("not in a running server"),
        "{}",
        err.message
    );
}

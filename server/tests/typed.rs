//! Typed handlers on the server library, spoken to over the raw wire: data decoded into the
//! handler's own type, replies from any `Serialize`, `invalid_data` (with the field path) for
//! data that does not decode, without the handler running; untyped handlers unchanged.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::LibServer;
use pixl_ipc_server::{
    HandlerError, HandlerResult, Request, RequestContext, RouteError, Router, Server,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Deserialize)]
struct Add {
    a: i64,
    b: i64,
}

#[derive(Serialize)]
struct Sum {
    sum: i64,
    connection: u64,
}

#[derive(Deserialize)]
struct Order {
    customer: Customer,
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Customer {
    address: Address,
}

#[derive(Deserialize)]
struct Address {
    #[allow(dead_code)] // Only its type matters.
    zip: u32,
}

#[derive(Deserialize)]
struct Item {
    qty: u32,
}

/// A server with `/add` and `/order` typed, `/raw` untyped, and how many times the typed
/// handlers ran.
fn server() -> (LibServer, Arc<AtomicUsize>) {
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let counted_order = runs.clone();
    let server = LibServer::start(
        |config| config,
        move |server: &Server| {
            server
                .add_typed_handler("/add", "add", move |add: Add, ctx: RequestContext| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    async move {
                        Ok::<_, HandlerError>(Sum {
                            sum: add.a + add.b,
                            connection: ctx.connection.id,
                        })
                    }
                })
                .unwrap()
                .add_typed_handler("/order", "order", move |order: Order, _| {
                    counted_order.fetch_add(1, Ordering::SeqCst);
                    async move {
                        let _ = &order.customer.address;
                        let qty: u32 = order.items.iter().map(|item| item.qty).sum();
                        // Waits, so the reply comes from the handler's own task.
                        tokio::task::yield_now().await;
                        Ok::<_, HandlerError>(json!({ "qty": qty }))
                    }
                })
                .unwrap()
                .add_typed_handler("/refuse", "refuse", |_: Option<String>, _| async {
                    Err::<(), _>(HandlerError::new("quota_exceeded", "try again tomorrow"))
                })
                .unwrap()
                .add_uri_handler(
                    "/raw",
                    "raw",
                    |req: Request, _: RequestContext| async move {
                        HandlerResult::Ok(json!({ "got": req.data }))
                    },
                )
                .unwrap();
        },
    );
    (server, runs)
}

#[test]
fn good_data_gets_the_typed_reply() {
    let (server, runs) = server();
    let mut conn = server.connect();
    let reply = conn.call(r#"{"ipcReqID":"rq0","uri":"/add","data":{"a":2,"b":40}}"#);
    let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["ipcReqID"], json!("rq0"));
    assert_eq!(reply["data"]["sum"], json!(42));
    assert!(reply["data"]["connection"].is_u64());
    // Unknown fields are ignored as serde does by default; a handler that waits answers too.
    assert_eq!(
        conn.call(
            r#"{"ipcReqID":1,"uri":"/order","data":{"customer":{"address":{"zip":1}},"items":[{"qty":2},{"qty":3,"x":[]}]}}"#
        ),
        r#"{"ipcReqID":1,"data":{"qty":5}}"#
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[test]
fn the_reply_keeps_the_id_byte_for_byte() {
    let (server, _) = server();
    let mut conn = server.connect();
    let reply = conn.call(r#"{"ipcReqID":12345678901234567890123,"uri":"/order","data":{"customer":{"address":{"zip":1}},"items":[]}}"#);
    assert_eq!(
        reply,
        r#"{"ipcReqID":12345678901234567890123,"data":{"qty":0}}"#
    );
}

/// Each bad `data` with its exact reply; none of them runs the handler.
#[test]
fn data_that_does_not_decode_gets_invalid_data_with_the_path_and_the_handler_does_not_run() {
    let (server, runs) = server();
    let mut conn = server.connect();
    let cases = [
        (
            r#"{"ipcReqID":"wrong-type","uri":"/add","data":{"a":"two","b":40}}"#,
            r#"{"ipcReqID":"wrong-type","data":{"code":"invalid_data","message":"invalid data at a: invalid type: string \"two\", expected i64 at line 1 column 10"}}"#,
        ),
        (
            r#"{"ipcReqID":"missing","uri":"/add","data":{"a":2}}"#,
            r#"{"ipcReqID":"missing","data":{"code":"invalid_data","message":"invalid data at .: missing field `b` at line 1 column 7"}}"#,
        ),
        (
            r#"{"ipcReqID":"absent","uri":"/add"}"#,
            r#"{"ipcReqID":"absent","data":{"code":"invalid_data","message":"invalid data at .: invalid type: null, expected struct Add at line 1 column 4"}}"#,
        ),
        (
            r#"{"ipcReqID":"nested","uri":"/order","data":{"customer":{"address":{"zip":1}},"items":[{"qty":1},{"qty":-1}]}}"#,
            r#"{"ipcReqID":"nested","data":{"code":"invalid_data","message":"invalid data at items[1].qty: invalid value: integer `-1`, expected u32 at line 1 column 62"}}"#,
        ),
        (
            r#"{"ipcReqID":"deep","uri":"/order","data":{"customer":{"address":{"zip":"x"}},"items":[]}}"#,
            r#"{"ipcReqID":"deep","data":{"code":"invalid_data","message":"invalid data at customer.address.zip: invalid type: string \"x\", expected u32 at line 1 column 33"}}"#,
        ),
    ];
    for (request, expected) in cases {
        assert_eq!(conn.call(request), expected, "for {request}");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 0, "no typed handler ran");
    // The connection carries on.
    assert!(conn
        .call(r#"{"ipcReqID":"ok","uri":"/add","data":{"a":1,"b":1}}"#)
        .contains(r#""sum":2"#));
}

#[test]
fn a_long_value_is_quoted_bounded_in_the_message() {
    let (server, runs) = server();
    let mut conn = server.connect();
    let long = "x".repeat(100_000);
    let reply = conn.call(&format!(
        r#"{{"ipcReqID":"big","uri":"/add","data":{{"a":"{long}","b":1}}}}"#
    ));
    assert!(reply.len() < 1_000, "reply of {} bytes", reply.len());
    let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["data"]["code"], json!("invalid_data"));
    let message = reply["data"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("invalid data at a: invalid type: string \"xxx"),
        "{message}"
    );
    assert!(message.contains("more bytes"), "{message}");
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

#[test]
fn a_typed_handler_error_has_the_usual_shape() {
    let (server, _) = server();
    let mut conn = server.connect();
    assert_eq!(
        conn.call(r#"{"ipcReqID":"rq0","uri":"/refuse"}"#),
        r#"{"ipcReqID":"rq0","data":{"code":"quota_exceeded","message":"try again tomorrow"}}"#
    );
}

#[test]
fn a_panic_while_decoding_or_calling_a_typed_handler_is_a_handler_panic() {
    /// Data whose `Deserialize` panics on the peer's input.
    struct Fussy;
    impl<'de> Deserialize<'de> for Fussy {
        fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
            panic!("fussy data");
        }
    }
    let server = LibServer::start(
        |config| config,
        |server| {
            server
                .add_typed_handler("/fussy", "fussy", |_: Fussy, _| async {
                    Ok::<_, HandlerError>(())
                })
                .unwrap()
                // Panics when called, before its future exists.
                .add_typed_handler(
                    "/eager",
                    "eager",
                    |_: u32, _| -> std::future::Ready<Result<(), HandlerError>> {
                        panic!("eager handler")
                    },
                )
                .unwrap();
        },
    );
    let mut conn = server.connect();
    assert_eq!(
        conn.call(r#"{"ipcReqID":"rq0","uri":"/fussy","data":1}"#),
        r#"{"ipcReqID":"rq0","data":{"code":"handler_panic","message":"handler 'fussy' panicked: fussy data"}}"#
    );
    assert_eq!(
        conn.call(r#"{"ipcReqID":"rq1","uri":"/eager","data":1}"#),
        r#"{"ipcReqID":"rq1","data":{"code":"handler_panic","message":"handler 'eager' panicked: eager handler"}}"#
    );
    assert!(conn
        .call(r#"{"ipcReqID":"rq2","uri":"/ipcserver/test/echo","data":2}"#)
        .contains(r#""data":2"#));
}

#[test]
fn untyped_handlers_are_unchanged_beside_typed_ones() {
    let (server, _) = server();
    let mut conn = server.connect();
    assert_eq!(
        conn.call(r#"{"ipcReqID":"rq0","uri":"/raw","data":{"a":"two"}}"#),
        r#"{"ipcReqID":"rq0","data":{"got":{"a":"two"}}}"#
    );
    assert_eq!(
        conn.call(r#"{"ipcReqID":"rq1","uri":"/ipcserver/test/echo","data":[1,2]}"#),
        r#"{"ipcReqID":"rq1","data":[1,2]}"#
    );
}

/// The router's own handle on a typed route (for callers of `Router::route`) decodes from the
/// parsed `data` the same way.
#[tokio::test]
async fn a_typed_route_called_through_the_router_decodes_the_same() {
    let router = Router::new();
    router
        .add_typed_handler("/add", "add", |add: Add, _| async move {
            Ok::<_, HandlerError>(add.a + add.b)
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
    let good = handler(Request::new("/add", json!({"a": 1, "b": 2})), ctx.clone()).await;
    assert_eq!(good, Ok(json!(3)));
    let bad = handler(Request::new("/add", json!({"a": 1, "b": []})), ctx).await;
    assert_eq!(
        bad,
        Err(HandlerError::new(
            "invalid_data",
            "invalid data at b: invalid type: sequence, expected i64"
        ))
    );
}

#[test]
fn a_string_pattern_is_checked_when_a_typed_handler_is_registered() {
    let router = Router::new();
    let err = router
        .add_typed_handler("/api/(unclosed", "bad", |_: u32, _| async {
            Ok::<_, HandlerError>(())
        })
        .unwrap_err();
    let RouteError::InvalidPattern { pattern, .. } = err else {
        panic!("unexpected {err}");
    };
    assert_eq!(pattern, "/api/(unclosed");
    assert!(router.is_empty(), "nothing registered");
    router
        .add_typed_handler(
            regex::Regex::new("^/api/").unwrap(),
            "good",
            |_: u32, _| async { Ok::<_, HandlerError>(()) },
        )
        .unwrap();
    assert_eq!(router.len(), 1);
}

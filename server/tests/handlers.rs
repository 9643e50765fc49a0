//! The server library with custom handlers on a temp socket, spoken to over the raw wire:
//! handler errors and panics, connection context, pushes, routes added while running.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::time::Duration;

use common::LibServer;
use pixl_ipc_server::{
    HandlerError, HandlerResult, Push, PushError, Request, RequestContext, Transport,
};
use serde_json::{json, Value};

fn plain() -> LibServer {
    LibServer::start(|config| config, |_| {})
}

/// A library server with one extra route.
fn serving(pattern: &'static str, handler: impl pixl_ipc_server::Handler) -> LibServer {
    LibServer::start(
        |config| config,
        |server| {
            server
                .add_uri_handler(pattern, "under-test", handler)
                .unwrap();
        },
    )
}

/// Asserts that the connection still serves an echo.
fn assert_still_serving(conn: &mut common::Conn, id: &str) {
    assert_eq!(
        conn.call(&format!(
            r#"{{"ipcReqID":"{id}","uri":"/ipcserver/test/echo","data":1}}"#
        )),
        format!(r#"{{"ipcReqID":"{id}","data":1}}"#)
    );
}

#[test]
fn a_handler_error_becomes_a_data_code_reply_and_the_connection_lives_on() {
    let server = serving("/fail", |_: Request, _: RequestContext| async {
        HandlerResult::Err(HandlerError::new("quota_exceeded", "try again tomorrow"))
    });
    let mut conn = server.connect();
    assert_eq!(
        conn.call(r#"{"ipcReqID":"rq0","uri":"/fail"}"#),
        r#"{"ipcReqID":"rq0","data":{"code":"quota_exceeded","message":"try again tomorrow"}}"#
    );
    assert_still_serving(&mut conn, "rq1");
}

#[test]
fn a_handler_panic_becomes_an_error_reply_and_the_connection_lives_on() {
    let server = serving("/boom", |_: Request, _: RequestContext| async {
        if true {
            panic!("kaboom");
        }
        HandlerResult::Ok(Value::Null)
    });
    let mut conn = server.connect();
    conn.send(r#"{"ipcReqID":"rq0","uri":"/boom"}"#);
    let reply = conn.read_json();
    assert_eq!(reply["ipcReqID"], json!("rq0"));
    assert_eq!(reply["data"]["code"], json!("handler_panic"));
    assert_eq!(
        reply["data"]["message"],
        json!("handler 'under-test' panicked: kaboom")
    );
    assert_still_serving(&mut conn, "rq1");
    // Other connections never noticed.
    assert_still_serving(&mut server.connect(), "x");
}

#[test]
fn handlers_see_the_request_and_kernel_verified_peer_credentials() {
    let server = serving("/whoami", |req: Request, ctx: RequestContext| async move {
        let peer = ctx.connection.peer.unwrap();
        let Transport::Unix { path } = &ctx.connection.transport else {
            unreachable!()
        };
        HandlerResult::Ok(json!({
            "uid": peer.uid, "gid": peer.gid, "pid": peer.pid,
            "claimedPid": req.pid, "userAgent": req.user_agent, "id": req.ipc_req_id,
            "connection": ctx.connection.id, "socket": path,
        }))
    });
    let mut conn = server.connect();
    let reply = conn.read_json_after(
        r#"{"ipcReqID":"rq0","uri":"/whoami","pid":1,"userAgent":"PHP/PixlIPCClient/srv"}"#,
    );
    let data = &reply["data"];
    assert_eq!(data["uid"], json!(nix::unistd::geteuid().as_raw()));
    assert_eq!(data["gid"], json!(nix::unistd::getegid().as_raw()));
    assert_eq!(
        data["pid"],
        json!(std::process::id()),
        "the kernel's pid, not the claimed one"
    );
    assert_eq!(data["claimedPid"], json!(1));
    assert_eq!(data["userAgent"], json!("PHP/PixlIPCClient/srv"));
    assert_eq!(data["id"], json!("rq0"));
    assert_eq!(data["socket"], json!(server.path));
    assert_eq!(
        server.handle.connections()[0].id,
        data["connection"].as_u64().unwrap()
    );
}

#[test]
fn push_to_one_connection_and_broadcast_to_all() {
    let server = plain();
    let mut first = server.connect();
    // A round trip on each makes sure it is registered before the next one connects.
    first.call(r#"{"ipcReqID":"a","uri":"/ipcserver/test/echo"}"#);
    let mut second = server.connect();
    second.call(r#"{"ipcReqID":"b","uri":"/ipcserver/test/echo"}"#);
    let ids: Vec<u64> = server.handle.connections().iter().map(|c| c.id).collect();
    assert_eq!(ids.len(), 2);

    let push = Push {
        uri: Some("/events/config".into()),
        data: json!({"reloaded": true}),
    };
    server.handle.push(ids[0], &push).unwrap();
    assert_eq!(
        first.read_line(),
        r#"{"uri":"/events/config","data":{"reloaded":true}}"#
    );
    assert!(second.is_silent_for(Duration::from_millis(100)));

    let report = server.handle.broadcast(&Push {
        uri: None,
        data: json!("hello all"),
    });
    assert_eq!(report.delivered, 2);
    assert_eq!(first.read_line(), r#"{"data":"hello all"}"#);
    assert_eq!(second.read_line(), r#"{"data":"hello all"}"#);

    assert_eq!(
        server.handle.push(9999, &push),
        Err(PushError::NoSuchConnection(9999))
    );
    drop(first);
    common::eventually("closed connection leaves the registry", || {
        server.handle.connections().len() == 1
    });
    assert_eq!(
        server.handle.push(ids[0], &push),
        Err(PushError::NoSuchConnection(ids[0]))
    );
}

#[test]
fn routes_added_while_running_take_effect_after_the_built_ins() {
    let server = plain();
    let mut conn = server.connect();
    assert_eq!(
        conn.read_json_after(r#"{"ipcReqID":"rq0","uri":"/late"}"#)["data"]["code"],
        json!("no_handler_found")
    );
    server
        .handle
        .router()
        .add_uri_handler("/late", "late", |_: Request, _: RequestContext| async {
            HandlerResult::Ok(json!("here now"))
        })
        .unwrap();
    // A user route cannot shadow a built-in registered before it.
    server
        .handle
        .router()
        .add_uri_handler(
            "/ipcserver/test/echo",
            "shadow",
            |_: Request, _: RequestContext| async { HandlerResult::Ok(json!("shadowed")) },
        )
        .unwrap();
    assert_eq!(
        conn.call(r#"{"ipcReqID":"rq1","uri":"/late"}"#),
        r#"{"ipcReqID":"rq1","data":"here now"}"#
    );
    assert_eq!(
        conn.call(r#"{"ipcReqID":"rq2","uri":"/ipcserver/test/echo","data":3}"#),
        r#"{"ipcReqID":"rq2","data":3}"#
    );
    assert_eq!(server.handle.stats().handlers, 8);
}

#[test]
fn the_library_shutdown_drains_and_reports() {
    let server = plain();
    let mut conn = server.connect();
    conn.send(r#"{"ipcReqID":"rq0","uri":"/ipcserver/test/delay","data":{"delay":200}}"#);
    std::thread::sleep(Duration::from_millis(50));
    let path = server.path.clone();
    let reader = std::thread::spawn(move || {
        let line = conn.read_line();
        conn.expect_eof();
        line
    });
    let report = server.shutdown();
    assert!(report.drained && report.socket_removed, "{report:?}");
    assert_eq!(
        reader.join().unwrap(),
        r#"{"ipcReqID":"rq0","data":{"delay":200}}"#
    );
    assert!(!path.exists());
}

#[test]
fn a_peer_that_vanishes_mid_request_does_not_disturb_others() {
    let server = plain();
    for _ in 0..20 {
        let mut gone = server.connect();
        gone.send(r#"{"ipcReqID":"rq0","uri":"/ipcserver/test/delay","data":{"delay":50}}"#);
        gone.send_raw(br#"{"ipcReqID":"rq1","uri":"/ipcserver/te"#);
        drop(gone);
    }
    let mut conn = server.connect();
    assert_eq!(
        conn.call(r#"{"ipcReqID":"ok","uri":"/ipcserver/test/echo","data":1}"#),
        r#"{"ipcReqID":"ok","data":1}"#
    );
    common::eventually("vanished peers are cleaned up", || {
        server.handle.connections().len() == 1
    });
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(server.handle.stats().total.client_close, 20);
}

#[test]
fn handler_errors_and_panics_carry_the_id_byte_for_byte_and_handlers_still_see_a_value() {
    let server = LibServer::start(
        |config| config,
        |server| {
            server
                .add_uri_handler(
                    "/panic-now",
                    "under-test",
                    |_: Request, _: RequestContext| async {
                        if true {
                            panic!("{}", "p".repeat(1 << 20));
                        }
                        HandlerResult::Ok(Value::Null)
                    },
                )
                .unwrap();
            server
                .add_uri_handler(
                    "/panic-later",
                    "under-test",
                    |_: Request, _: RequestContext| async {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        if true {
                            panic!("later");
                        }
                        HandlerResult::Ok(Value::Null)
                    },
                )
                .unwrap();
            server
                .add_uri_handler(
                    "/fail",
                    "under-test",
                    |_: Request, _: RequestContext| async {
                        Err(HandlerError::new("nope", "refused"))
                    },
                )
                .unwrap();
            server
                .add_uri_handler(
                    "/id",
                    "under-test",
                    |req: Request, _: RequestContext| async move {
                        HandlerResult::Ok(json!({ "id": req.ipc_req_id }))
                    },
                )
                .unwrap();
        },
    );
    let mut conn = server.connect();
    for id in ["18446744073709551617", r#""r\u00e9\/q""#] {
        for uri in ["/panic-now", "/panic-later", "/fail", "/id"] {
            let reply = conn.call(&format!(r#"{{"ipcReqID":{id},"uri":"{uri}"}}"#));
            assert!(
                reply.starts_with(&format!(r#"{{"ipcReqID":{id},"#)),
                "{uri}: id {id} came back as {}",
                &reply[..200.min(reply.len())]
            );
            // A 1 MiB panic message is quoted bounded.
            assert!(reply.len() < 512, "{uri}: reply of {} bytes", reply.len());
        }
    }
    // The handler's view is a Value, as before.
    let reply: Value =
        serde_json::from_str(&conn.call(r#"{"ipcReqID":"r\u00e9","uri":"/id"}"#)).unwrap();
    assert_eq!(reply["data"]["id"], json!("ré"));
}

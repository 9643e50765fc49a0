//! Routing in-process, with no socket: order, anchoring, default handler, pattern errors.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::sync::Arc;

use pixl_ipc_server::{
    ConnectionInfo, HandlerError, HandlerResult, Request, RequestContext, RouteError, Router,
    Transport,
};
use regex::Regex;
use serde_json::{json, Value};

fn named(
    name: &'static str,
) -> impl Fn(Request, RequestContext) -> std::future::Ready<HandlerResult> {
    move |_, _| std::future::ready(Ok(json!(name)))
}

fn context() -> RequestContext {
    RequestContext {
        connection: Arc::new(ConnectionInfo {
            id: 1,
            transport: Transport::Unix {
                path: "/tmp/x.sock".into(),
            },
            peer: None,
        }),
    }
}

async fn call(router: &Router, uri: &str) -> HandlerResult {
    let matched = router.route(uri);
    (matched.handler)(Request::new(uri, Value::Null), context()).await
}

fn name_for(router: &Router, uri: &str) -> String {
    router.route(uri).name.to_string()
}

#[test]
fn string_patterns_match_the_whole_uri_and_regexes_are_searched() {
    let router = Router::new();
    router
        .add_uri_handler("/api/user", "exact", named("exact"))
        .unwrap();
    router
        .add_uri_handler(Regex::new("report").unwrap(), "search", named("search"))
        .unwrap();
    router
        .add_uri_handler("/files/.*", "wildcard", named("wildcard"))
        .unwrap();
    assert_eq!(name_for(&router, "/api/user"), "exact");
    assert_eq!(
        name_for(&router, "/api/user/7"),
        "DefaultHandler",
        "string patterns are anchored at both ends"
    );
    assert_eq!(
        name_for(&router, "/x/daily-report/y"),
        "search",
        "a Regex matches anywhere, like regex.test"
    );
    assert_eq!(
        name_for(&router, "/files/a/b"),
        "wildcard",
        "string patterns are regex source, not escaped"
    );
}

#[test]
fn registration_order_decides_and_the_first_match_wins() {
    let router = Router::new();
    router
        .add_uri_handler(Regex::new("^/a").unwrap(), "broad", named("broad"))
        .unwrap();
    router
        .add_uri_handler("/a/b", "narrow", named("narrow"))
        .unwrap();
    assert_eq!(name_for(&router, "/a/b"), "broad");
    let routes = router.routes();
    assert_eq!(routes.len(), 2);
    assert_eq!(routes[0].pattern, "^/a");
    assert_eq!(routes[1].pattern, "^/a/b$");
}

#[test]
fn an_invalid_pattern_is_an_error_not_a_panic_and_registers_nothing() {
    let router = Router::new();
    let err = router
        .add_uri_handler("/api/(unclosed", "bad", named("bad"))
        .unwrap_err();
    match &err {
        RouteError::InvalidPattern { pattern, .. } => assert_eq!(pattern, "/api/(unclosed"),
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains("invalid uri pattern"), "{err}");
    assert!(router.is_empty());
}

#[tokio::test]
async fn the_default_handler_answers_like_the_original_and_can_be_replaced() {
    let router = Router::new();
    assert_eq!(
        call(&router, "/missing").await.unwrap(),
        json!({"code":"no_handler_found","message":"No handler found for /missing"})
    );
    router.set_default_handler(|req: Request, _ctx: RequestContext| async move {
        Err(HandlerError::new(
            "gone",
            format!("{} is gone", req.uri.unwrap_or_default()),
        ))
    });
    assert_eq!(
        call(&router, "/missing").await.unwrap_err(),
        HandlerError::new("gone", "/missing is gone")
    );
}

#[tokio::test]
async fn handlers_can_use_question_mark_on_std_errors() {
    let router = Router::new();
    router
        .add_uri_handler(
            "/parse",
            "parse",
            |req: Request, _ctx: RequestContext| async move {
                let number: i64 = req.data.as_str().unwrap_or("").parse()?;
                Ok(json!(number * 2))
            },
        )
        .unwrap();
    let matched = router.route("/parse");
    let ok = (matched.handler)(Request::new("/parse", json!("21")), context()).await;
    assert_eq!(ok.unwrap(), json!(42));
    let err = (matched.handler)(Request::new("/parse", json!("x")), context())
        .await
        .unwrap_err();
    assert_eq!(err.code, "handler_error");
    assert!(err.message.contains("invalid digit"), "{}", err.message);
}

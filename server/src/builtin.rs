//! The built-in endpoints: the original's two test handlers and our `stats` / `info`.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use pixl_ipc_protocol::{ErrorCode, Request};
use serde_json::{json, Value};

use crate::handler::{HandlerError, HandlerResult, RequestContext};
use crate::router::Router;
use crate::stats::Stats;

/// The name the original logs its built-in handlers under.
pub(crate) const BUILTIN_NAME: &str = "IPCServer";

/// What `/ipcserver/info` lists under `listeners`: each listener's transport and address, set
/// once the server has bound them (empty before).
pub(crate) type Listening = Arc<OnceLock<Vec<Value>>>;

/// One `listeners` entry: `{"transport": "unix", "address": path or @name}` or
/// `{"transport": "websocket", "url": ...}`.
pub(crate) fn listener_entries(socket: &std::path::Path, ws_urls: Vec<String>) -> Vec<Value> {
    let unix = json!({"transport": "unix", "address": socket.display().to_string()});
    std::iter::once(unix)
        .chain(
            ws_urls
                .into_iter()
                .map(|url| json!({"transport": "websocket", "url": url})),
        )
        .collect()
}

/// Registers the built-ins, before any user handler, so they win as in the original.
pub(crate) fn register(router: &Arc<Router>, stats: &Arc<Stats>, listening: &Listening) {
    let builtins = || -> Result<(), crate::RouteError> {
        router.add_echo_handler(regex_prefix("/ipcserver/test/echo"), BUILTIN_NAME, echo)?;
        router.add_uri_handler(regex_prefix("/ipcserver/test/delay"), BUILTIN_NAME, delay)?;

        let (stats, routes) = (stats.clone(), Arc::downgrade(router));
        router.add_uri_handler(
            "/ipcserver/stats",
            BUILTIN_NAME,
            move |_: Request, _: RequestContext| {
                let answer = stats_answer(&stats, &routes);
                async move { answer }
            },
        )?;

        let (routes, listening) = (Arc::downgrade(router), listening.clone());
        router.add_uri_handler(
            "/ipcserver/info",
            BUILTIN_NAME,
            move |_: Request, _: RequestContext| {
                let answer = info_answer(&routes, &listening);
                async move { answer }
            },
        )?;
        Ok(())
    };
    // The patterns are constants; a failure here is a bug in this file, caught by every test.
    if let Err(err) = builtins() {
        unreachable!("built-in route failed to register: {err}");
    }
}

/// The original registers its test handlers as unanchored-at-the-end regexes: prefix matches.
fn regex_prefix(prefix: &str) -> regex::Regex {
    match regex::Regex::new(&format!("^{}", regex::escape(prefix))) {
        Ok(regex) => regex,
        Err(err) => unreachable!("escaped literal is a valid regex: {err}"),
    }
}

/// `/ipcserver/test/echo`: answers the request's `data` unchanged.
async fn echo(request: Request, _ctx: RequestContext) -> HandlerResult {
    Ok(request.data)
}

/// The longest `/ipcserver/test/delay` accepts: an hour. It is a test endpoint; a longer wait
/// is a mistake (and `Duration::from_secs_f64` panics past about 5.8e11 years).
pub(crate) const MAX_DELAY_MS: f64 = 3_600_000.0;

/// `/ipcserver/test/delay`: waits `data.delay` milliseconds (a number from 0 to an hour) and
/// answers `{"delay": <the value given>}`. Without `data.delay` (or `null`) it answers
/// `{"delay": 0}` at once, as documented; any other value is an `invalid_request` error.
async fn delay(request: Request, _ctx: RequestContext) -> HandlerResult {
    let given = request.data.get("delay").cloned().unwrap_or(Value::Null);
    if given.is_null() {
        return Ok(json!({ "delay": 0 }));
    }
    let ms = delay_ms(&given)?;
    if ms > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(ms / 1000.0)).await;
    }
    Ok(json!({ "delay": given }))
}

/// `given` as milliseconds, if it is a number in `0 ..= MAX_DELAY_MS`.
fn delay_ms(given: &Value) -> Result<f64, HandlerError> {
    match given.as_f64() {
        Some(ms) if (0.0..=MAX_DELAY_MS).contains(&ms) => Ok(ms),
        _ => Err(HandlerError::new(
            ErrorCode::InvalidRequest.as_str(),
            format!(
                "data.delay must be a number of milliseconds from 0 to {MAX_DELAY_MS} (an hour), not {}", pixl_ipc_protocol::quote::bounded(&given.to_string())
            ),
        )),
    }
}

fn stats_answer(stats: &Stats, routes: &Weak<Router>) -> HandlerResult {
    let handlers = routes.upgrade().map_or(0, |router| router.len());
    Ok(serde_json::to_value(stats.snapshot(handlers))?)
}

fn info_answer(routes: &Weak<Router>, listening: &Listening) -> HandlerResult {
    let handlers: Vec<Value> = routes
        .upgrade()
        .map(|router| router.routes())
        .unwrap_or_default()
        .into_iter()
        .map(|route| json!({"pattern": route.pattern, "name": route.name}))
        .collect();
    Ok(json!({
        "server": env!("CARGO_PKG_NAME"),
        "version": env!("CARGO_PKG_VERSION"),
        "protocol": "pixl-ipc 1.1.3",
        "extensions": ["ipcNoReply", "ipcClose"],
        "handlers": handlers,
        "listeners": listening.get().cloned().unwrap_or_default(),
    }))
}

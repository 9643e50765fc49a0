//! The built-in endpoints: the original's two test handlers and our `stats` / `info`.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use pixl_ipc_protocol::{ErrorCode, Request};
use serde_json::{json, Value};

use futures_util::{stream, Stream};

use crate::extract::Data;
use crate::handler::{
    HandlerError, HandlerResult, IntoStreamItem, Last, RequestContext, StreamItem,
};
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

        let (counted, routes) = (stats.clone(), Arc::downgrade(router));
        router.add_uri_handler(
            "/ipcserver/stats",
            BUILTIN_NAME,
            move |_: Request, _: RequestContext| {
                let answer = stats_answer(&counted, &routes);
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

        // Ours, after the original's: streamed replies.
        router.add_stream_handler(
            "/ipcserver/test/stream",
            BUILTIN_NAME,
            |Data(params): Data<Option<TestStream>>| test_stream(params),
        )?;

        let (watched, watched_routes) = (stats.clone(), Arc::downgrade(router));
        router.add_stream_handler(
            "/ipcserver/stats/watch",
            BUILTIN_NAME,
            move |Data(watch): Data<Option<StatsWatch>>| {
                let answer = watch_stats(
                    watch.unwrap_or_default(),
                    watched.clone(),
                    watched_routes.clone(),
                );
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

/// What `/ipcserver/test/stream` takes: `{"count": N, "interval": MS, "size": BYTES}`, all
/// optional; `size` pads each item with a string of that many bytes (for memory tests and
/// throughput benchmarks).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TestStream {
    #[serde(default = "TestStream::default_count")]
    count: u64,
    #[serde(default)]
    interval: f64,
    #[serde(default)]
    size: usize,
}

impl TestStream {
    /// Items when `count` is not given.
    fn default_count() -> u64 {
        10
    }
}

impl Default for TestStream {
    fn default() -> Self {
        TestStream {
            count: TestStream::default_count(),
            interval: 0.0,
            size: 0,
        }
    }
}

/// The most items `/ipcserver/test/stream` sends for one request.
pub(crate) const MAX_TEST_STREAM_ITEMS: u64 = 1_000_000;

/// The largest padding `/ipcserver/test/stream` adds to an item.
pub(crate) const MAX_TEST_STREAM_PAD: usize = 1 << 20;

/// `/ipcserver/test/stream`: `count` items `{"i": k}` (with `"pad"` when `size` is given),
/// `interval` milliseconds apart, then the final line `{"done": count}`.
async fn test_stream(
    params: Option<TestStream>,
) -> Result<impl Stream<Item = Result<StreamItem, HandlerError>> + Send, HandlerError> {
    let TestStream {
        count,
        interval,
        size,
    } = params.unwrap_or_default();
    if size > MAX_TEST_STREAM_PAD {
        return Err(HandlerError::new(
            ErrorCode::InvalidData.as_str(),
            format!("data.size must be from 0 to {MAX_TEST_STREAM_PAD} bytes, not {size}"),
        ));
    }
    let pad: Option<Arc<str>> = (size > 0).then(|| Arc::from("x".repeat(size)));
    if count > MAX_TEST_STREAM_ITEMS {
        return Err(HandlerError::new(
            ErrorCode::InvalidData.as_str(),
            format!("data.count must be from 0 to {MAX_TEST_STREAM_ITEMS}, not {count}"),
        ));
    }
    let pause = delay_ms(&json!(interval)).map_err(|_| {
        HandlerError::new(
            ErrorCode::InvalidData.as_str(),
            format!("data.interval must be a number of milliseconds from 0 to {MAX_DELAY_MS} (an hour), not {interval}"),
        )
    })?;
    let pause = Duration::from_secs_f64(pause / 1000.0);
    let items = stream::unfold(0u64, move |k| {
        let pad = pad.clone();
        async move {
            if k > count {
                return None;
            }
            if k > 0 && k < count && !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            let item = match (k == count, pad) {
                (true, _) => Last(json!({ "done": count })).into_stream_item(),
                (false, None) => json!({ "i": k }).into_stream_item(),
                (false, Some(pad)) => json!({ "i": k, "pad": &*pad }).into_stream_item(),
            };
            Some((item, k + 1))
        }
    });
    Ok(items)
}

/// What `/ipcserver/stats/watch` takes: `{"interval": MS}`, optional.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StatsWatch {
    #[serde(default)]
    interval: Option<u64>,
}

/// The stats watch's period when none is given, and the shortest allowed.
const WATCH_DEFAULT_MS: u64 = 1000;
const WATCH_MIN_MS: u64 = 10;

/// `/ipcserver/stats/watch`: the `/ipcserver/stats` answer at once and then every `interval`
/// milliseconds (default 1000, from 10 to an hour), until the client cancels.
fn watch_stats(
    watch: StatsWatch,
    stats: Arc<Stats>,
    routes: Weak<Router>,
) -> Result<impl Stream<Item = HandlerResult> + Send, HandlerError> {
    let ms = watch.interval.unwrap_or(WATCH_DEFAULT_MS);
    if !(WATCH_MIN_MS..=MAX_DELAY_MS as u64).contains(&ms) {
        return Err(HandlerError::new(
            ErrorCode::InvalidData.as_str(),
            format!(
                "data.interval must be from {WATCH_MIN_MS} to {} milliseconds, not {ms}",
                MAX_DELAY_MS as u64
            ),
        ));
    }
    let mut ticks = tokio::time::interval(Duration::from_millis(ms));
    // A paused stream (a client not reading) takes up where it is, without a burst.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    Ok(stream::unfold(ticks, move |mut ticks| {
        let answer = (stats.clone(), routes.clone());
        async move {
            ticks.tick().await;
            Some((stats_answer(&answer.0, &answer.1), ticks))
        }
    }))
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
        "extensions": ["ipcNoReply", "ipcClose", "ipcStream", "ipcCancel"],
        "handlers": handlers,
        "listeners": listening.get().cloned().unwrap_or_default(),
    }))
}

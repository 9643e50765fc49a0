//! The original's interval counters, plus totals and latency percentiles.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies are recorded in microseconds, up to an hour, to two significant digits.
const LATENCY_MAX_MICROS: u64 = 3_600_000_000;

/// One interval's counters, named as the original's `getStats()` names them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IntervalStats {
    /// Requests received (every decoded request, including those answered with an error).
    pub requests: u64,
    /// Connections opened.
    pub client_open: u64,
    /// Connections closed.
    pub client_close: u64,
    /// Most connections open at once.
    pub max_connections: u64,
    /// Length of the interval in milliseconds.
    pub duration: u64,
    /// Responses slower than the slow threshold.
    pub slow_responses: u64,
    /// Times a connection's reading was paused because its peer was not reading replies.
    pub stream_backpressure: u64,
    /// Lines answered with a protocol error (bad JSON, too long, no uri, invalid request).
    pub errors: u64,
    /// Connections refused because the peer's uid/gid is not allowed.
    pub rejected_peers: u64,
    /// Connections refused over a limit (all connections, one uid's, WebSocket handshakes).
    pub refused_connections: u64,
    /// Request latency (receipt to reply queued) over the interval.
    pub latency_ms: LatencySummary,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Responses measured.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest.
    pub max: f64,
}

/// Counters since the server started.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TotalStats {
    /// Requests received.
    pub requests: u64,
    /// Connections opened.
    pub client_open: u64,
    /// Connections closed.
    pub client_close: u64,
    /// Slow responses.
    pub slow_responses: u64,
    /// Backpressure pauses.
    pub stream_backpressure: u64,
    /// Protocol error replies.
    pub errors: u64,
    /// Connections refused because the peer's uid/gid is not allowed.
    pub rejected_peers: u64,
    /// Connections refused over a limit.
    pub refused_connections: u64,
    /// Milliseconds since the server started.
    pub uptime_ms: u64,
}

/// What `/ipcserver/stats` and [`ServerHandle::stats`](crate::ServerHandle::stats) return.
///
/// The top-level fields are the original's: the current `connections` and `handlers`, merged
/// with the counters of the last *completed* interval. `current` is the interval in progress and
/// `total` counts since start.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatsSnapshot {
    /// Connections open now.
    pub connections: u64,
    /// Routes registered.
    pub handlers: u64,
    /// The last completed interval (all zero until the first interval has passed).
    #[serde(flatten)]
    pub last: IntervalStats,
    /// The interval in progress.
    pub current: IntervalStats,
    /// Since start.
    pub total: TotalStats,
    /// One entry per `--forward` rule, in the order they are matched (absent when there is
    /// none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub forwards: Vec<ForwardStats>,
}

/// The counters of one forward (`--forward PATTERN=ADDRESS`), since the server started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ForwardStats {
    /// The uri pattern, as the routes list it.
    pub pattern: String,
    /// The upstream server's address.
    pub address: String,
    /// Requests this forward took.
    pub forwarded: u64,
    /// Of those, answered `upstream_unavailable` (no connection, or it was lost mid-call).
    pub upstream_unavailable: u64,
    /// Of those, answered `upstream_timeout`.
    pub upstream_timeout: u64,
    /// Of those, failed for another reason (a reply too large or not valid).
    pub upstream_failed: u64,
}

/// The live counters of one forward; lock-free, since every forwarded call updates them.
#[derive(Debug, Default)]
#[cfg_attr(not(feature = "forward"), allow(dead_code))]
pub(crate) struct ForwardCounters {
    pub(crate) pattern: String,
    pub(crate) address: String,
    pub(crate) forwarded: AtomicU64,
    pub(crate) unavailable: AtomicU64,
    pub(crate) timeout: AtomicU64,
    pub(crate) failed: AtomicU64,
}

impl ForwardCounters {
    fn snapshot(&self) -> ForwardStats {
        ForwardStats {
            pattern: self.pattern.clone(),
            address: self.address.clone(),
            forwarded: self.forwarded.load(Ordering::Relaxed),
            upstream_unavailable: self.unavailable.load(Ordering::Relaxed),
            upstream_timeout: self.timeout.load(Ordering::Relaxed),
            upstream_failed: self.failed.load(Ordering::Relaxed),
        }
    }
}

struct Interval {
    counts: IntervalStats,
    started: Instant,
    latency: Histogram<u64>,
}

impl Interval {
    fn new() -> Self {
        Interval {
            counts: IntervalStats::default(),
            started: Instant::now(),
            latency: new_histogram(),
        }
    }

    fn snapshot(&self) -> IntervalStats {
        let mut counts = self.counts.clone();
        counts.duration = millis(self.started.elapsed());
        counts.latency_ms = summarize(&self.latency);
        counts
    }
}

struct Inner {
    current: Interval,
    last: IntervalStats,
    total: TotalStats,
    connections: u64,
}

/// The server's counters. Each update takes a short, uncontended-in-practice lock.
pub(crate) struct Stats {
    inner: Mutex<Inner>,
    started: Instant,
    slow_threshold: Duration,
    /// The forwards' counters, in the order the forwards were added.
    forwards: Mutex<Vec<Arc<ForwardCounters>>>,
}

impl Stats {
    pub(crate) fn new(slow_threshold: Duration) -> Self {
        Stats {
            inner: Mutex::new(Inner {
                current: Interval::new(),
                last: IntervalStats::default(),
                total: TotalStats::default(),
                connections: 0,
            }),
            started: Instant::now(),
            slow_threshold,
            forwards: Mutex::new(Vec::new()),
        }
    }

    fn with<R>(&self, update: impl FnOnce(&mut Inner) -> R) -> R {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        update(&mut inner)
    }

    pub(crate) fn connection_opened(&self) {
        self.with(|s| {
            s.connections += 1;
            s.current.counts.client_open += 1;
            s.total.client_open += 1;
            s.current.counts.max_connections = s.current.counts.max_connections.max(s.connections);
        });
    }

    pub(crate) fn connection_closed(&self) {
        self.with(|s| {
            s.connections = s.connections.saturating_sub(1);
            s.current.counts.client_close += 1;
            s.total.client_close += 1;
        });
    }

    pub(crate) fn request_received(&self) {
        self.with(|s| {
            s.current.counts.requests += 1;
            s.total.requests += 1;
        });
    }

    pub(crate) fn protocol_error(&self) {
        self.with(|s| {
            s.current.counts.errors += 1;
            s.total.errors += 1;
        });
    }

    pub(crate) fn peer_rejected(&self) {
        self.with(|s| {
            s.current.counts.rejected_peers += 1;
            s.total.rejected_peers += 1;
        });
    }

    pub(crate) fn connection_refused(&self) {
        self.with(|s| {
            s.current.counts.refused_connections += 1;
            s.total.refused_connections += 1;
        });
    }

    pub(crate) fn backpressure(&self) {
        self.with(|s| {
            s.current.counts.stream_backpressure += 1;
            s.total.stream_backpressure += 1;
        });
    }

    pub(crate) fn response_sent(&self, latency: Duration) {
        let slow = latency > self.slow_threshold;
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.with(|s| {
            s.current
                .latency
                .saturating_record(micros.clamp(1, LATENCY_MAX_MICROS));
            if slow {
                s.current.counts.slow_responses += 1;
                s.total.slow_responses += 1;
            }
        });
    }

    /// Closes the current interval: it becomes the one `snapshot` reports at the top level.
    pub(crate) fn roll_interval(&self) -> IntervalStats {
        self.with(|s| {
            let finished = s.current.snapshot();
            s.current = Interval::new();
            s.current.counts.max_connections = s.connections;
            s.last = finished.clone();
            finished
        })
    }

    /// Adds a forward's counters to what [`snapshot`](Self::snapshot) reports.
    #[cfg_attr(not(feature = "forward"), allow(dead_code))]
    pub(crate) fn add_forward(&self, counters: Arc<ForwardCounters>) {
        self.forwards
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(counters);
    }

    pub(crate) fn snapshot(&self, handlers: usize) -> StatsSnapshot {
        let uptime_ms = millis(self.started.elapsed());
        let forwards = self
            .forwards
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|counters| counters.snapshot())
            .collect();
        self.with(|s| StatsSnapshot {
            connections: s.connections,
            handlers: handlers as u64,
            last: s.last.clone(),
            current: s.current.snapshot(),
            total: TotalStats {
                uptime_ms,
                ..s.total.clone()
            },
            forwards,
        })
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_MICROS, 2)
        .expect("constant histogram bounds are valid")
}

fn summarize(histogram: &Histogram<u64>) -> LatencySummary {
    if histogram.is_empty() {
        return LatencySummary::default();
    }
    let ms = |micros: u64| micros as f64 / 1000.0;
    LatencySummary {
        count: histogram.len(),
        p50: ms(histogram.value_at_quantile(0.50)),
        p90: ms(histogram.value_at_quantile(0.90)),
        p99: ms(histogram.value_at_quantile(0.99)),
        max: ms(histogram.max()),
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_roll_into_the_last_interval() {
        let stats = Stats::new(Duration::from_millis(20));
        stats.connection_opened();
        stats.connection_opened();
        stats.connection_closed();
        stats.request_received();
        stats.response_sent(Duration::from_millis(1));
        stats.response_sent(Duration::from_millis(30));
        let before = stats.snapshot(3);
        assert_eq!(before.last, IntervalStats::default());
        assert_eq!(before.current.requests, 1);
        assert_eq!(before.current.slow_responses, 1);
        assert_eq!(before.current.latency_ms.count, 2);

        stats.roll_interval();
        let after = stats.snapshot(3);
        assert_eq!(after.connections, 1);
        assert_eq!(after.handlers, 3);
        assert_eq!(after.last.client_open, 2);
        assert_eq!(after.last.client_close, 1);
        assert_eq!(after.last.max_connections, 2);
        assert_eq!(after.current.requests, 0);
        assert_eq!(
            after.current.max_connections, 1,
            "open connections carry over"
        );
        assert_eq!(after.total.requests, 1);
        assert!(
            after.last.latency_ms.max >= 29.0,
            "{:?}",
            after.last.latency_ms
        );
    }

    #[test]
    fn wire_names_match_the_original() {
        let value = serde_json::to_value(Stats::new(Duration::ZERO).snapshot(2)).unwrap();
        for key in [
            "connections",
            "handlers",
            "requests",
            "clientOpen",
            "clientClose",
            "maxConnections",
            "duration",
            "slowResponses",
            "streamBackpressure",
            "latencyMs",
        ] {
            assert!(value.get(key).is_some(), "missing {key} in {value}");
        }
    }
}

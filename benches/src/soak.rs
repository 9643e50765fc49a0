//! The soak: mixed message sizes over both transports for a while, checking every reply.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pixl_ipc_client::{Client, ReconnectPolicy};

use crate::{sized_message, ServerUnderTest, Spread};

/// What a soak run saw.
#[derive(Debug, Clone)]
pub struct SoakReport {
    /// Echo requests answered with exactly what was sent.
    pub served: u64,
    /// Failed calls or replies that differed from the request.
    pub errors: u64,
    /// Latency percentiles in ms: p50, p99, max.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
    /// Server RSS after warm-up and at the end, KiB.
    pub rss_start_kib: u64,
    /// Server RSS at the end, KiB.
    pub rss_end_kib: u64,
    /// How long it ran.
    pub elapsed: Duration,
}

impl SoakReport {
    /// The report as a markdown table.
    pub fn markdown(&self) -> String {
        format!(
            "| measure | value |\n| --- | ---: |\n| duration | {:.0} s |\n| requests served (reply checked) | {} |\n| errors | {} |\n| latency p50 / p99 / max | {:.3} / {:.3} / {:.3} ms |\n| server RSS start / end | {:.1} / {:.1} MiB |\n",
            self.elapsed.as_secs_f64(), self.served, self.errors, self.p50_ms, self.p99_ms, self.max_ms,
            self.rss_start_kib as f64 / 1024.0, self.rss_end_kib as f64 / 1024.0
        )
    }
}

/// Runs 4 UNIX-socket and 4 WebSocket clients, each with 4 calls in flight, for `duration`
/// against the server `binary`; sizes cycle through 1K, 5K, 20K and (every 16th call) 100K.
pub async fn run(binary: &Path, duration: Duration) -> anyhow::Result<SoakReport> {
    let server = ServerUnderTest::start(binary, &[])?;
    let messages: Arc<Vec<serde_json::Value>> = Arc::new(
        [1, 5, 20, 100]
            .iter()
            .map(|size| sized_message(*size))
            .collect(),
    );
    let served = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let mut clients = Vec::new();
    for index in 0..8 {
        let address = if index % 2 == 0 {
            server.socket.display().to_string()
        } else {
            server.ws_url.clone()
        };
        clients.push(
            Client::builder()
                .reconnect(ReconnectPolicy::Off)
                .request_timeout(Duration::from_secs(30))
                .connect(address.as_str())
                .await?,
        );
    }
    let (rss_start_kib, _) = server.memory_kib();
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = Vec::new();
    for client in &clients {
        for lane in 0..4u64 {
            let (client, messages, served, errors, latencies) = (
                client.clone(),
                messages.clone(),
                served.clone(),
                errors.clone(),
                latencies.clone(),
            );
            workers.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                let mut call = lane;
                while Instant::now() < deadline {
                    call += 1;
                    let message = if call % 16 == 0 {
                        &messages[3]
                    } else {
                        &messages[(call % 3) as usize]
                    };
                    let sent = Instant::now();
                    match client.send("/ipcserver/test/echo", message).await {
                        Ok(reply) if &reply == message => {
                            served.fetch_add(1, Ordering::Relaxed);
                            mine.push(sent.elapsed().as_secs_f64() * 1000.0);
                        }
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                if let Ok(mut all) = latencies.lock() {
                    all.extend(mine);
                }
            }));
        }
    }
    for worker in workers {
        worker.await?;
    }
    let elapsed = started.elapsed();
    let (rss_end_kib, _) = server.memory_kib();
    for client in clients {
        client.close().await;
    }
    let mut all = latencies.lock().map(|all| all.clone()).unwrap_or_default();
    all.sort_by(f64::total_cmp);
    let at = |q: f64| {
        all.get(((all.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let spread = Spread::of(&all);
    Ok(SoakReport {
        served: served.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        p50_ms: spread.median,
        p99_ms: at(0.99),
        max_ms: spread.max,
        rss_start_kib,
        rss_end_kib,
        elapsed,
    })
}

//! The soak: mixed message sizes over both transports for a while, checking every reply.

use std::path::Path;
use std::time::{Duration, Instant};

use pixl_ipc_client::{Client, ReconnectPolicy};

use crate::echo_load::EchoLoad;
use crate::{ServerUnderTest, Spread};

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
    let load = EchoLoad::start(&clients, 4, started + duration);
    let outcome = load.finish().await?;
    let elapsed = started.elapsed();
    let (rss_end_kib, _) = server.memory_kib();
    for client in clients {
        client.close().await;
    }
    let spread = Spread::of(&outcome.latencies_ms);
    Ok(SoakReport {
        served: outcome.checked,
        errors: outcome.errors,
        p50_ms: spread.median,
        p99_ms: outcome.quantile_ms(0.99),
        max_ms: spread.max,
        rss_start_kib,
        rss_end_kib,
        elapsed,
    })
}

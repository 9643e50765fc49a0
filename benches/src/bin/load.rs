//! Throughput and scale, against the release server binary.
//!
//! `cargo run --release -p pixl-ipc-benches --bin load`
//!
//! - throughput: small echo requests per second over 1, 16 and 256 connections at several
//!   in-flight depths per connection, and the server's peak RSS;
//! - scale: 10,000 idle connections (the process's file limit is raised): how long they take to
//!   be accepted, the server's RSS, and one active client's 1K latency beside its latency with
//!   no idle connections.
//!
//! Writes the `throughput` and `scale` sections of `benches/RESULTS.md`.

use std::fmt::Write as _;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use pixl_ipc_benches::{
    build_release_server, progress, repo_root, report, sized_message, ServerUnderTest, Spread,
    MESSAGES,
};
use pixl_ipc_client::{Client, ReconnectPolicy};
use serde_json::json;

const IDLE_CONNECTIONS: usize = 10_000;
const RUN: Duration = Duration::from_millis(1500);

/// Throughput over 1, 16 and 256 connections, and 10,000 idle connections; writes the
/// throughput and scale sections of benches/RESULTS.md. No options.
#[derive(clap::Parser)]
#[command(name = "load")]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let Cli {} = clap::Parser::parse();
    progress("building the release server...");
    let binary = build_release_server()?;
    // Raised before the server starts, so it inherits the limit too.
    // The server keeps max_connections within (limit - 64) / 2, so it needs more than twice
    // the idle connections; root may raise the hard limit, anyone the soft one up to it.
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let wanted = 4 * IDLE_CONNECTIONS as u64;
    if setrlimit(Resource::RLIMIT_NOFILE, wanted, wanted.max(hard)).is_err() {
        setrlimit(Resource::RLIMIT_NOFILE, wanted.min(hard), hard)
            .context("cannot raise the file limit")?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    let throughput = {
        let server = ServerUnderTest::start(
            &binary,
            &[
                "--max-connections",
                "20000",
                "--max-connections-per-uid",
                "20000",
            ],
        )?;
        let table = runtime.block_on(throughput_table(&server))?;
        let (_, peak) = server.memory_kib();
        format!(
            "{table}\nServer peak RSS over the whole throughput run: {:.1} MiB.\n",
            peak as f64 / 1024.0
        )
    };
    println!("{throughput}");
    let scale = {
        let server = ServerUnderTest::start(
            &binary,
            &[
                "--max-connections",
                "20000",
                "--max-connections-per-uid",
                "20000",
            ],
        )?;
        scale_report(&server, &runtime)?
    };
    progress("");
    eprintln!();
    println!("{scale}");
    let results = repo_root().join("benches/RESULTS.md");
    let command = "Command: `cargo run --release -p pixl-ipc-benches --bin load`. Client and server share the machine's 2 cores.\n\n";
    report::write_results(&results, "throughput", &format!("{command}{throughput}"))?;
    report::write_results(&results, "scale", &format!("{command}{scale}"))?;
    eprintln!("wrote benches/RESULTS.md");
    Ok(())
}

async fn throughput_table(server: &ServerUnderTest) -> anyhow::Result<String> {
    let mut out = String::from("Small echo requests (`{\"n\":1}`) per second, Rust client, UNIX socket:\n\n| connections | in flight per connection | requests/s |\n| ---: | ---: | ---: |\n");
    for connections in [1usize, 16, 256] {
        for depth in [1usize, 16, 128] {
            progress(&format!(
                "throughput: {connections} connections x {depth} in flight"
            ));
            let rate = throughput(server, connections, depth).await?;
            let _ = writeln!(out, "| {connections} | {depth} | {rate:.0} |");
        }
    }
    Ok(out)
}

async fn throughput(
    server: &ServerUnderTest,
    connections: usize,
    depth: usize,
) -> anyhow::Result<f64> {
    let mut clients = Vec::new();
    for _ in 0..connections {
        clients.push(connect(&server.socket.display().to_string()).await?);
    }
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + RUN;
    let mut workers = Vec::new();
    for client in &clients {
        for _ in 0..depth {
            let (client, done) = (client.clone(), done.clone());
            workers.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    if client
                        .send("/ipcserver/test/echo", json!({"n": 1}))
                        .await
                        .is_ok()
                    {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
    }
    let started = Instant::now();
    for worker in workers {
        worker.await?;
    }
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    for client in clients {
        client.close().await;
    }
    Ok(rate)
}

fn scale_report(
    server: &ServerUnderTest,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<String> {
    let address = server.socket.display().to_string();
    progress("scale: latency with no idle connections");
    let before = runtime.block_on(latency_1k(&address))?;
    let (rss_before, _) = server.memory_kib();

    progress(&format!(
        "scale: opening {IDLE_CONNECTIONS} idle connections"
    ));
    let started = Instant::now();
    let mut idle = Vec::with_capacity(IDLE_CONNECTIONS);
    for _ in 0..IDLE_CONNECTIONS {
        idle.push(UnixStream::connect(&server.socket).context("opening an idle connection")?);
    }
    let connected = started.elapsed();
    let accepted = runtime.block_on(async {
        let client = connect(&address).await?;
        loop {
            let stats = client.send("/ipcserver/stats", json!({})).await?;
            if stats["connections"].as_u64().unwrap_or(0) > IDLE_CONNECTIONS as u64 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        client.close().await;
        anyhow::Ok(started.elapsed())
    })?;
    let (rss_idle, _) = server.memory_kib();
    progress("scale: latency with the idle connections open");
    let during = runtime.block_on(latency_1k(&address))?;
    drop(idle);

    Ok(format!(
        "| measure | value |\n| --- | ---: |\n\
         | idle connections | {IDLE_CONNECTIONS} |\n\
         | time to open them (client side) | {:.0} ms |\n\
         | time until the server had accepted them all | {:.0} ms |\n\
         | server RSS before | {:.1} MiB |\n\
         | server RSS with them open | {:.1} MiB |\n\
         | one active client, 1K echo, 1 at a time, no idle connections | {:.4} ms ({:.4}-{:.4}) |\n\
         | the same with {IDLE_CONNECTIONS} idle connections open | {:.4} ms ({:.4}-{:.4}) |\n\
         | ratio | {:.2}x |\n",
        connected.as_secs_f64() * 1000.0,
        accepted.as_secs_f64() * 1000.0,
        rss_before as f64 / 1024.0,
        rss_idle as f64 / 1024.0,
        before.median, before.min, before.max,
        during.median, during.min, during.max,
        during.median / before.median,
    ))
}

/// Median of 5 runs of 500 sequential 1K echoes, ms per message.
async fn latency_1k(address: &str) -> anyhow::Result<Spread> {
    let client = connect(address).await?;
    let message = sized_message(1);
    let mut samples = Vec::new();
    for run in 0..6 {
        let started = Instant::now();
        for _ in 0..MESSAGES {
            client.send("/ipcserver/test/echo", &message).await?;
        }
        if run > 0 {
            samples.push(started.elapsed().as_secs_f64() * 1000.0 / MESSAGES as f64);
        }
    }
    client.close().await;
    Ok(Spread::of(&samples))
}

async fn connect(address: &str) -> anyhow::Result<Client> {
    Ok(Client::builder()
        .reconnect(ReconnectPolicy::Off)
        .request_timeout(Duration::from_secs(60))
        .connect(address)
        .await?)
}

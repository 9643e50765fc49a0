//! `--forward`: 1K echo through the release server forwarding to an upstream, against the same
//! upstream called directly.
//!
//! `cargo run --release -p pixl-ipc-benches --bin forward`
//!
//! The upstream is this program started again with `--upstream PATH`: the server library on a
//! socket, with an echo route at `/bench/echo` (the release binary cannot be the upstream for
//! an echo: its built-in `/ipcserver/test/echo` is the forwarder's too, and built-ins are
//! matched before forwards). Its handler takes the request's data as a `Value` and returns it,
//! like an application handler; the forwarder in front is the release binary with
//! `--forward '^/bench/=unix:PATH'`.
//!
//! Writes the `forward` section of `benches/RESULTS.md`.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use pixl_ipc_benches::{
    build_release_server, load_average, progress, repo_root, report, sized_message, Repetitions,
    ServerUnderTest, Spread, MESSAGES,
};
use pixl_ipc_client::{Client, ReconnectPolicy};
use pixl_ipc_server::{HandlerResult, Request, RequestContext, Server, ServerConfig};
use serde_json::Value;

const URI: &str = "/bench/echo";
const RUN: Duration = Duration::from_millis(1500);
const IN_FLIGHT: usize = 128;

/// 1K echo through the release server forwarding to an upstream, against the same upstream
/// called directly; writes the forward section of benches/RESULTS.md.
#[derive(clap::Parser)]
#[command(name = "forward")]
struct Cli {
    #[command(flatten)]
    repetitions: Repetitions<5>,
    /// Run as the upstream alone, on the socket PATH (how the benchmark starts its upstream)
    #[arg(long, value_name = "PATH", conflicts_with = "reps")]
    upstream: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let cli: Cli = clap::Parser::parse();
    if let Some(path) = cli.upstream {
        return run_upstream(&path);
    }
    let reps = cli.repetitions.reps;
    progress("building the release server...");
    let binary = build_release_server()?;
    let dir = tempfile::tempdir()?;
    let upstream_path = dir.path().join("upstream.sock");
    let _upstream = Upstream::start(&upstream_path)?;
    let forwarder = ServerUnderTest::start(
        &binary,
        &[
            "--forward",
            &format!("^/bench/=unix:{}", upstream_path.display()),
        ],
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let direct = upstream_path.display().to_string();
    let forwarded = forwarder.socket.display().to_string();
    let message = sized_message(1);
    runtime.block_on(wait_for_forward(&forwarded))?;

    let load_before = load_average();
    // One warm-up, then the repetitions, each path in turn.
    let mut seq = [Vec::new(), Vec::new()];
    let mut rate = [Vec::new(), Vec::new()];
    for rep in 0..=reps {
        for (column, address) in [&direct, &forwarded].into_iter().enumerate() {
            progress(&format!("rep {rep}/{reps}: {address}"));
            let one = runtime.block_on(one_at_a_time(address, &message))?;
            let many = runtime.block_on(in_flight(address, &message))?;
            if rep > 0 {
                seq[column].push(one);
                rate[column].push(many);
            }
        }
    }
    progress("");
    eprintln!();
    let (seq, rate) = (seq.map(|s| Spread::of(&s)), rate.map(|r| Spread::of(&r)));
    let mut body = format!(
        "Command: `cargo run --release -p pixl-ipc-benches --bin forward` ({reps} repetitions after a warm-up, interleaved)\n\n\
         1K echo (one key of ~1 KiB) with the Rust client over UNIX sockets: to the upstream\n\
         directly, and through the release `pixl-ipc-server --forward '^/bench/=unix:...'` in\n\
         front of it (one shared upstream connection). The upstream is the server library in a\n\
         process of its own, its `/bench/echo` handler returning the request's data as a\n\
         `Value`. One at a time: {MESSAGES} calls per repetition; {IN_FLIGHT} in flight: one\n\
         connection, {} ms per repetition. Median (min-max) of the repetitions:\n\n\
         | path | one at a time, us per call | ratio | {IN_FLIGHT} in flight, requests/s | ratio |\n\
         | --- | ---: | ---: | ---: | ---: |\n",
        RUN.as_millis()
    );
    for (name, column) in [("upstream directly", 0), ("through the forwarder", 1)] {
        let (s, r) = (seq[column], rate[column]);
        let _ = writeln!(
            body,
            "| {name} | {:.1} ({:.1}-{:.1}) | {:.2}x | {:.0} ({:.0}-{:.0}) | {:.2}x |",
            s.median,
            s.min,
            s.max,
            s.median / seq[0].median,
            r.median,
            r.min,
            r.max,
            r.median / rate[0].median
        );
    }
    let _ = writeln!(
        body,
        "\nLoad average (1 min) before and after the run: {load_before} and {} on {} cores: \
         the machine is shared, so read the ratios, not the absolute figures.",
        load_average(),
        pixl_ipc_benches::machine_cpus()
    );
    println!("{body}");
    report::write_results(&repo_root().join("benches/RESULTS.md"), "forward", &body)?;
    Ok(())
}

/// The upstream process: this program with `--upstream PATH`, killed by PID when dropped.
struct Upstream(Child);

impl Upstream {
    fn start(path: &Path) -> anyhow::Result<Upstream> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("--upstream")
            .arg(path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start the upstream")?;
        let stdout = child.stdout.take().context("upstream stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        if !line.starts_with("ready") {
            let _ = child.kill();
            bail!("the upstream did not start: {line:?}");
        }
        Ok(Upstream(child))
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Serves `/bench/echo` on `path` until killed, on one worker thread like the binary on this
/// machine (half of 2 cores).
fn run_upstream(path: &Path) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut config = ServerConfig::new(PathBuf::from(path));
        config.worker_threads = Some(1);
        let server = Server::new(config);
        server.add_uri_handler(URI, "echo", |req: Request, _: RequestContext| async move {
            HandlerResult::Ok(req.data)
        })?;
        let _running = server.start().await?;
        println!("ready");
        std::future::pending::<()>().await;
        Ok(())
    })
}

async fn connect(address: &str) -> anyhow::Result<Client> {
    Ok(Client::builder()
        .reconnect(ReconnectPolicy::Off)
        .request_timeout(Duration::from_secs(60))
        .connect(address)
        .await?)
}

/// Until the forwarder's background connect has reached the upstream.
async fn wait_for_forward(address: &str) -> anyhow::Result<()> {
    let client = connect(address).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = client.send(URI, Value::Null).await?;
        if reply.get("code").is_none() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the forwarder never reached the upstream: {reply}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Microseconds per call, `MESSAGES` calls one at a time on a fresh connection.
async fn one_at_a_time(address: &str, message: &Value) -> anyhow::Result<f64> {
    let client = connect(address).await?;
    let started = Instant::now();
    for _ in 0..MESSAGES {
        let reply = client.send(URI, message).await?;
        if reply != *message {
            bail!("{address}: the echo differs");
        }
    }
    let micros = started.elapsed().as_secs_f64() * 1e6 / MESSAGES as f64;
    client.close().await;
    Ok(micros)
}

/// Requests per second with `IN_FLIGHT` calls in flight on one connection for `RUN`.
async fn in_flight(address: &str, message: &Value) -> anyhow::Result<f64> {
    let client = connect(address).await?;
    let message = Arc::new(message.clone());
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + RUN;
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..IN_FLIGHT {
        let (client, message, done) = (client.clone(), message.clone(), done.clone());
        workers.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                client.send(URI, &*message).await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for worker in workers {
        worker.await??;
    }
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    client.close().await;
    Ok(rate)
}

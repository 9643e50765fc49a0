//! Where one round trip's time goes: each side of the 1K / 100K echo swapped, one at a time,
//! for a bare stand-in, measured side by side in interleaved repetitions.
//!
//! `cargo run --release -p pixl-ipc-benches --bin breakdown [-- --reps N]`
//!
//! - clients: a blocking `std` loop (write the line, read a line back), the same loop in one
//!   Tokio task, the same split into a caller task and an I/O task (the Rust client's shape,
//!   without its JSON), or the Rust client;
//! - servers: the raw UNIX echo of the latency table's floor, a raw line echo on a Tokio
//!   current-thread runtime (the framework, no JSON), or the pixl-ipc-server binary.
//!
//! Comparing rows separates the server's cost from the client's and from the async runtime's.
//! Writes the `breakdown` section of `benches/RESULTS.md`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pixl_ipc_benches::{
    build_release_server, echo_request_line, floor_round_trips, progress, repo_root, report,
    sized_message, FloorServer, Repetitions, ServerUnderTest, Spread,
};
use pixl_ipc_client::{Client, ReconnectPolicy};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The rows: (client, server).
const ROWS: [(&str, &str); 7] = [
    ("blocking std loop", "raw UNIX echo (the floor)"),
    ("blocking std loop", "raw Tokio line echo (no JSON)"),
    ("blocking std loop", "pixl-ipc-server"),
    (
        "Tokio loop, one task (no JSON)",
        "raw UNIX echo (the floor)",
    ),
    (
        "Tokio caller task + I/O task, mpsc/oneshot (no JSON)",
        "raw UNIX echo (the floor)",
    ),
    ("Rust client", "raw UNIX echo (the floor)"),
    ("Rust client", "pixl-ipc-server"),
];

/// Message sizes (K) and round trips per measurement at each.
const CASES: [(usize, usize); 2] = [(1, 2000), (100, 300)];

/// Where one round trip's time goes: each side of the 1K / 100K echo swapped for a bare
/// stand-in, interleaved; writes the breakdown section of benches/RESULTS.md.
#[derive(clap::Parser)]
#[command(name = "breakdown")]
struct Cli {
    #[command(flatten)]
    repetitions: Repetitions<5>,
}

fn main() -> anyhow::Result<()> {
    let cli: Cli = clap::Parser::parse();
    let reps = cli.repetitions.reps;
    progress("building the release server...");
    let binary = build_release_server()?;
    let server = ServerUnderTest::start(&binary, &[])?;
    let floor = FloorServer::start()?;
    let tokio_echo = TokioEcho::start()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    // samples[case][row] = microseconds per round trip, one per repetition
    let mut samples = vec![vec![Vec::new(); ROWS.len()]; CASES.len()];
    for rep in 0..=reps {
        for (case, (size, count)) in CASES.iter().enumerate() {
            let message = sized_message(*size);
            let line = echo_request_line(&message)?;
            for (row, (client, target)) in ROWS.iter().enumerate() {
                progress(&format!("rep {rep}/{reps}, {size}K, {client} -> {target}"));
                let socket: &Path = match row {
                    1 => &tokio_echo.socket,
                    2 | 6 => &server.socket,
                    _ => &floor.socket,
                };
                let elapsed = match row {
                    0..=2 => floor_round_trips(socket, &line, *count)?,
                    3 => runtime.block_on(tokio_loop(socket, &line, *count))?,
                    4 => runtime.block_on(two_task_loop(socket, &line, *count))?,
                    _ => runtime.block_on(client_round_trips(socket, &message, *count))?,
                };
                if rep > 0 {
                    samples[case][row].push(elapsed.as_secs_f64() * 1e6 / *count as f64);
                }
            }
        }
    }
    progress("");
    eprintln!();

    let table = breakdown_table(&samples);
    println!("{table}");
    report::write_results(
        &repo_root().join("benches/RESULTS.md"),
        "breakdown",
        &format!(
            "Command: `cargo run --release -p pixl-ipc-benches --bin breakdown` ({reps} repetitions after a warm-up, interleaved)\n\n{table}"
        ),
    )?;
    eprintln!("wrote benches/RESULTS.md");
    Ok(())
}

async fn client_round_trips(
    socket: &Path,
    message: &serde_json::Value,
    count: usize,
) -> anyhow::Result<Duration> {
    let client = Client::builder()
        .reconnect(ReconnectPolicy::Off)
        .request_timeout(Duration::from_secs(60))
        .connect(socket)
        .await?;
    let started = Instant::now();
    for _ in 0..count {
        client.send("/ipcserver/test/echo", message).await?;
    }
    let elapsed = started.elapsed();
    client.close().await;
    Ok(elapsed)
}

/// Write a line, read a line, in one task: the least an async client can do.
async fn tokio_loop(socket: &Path, line: &[u8], count: usize) -> anyhow::Result<Duration> {
    let (read, mut write) = tokio::net::UnixStream::connect(socket).await?.into_split();
    let mut reader = BufReader::with_capacity(1 << 20, read);
    let mut back = Vec::new();
    let started = Instant::now();
    for _ in 0..count {
        write.write_all(line).await?;
        back.clear();
        reader.read_until(b'\n', &mut back).await?;
    }
    Ok(started.elapsed())
}

/// The same round trips with the shape of a shareable client: the caller hands each line to a
/// task that owns the socket and waits for the reply on a oneshot (with a timeout), as the
/// Rust client does, minus JSON and bookkeeping.
async fn two_task_loop(socket: &Path, line: &[u8], count: usize) -> anyhow::Result<Duration> {
    // The reply carries only its length: the I/O task reuses one buffer, as the loop above.
    type Job = (bytes::Bytes, tokio::sync::oneshot::Sender<usize>);
    let stream = tokio::net::UnixStream::connect(socket).await?;
    let (jobs, mut queue) = tokio::sync::mpsc::channel::<Job>(1024);
    let io = tokio::spawn(async move {
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::with_capacity(1 << 20, read);
        let mut back = Vec::new();
        while let Some((bytes, reply)) = queue.recv().await {
            back.clear();
            if write.write_all(&bytes).await.is_err()
                || reader.read_until(b'\n', &mut back).await.is_err()
            {
                return;
            }
            let _ = reply.send(back.len());
        }
    });
    let line = bytes::Bytes::copy_from_slice(line);
    let started = Instant::now();
    for _ in 0..count {
        let (reply, answer) = tokio::sync::oneshot::channel();
        jobs.send((line.clone(), reply)).await?;
        tokio::time::timeout(Duration::from_secs(60), answer).await??;
    }
    let elapsed = started.elapsed();
    drop(jobs);
    let _ = io.await;
    Ok(elapsed)
}

fn breakdown_table(samples: &[Vec<Vec<f64>>]) -> String {
    let mut out = String::from(
        "Microseconds per round trip, median (min-max) of the repetitions, and the ratio to the\n\
         floor (first row) at the same size:\n\n| client | server |",
    );
    for (size, _) in CASES {
        let _ = write!(out, " {size}K | ratio |");
    }
    out.push_str("\n| --- | --- |");
    out.push_str(&" ---: | ---: |".repeat(CASES.len()));
    out.push('\n');
    for (row, (client, server)) in ROWS.iter().enumerate() {
        let _ = write!(out, "| {client} | {server} |");
        for case in samples {
            let cell = Spread::of(&case[row]);
            let floor = Spread::of(&case[0]).median;
            let _ = write!(
                out,
                " {:.1} ({:.1}-{:.1}) | {:.2}x |",
                cell.median,
                cell.min,
                cell.max,
                cell.median / floor
            );
        }
        out.push('\n');
    }
    out
}

/// A raw line echo on a Tokio current-thread runtime of its own: what the async framework
/// costs before any JSON or routing.
struct TokioEcho {
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl TokioEcho {
    fn start() -> anyhow::Result<TokioEcho> {
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("tokio-echo.sock");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::UnixListener::bind(&socket)?
        };
        std::thread::spawn(move || {
            runtime.block_on(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(echo_lines(stream));
                }
            })
        });
        Ok(TokioEcho { socket, _dir: dir })
    }
}

async fn echo_lines(stream: tokio::net::UnixStream) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::with_capacity(1 << 20, read);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if write.write_all(&line).await.is_err() {
                    return;
                }
            }
        }
    }
}

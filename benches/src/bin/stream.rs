//! Streamed replies: items per second from the release server's `/ipcserver/test/stream`, with
//! 1K items (`"size": 1000`), for one stream, 16 streams on one connection and 16 connections
//! with a stream each; beside it, in the same run, 1K echo calls with 16 in flight on one
//! connection (one reply line per request line) for scale.
//!
//! `cargo run --release -p pixl-ipc-benches --bin stream [-- --reps N]`
//!
//! The client is a lean blocking reader (std `UnixStream`, `BufReader::read_line`, a cheap
//! check of each line), so the figures are the server's; one row reads the same stream through
//! the Rust client's `Client::stream`, which parses each item.
//!
//! Writes the `stream` section of `benches/RESULTS.md`.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use pixl_ipc_benches::{
    build_release_server, echo_request_line, load_average, progress, repo_root, report,
    sized_message, Repetitions, ServerUnderTest, Spread,
};

/// One row's measurement against the server's socket: items (or replies) per second.
type Measure = fn(&Path) -> anyhow::Result<f64>;

/// Items per repetition, over all streams.
const ITEMS: usize = 100_000;
/// The padding that makes an item `{"i":k,"pad":"..."}` about 1 KiB.
const ITEM_PAD: usize = 1000;
/// Streams (and connections) in the concurrent rows.
const STREAMS: usize = 16;

/// Streamed replies: items per second from the release server's test stream, beside 1K echo
/// calls; writes the stream section of benches/RESULTS.md.
#[derive(clap::Parser)]
#[command(name = "stream")]
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
    let socket = server.socket.clone();
    let rows: [(&str, Measure); 5] = [
        ("1 stream, 1 connection", |s| {
            streams_on_connections(s, 1, 1)
        }),
        (
            "1 stream, Rust client (`Client::stream`)",
            rust_client_stream,
        ),
        ("16 streams, 1 connection", |s| {
            streams_on_connections(s, STREAMS, 1)
        }),
        ("16 connections, 1 stream each", |s| {
            streams_on_connections(s, 1, STREAMS)
        }),
        (
            "1K echo calls, 16 in flight, 1 connection (replies/s)",
            echo_in_flight,
        ),
    ];
    let mut samples = vec![Vec::new(); rows.len()];
    for rep in 0..=reps {
        for (row, (name, run)) in rows.iter().enumerate() {
            progress(&format!("rep {rep}/{reps}: {name}"));
            let rate = run(&socket)?;
            if rep > 0 {
                samples[row].push(rate);
            }
        }
    }
    progress("");
    eprintln!();
    let (rss, peak) = server.memory_kib();
    let mut body = format!(
        "Command: `cargo run --release -p pixl-ipc-benches --bin stream` ({reps} repetitions after a warm-up, interleaved)\n\n\
         `/ipcserver/test/stream` with `{{\"count\": N, \"size\": {ITEM_PAD}}}`: items \
         `{{\"i\":k,\"pad\":\"...\"}}` of about 1 KiB, {ITEMS} items per repetition over all \
         streams, read by a lean blocking client (std `UnixStream`, one `read_line` per item). \
         The last row is ordinary 1K echo calls in the same run, for scale. Median \
         (min-max) of the repetitions:\n\n\
         | what | items/s | ratio to 1 stream |\n| --- | ---: | ---: |\n"
    );
    let base = Spread::of(&samples[0]).median;
    for (row, (name, _)) in rows.iter().enumerate() {
        let spread = Spread::of(&samples[row]);
        let _ = writeln!(
            body,
            "| {name} | {:.0} ({:.0}-{:.0}) | {:.2}x |",
            spread.median,
            spread.min,
            spread.max,
            spread.median / base
        );
    }
    let _ = writeln!(
        body,
        "\nServer memory after the run: {} MiB resident, peak {} MiB.\n\
         Load average (1 min) at the end: {} on {} cores.",
        rss / 1024,
        peak / 1024,
        load_average(),
        pixl_ipc_benches::machine_cpus()
    );
    println!("{body}");
    report::write_results(&repo_root().join("benches/RESULTS.md"), "stream", &body)?;
    Ok(())
}

/// Runs `streams` streams on each of `connections` connections, each of `ITEMS / (streams *
/// connections)` items, all at once; returns items received per second.
fn streams_on_connections(
    socket: &Path,
    streams: usize,
    connections: usize,
) -> anyhow::Result<f64> {
    let per_stream = ITEMS / (streams * connections);
    let started = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let socket = socket.to_path_buf();
            std::thread::spawn(move || read_streams(&socket, streams, per_stream))
        })
        .collect();
    let mut received = 0;
    for worker in workers {
        received += worker
            .join()
            .map_err(|_| anyhow::anyhow!("a reader thread panicked"))??;
    }
    Ok(received as f64 / started.elapsed().as_secs_f64())
}

/// On one new connection: starts `streams` streams of `count` items and reads until every
/// final line; returns the items read.
fn read_streams(socket: &Path, streams: usize, count: usize) -> anyhow::Result<usize> {
    let mut writer = UnixStream::connect(socket)?;
    writer.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut reader = BufReader::with_capacity(1 << 16, writer.try_clone()?);
    let mut requests = String::new();
    for id in 0..streams {
        let _ = writeln!(
            requests,
            r#"{{"uri":"/ipcserver/test/stream","ipcReqID":{id},"data":{{"count":{count},"size":{ITEM_PAD}}},"ipcStream":true}}"#
        );
    }
    writer.write_all(requests.as_bytes())?;
    let (mut items, mut finals) = (0, 0);
    let mut line = String::with_capacity(2048);
    while finals < streams {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            bail!("the server closed the connection mid-stream");
        }
        if line.ends_with("\"ipcMore\":true}\n") {
            items += 1;
        } else if line.contains("\"done\"") {
            finals += 1;
        } else {
            bail!("unexpected line: {}", line.trim_end());
        }
    }
    if items != streams * count {
        bail!("{items} items instead of {}", streams * count);
    }
    Ok(items)
}

/// One stream of all the items through the Rust client's `Client::stream` (each item parsed
/// into a `Value`); returns items per second.
fn rust_client_stream(socket: &Path) -> anyhow::Result<f64> {
    use futures_util::StreamExt;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = pixl_ipc_client::Client::builder()
            .request_timeout(Duration::from_secs(60))
            .connect(socket.display().to_string())
            .await?;
        let started = Instant::now();
        let mut items = client.stream(
            "/ipcserver/test/stream",
            serde_json::json!({"count": ITEMS, "size": ITEM_PAD}),
        );
        let mut received = 0;
        while let Some(item) = items.next().await {
            let item = item?;
            if item.get("done").is_none() {
                received += 1;
            }
        }
        let elapsed = started.elapsed();
        if received != ITEMS {
            bail!("{received} items instead of {ITEMS}");
        }
        client.close().await;
        Ok(received as f64 / elapsed.as_secs_f64())
    })
}

/// 1K echo calls with 16 in flight on one connection for as many replies as the stream rows
/// read items; returns replies per second.
fn echo_in_flight(socket: &Path) -> anyhow::Result<f64> {
    let line = echo_request_line(&sized_message(1))?;
    let mut writer = UnixStream::connect(socket)?;
    writer.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut reader = BufReader::with_capacity(1 << 16, writer.try_clone()?);
    let started = Instant::now();
    for _ in 0..STREAMS {
        writer.write_all(&line)?;
    }
    let (mut sent, mut received) = (STREAMS, 0);
    let mut reply = String::with_capacity(2048);
    while received < ITEMS {
        reply.clear();
        if reader.read_line(&mut reply)? == 0 {
            bail!("the server closed the connection");
        }
        received += 1;
        if sent < ITEMS {
            writer.write_all(&line).context("send")?;
            sent += 1;
        }
    }
    Ok(received as f64 / started.elapsed().as_secs_f64())
}

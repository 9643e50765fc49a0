//! Two server binaries side by side in one run: the latency table's Rust one-at-a-time cells
//! (UNIX socket and WebSocket) against an old and a new build, with the same client code,
//! interleaved (old, new, old, new, ...), to tell whether a change made the request path slower.
//!
//! `cargo run --release -p pixl-ipc-benches --bin compare -- --old PATH --new PATH [--reps N]`
//!
//! Without `--new`, the new binary is this checkout's release server (`build_release_server`,
//! which honours `PIXL_BENCH_SERVER_BIN`). Both servers run for the whole run; each repetition
//! measures, for each size and transport, old then new on a fresh connection each, after one
//! warm-up repetition that is not counted. On a machine whose unpinned latencies are bimodal,
//! run the whole thing on one CPU (`taskset -c 1 target/release/compare ...`): the servers
//! inherit the client's affinity.
//!
//! Check the harness before reading a ratio: run it with the same binary as `--old` and `--new`,
//! and with the two swapped. Unpinned on the 2-core VM it was written on, the server measured
//! second in each cell came out about 2.8x slower at 1K in 4 of 5 same-binary runs (not at
//! 100K), and with two different binaries the slower one was whichever was second; pinned to
//! one CPU, the same comparisons stayed within a few percent of each other.
//!
//! Prints a markdown table: ms per message, median (min-max) of the repetitions for each binary,
//! the ratio of the medians (new/old), and the median (min-max) of the per-repetition ratios.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use pixl_ipc_benches::{
    build_release_server, progress, report, rust_client_echoes, sized_message, Repetitions,
    ServerUnderTest, Spread, MESSAGES,
};

/// The sizes compared: the latency table's smallest and largest rows.
const SIZES: [usize; 2] = [1, 100];
/// The transports compared: the latency table's Rust one-at-a-time columns.
const TRANSPORTS: [&str; 2] = ["Rust, UNIX, 1 at a time", "Rust, WebSocket, 1 at a time"];

/// Two server binaries side by side in one run, interleaved: the latency table's Rust
/// one-at-a-time cells against an old and a new build (read the source's doc comment before
/// quoting a ratio).
#[derive(clap::Parser)]
#[command(name = "compare")]
struct Cli {
    /// The old server binary
    #[arg(long, value_name = "PATH")]
    old: PathBuf,
    /// The new server binary; without it, this checkout's release server (or
    /// PIXL_BENCH_SERVER_BIN)
    #[arg(long, value_name = "PATH")]
    new: Option<PathBuf>,
    #[command(flatten)]
    repetitions: Repetitions<5, 1>,
}

fn main() -> anyhow::Result<()> {
    let cli: Cli = clap::Parser::parse();
    let reps = cli.repetitions.reps;
    let old = cli.old;
    let new = match cli.new {
        Some(path) => path,
        None => {
            progress("building the release server...");
            build_release_server()?
        }
    };
    for binary in [&old, &new] {
        if !binary.is_file() {
            bail!("no server binary at {}", binary.display());
        }
    }
    let servers = [
        ServerUnderTest::start(&old, &[])?,
        ServerUnderTest::start(&new, &[])?,
    ];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    // samples[size][transport][server] = ms per message for each repetition
    let mut samples = vec![vec![[Vec::new(), Vec::new()]; TRANSPORTS.len()]; SIZES.len()];
    let started = Instant::now();
    for rep in 0..=reps {
        for (row, size) in SIZES.iter().enumerate() {
            let message = sized_message(*size);
            for (column, transport) in TRANSPORTS.iter().enumerate() {
                for (which, server) in servers.iter().enumerate() {
                    progress(&format!(
                        "rep {rep}/{reps} ({}), {size}K, {transport}, {}   [{:.0}s]",
                        if rep == 0 { "warm-up" } else { "measured" },
                        ["old", "new"][which],
                        started.elapsed().as_secs_f64()
                    ));
                    let address = if column == 1 {
                        server.ws_url.clone()
                    } else {
                        server.socket.display().to_string()
                    };
                    let elapsed = runtime
                        .block_on(rust_client_echoes(&address, &message, MESSAGES, false))
                        .with_context(|| {
                            format!("{transport} at {size}K, {}", ["old", "new"][which])
                        })?;
                    if rep > 0 {
                        samples[row][column][which]
                            .push(elapsed.as_secs_f64() * 1000.0 / MESSAGES as f64);
                    }
                }
            }
        }
    }
    progress("");
    eprintln!();

    println!("{}\n", report::machine().trim_end());
    println!(
        "old: `{}`\nnew: `{}`\nCPUs allowed: {}\n",
        old.display(),
        new.display(),
        cpus_allowed()
    );
    println!(
        "{reps} repetitions after a warm-up, {MESSAGES} echo requests per cell, interleaved \
         (old then new per cell), a fresh connection per cell.\n"
    );
    println!("ms per message, median (min-max) of the repetitions:\n");
    println!("| size | transport | old | new | new/old (medians) | new/old per repetition |");
    println!("| --- | --- | ---: | ---: | ---: | ---: |");
    for (size, row) in SIZES.iter().zip(&samples) {
        for (transport, [old, new]) in TRANSPORTS.iter().zip(row) {
            let (old_spread, new_spread) = (Spread::of(old), Spread::of(new));
            let paired: Vec<f64> = old.iter().zip(new).map(|(o, n)| n / o).collect();
            let paired = Spread::of(&paired);
            println!(
                "| {size}K | {transport} | {} | {} | {:.3}x | {:.3}x ({:.3}-{:.3}) |",
                cell(old_spread),
                cell(new_spread),
                new_spread.median / old_spread.median,
                paired.median,
                paired.min,
                paired.max
            );
        }
    }
    println!("\nEvery repetition (ms per message), in order:\n");
    for (size, row) in SIZES.iter().zip(&samples) {
        for (transport, [old, new]) in TRANSPORTS.iter().zip(row) {
            println!(
                "- {size}K, {transport}: old {}; new {}",
                list(old),
                list(new)
            );
        }
    }
    Ok(())
}

fn cell(spread: Spread) -> String {
    format!("{:.4} ({:.4}-{:.4})", spread.median, spread.min, spread.max)
}

fn list(samples: &[f64]) -> String {
    samples
        .iter()
        .map(|ms| format!("{ms:.4}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// This process's CPU affinity (the servers inherit it), as the kernel lists it.
fn cpus_allowed() -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
        .map_or_else(|| "unknown".into(), |list| list.trim().to_owned())
}

//! The Rust client's cost per call, one request at a time, for profiling and for comparing two
//! builds of the client side by side.
//!
//! `cargo run --release -p pixl-ipc-benches --bin client-calls -- calls --socket PATH [--size K] [--count N]`
//! makes `N` echo calls of a `K`K message against a server already listening on `PATH`, on a
//! current-thread runtime (as the latency table), and prints microseconds per call. Run it under
//! `valgrind --tool=callgrind` with two counts: the difference in instructions divided by the
//! difference in counts is the client's instructions per call, free of setup and of the load.
//!
//! `cargo run --release -p pixl-ipc-benches --bin client-calls -- ratio [--reps N] [--pin [CPU]]`
//! starts the release server and the floor echo, and prints the Rust client's time per call at
//! 1K and 100K and its ratio to the floor, measured interleaved. Two builds of this binary
//! (before and after a client change) run alternately give a side-by-side comparison.

use std::time::Duration;

use pixl_ipc_benches::{
    build_release_server, echo_request_line, floor_round_trips, load_average, pin_to_cpu,
    rust_client_echoes, sized_message, FloorServer, Pinning, Repetitions, ServerUnderTest, Spread,
};

/// Message sizes (K) and calls per measurement at each, for `ratio`.
const CASES: [(usize, usize); 2] = [(1, 2000), (100, 300)];

/// The Rust client's cost per call, one request at a time.
#[derive(clap::Parser)]
#[command(name = "client-calls")]
enum Cli {
    /// Echo calls one at a time against a server already listening, on a current-thread
    /// runtime; prints microseconds per call (run under callgrind at two counts)
    Calls {
        /// The socket of the server to call
        #[arg(long, value_name = "PATH")]
        socket: String,
        /// The message size, in K (keys of ~1 KiB each)
        #[arg(long, value_name = "K", default_value_t = 1)]
        size: usize,
        /// How many calls
        #[arg(long, value_name = "N", default_value_t = 1000)]
        count: usize,
    },
    /// Starts the release server and the floor echo, and prints the Rust client's time per call
    /// at 1K and 100K and its ratio to the floor, measured interleaved
    Ratio {
        #[command(flatten)]
        repetitions: Repetitions<5>,
        #[command(flatten)]
        pinning: Pinning,
    },
}

fn main() -> anyhow::Result<()> {
    let cli: Cli = clap::Parser::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match cli {
        Cli::Calls {
            socket,
            size,
            count,
        } => {
            let message = sized_message(size);
            let elapsed = runtime.block_on(rust_client_echoes(&socket, &message, count, false))?;
            println!("{:.2} us per call", per_call(elapsed, count));
            Ok(())
        }
        Cli::Ratio {
            repetitions,
            pinning,
        } => ratio(&runtime, repetitions.reps, pinning.pin),
    }
}

fn ratio(
    runtime: &tokio::runtime::Runtime,
    reps: usize,
    pinned: Option<usize>,
) -> anyhow::Result<()> {
    let binary = build_release_server()?;
    if let Some(cpu) = pinned {
        pin_to_cpu(cpu)?;
    }
    let server = ServerUnderTest::start(&binary, &[])?;
    let floor = FloorServer::start()?;
    let address = server.socket.to_string_lossy().into_owned();
    // samples[case] = (floor, client) microseconds per call, one per repetition
    let mut samples = vec![(Vec::new(), Vec::new()); CASES.len()];
    for rep in 0..=reps {
        for (case, (size, count)) in CASES.iter().enumerate() {
            let message = sized_message(*size);
            let line = echo_request_line(&message)?;
            let floor_us = per_call(floor_round_trips(&floor.socket, &line, *count)?, *count);
            let client_us = per_call(
                runtime.block_on(rust_client_echoes(&address, &message, *count, false))?,
                *count,
            );
            if rep > 0 {
                samples[case].0.push(floor_us);
                samples[case].1.push(client_us);
            }
        }
    }
    for ((size, _), (floor_us, client_us)) in CASES.iter().zip(&samples) {
        let floor_median = Spread::of(floor_us).median;
        let client_median = Spread::of(client_us).median;
        println!(
            "{size}K: floor {floor_median:.1} us, Rust client {client_median:.1} us, {:.2}x the floor (load {})",
            client_median / floor_median,
            load_average()
        );
    }
    Ok(())
}

fn per_call(elapsed: Duration, count: usize) -> f64 {
    elapsed.as_secs_f64() * 1e6 / count as f64
}

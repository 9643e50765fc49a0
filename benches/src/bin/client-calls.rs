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

use anyhow::{bail, Context};
use pixl_ipc_benches::{
    build_release_server, echo_request_line, floor_round_trips, load_average, pin_arg, pin_to_cpu,
    reps_arg, rust_client_echoes, sized_message, FloorServer, ServerUnderTest, Spread,
};

/// Message sizes (K) and calls per measurement at each, for `ratio`.
const CASES: [(usize, usize); 2] = [(1, 2000), (100, 300)];

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match std::env::args().nth(1).as_deref() {
        Some("calls") => {
            let socket = value_of("--socket")?.context("calls needs --socket PATH")?;
            let size = value_of("--size")?.map_or(Ok(1), |size| size.parse())?;
            let count = value_of("--count")?.map_or(Ok(1000), |count| count.parse())?;
            let message = sized_message(size);
            let elapsed = runtime.block_on(rust_client_echoes(&socket, &message, count, false))?;
            println!("{:.2} us per call", per_call(elapsed, count));
            Ok(())
        }
        Some("ratio") => ratio(&runtime),
        _ => bail!("usage: client-calls calls --socket PATH [--size K] [--count N] | ratio [--reps N] [--pin [CPU]]"),
    }
}

fn ratio(runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let reps = reps_arg(5)?;
    let pinned = pin_arg()?;
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

/// The value after `flag` on the command line.
fn value_of(flag: &str) -> anyhow::Result<Option<String>> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|arg| arg == flag) {
        None => Ok(None),
        Some(at) => Ok(Some(
            args.get(at + 1)
                .with_context(|| format!("{flag} takes a value"))?
                .clone(),
        )),
    }
}

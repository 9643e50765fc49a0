//! The original README's latency table, reproduced with every client and transport beside the
//! physical floor of this machine, measured side by side in one run.
//!
//! `cargo run --release -p pixl-ipc-benches --bin latency-table [-- --reps N] [--pin [CPU]]`
//!
//! Prints a markdown table (ms per message: median and min-max of the repetitions, then the
//! ratio to the floor), and writes `benches/RESULTS.md` and `benches/latency.svg`.
//!
//! With `--pin` the whole run (this process, the server, the floor's echo threads, the Node and
//! PHP clients) is on one CPU (0 unless named), and the table goes to the section
//! `latency-pinned` and `benches/latency-pinned.svg`: there the floor is stable to a few percent
//! and a ratio to it is software overhead alone (see [`pin_to_cpu`] for why unpinned ratios
//! swing on a VM). The "lean client" column is the floor's own std client (one prebuilt line
//! written, one line read, no parsing) against our server.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use pixl_ipc_benches::{
    build_release_server, chart, echo_request_line, floor_round_trips, floor_round_trips_tcp,
    load_average, pin_arg, pin_to_cpu, progress, repo_root, report, reps_arg, rust_client_echoes,
    sized_message, FloorServer, ServerUnderTest, Spread, MESSAGES, SIZES,
};

/// The columns, in table order.
const COLUMNS: [&str; 9] = [
    "floor (raw UNIX socket)",
    "lean client, UNIX, 1 at a time",
    "Rust, UNIX, 1 at a time",
    "Rust, WebSocket, 1 at a time",
    "Rust, UNIX, 500 in flight",
    "Node, UNIX, 1 at a time",
    "Node, UNIX, 500 in flight",
    "PHP, UNIX, 1 at a time",
    "floor (raw TCP loopback)",
];

fn main() -> anyhow::Result<()> {
    let reps = reps_arg(5)?;
    let pinned = pin_arg()?;
    progress("building the release server...");
    let binary = build_release_server()?;
    if let Some(cpu) = pinned {
        // After the build (which should use every CPU), before anything measured starts.
        pin_to_cpu(cpu)?;
    }
    ensure_node_packages()?;
    let server = ServerUnderTest::start(&binary, &[])?;
    let floor = FloorServer::start()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    // samples[size][column] = ms per message for each repetition
    let mut samples = vec![vec![Vec::new(); COLUMNS.len()]; SIZES.len()];
    let started = Instant::now();
    for rep in 0..=reps {
        for (row, size) in SIZES.iter().enumerate() {
            let message = sized_message(*size);
            for (column, name) in COLUMNS.iter().enumerate() {
                progress(&format!(
                    "rep {rep}/{reps} ({}), {size}K, {name}   [{:.0}s]",
                    if rep == 0 { "warm-up" } else { "measured" },
                    started.elapsed().as_secs_f64()
                ));
                let ms = measure(column, *size, &message, &server, &floor, &runtime)
                    .with_context(|| format!("{name} at {size}K"))?;
                if rep > 0 {
                    samples[row][column].push(ms);
                }
            }
        }
    }
    progress("");
    eprintln!();

    let spreads: Vec<Vec<Spread>> = samples
        .iter()
        .map(|row| row.iter().map(|s| Spread::of(s)).collect())
        .collect();
    let table = report::latency_table(&COLUMNS, &SIZES, &spreads);
    println!("{table}");
    let svg = chart::latency_svg(&COLUMNS, &SIZES, &spreads);
    let benches = repo_root().join("benches");
    let (section, flag, pinning) = match pinned {
        Some(cpu) => (
            "latency-pinned",
            " -- --pin",
            format!("The whole run on CPU {cpu} (server, floor, clients): ratios are software overhead. "),
        ),
        None => ("latency", "", String::new()),
    };
    std::fs::write(benches.join(format!("{section}.svg")), svg)?;
    report::write_results(&benches.join("RESULTS.md"), section, &format!(
        "Command: `cargo run --release -p pixl-ipc-benches --bin latency-table{flag}` ({reps} repetitions after a warm-up, \
         {MESSAGES} echo requests per cell, interleaved). {pinning}\n\n{table}\n![latency per message size]({section}.svg)\n\n\
         Load average (1 min) at the end: {} on {} cores.\n",
        load_average(),
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    ))?;
    eprintln!("wrote benches/RESULTS.md and benches/{section}.svg");
    Ok(())
}

/// One cell: ms per message for MESSAGES echo requests of `size`.
fn measure(
    column: usize,
    size: usize,
    message: &serde_json::Value,
    server: &ServerUnderTest,
    floor: &FloorServer,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<f64> {
    let per_message =
        |elapsed: std::time::Duration| elapsed.as_secs_f64() * 1000.0 / MESSAGES as f64;
    match column {
        0 => Ok(per_message(floor_round_trips(
            &floor.socket,
            &echo_request_line(message)?,
            MESSAGES,
        )?)),
        1 => Ok(per_message(floor_round_trips(
            &server.socket,
            &echo_request_line(message)?,
            MESSAGES,
        )?)),
        2..=4 => {
            let address = if column == 3 {
                server.ws_url.clone()
            } else {
                server.socket.display().to_string()
            };
            Ok(per_message(runtime.block_on(rust_client_echoes(
                &address,
                message,
                MESSAGES,
                column == 4,
            ))?))
        }
        5 | 6 => {
            let mode = if column == 6 { "burst" } else { "seq" };
            run_script(
                "node",
                &repo_root().join("benches/node/bench.js"),
                &server.socket,
                size,
                Some(mode),
            )
        }
        8 => Ok(per_message(floor_round_trips_tcp(
            floor.tcp,
            &echo_request_line(message)?,
            MESSAGES,
        )?)),
        _ => run_script(
            "php",
            &repo_root().join("benches/php/bench.php"),
            &server.socket,
            size,
            None,
        ),
    }
}

fn run_script(
    program: &str,
    script: &Path,
    socket: &Path,
    size: usize,
    mode: Option<&str>,
) -> anyhow::Result<f64> {
    let mut command = Command::new(program);
    command
        .arg(script)
        .arg(socket)
        .arg(size.to_string())
        .arg(MESSAGES.to_string());
    if let Some(mode) = mode {
        command.arg(mode);
    }
    let output = command
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !output.status.success() {
        bail!(
            "{program} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?.trim().parse()?)
}

/// The Node bench needs client-node's dependencies.
fn ensure_node_packages() -> anyhow::Result<()> {
    let client_node = repo_root().join("client-node");
    if client_node.join("node_modules/ws").is_dir() {
        return Ok(());
    }
    progress("installing client-node's npm packages (npm ci)...");
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(client_node)
        .status()?;
    if !status.success() {
        bail!("npm ci in client-node failed");
    }
    Ok(())
}

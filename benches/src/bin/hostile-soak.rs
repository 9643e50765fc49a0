//! The hostile-peer soak: well-behaved clients checking every reply while other connections
//! attack the server (see `pixl_ipc_benches::hostile`). Not part of the test command.
//!
//! `cargo run --release -p pixl-ipc-benches --bin hostile-soak [-- --seconds N]` (default 60;
//! `--attacks 1,4` runs only those attacks, numbered as in the report, `--attacks none` none:
//! to find which attack a figure comes from)
//!
//! Prints a markdown table on stdout (progress on stderr) and exits non-zero if a well-behaved
//! client saw an error or the server's descriptors did not come back after the attacks.

use std::time::Duration;

use anyhow::Context;
use pixl_ipc_benches::{build_release_server, hostile, progress};

fn main() -> anyhow::Result<()> {
    let seconds: f64 = std::env::args()
        .skip_while(|arg| arg != "--seconds")
        .nth(1)
        .map(|n| n.parse())
        .transpose()
        .context("--seconds takes a number")?
        .unwrap_or(60.0);
    let attacks: Vec<usize> = match std::env::args().skip_while(|arg| arg != "--attacks").nth(1) {
        None => (1..=hostile::ATTACKS.len()).collect(),
        Some(list) if list == "none" => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|n| n.trim().parse())
            .collect::<Result<_, _>>()
            .context("--attacks takes a list of attack numbers such as 1,4, or none")?,
    };
    if !(seconds > 0.0 && seconds <= 86_400.0) {
        anyhow::bail!("--seconds must be between 0 and 86400");
    }
    progress("building the release server...");
    let binary = build_release_server()?;
    progress(&format!(
        "hostile soak for {seconds} s: 2 UNIX + 2 WebSocket clients x 3 in flight, 8 attacks..."
    ));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = runtime.block_on(hostile::run(
        &binary,
        Duration::from_secs_f64(seconds),
        &attacks,
    ))?;
    progress("");
    eprintln!();
    let given: Vec<String> = std::env::args().skip(1).collect();
    println!(
        "Command: `cargo run --release -p pixl-ipc-benches --bin hostile-soak -- {}`\n\n\
         Server flags: `{}`\n",
        given.join(" "),
        hostile::SERVER_ARGS.join(" ")
    );
    println!("{}", result.markdown());
    if result.errors > 0 {
        anyhow::bail!("{} errors seen by the well-behaved clients", result.errors);
    }
    if !result.passed() {
        anyhow::bail!(
            "server descriptors did not come back: {} before, {} after",
            result.fds_before,
            result.fds_after
        );
    }
    Ok(())
}

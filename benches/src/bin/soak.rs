//! The soak, run for minutes (not part of the test command, which runs a 3-second version).
//!
//! `cargo run --release -p pixl-ipc-benches --bin soak [-- --minutes N]` (default 5)

use std::time::Duration;

use anyhow::Context;
use pixl_ipc_benches::{build_release_server, progress, repo_root, report, soak};

fn main() -> anyhow::Result<()> {
    let minutes: f64 = std::env::args()
        .skip_while(|arg| arg != "--minutes")
        .nth(1)
        .map(|n| n.parse())
        .transpose()
        .context("--minutes takes a number")?
        .unwrap_or(5.0);
    progress("building the release server...");
    let binary = build_release_server()?;
    progress(&format!("soaking for {minutes} minutes (mixed sizes, 4 UNIX + 4 WebSocket clients, 4 in flight each)..."));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = runtime.block_on(soak::run(&binary, Duration::from_secs_f64(minutes * 60.0)))?;
    progress("");
    eprintln!();
    let table = result.markdown();
    println!("{table}");
    report::write_results(
        &repo_root().join("benches/RESULTS.md"),
        "soak",
        &format!("Command: `cargo run --release -p pixl-ipc-benches --bin soak -- --minutes {minutes}`\n\n{table}"),
    )?;
    if result.errors > 0 {
        anyhow::bail!("{} errors during the soak", result.errors);
    }
    Ok(())
}

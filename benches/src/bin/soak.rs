//! The soak, run for minutes (not part of the test command, which runs a 3-second version).
//!
//! `cargo run --release -p pixl-ipc-benches --bin soak [-- --minutes N]` (default 5)

use std::time::Duration;

use pixl_ipc_benches::{build_release_server, progress, repo_root, report, soak};

/// The long soak: mixed sizes, 4 UNIX + 4 WebSocket clients; writes the soak section of
/// benches/RESULTS.md.
#[derive(clap::Parser)]
#[command(name = "soak")]
struct Cli {
    /// How long to soak, in minutes
    #[arg(long, value_name = "N", default_value_t = 5.0)]
    minutes: f64,
}

fn main() -> anyhow::Result<()> {
    let Cli { minutes } = clap::Parser::parse();
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

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

use pixl_ipc_benches::{build_release_server, hostile, progress};

/// The hostile-peer soak: well-behaved clients check every reply while other connections
/// attack the server; prints a markdown table, fails on a client error or a leaked descriptor.
#[derive(clap::Parser)]
#[command(name = "hostile-soak")]
struct Cli {
    /// How long to run, in seconds (more than 0, at most 86400)
    #[arg(long, value_name = "N", default_value_t = 60.0, value_parser = parse_seconds)]
    seconds: f64,
    /// Only these attacks, numbered as in the report (such as 1,4), or none; all without it
    #[arg(long, value_name = "LIST", value_parser = parse_attacks)]
    attacks: Option<AttackList>,
}

/// The attacks `--attacks` names.
#[derive(Clone)]
struct AttackList(Vec<usize>);

fn parse_seconds(text: &str) -> Result<f64, String> {
    let seconds: f64 = text.parse().map_err(|_| "not a number".to_owned())?;
    if !(seconds > 0.0 && seconds <= 86_400.0) {
        return Err("must be between 0 and 86400".into());
    }
    Ok(seconds)
}

fn parse_attacks(list: &str) -> Result<AttackList, String> {
    if list == "none" {
        return Ok(AttackList(Vec::new()));
    }
    list.split(',')
        .map(|n| n.trim().parse())
        .collect::<Result<_, _>>()
        .map(AttackList)
        .map_err(|_| "a list of attack numbers such as 1,4, or none".into())
}

fn main() -> anyhow::Result<()> {
    let cli: Cli = clap::Parser::parse();
    let seconds = cli.seconds;
    let attacks = cli
        .attacks
        .map_or_else(|| (1..=hostile::ATTACKS.len()).collect(), |list| list.0);
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

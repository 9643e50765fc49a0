//! The original README's latency table, reproduced with every client and transport beside the
//! physical floor of this machine, measured side by side in one run.
//!
//! `cargo run --release -p pixl-ipc-benches --bin latency-table [-- --reps N] [--pin [CPU]]
//! [--original PATH]`
//!
//! Prints a markdown table (ms per message: median and min-max of the repetitions, then the
//! ratio to the floor), and writes `benches/RESULTS.md` and `benches/latency.svg`.
//!
//! With `--pin` the whole run (this process, the server, the floor's echo threads, the Node and
//! PHP clients) is on one CPU (0 unless named), and the table goes to the section
//! `latency-pinned` and `benches/latency-pinned.svg`: there the floor is stable to a few percent
//! and a ratio to it is software overhead alone (see [`pin_to_cpu`] for why unpinned ratios
//! swing on a VM). The "lean client" column is the floor's own std client (one prebuilt line
//! written, one line read, no parsing) against our server; "Node bare loop" is its Node
//! counterpart (bench.js `bare`: a prebuilt request line written, each reply `JSON.parse`d), the
//! yardstick of the Node client.
//!
//! With `--original PATH` (or `ORIGINAL_PIXL_IPC=PATH`), a checkout of the original pixl-ipc,
//! its Node client (one at a time and 500 in flight) and its PHP client (one at a time: it
//! blocks on each reply, so it has no 500-in-flight column) are measured beside ours, against
//! our server in the same run. Without one those columns are left out, with a message.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::builder::TypedValueParser as _;
use pixl_ipc_benches::{
    build_release_server, chart, echo_request_line, floor_round_trips, floor_round_trips_tcp,
    load_average, pin_to_cpu, progress, repo_root, report, rust_client_echoes, sized_message,
    FloorServer, Pinning, Repetitions, ServerUnderTest, Spread, MESSAGES, SIZES,
};

/// The original README's latency table, every client and transport beside the floor; writes
/// benches/RESULTS.md and benches/latency.svg (latency-pinned with --pin).
#[derive(clap::Parser)]
#[command(name = "latency-table")]
struct Cli {
    #[command(flatten)]
    repetitions: Repetitions<5>,
    #[command(flatten)]
    pinning: Pinning,
    /// A checkout of the original pixl-ipc (client.js, clients/PixlIPCClient.class.php): its Node
    /// and PHP clients are measured beside ours; without one their columns are left out
    // An OsString parser: the PathBuf one refuses an empty value, and an empty
    // ORIGINAL_PIXL_IPC has always meant none.
    #[arg(
        long,
        value_name = "PATH",
        env = "ORIGINAL_PIXL_IPC",
        value_parser = clap::builder::OsStringValueParser::new().map(PathBuf::from),
    )]
    original: Option<PathBuf>,
}

/// One column of the table: who is measured, over what.
#[derive(Clone, Copy)]
enum Column {
    Floor,
    Lean,
    Rust {
        ws: bool,
        burst: bool,
    },
    /// bench.js in `mode`; `original`: the original pixl-ipc client instead of ours.
    Node {
        mode: &'static str,
        original: bool,
    },
    Php {
        original: bool,
    },
    FloorTcp,
}

impl Column {
    fn name(self) -> &'static str {
        match self {
            Column::Floor => "floor (raw UNIX socket)",
            Column::Lean => "lean client, UNIX, 1 at a time",
            Column::Rust {
                ws: false,
                burst: false,
            } => "Rust, UNIX, 1 at a time",
            Column::Rust { ws: true, .. } => "Rust, WebSocket, 1 at a time",
            Column::Rust { burst: true, .. } => "Rust, UNIX, 500 in flight",
            Column::Node { mode: "bare", .. } => "Node bare loop, 1 at a time",
            Column::Node {
                mode: "seq",
                original: false,
            } => "Node, UNIX, 1 at a time",
            Column::Node {
                mode: "seq",
                original: true,
            } => "original Node, UNIX, 1 at a time",
            Column::Node {
                original: false, ..
            } => "Node, UNIX, 500 in flight",
            Column::Node { original: true, .. } => "original Node, UNIX, 500 in flight",
            Column::Php { original: false } => "PHP, UNIX, 1 at a time",
            Column::Php { original: true } => "original PHP, UNIX, 1 at a time",
            Column::FloorTcp => "floor (raw TCP loopback)",
        }
    }
}

/// The columns, in table order: each original client beside ours when a checkout is given.
/// (No "original PHP, 500 in flight": the PHP clients block on each reply.)
fn columns(with_original: bool) -> Vec<Column> {
    let mut columns = vec![
        Column::Floor,
        Column::Lean,
        Column::Rust {
            ws: false,
            burst: false,
        },
        Column::Rust {
            ws: true,
            burst: false,
        },
        Column::Rust {
            ws: false,
            burst: true,
        },
        Column::Node {
            mode: "bare",
            original: false,
        },
    ];
    for (mode, original) in [
        ("seq", false),
        ("seq", true),
        ("burst", false),
        ("burst", true),
    ] {
        if !original || with_original {
            columns.push(Column::Node { mode, original });
        }
    }
    columns.push(Column::Php { original: false });
    if with_original {
        columns.push(Column::Php { original: true });
    }
    columns.push(Column::FloorTcp);
    columns
}

fn main() -> anyhow::Result<()> {
    let cli: Cli = clap::Parser::parse();
    let reps = cli.repetitions.reps;
    let pinned = cli.pinning.pin;
    progress("building the release server...");
    let binary = build_release_server()?;
    if let Some(cpu) = pinned {
        // After the build (which should use every CPU), before anything measured starts.
        pin_to_cpu(cpu)?;
    }
    ensure_node_packages()?;
    // The original clients, copied beside their dependencies into a temp folder (kept until
    // the end of the run); none: their columns are left out.
    let original = match cli.original.filter(|path| !path.as_os_str().is_empty()) {
        Some(checkout) => {
            let dir = tempfile::tempdir()?;
            prepare_original(&checkout, dir.path())?;
            Some(dir)
        }
        None => {
            eprintln!("{SKIPPED}");
            None
        }
    };
    let original_dir = original.as_ref().map(|dir| dir.path());
    let columns = columns(original.is_some());
    let names: Vec<&str> = columns.iter().map(|column| column.name()).collect();
    let server = ServerUnderTest::start(&binary, &[])?;
    let floor = FloorServer::start()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    // samples[size][column] = ms per message for each repetition
    let mut samples = vec![vec![Vec::new(); columns.len()]; SIZES.len()];
    let started = Instant::now();
    for rep in 0..=reps {
        for (row, size) in SIZES.iter().enumerate() {
            let message = sized_message(*size);
            for (index, column) in columns.iter().enumerate() {
                let name = column.name();
                progress(&format!(
                    "rep {rep}/{reps} ({}), {size}K, {name}   [{:.0}s]",
                    if rep == 0 { "warm-up" } else { "measured" },
                    started.elapsed().as_secs_f64()
                ));
                let ms = measure(
                    *column,
                    *size,
                    &message,
                    &server,
                    &floor,
                    &runtime,
                    original_dir,
                )
                .with_context(|| format!("{name} at {size}K"))?;
                if rep > 0 {
                    samples[row][index].push(ms);
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
    let table = report::latency_table(&names, &SIZES, &spreads);
    println!("{table}");
    if original.is_none() {
        println!("{SKIPPED}");
    }
    let svg = chart::latency_svg(&names, &SIZES, &spreads);
    let benches = repo_root().join("benches");
    let originals = if original.is_some() {
        "The original pixl-ipc 1.1.3 clients (from a checkout given with `--original PATH`, \
         its client.js with pixl-json-stream 1.0.6) against our server in the same run. "
    } else {
        "No original clients (no checkout given with `--original PATH`). "
    };
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
         {MESSAGES} echo requests per cell, interleaved). {pinning}{originals}\n\n{table}\n![latency per message size]({section}.svg)\n\n\
         Load average (1 min) at the end: {} on {} cores.\n",
        load_average(),
        pixl_ipc_benches::machine_cpus()
    ))?;
    eprintln!("wrote benches/RESULTS.md and benches/{section}.svg");
    Ok(())
}

/// One cell: ms per message for MESSAGES echo requests of `size`. `original`: the folder
/// [`prepare_original`] filled, for the original clients' columns.
fn measure(
    column: Column,
    size: usize,
    message: &serde_json::Value,
    server: &ServerUnderTest,
    floor: &FloorServer,
    runtime: &tokio::runtime::Runtime,
    original: Option<&Path>,
) -> anyhow::Result<f64> {
    let per_message =
        |elapsed: std::time::Duration| elapsed.as_secs_f64() * 1000.0 / MESSAGES as f64;
    let original_for = |wanted: bool| match (wanted, original) {
        (false, _) => Ok(None),
        (true, Some(dir)) => Ok(Some(dir)),
        (true, None) => Err(anyhow::anyhow!("no original checkout")),
    };
    match column {
        Column::Floor => Ok(per_message(floor_round_trips(
            &floor.socket,
            &echo_request_line(message)?,
            MESSAGES,
        )?)),
        Column::Lean => Ok(per_message(floor_round_trips(
            &server.socket,
            &echo_request_line(message)?,
            MESSAGES,
        )?)),
        Column::Rust { ws, burst } => {
            let address = if ws {
                server.ws_url.clone()
            } else {
                server.socket.display().to_string()
            };
            Ok(per_message(runtime.block_on(rust_client_echoes(
                &address, message, MESSAGES, burst,
            ))?))
        }
        Column::Node { mode, original } => run_script(
            "node",
            &repo_root().join("benches/node/bench.js"),
            &server.socket,
            size,
            &[
                Some(mode.as_ref()),
                original_for(original)?.map(Path::as_os_str),
            ],
        ),
        Column::Php { original } => run_script(
            "php",
            &repo_root().join("benches/php/bench.php"),
            &server.socket,
            size,
            &[original_for(original)?.map(Path::as_os_str)],
        ),
        Column::FloorTcp => Ok(per_message(floor_round_trips_tcp(
            floor.tcp,
            &echo_request_line(message)?,
            MESSAGES,
        )?)),
    }
}

/// Runs `program script SOCKET SIZE MESSAGES [extra...]` (the `Some` ones) and parses the ms
/// per message it prints.
fn run_script(
    program: &str,
    script: &Path,
    socket: &Path,
    size: usize,
    extra: &[Option<&OsStr>],
) -> anyhow::Result<f64> {
    let mut command = Command::new(program);
    command
        .arg(script)
        .arg(socket)
        .arg(size.to_string())
        .arg(MESSAGES.to_string())
        .args(extra.iter().flatten());
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

/// What is printed when no original checkout is given.
const SKIPPED: &str = "original clients skipped: no original checkout given (--original PATH, \
                       or ORIGINAL_PIXL_IPC=PATH): the pixl-ipc repository with client.js and \
                       clients/PixlIPCClient.class.php";

/// Copies the original clients out of `checkout` into `into` (the checkout is left untouched)
/// and installs the Node client's dependencies there: pixl-json-stream 1.0.6, the version its
/// package.json was written against (1.0.9 cuts lines over 1 MiB), and pixl-perf, which
/// client.js requires at load.
fn prepare_original(checkout: &Path, into: &Path) -> anyhow::Result<()> {
    let files = ["client.js", "clients/PixlIPCClient.class.php"];
    for file in files {
        if !checkout.join(file).is_file() {
            bail!(
                "{} does not look like a pixl-ipc checkout: no {file}",
                checkout.display()
            );
        }
    }
    std::fs::create_dir_all(into.join("clients"))?;
    for file in files {
        std::fs::copy(checkout.join(file), into.join(file))
            .with_context(|| format!("cannot copy {file}"))?;
    }
    progress("installing the original Node client's dependencies (npm install)...");
    let status = Command::new("npm")
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--no-save",
            "--loglevel=error",
            "pixl-json-stream@1.0.6",
            "pixl-perf@^1.0.8",
        ])
        .current_dir(into)
        .status()?;
    if !status.success() {
        bail!("npm install of the original client's dependencies failed");
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Cli;

    #[test]
    fn an_empty_original_parses_so_an_empty_env_var_means_none() {
        let cli = Cli::try_parse_from(["latency-table", "--original", ""]).expect("parses");
        assert_eq!(cli.original.as_deref(), Some(std::path::Path::new("")));
    }

    #[test]
    fn documented_command_lines_parse() {
        let cli = Cli::try_parse_from([
            "latency-table",
            "--pin",
            "--reps",
            "5",
            "--original",
            "checkout",
        ])
        .expect("parses");
        assert_eq!(cli.pinning.pin, Some(0));
        assert_eq!(cli.repetitions.reps, 5);
        assert_eq!(
            cli.original.as_deref(),
            Some(std::path::Path::new("checkout"))
        );
    }
}

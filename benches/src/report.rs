//! Markdown output: the latency table, and `benches/RESULTS.md` with one section per benchmark.

use std::fmt::Write as _;
use std::path::Path;

use crate::Spread;

/// The latency table: one row per size, "median (min-max)" ms per message per column, then the
/// same columns as ratios to the first (the floor).
pub fn latency_table(columns: &[&str], sizes: &[usize], cells: &[Vec<Spread>]) -> String {
    let mut out = String::new();
    let header = |out: &mut String| {
        out.push_str("| size |");
        for column in columns {
            let _ = write!(out, " {column} |");
        }
        out.push_str("\n| --- |");
        out.push_str(&" ---: |".repeat(columns.len()));
        out.push('\n');
    };
    out.push_str("ms per message, median (min-max) of the repetitions:\n\n");
    header(&mut out);
    for (size, row) in sizes.iter().zip(cells) {
        let _ = write!(out, "| {size}K |");
        for cell in row {
            let _ = write!(
                out,
                " {:.4} ({:.4}-{:.4}) |",
                cell.median, cell.min, cell.max
            );
        }
        out.push('\n');
    }
    out.push_str("\nratio to the floor (median / floor median), same run:\n\n");
    header(&mut out);
    for (size, row) in sizes.iter().zip(cells) {
        let _ = write!(out, "| {size}K |");
        let floor = row.first().map_or(1.0, |cell| cell.median);
        for cell in row {
            let _ = write!(out, " {:.2}x |", cell.median / floor);
        }
        out.push('\n');
    }
    out
}

/// Replaces the section `name` of `RESULTS.md` (between its markers) with `body`, keeping the
/// other benchmarks' sections, and stamps it with the machine and date.
pub fn write_results(path: &Path, name: &str, body: &str) -> std::io::Result<()> {
    let existing = std::fs::read_to_string(path).unwrap_or_else(|_| {
        "# Benchmark results\n\nThe latest run of each benchmark, on the machine it names. Ratios \
         measured side by side in one run are the figures to quote: the machine is shared and noisy.\n"
            .to_owned()
    });
    let begin = format!("<!-- {name}:begin -->");
    let end = format!("<!-- {name}:end -->");
    let section = format!("{begin}\n## {name}\n\n{}\n{body}\n{end}", machine());
    let updated = match (existing.find(&begin), existing.find(&end)) {
        (Some(start), Some(stop)) => format!(
            "{}{}{}",
            &existing[..start],
            section,
            &existing[stop + end.len()..]
        ),
        _ => format!("{}\n{}\n", existing.trim_end(), section),
    };
    std::fs::write(path, updated)
}

/// One line naming the machine: CPU model, cores, kernel, date.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = crate::machine_cpus();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let date = std::process::Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default();
    format!(
        "Machine: {model}, {cores} cores, Linux {}; run {date}.\n",
        kernel.trim()
    )
}

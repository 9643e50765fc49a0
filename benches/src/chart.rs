//! A small SVG line chart of latency per message size, one line per column, log-scaled so the
//! 1K and 100K rows are both readable.

use std::fmt::Write as _;

use crate::Spread;

const WIDTH: f64 = 860.0;
const HEIGHT: f64 = 480.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 260.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 50.0;
const COLORS: [&str; 13] = [
    "#000000", "#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
    "#17becf", "#bcbd22", "#7f7f7f", "#aec7e8", "#ff9896",
];

/// The chart as an SVG document.
pub fn latency_svg(columns: &[&str], sizes: &[usize], cells: &[Vec<Spread>]) -> String {
    let values: Vec<f64> = cells
        .iter()
        .flatten()
        .map(|cell| cell.median)
        .filter(|v| *v > 0.0)
        .collect();
    let low = values
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .max(1e-4)
        .log10()
        .floor();
    let high = values
        .iter()
        .copied()
        .fold(0.0, f64::max)
        .max(1e-3)
        .log10()
        .ceil()
        .max(low + 1.0);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |index: usize| LEFT + plot_w * index as f64 / (sizes.len().max(2) - 1) as f64;
    let y = |ms: f64| TOP + plot_h * (1.0 - (ms.max(1e-6).log10() - low) / (high - low));

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="18" font-size="14">ms per message (log scale), 500 echo requests per size</text>"#
    );
    let mut decade = low;
    while decade <= high {
        let at = y(10f64.powf(decade));
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{at:.1}" y2="{at:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            at + 4.0,
            10f64.powf(decade)
        );
        decade += 1.0;
    }
    for (index, size) in sizes.iter().enumerate() {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{size}K</text>"#,
            x(index),
            HEIGHT - BOTTOM + 20.0
        );
    }
    for (column, name) in columns.iter().enumerate() {
        let color = COLORS[column % COLORS.len()];
        // The original clients' lines are dashed, to tell them from ours at a glance.
        let dash = if name.starts_with("original ") {
            r#" stroke-dasharray="6 3""#
        } else {
            ""
        };
        let points: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(row, cells)| format!("{:.1},{:.1}", x(row), y(cells[column].median)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="{}"/>"#,
            points.join(" ")
        );
        let legend_y = TOP + 18.0 * column as f64;
        let _ = writeln!(
            svg,
            r#"<line x1="{}" x2="{}" y1="{legend_y}" y2="{legend_y}" stroke="{color}" stroke-width="3"{dash}/><text x="{}" y="{}">{name}</text>"#,
            WIDTH - RIGHT + 15.0,
            WIDTH - RIGHT + 35.0,
            WIDTH - RIGHT + 40.0,
            legend_y + 4.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

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

/// What a grouped bar chart shows: one group of bars per row (`groups`), one bar per series in
/// each, every value a ratio drawn on a log scale from 1, with a dashed line at `target`.
pub struct Bars<'a> {
    /// The chart's heading.
    pub title: &'a str,
    /// The label under each group.
    pub groups: &'a [String],
    /// The legend, one entry per bar of a group.
    pub series: &'a [&'a str],
    /// `values[group][series]`; a value of 0 or less is left out.
    pub values: &'a [Vec<f64>],
    /// Where the dashed line is drawn, and its label.
    pub target: (f64, &'a str),
}

/// A grouped bar chart of ratios as an SVG document (the peers benchmark's "times slower than
/// pixl-ipc" per row).
pub fn bars_svg(chart: &Bars<'_>) -> String {
    const BAR_TOP: f64 = 40.0;
    // The peers' names are longer than the latency table's columns.
    const LEGEND_EXTRA: f64 = 120.0;
    const BAR_BOTTOM: f64 = 70.0;
    let positive = || chart.values.iter().flatten().copied().filter(|v| *v > 0.0);
    let high = positive().fold(chart.target.0, f64::max).max(2.0).log10();
    // Below 1x (a stack faster than ours) the bar goes down from the 1x line.
    let low = positive().fold(1.0, f64::min).max(0.1).log10();
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - BAR_TOP - BAR_BOTTOM;
    let y = |ratio: f64| {
        BAR_TOP + plot_h * (1.0 - (ratio.max(0.1).log10() - low) / (high - low).max(0.1))
    };
    let group_w = plot_w / chart.groups.len().max(1) as f64;
    let bar_w = group_w * 0.8 / chart.series.len().max(1) as f64;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{HEIGHT}" font-family="sans-serif" font-size="11">"#,
        WIDTH + LEGEND_EXTRA
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="18" font-size="13">{}</text>"#,
        chart.title
    );
    for tick in [0.1_f64, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0] {
        if tick.log10() < low - 1e-9 {
            continue;
        }
        if tick.log10() > high + 1e-9 {
            break;
        }
        let at = y(tick);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{at:.1}" y2="{at:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{tick}x</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            at + 4.0
        );
    }
    let one = y(1.0);
    let _ = writeln!(
        svg,
        r##"<line x1="{LEFT}" x2="{}" y1="{one:.1}" y2="{one:.1}" stroke="#000"/>"##,
        LEFT + plot_w
    );
    let (target, label) = chart.target;
    let at = y(target);
    let _ = writeln!(
        svg,
        r##"<line x1="{LEFT}" x2="{}" y1="{at:.1}" y2="{at:.1}" stroke="#000" stroke-dasharray="6 4"/><text x="{}" y="{:.1}">{label}</text>"##,
        LEFT + plot_w,
        LEFT + plot_w + 4.0,
        at + 4.0
    );
    for (group, (name, values)) in chart.groups.iter().zip(chart.values).enumerate() {
        let left = LEFT + group_w * group as f64 + group_w * 0.1;
        for (series, value) in values.iter().enumerate() {
            if *value <= 0.0 {
                continue;
            }
            let (top, bottom) = if *value >= 1.0 {
                (y(*value), y(1.0))
            } else {
                (y(1.0), y(*value))
            };
            let _ = writeln!(
                svg,
                r#"<rect x="{:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {value:.2}x</title></rect>"#,
                left + bar_w * series as f64,
                bar_w * 0.9,
                (bottom - top).max(0.5),
                COLORS[series % COLORS.len()],
                chart.series[series]
            );
        }
        // Group labels on two lines: "1K one at a time" is too wide for one.
        let center = LEFT + group_w * (group as f64 + 0.5);
        let (first, second) = name.split_once(", ").unwrap_or((name.as_str(), ""));
        let _ = writeln!(
            svg,
            r#"<text x="{center:.1}" y="{:.1}" text-anchor="middle">{first}</text><text x="{center:.1}" y="{:.1}" text-anchor="middle">{second}</text>"#,
            HEIGHT - BAR_BOTTOM + 16.0,
            HEIGHT - BAR_BOTTOM + 30.0
        );
    }
    for (series, name) in chart.series.iter().enumerate() {
        let legend_y = BAR_TOP + 18.0 * series as f64;
        let _ = writeln!(
            svg,
            r#"<rect x="{}" y="{:.1}" width="14" height="10" fill="{}"/><text x="{}" y="{:.1}">{name}</text>"#,
            WIDTH - RIGHT + 40.0,
            legend_y - 8.0,
            COLORS[series % COLORS.len()],
            WIDTH - RIGHT + 60.0,
            legend_y + 1.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_draw_one_bar_per_positive_value_and_the_target_line() {
        let groups = [
            "1K, one at a time".to_owned(),
            "1K, 16 in flight".to_owned(),
            "100K, one at a time".to_owned(),
        ];
        let svg = bars_svg(&Bars {
            title: "t",
            groups: &groups,
            series: &["a", "b"],
            values: &[vec![1.5, 3.0], vec![0.0, 12.0], vec![0.5, 2.0]],
            target: (2.0, "2x target"),
        });
        assert_eq!(svg.matches("<rect x=").count(), 5 + 2, "{svg}"); // bars + legend
                                                                     // A stack faster than ours (0.5x) is a bar down from the 1x line, as tall as 2x is up.
        let height = |title: &str| -> f64 {
            let bar = svg.lines().find(|line| line.contains(title)).unwrap();
            let at = bar.find("height=\"").unwrap() + 8;
            bar[at..].split('"').next().unwrap().parse().unwrap()
        };
        let (down, up) = (height("a: 0.50x"), height("b: 2.00x"));
        assert!((down - up).abs() < 0.2 && down > 10.0, "{down} vs {up}");
        assert!(svg.contains("2x target") && svg.contains("stroke-dasharray"));
        assert!(svg.contains("<title>b: 12.00x</title>"));
        assert!(svg.contains(">16 in flight<"));
    }
}

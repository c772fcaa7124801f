//! Line charts with real axes, for a machine's page: inline SVG drawn on the server (no script,
//! no library, nothing the panel's CSP would block), numbers on both axes, and the latest value
//! said in words above the drawing, so the chart reads without hovering or colour.

use crate::usage::UsagePoint;
use maud::{html, Markup};

/// One line of a chart: `(ms since the epoch, value)` pairs, oldest first.
pub struct Line<'a> {
    /// What it is, e.g. "received".
    pub label: &'a str,
    /// The samples.
    pub values: Vec<(i64, f64)>,
}

/// How values are written: divided by `scale`, with `decimals`, then `unit`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Unit {
    /// Appended after a space, e.g. "%".
    pub unit: &'static str,
    /// Values are divided by this before they are written (bytes to kB).
    pub scale: f64,
    /// Decimals of the latest value.
    pub decimals: usize,
}

impl Unit {
    const fn new(unit: &'static str, decimals: usize) -> Self {
        Self { unit, scale: 1.0, decimals }
    }

    fn say(&self, value: f64) -> String {
        format!("{:.*} {}", self.decimals, value / self.scale, self.unit)
    }
}

// The drawing's own coordinates (the SVG scales to its box); room on the left for the values.
// Narrow enough that the axis labels stay legible where three charts share a row.
const WIDTH: f64 = 340.0;
const HEIGHT: f64 = 150.0;
const LEFT: f64 = 58.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 26.0;

/// The ticks of a value axis from 0: a step of 1, 2 or 5 × 10ⁿ giving at most four intervals,
/// so the top tick is the first round number at or above `max`.
pub fn value_ticks(max: f64) -> Vec<f64> {
    let max = if max.is_finite() && max > 0.0 { max } else { 1.0 };
    let magnitude = 10f64.powf((max / 4.0).log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|s| max / s <= 4.0).unwrap_or(10.0 * magnitude);
    let intervals = (max / step - 1e-9).ceil().max(1.0) as usize;
    (0..=intervals).map(|i| i as f64 * step).collect()
}

/// A tick's label: as many decimals as its step needs (0.25 → 2, 5 → 0).
fn tick_label(value: f64, step: f64) -> String {
    let decimals = if step >= 1.0 { 0 } else { ((-step.log10()).ceil() as usize + 1).min(3) };
    let text = format!("{value:.decimals$}");
    // "0.50" reads as "0.5": round steps never need a trailing zero.
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// Time ticks back from the latest sample `end` over `span` ms: (ms before `end`, label).
pub fn time_ticks(span: i64) -> Vec<(i64, String)> {
    const STEPS: [i64; 11] = [10, 15, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600];
    let span = span.max(1);
    let step = STEPS.iter().map(|s| s * 1000).find(|s| span / s <= 5).unwrap_or(3_600_000);
    (0..=span / step)
        .map(|k| {
            let ago = k * step;
            let label = match ago {
                0 => "now".to_owned(),
                a if a < 60_000 => format!("-{} s", a / 1000),
                a => format!("-{} min", a / 60_000),
            };
            (ago, label)
        })
        .collect()
}

/// A chart of `lines` titled `title`, its values in `unit`; `empty` says why there is nothing
/// to draw (fewer than two samples).
pub fn chart(title: &str, unit: Unit, lines: &[Line<'_>], empty: &str) -> Markup {
    let times = lines.iter().flat_map(|l| l.values.iter().map(|(t, _)| *t));
    let (start, end) = (times.clone().min().unwrap_or(0), times.max().unwrap_or(0));
    let drawable = lines.iter().any(|l| l.values.len() >= 2) && end > start;
    let latest: Vec<String> = lines
        .iter()
        .filter_map(|l| l.values.last().map(|(_, v)| (l.label, *v)))
        .map(|(label, v)| if lines.len() > 1 { format!("{label} {}", unit.say(v)) } else { unit.say(v) })
        .collect();
    let peak = lines.iter().flat_map(|l| l.values.iter().map(|(_, v)| *v)).fold(0.0f64, f64::max);
    html! {
        figure.chart {
            figcaption {
                strong { (title) }
                @if !latest.is_empty() {
                    " " span.latest data-latest { (latest.join(" · ")) } span.muted { " now · peak " (unit.say(peak)) }
                }
                @if lines.len() > 1 {
                    span.legend {
                        @for (i, line) in lines.iter().enumerate() { span class={ "key key-" (i) } { (line.label) } }
                    }
                }
            }
            @if drawable { (drawing(title, unit, lines, start, end, peak)) } @else { p.muted.chart-empty { (empty) } }
        }
    }
}

fn drawing(title: &str, unit: Unit, lines: &[Line<'_>], start: i64, end: i64, peak: f64) -> Markup {
    let ticks = value_ticks(peak / unit.scale);
    let top = ticks.last().copied().unwrap_or(1.0).max(f64::MIN_POSITIVE);
    let step = ticks.get(1).copied().unwrap_or(top);
    let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let x = |t: i64| LEFT + (t - start) as f64 / (end - start) as f64 * plot_w;
    let y = |v: f64| TOP + plot_h - (v / unit.scale / top).clamp(0.0, 1.0) * plot_h;
    let label = format!("{title}, {} axis from 0 to {} {}", "value", tick_label(top, step), unit.unit);
    html! {
        svg.chart viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-label=(label) {
            title { (label) }
            @for v in &ticks {
                line.grid x1=(LEFT) x2=(WIDTH - RIGHT) y1=(fmt(y(*v * unit.scale))) y2=(fmt(y(*v * unit.scale))) {}
                text.axis.y-label x=(LEFT - 6.0) y=(fmt(y(*v * unit.scale) + 4.0)) text-anchor="end" {
                    (tick_label(*v, step)) " " (unit.unit)
                }
            }
            @for (ago, text) in time_ticks(end - start) {
                @let at = x(end - ago);
                line.tick x1=(fmt(at)) x2=(fmt(at)) y1=(TOP + plot_h) y2=(TOP + plot_h + 4.0) {}
                text.axis.x-label x=(fmt(at)) y=(HEIGHT - 8.0) text-anchor=(if ago == 0 { "end" } else { "middle" }) { (text) }
            }
            @for (i, line) in lines.iter().enumerate() {
                @for run in runs(&line.values) {
                    polyline class={ "line line-" (i) } points=(run.iter().map(|(t, v)| format!("{},{}", fmt(x(*t)), fmt(y(*v)))).collect::<Vec<_>>().join(" ")) {}
                }
            }
        }
    }
}

fn fmt(v: f64) -> String {
    format!("{v:.1}")
}

/// The samples cut where the sampler saw nothing for a while (the machine was stopped), so a
/// line never bridges a gap with values nobody measured.
fn runs(values: &[(i64, f64)]) -> Vec<&[(i64, f64)]> {
    let mut gaps: Vec<i64> = values.windows(2).map(|w| w[1].0 - w[0].0).collect();
    gaps.sort_unstable();
    let usual = gaps.get(gaps.len() / 2).copied().unwrap_or(0);
    let too_long = (usual * 3).max(15_000);
    let mut out = Vec::new();
    let mut from = 0;
    for i in 1..values.len() {
        if values[i].0 - values[i - 1].0 > too_long {
            out.push(&values[from..i]);
            from = i;
        }
    }
    out.push(&values[from..]);
    out.into_iter().filter(|r| r.len() >= 2).collect()
}

/// Bytes per second between consecutive counter readings; a counter that went back (the machine
/// restarted) starts again from the next pair.
fn rates(points: &[UsagePoint], bytes: impl Fn(&UsagePoint) -> u64) -> Vec<(i64, f64)> {
    points
        .windows(2)
        .filter(|w| w[1].t > w[0].t && bytes(&w[1]) >= bytes(&w[0]))
        .map(|w| (w[1].t, (bytes(&w[1]) - bytes(&w[0])) as f64 * 1000.0 / (w[1].t - w[0].t) as f64))
        .collect()
}

/// A byte rate's unit fitted to its largest value.
fn byte_rate(max: f64) -> Unit {
    match max {
        m if m >= 1e6 => Unit { unit: "MB/s", scale: 1e6, decimals: 1 },
        m if m >= 1e3 => Unit { unit: "kB/s", scale: 1e3, decimals: 1 },
        _ => Unit { unit: "B/s", scale: 1.0, decimals: 0 },
    }
}

/// A machine's CPU, memory and network charts over the samples kept (the last hour).
pub fn machine_charts(points: &[UsagePoint], memory_limit_mb: u64) -> Markup {
    let empty = "No samples yet: the graphs fill in while the machine runs.";
    let cpu: Vec<(i64, f64)> = points.iter().map(|p| (p.t, p.cpu_percent)).collect();
    let memory: Vec<(i64, f64)> = points.iter().map(|p| (p.t, p.memory_mb)).collect();
    let rx = rates(points, |p| p.net_rx_bytes);
    let tx = rates(points, |p| p.net_tx_bytes);
    let net_max = rx.iter().chain(&tx).map(|(_, v)| *v).fold(0.0f64, f64::max);
    let memory_title = format!("Memory (limit {memory_limit_mb} MB)");
    html! {
        div.charts {
            (chart("CPU (% of one CPU)", Unit::new("%", 1), &[Line { label: "CPU", values: cpu }], empty))
            (chart(&memory_title, Unit::new("MB", 0), &[Line { label: "memory", values: memory }], empty))
            (chart("Network", byte_rate(net_max), &[Line { label: "in", values: rx }, Line { label: "out", values: tx }], empty))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_axes_end_on_a_round_number_at_or_above_the_peak() {
        assert_eq!(value_ticks(0.0), [0.0, 0.5, 1.0]);
        assert_eq!(value_ticks(37.0), [0.0, 10.0, 20.0, 30.0, 40.0]);
        assert_eq!(value_ticks(100.0), [0.0, 50.0, 100.0]);
        assert_eq!(value_ticks(230.0), [0.0, 100.0, 200.0, 300.0]);
        let small: Vec<String> = value_ticks(0.3).iter().map(|v| tick_label(*v, 0.1)).collect();
        assert_eq!(small, ["0", "0.1", "0.2", "0.3"]);
        for max in [0.01, 0.7, 3.0, 9.9, 512.0, 1e6, 123_456.0] {
            let ticks = value_ticks(max);
            assert!(ticks.len() <= 5 && ticks.len() >= 2, "{max}: {ticks:?}");
            assert!(*ticks.last().expect("top") >= max, "{max}: {ticks:?}");
        }
        assert_eq!(tick_label(0.5, 0.5), "0.5");
        assert_eq!(tick_label(20.0, 10.0), "20");
        assert_eq!(tick_label(0.25, 0.05), "0.25");
    }

    #[test]
    fn time_axes_count_back_from_now() {
        let hour = time_ticks(3_600_000);
        assert_eq!(hour.first().map(|t| t.1.as_str()), Some("now"));
        assert_eq!(
            hour.iter().map(|t| t.1.as_str()).collect::<Vec<_>>(),
            ["now", "-15 min", "-30 min", "-45 min", "-60 min"]
        );
        let short = time_ticks(40_000);
        assert_eq!(short.iter().map(|t| t.1.as_str()).collect::<Vec<_>>(), ["now", "-10 s", "-20 s", "-30 s", "-40 s"]);
    }

    fn point(t: i64, cpu: f64, rx: u64) -> UsagePoint {
        UsagePoint { t, cpu_percent: cpu, memory_mb: 100.0, net_rx_bytes: rx, net_tx_bytes: 0 }
    }

    #[test]
    fn a_chart_has_numbered_axes_and_says_the_latest_value() {
        let points: Vec<UsagePoint> = (0..13).map(|i| point(i * 5000, i as f64 * 3.0, i as u64 * 10_000)).collect();
        let html = machine_charts(&points, 512).into_string();
        assert!(html.contains("36.0 %</span>"), "latest CPU: {html}");
        assert!(html.contains(">40 %</text>") && html.contains(">0 %</text>"), "CPU axis: {html}");
        assert!(html.contains(">now</text>") && html.contains(">-30 s</text>"), "time axis: {html}");
        // 10,000 bytes every 5 s: 2 kB/s received.
        assert!(html.contains("in 2.0 kB/s · out 0.0 kB/s"), "network: {html}");
        assert!(html.contains("Memory (limit 512 MB)"));
        assert_eq!(html.matches("<polyline").count(), 4, "one line each, two for the network: {html}");
    }

    #[test]
    fn too_few_samples_say_so_and_gaps_are_not_bridged() {
        let html = machine_charts(&[point(0, 1.0, 0)], 256).into_string();
        assert!(!html.contains("<svg"), "{html}");
        assert!(html.contains("No samples yet"), "{html}");
        let stopped_between = [point(0, 1.0, 0), point(5000, 2.0, 0), point(600_000, 3.0, 0), point(605_000, 4.0, 0)];
        let values: Vec<(i64, f64)> = stopped_between.iter().map(|p| (p.t, p.cpu_percent)).collect();
        assert_eq!(runs(&values).len(), 2);
        let restarted = [point(0, 0.0, 5000), point(5000, 0.0, 100)];
        assert!(rates(&restarted, |p| p.net_rx_bytes).is_empty(), "a counter that went back is no rate");
    }

    #[test]
    fn titles_are_escaped() {
        let html = chart("<b>", Unit::new("%", 1), &[Line { label: "x", values: vec![(0, 1.0), (5000, 2.0)] }], "")
            .into_string();
        assert!(!html.contains("<b>") && html.contains("&lt;b&gt;"), "{html}");
    }
}

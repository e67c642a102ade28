//! Hand-written SVG charts for the report: horizontal bars with min-max whiskers, and lines
//! on a log-scaled x axis. Plain text, no dependencies; the numbers are the report's own.

use std::fmt::Write as _;

pub const BLUE: &str = "#3b6ea8";
pub const ORANGE: &str = "#d9822b";
pub const GREEN: &str = "#4f9a55";
pub const GREY: &str = "#8c8c8c";
pub const RED: &str = "#b8423b";
pub const PURPLE: &str = "#7a5ea8";
pub const PALETTE: [&str; 6] = [BLUE, ORANGE, GREEN, RED, PURPLE, GREY];

const FONT: &str = "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\"";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A readable axis step for a range of `span` (1, 2 or 5 times a power of ten).
fn nice_step(span: f64, ticks: f64) -> f64 {
    let raw = (span / ticks).max(f64::MIN_POSITIVE);
    let pow = 10f64.powf(raw.log10().floor());
    let m = raw / pow;
    let k = if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 5.0 {
        5.0
    } else {
        10.0
    };
    k * pow
}

/// An axis tick: as many decimals as the step needs.
fn fmt_tick(v: f64, step: f64) -> String {
    if step >= 1.0 {
        format!("{v:.0}")
    } else if step >= 0.1 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn fmt_num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[derive(Clone, Debug)]
pub struct Bar {
    pub label: String,
    pub value: f64,
    /// Whisker from min to max, when the figure has a spread.
    pub range: Option<(f64, f64)>,
    pub color: &'static str,
}

#[derive(Clone, Debug)]
pub struct Group {
    /// Empty: no heading.
    pub label: String,
    pub bars: Vec<Bar>,
}

/// Horizontal bars, grouped, with an optional vertical reference line `(value, label)`.
pub fn hbars(title: &str, unit: &str, groups: &[Group], reference: Option<(f64, &str)>) -> String {
    let (label_w, plot_w, right) = (360.0, 460.0, 90.0);
    let (bar_h, gap, head_h, top, bottom) = (16.0, 5.0, 22.0, 46.0, 40.0);
    let rows: f64 = groups
        .iter()
        .map(|g| {
            (if g.label.is_empty() { 0.0 } else { head_h }) + g.bars.len() as f64 * (bar_h + gap)
        })
        .sum::<f64>()
        + groups.len() as f64 * 6.0;
    let height = top + rows + bottom;
    let width = label_w + plot_w + right;
    let max = groups
        .iter()
        .flat_map(|g| g.bars.iter())
        .map(|b| b.range.map_or(b.value, |r| r.1.max(b.value)))
        .chain(reference.map(|r| r.0))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let step = nice_step(max * 1.05, 5.0);
    let axis_max = (max * 1.05 / step).ceil() * step;
    let x = |v: f64| label_w + (v.max(0.0) / axis_max) * plot_w;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" {FONT} font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"12\" y=\"24\" font-size=\"15\" font-weight=\"bold\">{}</text>\n",
        esc(title)
    );
    let plot_bottom = height - bottom;
    let mut tick = 0.0;
    while tick <= axis_max + step * 0.01 {
        let tx = x(tick);
        let _ = writeln!(
            s,
            "<line x1=\"{tx:.1}\" y1=\"{top}\" x2=\"{tx:.1}\" y2=\"{plot_bottom}\" stroke=\"#e3e3e3\"/><text x=\"{tx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\">{}</text>",
            plot_bottom + 14.0,
            fmt_tick(tick, step)
        );
        tick += step;
    }
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#333\">{}</text>",
        label_w + plot_w / 2.0,
        plot_bottom + 32.0,
        esc(unit)
    );
    let mut y = top;
    for g in groups {
        if !g.label.is_empty() {
            let _ = writeln!(
                s,
                "<text x=\"12\" y=\"{:.1}\" font-weight=\"bold\" fill=\"#222\">{}</text>",
                y + 15.0,
                esc(&g.label)
            );
            y += head_h;
        }
        for b in &g.bars {
            let w = x(b.value) - label_w;
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#222\">{}</text><rect x=\"{label_w}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{bar_h}\" fill=\"{}\"/>",
                label_w - 8.0,
                y + 12.0,
                esc(&b.label),
                w.max(0.5),
                b.color
            );
            let mut end = x(b.value);
            if let Some((lo, hi)) = b.range {
                let (x0, x1, ym) = (x(lo), x(hi), y + bar_h / 2.0);
                let _ = writeln!(
                    s,
                    "<line x1=\"{x0:.1}\" y1=\"{ym:.1}\" x2=\"{x1:.1}\" y2=\"{ym:.1}\" stroke=\"#222\"/><line x1=\"{x0:.1}\" y1=\"{:.1}\" x2=\"{x0:.1}\" y2=\"{:.1}\" stroke=\"#222\"/><line x1=\"{x1:.1}\" y1=\"{:.1}\" x2=\"{x1:.1}\" y2=\"{:.1}\" stroke=\"#222\"/>",
                    ym - 4.0,
                    ym + 4.0,
                    ym - 4.0,
                    ym + 4.0
                );
                end = end.max(x1);
            }
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#222\">{}</text>",
                end + 5.0,
                y + 12.0,
                fmt_num(b.value)
            );
            y += bar_h + gap;
        }
        y += 6.0;
    }
    if let Some((v, label)) = reference {
        let rx = x(v);
        let _ = writeln!(
            s,
            "<line x1=\"{rx:.1}\" y1=\"{:.1}\" x2=\"{rx:.1}\" y2=\"{plot_bottom}\" stroke=\"{RED}\" stroke-dasharray=\"5,3\"/><text x=\"{rx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"{RED}\">{}</text>",
            top - 4.0,
            top - 8.0,
            esc(label)
        );
    }
    s.push_str("</svg>\n");
    s
}

#[derive(Clone, Debug)]
pub struct Series {
    pub label: String,
    pub color: &'static str,
    pub dashed: bool,
    /// (x, y); x > 0 (log scale).
    pub points: Vec<(f64, f64)>,
}

/// Lines over a log10 x axis (e.g. blocklist entries), y from 0.
pub fn log_lines(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    let (left, plot_w, legend_w, top, plot_h, bottom) = (60.0, 520.0, 360.0, 46.0, 300.0, 50.0);
    let width = left + plot_w + legend_w;
    let height = top + plot_h + bottom;
    let pts = || series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1) = (f64::MAX, f64::MIN);
    for (x, _) in pts() {
        x0 = x0.min(x.max(1.0).log10());
        x1 = x1.max(x.max(1.0).log10());
    }
    let (x0, x1) = (x0.floor(), x1.ceil().max(x0.floor() + 1.0));
    let ymax = pts().map(|p| p.1).fold(0.0f64, f64::max).max(1e-9);
    let step = nice_step(ymax * 1.1, 5.0);
    let ytop = (ymax * 1.1 / step).ceil() * step;
    let px = |x: f64| left + (x.max(1.0).log10() - x0) / (x1 - x0) * plot_w;
    let py = |y: f64| top + plot_h - (y / ytop) * plot_h;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" {FONT} font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"12\" y=\"24\" font-size=\"15\" font-weight=\"bold\">{}</text>\n",
        esc(title)
    );
    let mut e = x0;
    while e <= x1 + 1e-9 {
        let tx = left + (e - x0) / (x1 - x0) * plot_w;
        let label = match e as i32 {
            0 => "1".to_string(),
            1 => "10".to_string(),
            2 => "100".to_string(),
            3 => "1k".to_string(),
            4 => "10k".to_string(),
            5 => "100k".to_string(),
            6 => "1M".to_string(),
            n => format!("1e{n}"),
        };
        let _ = writeln!(
            s,
            "<line x1=\"{tx:.1}\" y1=\"{top}\" x2=\"{tx:.1}\" y2=\"{:.1}\" stroke=\"#e3e3e3\"/><text x=\"{tx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\">{label}</text>",
            top + plot_h,
            top + plot_h + 15.0
        );
        e += 1.0;
    }
    let mut t = 0.0;
    while t <= ytop + step * 0.01 {
        let ty = py(t);
        let _ = writeln!(
            s,
            "<line x1=\"{left}\" y1=\"{ty:.1}\" x2=\"{:.1}\" y2=\"{ty:.1}\" stroke=\"#e3e3e3\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#555\">{}</text>",
            left + plot_w,
            left - 6.0,
            ty + 4.0,
            fmt_tick(t, step)
        );
        t += step;
    }
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#333\">{}</text><text transform=\"translate(16 {:.1}) rotate(-90)\" text-anchor=\"middle\" fill=\"#333\">{}</text>",
        left + plot_w / 2.0,
        top + plot_h + 36.0,
        esc(x_label),
        top + plot_h / 2.0,
        esc(y_label)
    );
    for (i, se) in series.iter().enumerate() {
        let path: Vec<String> = se
            .points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let dash = if se.dashed {
            " stroke-dasharray=\"6,3\""
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{dash}/>",
            path.join(" "),
            se.color
        );
        for (x, y) in &se.points {
            let _ = writeln!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{}\"/>",
                px(*x),
                py(*y),
                se.color
            );
        }
        let ly = top + 10.0 + i as f64 * 20.0;
        let lx = left + plot_w + 20.0;
        let _ = writeln!(
            s,
            "<line x1=\"{lx:.1}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" stroke=\"{}\" stroke-width=\"2\"{dash}/><text x=\"{:.1}\" y=\"{:.1}\" fill=\"#222\">{}</text>",
            lx + 24.0,
            se.color,
            lx + 30.0,
            ly + 4.0,
            esc(&se.label)
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_and_escaping() {
        assert_eq!(nice_step(10.0, 5.0), 2.0);
        assert_eq!(nice_step(7.0, 5.0), 2.0);
        assert_eq!(nice_step(0.9, 5.0), 0.2);
        assert_eq!(esc("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
        let svg = hbars(
            "t",
            "ns",
            &[Group {
                label: "g".into(),
                bars: vec![Bar {
                    label: "x < y".into(),
                    value: 3.0,
                    range: Some((2.0, 4.0)),
                    color: BLUE,
                }],
            }],
            Some((5.0, "goal")),
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("x &lt; y"));
        let svg = log_lines(
            "t",
            "entries",
            "ns",
            &[Series {
                label: "a".into(),
                color: RED,
                dashed: true,
                points: vec![(10.0, 1.0), (1e6, 2.0)],
            }],
        );
        assert!(svg.contains("1M") && svg.contains("polyline"));
    }
}

//! The results: one table row per run, and the pass figures checked against them.

use std::{fmt, time::Duration};

use super::legit::{AbStats, LegitStats};
use crate::cli::{Align, table};

/// One run of one scenario in one mode. `None` prints as `n/a`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Row {
    pub scenario: String,
    pub mode: String,
    /// Legitimate requests answered / started.
    pub legit_ok: Option<u64>,
    pub legit_sent: Option<u64>,
    pub p50: Option<Timing>,
    pub p99: Option<Timing>,
    /// SYNs to port 80 that reached the server's kernel (nftables counter behind XDP).
    pub kernel_syns: Option<u64>,
    /// Packets the XDP program dropped (blocklist + rate + malformed).
    pub xdp_drops: Option<u64>,
    /// From flood start to the (last) block.
    pub to_block: Option<Timing>,
    /// Flood packets sent and for how long.
    pub flood: Option<(u64, f64)>,
}

/// A latency or delay as the table shows it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Timing {
    Measured(Duration),
    /// A percentile that fell on a failed request.
    Failed,
    /// Nothing happened (no block).
    Never,
}

impl fmt::Display for Timing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Timing::Measured(d) => {
                let ms = d.as_secs_f64() * 1000.0;
                if ms < 10.0 {
                    write!(f, "{ms:.2} ms")
                } else if ms < 1000.0 {
                    write!(f, "{ms:.0} ms")
                } else {
                    write!(f, "{:.2} s", d.as_secs_f64())
                }
            }
            Timing::Failed => f.write_str("failed"),
            Timing::Never => f.write_str("none"),
        }
    }
}

impl Row {
    pub fn new(scenario: &str, mode: &str) -> Row {
        Row {
            scenario: scenario.to_string(),
            mode: mode.to_string(),
            ..Row::default()
        }
    }

    pub fn with_legit(mut self, legit: &LegitStats) -> Row {
        self.legit_ok = Some(legit.ok);
        self.legit_sent = Some(legit.sent);
        let timing = |p| {
            legit.percentile(p).map(|v| match v {
                Some(d) => Timing::Measured(d),
                None => Timing::Failed,
            })
        };
        self.p50 = timing(50.0);
        self.p99 = timing(99.0);
        self
    }

    pub fn with_ab(mut self, ab: &AbStats) -> Row {
        self.legit_ok = Some(ab.ok());
        self.legit_sent = Some(ab.requests);
        let ms = |v: Option<u64>| v.map(|ms| Timing::Measured(Duration::from_millis(ms)));
        self.p50 = ms(ab.p50_ms);
        self.p99 = ms(ab.p99_ms);
        self
    }

    pub fn success(&self) -> Option<f64> {
        match (self.legit_ok, self.legit_sent) {
            (Some(ok), Some(sent)) if sent > 0 => Some(ok as f64 / sent as f64),
            _ => None,
        }
    }

    fn cells(&self) -> Vec<String> {
        let na = || "n/a".to_string();
        let count = |v: Option<u64>| v.map(group).unwrap_or_else(na);
        let timing = |v: Option<Timing>| v.map(|t| t.to_string()).unwrap_or_else(na);
        vec![
            self.scenario.clone(),
            self.mode.clone(),
            match (self.legit_ok, self.legit_sent) {
                (Some(ok), Some(sent)) => format!("{}/{}", group(ok), group(sent)),
                _ => na(),
            },
            self.success()
                .map(|s| format!("{:.1}%", s * 100.0))
                .unwrap_or_else(na),
            timing(self.p50),
            timing(self.p99),
            count(self.kernel_syns),
            count(self.xdp_drops),
            timing(self.to_block),
            self.flood
                .map(|(n, s)| format!("{} in {s:.1} s", group(n)))
                .unwrap_or_else(na),
        ]
    }
}

/// 1234567 -> "1,234,567".
pub fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One pass figure of the issue, measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    pub scenario: u8,
    /// What is required, e.g. "blocked within 1 s".
    pub figure: String,
    /// What was measured.
    pub measured: String,
    pub pass: bool,
}

impl Check {
    pub fn new(
        scenario: u8,
        figure: impl Into<String>,
        measured: impl Into<String>,
        pass: bool,
    ) -> Check {
        Check {
            scenario,
            figure: figure.into(),
            measured: measured.into(),
            pass,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub rows: Vec<Row>,
    pub checks: Vec<Check>,
    /// Notes printed under the table (thresholds used, what a column counts).
    pub notes: Vec<String>,
    pub elapsed: Duration,
}

pub const COLUMNS: [(&str, Align); 10] = [
    ("SCENARIO", Align::Left),
    ("MODE", Align::Left),
    ("LEGIT OK/SENT", Align::Right),
    ("SUCCESS", Align::Right),
    ("P50", Align::Right),
    ("P99", Align::Right),
    ("KERNEL SYNS", Align::Right),
    ("XDP DROPS", Align::Right),
    ("TO BLOCK", Align::Right),
    ("FLOOD SENT", Align::Right),
];

impl Report {
    pub fn failed_checks(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| !c.pass).collect()
    }

    pub fn table(&self) -> String {
        let rows: Vec<Vec<String>> = self.rows.iter().map(Row::cells).collect();
        table(&COLUMNS, &rows)
    }

    pub fn checks_text(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            out.push_str(&format!(
                "  [{}] {}: {} -- {}\n",
                if c.pass { "PASS" } else { "FAIL" },
                c.scenario,
                c.figure,
                c.measured
            ));
        }
        out
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.table())?;
        if !self.notes.is_empty() {
            writeln!(f)?;
            for n in &self.notes {
                writeln!(f, "{n}")?;
            }
        }
        if !self.checks.is_empty() {
            writeln!(f, "\npass figures (xdp-guard runs):")?;
            f.write_str(&self.checks_text())?;
        }
        writeln!(
            f,
            "\n{} of {} pass figures met; e2e took {:.0} s",
            self.checks.iter().filter(|c| c.pass).count(),
            self.checks.len(),
            self.elapsed.as_secs_f64()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1_234_567), "1,234,567");
    }

    #[test]
    fn timings() {
        assert_eq!(
            Timing::Measured(Duration::from_micros(1234)).to_string(),
            "1.23 ms"
        );
        assert_eq!(
            Timing::Measured(Duration::from_millis(250)).to_string(),
            "250 ms"
        );
        assert_eq!(
            Timing::Measured(Duration::from_millis(1500)).to_string(),
            "1.50 s"
        );
        assert_eq!(Timing::Failed.to_string(), "failed");
    }

    #[test]
    fn table_has_na_for_missing_figures() {
        let report = Report {
            rows: vec![Row::new("5 sigkill", "no protection")],
            checks: vec![Check::new(5, "no block lost", "1 of 1 kept", true)],
            notes: Vec::new(),
            elapsed: Duration::from_secs(3),
        };
        let text = report.to_string();
        assert!(text.contains("n/a"), "{text}");
        assert!(
            text.contains("[PASS] 5: no block lost -- 1 of 1 kept"),
            "{text}"
        );
        assert!(report.failed_checks().is_empty());
    }
}

//! Human output of the read commands: pure functions from API data to text, so tests check
//! them without a server or a terminal.

use std::time::Duration;

use super::wire::{Connections, Stats};
use crate::{
    model::{AllowRecord, BlockRecord, Origin},
    sysctl::{AuditEntry, Profile, Rule, Status},
};

/// Column alignment for [`table`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// An aligned plain-text table: a header row, then `rows`, columns two spaces apart, no
/// trailing whitespace. Widths count characters, not bytes.
pub fn table(columns: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = columns.iter().map(|(h, _)| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = columns.iter().map(|(h, _)| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, ((_, align), width)) in columns.iter().zip(&widths).enumerate() {
            let cell = row.get(i).map(String::as_str).unwrap_or("");
            let pad = width.saturating_sub(cell.chars().count());
            if i > 0 {
                line.push_str("  ");
            }
            match align {
                Align::Left => {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
                Align::Right => {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                }
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Time left until `expires_at_ms`: `"9m 58s"`, `"never"` for a permanent entry, `"expired"`
/// once past. Rounded up to the second, so a live entry never shows `0s`.
pub fn remaining(expires_at_ms: Option<u64>, now_ms: u64) -> String {
    match expires_at_ms {
        None => "never".to_owned(),
        Some(e) if e <= now_ms => "expired".to_owned(),
        Some(e) => {
            let secs = (e - now_ms).div_ceil(1000);
            humantime::format_duration(Duration::from_secs(secs)).to_string()
        }
    }
}

fn origin(o: Origin) -> &'static str {
    match o {
        Origin::Manual => "manual",
        Origin::Auto => "auto",
        Origin::Config => "config",
    }
}

/// `xdp-guard list`: CIDR, ORIGIN, EXPIRES, OFFENCES, REASON.
pub fn blocklist_table(entries: &[BlockRecord], now_ms: u64) -> String {
    if entries.is_empty() {
        return "the blocklist is empty\n".to_owned();
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|b| {
            vec![
                b.cidr.to_string(),
                origin(b.origin).to_owned(),
                remaining(b.expires_at_ms, now_ms),
                b.offences.to_string(),
                b.reason.clone(),
            ]
        })
        .collect();
    table(
        &[
            ("CIDR", Align::Left),
            ("ORIGIN", Align::Left),
            ("EXPIRES", Align::Left),
            ("OFFENCES", Align::Right),
            ("REASON", Align::Left),
        ],
        &rows,
    )
}

/// `xdp-guard list --allow`: CIDR, ORIGIN, ADDED, NOTE.
pub fn allowlist_table(entries: &[AllowRecord]) -> String {
    if entries.is_empty() {
        return "the allowlist is empty\n".to_owned();
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|a| {
            vec![
                a.cidr.to_string(),
                origin(a.origin).to_owned(),
                humantime::format_rfc3339_seconds(crate::model::from_unix_ms(a.created_at_ms))
                    .to_string(),
                a.note.clone(),
            ]
        })
        .collect();
    table(
        &[
            ("CIDR", Align::Left),
            ("ORIGIN", Align::Left),
            ("ADDED", Align::Left),
            ("NOTE", Align::Left),
        ],
        &rows,
    )
}

/// What `xdp-guard block` prints.
pub fn block_line(b: &BlockRecord, now_ms: u64) -> String {
    let until = match b.expires_at_ms {
        None => "permanently".to_owned(),
        Some(_) => format!("for {}", remaining(b.expires_at_ms, now_ms)),
    };
    format!("blocked {} {until} ({})\n", b.cidr, b.reason)
}

/// A rate for people: one decimal below 100, whole numbers above.
pub(super) fn rate(r: f64) -> String {
    if r.abs() < 100.0 {
        format!("{r:.1}")
    } else {
        format!("{r:.0}")
    }
}

/// `xdp-guard stats`: `key: value` lines, rates first, then the raw counters.
pub fn stats_report(s: &Stats) -> String {
    let enforce = if s.enforce {
        "enforcing (over-limit SYNs are dropped)"
    } else {
        "monitor only (would-be drops are counted, nothing is dropped)"
    };
    let lines: Vec<(&str, String)> = vec![
        ("interface", s.interface.clone()),
        ("xdp mode", s.xdp_mode.clone()),
        ("mode", enforce.to_owned()),
        ("attack state", s.attack_state.as_str().to_owned()),
        (
            "spoof guard",
            if s.spoof_guard {
                "on (SYNs from untracked sources limited)"
            } else {
                "off"
            }
            .to_owned(),
        ),
        ("sysctl profile", s.sysctl_profile.clone()),
        (
            "uptime",
            humantime::format_duration(Duration::from_secs(s.uptime_secs)).to_string(),
        ),
        ("packets/s", rate(s.rates.packets_per_sec)),
        ("SYN/s", rate(s.rates.syns_per_sec)),
        ("drops/s", rate(s.rates.dropped_per_sec)),
        ("new sources/s", rate(s.rates.new_sources_per_sec)),
        ("blocklist", entries(s.blocklist_size)),
        ("allowlist", entries(s.allowlist_size)),
        ("tracked sources", s.tracked_sources.to_string()),
        ("SYN_RECV sockets", s.syn_recv.to_string()),
        (
            "controller tick",
            format!("{:.2} ms (tick {})", s.tick_duration_ms, s.ticks),
        ),
    ];
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    let mut out = String::new();
    for (k, v) in &lines {
        out.push_str(&format!("{:<width$} {v}\n", format!("{k}:")));
    }

    // The datapath's counters in its own order, then any this build does not know.
    out.push_str("counters:\n");
    let known = xdp_guard_common::stats::NAMES;
    let ordered = known
        .iter()
        .filter_map(|n| s.counters.get_key_value(*n))
        .chain(
            s.counters
                .iter()
                .filter(|(n, _)| !known.contains(&n.as_str())),
        );
    let rows: Vec<(&String, &u64)> = ordered.collect();
    let name_width = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let value_width = rows
        .iter()
        .map(|(_, v)| v.to_string().len())
        .max()
        .unwrap_or(0);
    for (name, value) in rows {
        out.push_str(&format!("  {name:<name_width$}  {value:>value_width$}\n"));
    }
    out
}

fn entries(n: usize) -> String {
    format!("{n} entr{}", if n == 1 { "y" } else { "ies" })
}

/// Count column of [`connections_report`], as wide as `uniq -c` makes it.
const COUNT_WIDTH: usize = 7;

/// Clients listed by [`connections_report`]; `--json` has them all.
pub const CLIENTS_SHOWN: usize = 20;

/// `xdp-guard conns`: the memo's two netstat pipelines, live. First every socket by state
/// (`netstat -nat | awk '{print $NF}' | sort | uniq -c | sort -n`), then the busiest clients
/// of the port (`... | grep :80 | awk '{print $5}' | cut -d: -f1 | uniq -c | sort -n`), both
/// ascending like `sort -n` so the largest count ends up next to the prompt.
pub fn connections_report(c: &Connections) -> String {
    let mut out = format!("TCP sockets by state ({} total):\n", c.total);
    let mut states: Vec<(&String, &u64)> = c.states.iter().collect();
    states.sort_by(|a, b| a.1.cmp(b.1).then(a.0.cmp(b.0)));
    let width = count_width(states.iter().map(|(_, n)| **n));
    for (state, n) in states {
        out.push_str(&format!("{n:>width$} {state}\n"));
    }
    if c.states.is_empty() {
        out.push_str("  (none)\n");
    }
    if c.unknown_states > 0 {
        out.push_str(&format!(
            "{:>width$} in states this build does not know\n",
            c.unknown_states
        ));
    }

    let Some(port) = c.port else {
        out.push_str("\n(pass --port N to see the clients of a port)\n");
        return out;
    };
    out.push('\n');
    if !c.port_states.is_empty() {
        let mut by_state: Vec<(&String, &u64)> = c.port_states.iter().collect();
        by_state.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let listed: Vec<String> = by_state.iter().map(|(s, n)| format!("{n} {s}")).collect();
        out.push_str(&format!("Port {port} sockets: {}\n", listed.join(", ")));
    }
    if c.clients.is_empty() {
        out.push_str(&format!("No clients connected to port {port}.\n"));
        return out;
    }
    let shown = c.clients.len().min(CLIENTS_SHOWN);
    let heading = if shown < c.clients.len() {
        format!(
            "Clients of port {port} (top {shown} of {} addresses):\n",
            c.clients.len()
        )
    } else {
        format!("Clients of port {port} ({shown} addresses):\n")
    };
    out.push_str(&heading);
    // The API sends the busiest first; take those, then print ascending.
    let mut top: Vec<_> = c.clients[..shown].to_vec();
    top.sort_by(|a, b| a.connections.cmp(&b.connections).then(a.addr.cmp(&b.addr)));
    let width = count_width(top.iter().map(|c| c.connections));
    for client in top {
        out.push_str(&format!("{:>width$} {}\n", client.connections, client.addr));
    }
    out
}

fn count_width(counts: impl Iterator<Item = u64>) -> usize {
    counts
        .map(|n| n.to_string().len())
        .max()
        .unwrap_or(0)
        .max(COUNT_WIDTH)
}

/// Width the `why` text of [`audit_table`] is wrapped to, indent included.
const WRAP: usize = 78;
const WHY_INDENT: &str = "    ";

fn status(s: Status) -> &'static str {
    match s {
        Status::Ok => "ok",
        Status::Differs => "differs",
        Status::Absent => "absent",
        Status::Removed => "removed",
        Status::Unreadable => "unreadable",
    }
}

/// `xdp-guard sysctl check`: KEY, CURRENT, RECOMMENDED, STATUS, with the reason wrapped under
/// each setting that differs (and the read error under an unreadable one).
pub fn audit_table(entries: &[AuditEntry], profile: Profile) -> String {
    let columns = [
        ("KEY", Align::Left),
        ("CURRENT", Align::Left),
        ("RECOMMENDED", Align::Left),
        ("STATUS", Align::Left),
    ];
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let recommended = match (&e.recommended, e.rule) {
                (None, _) | (_, Rule::NeverSet) => "(never set)".to_owned(),
                (Some(r), Rule::AtLeast) => format!(">= {r}"),
                (Some(r), Rule::Exact) => r.clone(),
            };
            vec![
                e.key.clone(),
                e.current.clone().unwrap_or_else(|| "-".to_owned()),
                recommended,
                status(e.status).to_owned(),
            ]
        })
        .collect();
    // Table rows one by one, so the notes can go under their row.
    let rendered = table(&columns, &rows);
    let mut lines = rendered.lines();
    let mut out = String::new();
    if let Some(header) = lines.next() {
        out.push_str(header);
        out.push('\n');
    }
    for (line, e) in lines.zip(entries) {
        out.push_str(line);
        out.push('\n');
        match e.status {
            Status::Differs => out.push_str(&wrap(&e.why, WRAP, WHY_INDENT)),
            Status::Unreadable => {
                let error = e.error.as_deref().unwrap_or("unreadable");
                out.push_str(&wrap(error, WRAP, WHY_INDENT));
            }
            _ => {}
        }
    }

    let differ = entries
        .iter()
        .filter(|e| e.status == Status::Differs)
        .count();
    let summary = if differ == 0 {
        format!("Every setting present satisfies the {profile} profile.")
    } else {
        format!(
            "{differ} of {} settings differ from the {profile} profile; \
             `xdp-guard sysctl apply --profile {profile}` (as root) changes them and \
             `xdp-guard sysctl restore` puts the originals back.",
            entries.len()
        )
    };
    out.push('\n');
    out.push_str(&wrap(&summary, WRAP, ""));
    out
}

/// `text` word-wrapped to `width` columns, each line starting with `indent`.
pub(super) fn wrap(text: &str, width: usize, indent: &str) -> String {
    let room = width.saturating_sub(indent.len()).max(20);
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > room {
            out.push_str(indent);
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push_str(indent);
        out.push_str(&line);
        out.push('\n');
    }
    out
}

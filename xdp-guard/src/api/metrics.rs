//! `/metrics`: the guard's counters and state in the Prometheus text format, version 0.0.4.

use xdp_guard_common::stats;

use crate::{controller::StatsSnapshot, model::AttackState};

/// The `Content-Type` of the exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every attack state, for the one-hot `xdp_guard_attack_state`.
const ATTACK_STATES: [AttackState; 3] = [
    AttackState::None,
    AttackState::PerSource,
    AttackState::Spoofed,
];

const SYSCTL_PROFILES: [&str; 2] = ["unchanged", "under_attack"];

const XDP_MODES: [&str; 2] = ["native", "generic"];

/// The exposition text for one stats snapshot.
pub fn render(s: &StatsSnapshot) -> String {
    let counter = |name: &str| s.counters.get(name).copied().unwrap_or(0);
    let mut out = Exposition::default();

    out.family(
        "xdp_guard_packets_total",
        "counter",
        "Packets seen by the XDP program, by verdict (each packet has exactly one).",
    );
    for i in stats::OUTCOMES {
        let name = stats::NAMES[i];
        out.sample(
            "xdp_guard_packets_total",
            &[("verdict", name)],
            counter(name),
        );
    }
    out.family(
        "xdp_guard_syns_total",
        "counter",
        "TCP SYN packets (without ACK) seen by the XDP program.",
    );
    out.sample(
        "xdp_guard_syns_total",
        &[],
        counter(stats::NAMES[stats::SYNS]),
    );
    out.family(
        "xdp_guard_events_total",
        "counter",
        "Over-limit events the XDP program sent to the controller, or suppressed (budget spent or ring full).",
    );
    out.sample(
        "xdp_guard_events_total",
        &[("kind", "sent")],
        counter(stats::NAMES[stats::EVENTS_SENT]),
    );
    out.sample(
        "xdp_guard_events_total",
        &[("kind", "suppressed")],
        counter(stats::NAMES[stats::EVENTS_SUPPRESSED]),
    );
    out.family(
        "xdp_guard_lru_admitted_total",
        "counter",
        "Sources admitted from the sketch into the per-source table.",
    );
    out.sample(
        "xdp_guard_lru_admitted_total",
        &[],
        counter(stats::NAMES[stats::LRU_ADMITTED]),
    );
    out.family(
        "xdp_guard_flood_guard_total",
        "counter",
        "Admissions to the per-source table refused by the flood guard.",
    );
    out.sample(
        "xdp_guard_flood_guard_total",
        &[],
        counter(stats::NAMES[stats::FLOOD_GUARD]),
    );

    out.gauge(
        "xdp_guard_blocklist_entries",
        "Prefixes on the blocklist.",
        s.blocklist_size,
    );
    out.gauge(
        "xdp_guard_allowlist_entries",
        "Prefixes on the allowlist.",
        s.allowlist_size,
    );
    out.gauge(
        "xdp_guard_tracked_sources",
        "Sources the controller is tracking.",
        s.tracked_sources,
    );

    out.family(
        "xdp_guard_attack_state",
        "gauge",
        "Attack state as the controller sees it: 1 for the current state, 0 for the others.",
    );
    for state in ATTACK_STATES {
        let value = u64::from(state == s.attack_state);
        out.sample(
            "xdp_guard_attack_state",
            &[("state", state.as_str())],
            value,
        );
    }
    out.family(
        "xdp_guard_spoof_guard",
        "gauge",
        "1 while the spoof guard limits SYNs from untracked sources (attack.spoofed_syn_budget).",
    );
    out.sample("xdp_guard_spoof_guard", &[], u64::from(s.spoof_guard));
    out.family(
        "xdp_guard_sysctl_profile",
        "gauge",
        "Sysctl profile in force: 1 for the current profile, 0 for the others.",
    );
    for profile in SYSCTL_PROFILES {
        let value = u64::from(profile == s.sysctl_profile);
        out.sample("xdp_guard_sysctl_profile", &[("profile", profile)], value);
    }
    out.family(
        "xdp_guard_controller_tick_seconds",
        "gauge",
        "Duration of the last controller tick.",
    );
    out.sample(
        "xdp_guard_controller_tick_seconds",
        &[],
        Float(s.tick_duration_ms / 1000.0),
    );
    out.family(
        "xdp_guard_xdp_mode",
        "gauge",
        "Mode the XDP program is attached in: 1 for the current mode, 0 for the others.",
    );
    for mode in XDP_MODES {
        out.sample(
            "xdp_guard_xdp_mode",
            &[("mode", mode)],
            u64::from(mode == s.xdp_mode),
        );
    }
    if !XDP_MODES.contains(&s.xdp_mode.as_str()) {
        out.sample("xdp_guard_xdp_mode", &[("mode", &s.xdp_mode)], 1u64);
    }
    out.gauge(
        "xdp_guard_syn_recv",
        "Sockets in SYN_RECV (half-open connections) at the last look.",
        s.syn_recv,
    );
    out.text
}

/// A float sample value, written the way Prometheus parses it.
struct Float(f64);

trait SampleValue {
    fn write(&self, out: &mut String);
}

impl SampleValue for u64 {
    fn write(&self, out: &mut String) {
        out.push_str(&self.to_string());
    }
}

impl SampleValue for usize {
    fn write(&self, out: &mut String) {
        out.push_str(&self.to_string());
    }
}

impl SampleValue for Float {
    fn write(&self, out: &mut String) {
        let v = self.0;
        if v.is_nan() {
            out.push_str("NaN");
        } else if v.is_infinite() {
            out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
        } else {
            // Rust never writes an exponent for Display; Prometheus takes plain decimals.
            out.push_str(&v.to_string());
        }
    }
}

#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        self.text.push_str("# HELP ");
        self.text.push_str(name);
        self.text.push(' ');
        for c in help.chars() {
            match c {
                '\\' => self.text.push_str("\\\\"),
                '\n' => self.text.push_str("\\n"),
                c => self.text.push(c),
            }
        }
        self.text.push_str("\n# TYPE ");
        self.text.push_str(name);
        self.text.push(' ');
        self.text.push_str(kind);
        self.text.push('\n');
    }

    fn gauge(&mut self, name: &str, help: &str, value: impl SampleValue) {
        self.family(name, "gauge", help);
        self.sample(name, &[], value);
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl SampleValue) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                self.text.push_str(label);
                self.text.push_str("=\"");
                for c in v.chars() {
                    match c {
                        '\\' => self.text.push_str("\\\\"),
                        '"' => self.text.push_str("\\\""),
                        '\n' => self.text.push_str("\\n"),
                        c => self.text.push(c),
                    }
                }
                self.text.push('"');
            }
            self.text.push('}');
        }
        self.text.push(' ');
        value.write(&mut self.text);
        self.text.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_and_labels_are_escaped() {
        let mut e = Exposition::default();
        e.sample("m", &[("l", "a\"b\\c\nd")], Float(f64::INFINITY));
        e.sample("m", &[], Float(f64::NAN));
        e.sample("m", &[], Float(0.000_012_5));
        assert_eq!(
            e.text,
            "m{l=\"a\\\"b\\\\c\\nd\"} +Inf\nm NaN\nm 0.0000125\n"
        );
    }
}

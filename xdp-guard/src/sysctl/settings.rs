//! The settings table: every sysctl the operator memo recommends (corrected where the memo is
//! wrong or outdated), plus `net.core.somaxconn`, which the memo misses but Apache needs.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// The one key this tool refuses to write, whatever a profile, backup or caller asks.
pub const TCP_TW_RECYCLE: &str = "net.ipv4.tcp_tw_recycle";

/// Which set of values to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// The memo's advice, corrected; for normal operation.
    Recommended,
    /// While a SYN flood is under way: shorter SYN-ACK retries, deeper SYN and accept queues.
    UnderAttack,
}

impl Profile {
    pub const ALL: [Profile; 2] = [Profile::Recommended, Profile::UnderAttack];

    pub fn name(self) -> &'static str {
        match self {
            Profile::Recommended => "recommended",
            Profile::UnderAttack => "under-attack",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Profile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "recommended" => Ok(Profile::Recommended),
            "under-attack" | "attack" => Ok(Profile::UnderAttack),
            other => Err(format!(
                "unknown sysctl profile {other:?} (expected \"recommended\" or \"under-attack\")"
            )),
        }
    }
}

/// How the current value is judged against the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// Must equal the target (multi-value settings compare field by field, whitespace-normalised).
    Exact,
    /// Every field must be at least the target's; apply raises fields that are lower and never
    /// lowers one that is already higher (recent kernels default some of these above the memo's
    /// 2010-era numbers).
    AtLeast,
    /// Removed from Linux and harmful where it still exists: audited, never written.
    NeverSet,
}

/// Which network namespace a setting belongs to (verified on Linux 6.18).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Each network namespace has its own value (containers can tune it for themselves).
    PerNetns,
    /// One host-wide value, writable only from the initial network namespace (read-only
    /// elsewhere, so writing it from a container fails with EACCES).
    Host,
}

/// One sysctl the tuner knows about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// Dotted key, as `sysctl(8)` spells it.
    pub key: &'static str,
    pub rule: Rule,
    /// Target of the `Recommended` profile; `None` only for `Rule::NeverSet`.
    pub recommended: Option<&'static str>,
    /// Target of the `UnderAttack` profile when it differs from `recommended`.
    pub under_attack: Option<&'static str>,
    pub scope: Scope,
    /// What the setting really does and why this value.
    pub why: &'static str,
}

impl Setting {
    /// The value `profile` asks for, or `None` for a setting that must never be written.
    pub fn target(&self, profile: Profile) -> Option<&'static str> {
        if self.rule == Rule::NeverSet {
            return None;
        }
        match profile {
            Profile::UnderAttack => self.under_attack.or(self.recommended),
            Profile::Recommended => self.recommended,
        }
    }
}

/// Looks a key up in [`SETTINGS`].
pub fn setting(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.key == key)
}

/// Every setting, in the order apply writes them (and rollback undoes them in reverse).
pub static SETTINGS: &[Setting] = &[
    Setting {
        key: "net.ipv4.tcp_syncookies",
        rule: Rule::Exact,
        recommended: Some("1"),
        under_attack: None,
        scope: Scope::PerNetns,
        why: "SYN cookies let the kernel answer SYNs without keeping any state once a \
              listener's SYN queue is full, so a flood cannot exhaust it. 1 = cookies only when \
              the queue overflows. Not 2 (always): a cookie can carry only the MSS, plus window \
              scaling, SACK and ECN when the client sends TCP timestamps, so clients without \
              timestamps lose window scaling and SACK on every cookie connection. 0 leaves the \
              server defenceless. Stays 1 under attack: overflow is exactly when cookies start.",
    },
    Setting {
        key: "net.ipv4.tcp_synack_retries",
        rule: Rule::Exact,
        recommended: Some("3"),
        under_attack: Some("2"),
        scope: Scope::PerNetns,
        why: "SYN-ACK retransmissions for a half-open (SYN_RECV) connection before it is \
              dropped. The default 5 keeps each entry ~63 s (1+2+4+8+16+32 s); 3 frees it after \
              ~15 s and 2 (under attack) after ~7 s, so spoofed SYNs hold a SYN-queue slot for \
              less time. Cost: a real client on a lossy link gives up sooner. Connections \
              answered with a SYN cookie keep no state and are not affected.",
    },
    Setting {
        key: "net.ipv4.tcp_syn_retries",
        rule: Rule::Exact,
        recommended: Some("3"),
        under_attack: None,
        scope: Scope::PerNetns,
        why: "SYN retransmissions for connections this host opens (mod_proxy to back ends, \
              outgoing HTTP/DNS); it does nothing for incoming connections or SYN floods. The \
              default 6 gives up on a dead peer after ~127 s, 3 after ~15 s.",
    },
    Setting {
        key: "net.ipv4.tcp_max_syn_backlog",
        rule: Rule::AtLeast,
        recommended: Some("2048"),
        under_attack: Some("8192"),
        scope: Scope::PerNetns,
        why: "Meant as the number of half-open connections a listener may hold, but since Linux \
              4.4 a listener's SYN queue is capped by its accept backlog, min(listen() backlog, \
              net.core.somaxconn); this value only matters with syncookies off, when the last \
              quarter of it is kept for peers already proven alive. Raise it together with \
              somaxconn and Apache's ListenBacklog. Never lowered (the kernel sizes the default \
              from memory).",
    },
    Setting {
        key: "net.core.somaxconn",
        rule: Rule::AtLeast,
        recommended: Some("4096"),
        under_attack: Some("8192"),
        scope: Scope::PerNetns,
        why: "Not in the memo, but Apache needs it. Caps every listen() backlog: a listener's \
              accept queue (and, since 4.4, its SYN queue) is min(backlog, somaxconn). Apache \
              passes ListenBacklog (default 511), so its queue is min(ListenBacklog, somaxconn): \
              raise both, raising one alone does nothing. The cap is applied at listen() time, \
              so only listeners created after the change get it; Apache keeps its listening \
              sockets across graceful (USR1) and plain (HUP, `apachectl restart`) restarts, so it \
              needs a full stop and start (`systemctl restart`) to pick a new value up. Default \
              4096 since Linux 5.4 (128 before, which silently cut Apache's 511).",
    },
    Setting {
        key: "net.ipv4.tcp_window_scaling",
        rule: Rule::Exact,
        recommended: Some("1"),
        under_attack: None,
        scope: Scope::PerNetns,
        why: "RFC 7323 window scaling; without it a connection's window stops at 64 KB, which \
              caps throughput at 64 KB per round trip. On by default. Connections accepted with \
              a SYN cookie from clients without TCP timestamps cannot use it.",
    },
    Setting {
        key: "net.core.rmem_max",
        rule: Rule::AtLeast,
        recommended: Some("16777216"),
        under_attack: None,
        scope: Scope::Host,
        why: "Largest receive buffer a program may ask for with SO_RCVBUF (TCP autotuning is \
              bounded by tcp_rmem instead). 16 MB allows full speed on long, fast paths; memory \
              is used only by sockets that ask. Never lowered. Host-wide: read-only outside the \
              initial network namespace.",
    },
    Setting {
        key: "net.core.wmem_max",
        rule: Rule::AtLeast,
        recommended: Some("16777216"),
        under_attack: None,
        scope: Scope::Host,
        why: "Largest send buffer a program may ask for with SO_SNDBUF (TCP autotuning is \
              bounded by tcp_wmem instead). 16 MB; never lowered. Host-wide: read-only outside \
              the initial network namespace.",
    },
    Setting {
        key: "net.ipv4.tcp_rmem",
        rule: Rule::AtLeast,
        recommended: Some("4096 87380 16777216"),
        under_attack: None,
        scope: Scope::PerNetns,
        why: "Per-socket TCP receive buffer: min, initial, autotuning max. A 16 MB max lets the \
              window grow on high bandwidth-delay paths; memory is used only by connections that \
              need it and tcp_mem reins it in under pressure. Compared field by field and never \
              lowered: recent kernels may already default to a larger max (32 MB on Linux \
              6.18).",
    },
    Setting {
        key: "net.ipv4.tcp_wmem",
        rule: Rule::AtLeast,
        recommended: Some("4096 65536 16777216"),
        under_attack: None,
        scope: Scope::PerNetns,
        why: "Per-socket TCP send buffer: min, initial, autotuning max (16 MB). Compared field by \
              field and never lowered.",
    },
    Setting {
        key: "net.ipv4.tcp_fin_timeout",
        rule: Rule::Exact,
        recommended: Some("30"),
        under_attack: None,
        scope: Scope::PerNetns,
        why: "How long an orphaned connection (already closed by Apache) waits in FIN_WAIT2 for \
              the peer's FIN before it is dropped. It does NOT shorten TIME_WAIT, which Linux \
              fixes at 60 s. Default 60; 30 frees orphans of clients that vanish without closing.",
    },
    Setting {
        key: "net.ipv4.tcp_keepalive_time",
        rule: Rule::Exact,
        recommended: Some("300"),
        under_attack: None,
        scope: Scope::PerNetns,
        why: "Idle seconds before the first keepalive probe, only on sockets with SO_KEEPALIVE \
              (Apache sets it on its listeners; accepted connections inherit it). With the \
              default 9 probes 75 s apart a vanished peer is found after ~16 min instead of \
              ~2 h 11 min. Unrelated to HTTP KeepAlive/KeepAliveTimeout.",
    },
    Setting {
        key: "net.ipv4.tcp_tw_reuse",
        rule: Rule::Exact,
        recommended: Some("1"),
        under_attack: None,
        scope: Scope::PerNetns,
        why: "Lets a new OUTGOING connect() reuse a local port whose previous connection to the \
              same peer is in TIME_WAIT, when TCP timestamps make it safe. It does nothing for \
              the TIME_WAIT a server collects from incoming connections it closed first (the \
              memo's 811 TIME_WAIT on port 80): those still last 60 s, but they are cheap (no \
              process, no buffers, capped by tcp_max_tw_buckets) and never block accept(). \
              Useful only when this host also opens many connections (mod_proxy back ends). \
              Kernel default 2 = loopback only.",
    },
    Setting {
        key: TCP_TW_RECYCLE,
        rule: Rule::NeverSet,
        recommended: None,
        under_attack: None,
        scope: Scope::PerNetns,
        why: "Removed in Linux 4.12; never set. It dropped SYNs whose TCP timestamp went \
              backwards per source address, which silently broke clients behind NAT (many hosts \
              share one address with unrelated clocks), and it clashed with the per-connection \
              timestamp offsets of 4.10. The memo's tcp_tw_recycle = 1 is never written by this \
              tool; on a kernel that still has it, set it to 0 by hand.",
    },
    Setting {
        key: "net.ipv4.ip_local_port_range",
        rule: Rule::Exact,
        recommended: Some("5000 65000"),
        under_attack: None,
        scope: Scope::PerNetns,
        why: "Local ports for OUTGOING connections (and bind to port 0); incoming connections \
              all use the listening port and are not limited by it. A wider range helps a host \
              that opens many connections (proxying to back ends). Risk: a service that starts \
              listening later on a port inside the range (8080, 8443, ...) can fail with \
              EADDRINUSE while an outgoing connection holds it; list such ports in \
              net.ipv4.ip_local_reserved_ports. Default 32768 60999.",
    },
    Setting {
        key: "net.netfilter.nf_conntrack_tcp_timeout_time_wait",
        rule: Rule::Exact,
        recommended: Some("120"),
        under_attack: None,
        scope: Scope::PerNetns,
        why: "How long connection tracking keeps a TCP entry in TIME_WAIT (the memo's \
              net.ipv4.netfilter.ip_conntrack_* names are gone). 120 s (2 MSL) is also the \
              kernel default. Present only while nf_conntrack is loaded (stateful firewall or \
              NAT); absent means there is nothing to tune.",
    },
    Setting {
        key: "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
        rule: Rule::Exact,
        recommended: Some("60"),
        under_attack: None,
        scope: Scope::PerNetns,
        why: "How long connection tracking keeps a TCP entry in CLOSE_WAIT (peer closed, this \
              side not yet). 60 s, the kernel default. Present only while nf_conntrack is loaded.",
    },
    Setting {
        key: "net.netfilter.nf_conntrack_tcp_timeout_fin_wait",
        rule: Rule::Exact,
        recommended: Some("120"),
        under_attack: None,
        scope: Scope::PerNetns,
        why: "How long connection tracking keeps a TCP entry in FIN_WAIT. 120 s, the kernel \
              default. Present only while nf_conntrack is loaded.",
    },
];

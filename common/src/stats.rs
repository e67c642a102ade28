//! Indices into the per-CPU `STATS` array. Every packet bumps [`PACKETS`] and exactly one
//! outcome counter ([`OUTCOMES`]); the attribute counters ([`SYNS`], [`IPV6`], ...) say what
//! else was true of it.

use core::mem::size_of;

pub const PACKETS: usize = 0;
// Outcomes: exactly one per packet.
pub const PASSED: usize = 1;
pub const ALLOWLISTED: usize = 2;
pub const DROP_BLOCKLIST: usize = 3;
pub const DROP_RATE: usize = 4;
/// Over the limit in monitor mode: passed, but counted.
pub const WOULD_DROP: usize = 5;
pub const DROP_MALFORMED: usize = 6;
pub const NON_IP: usize = 7;
// Attributes.
pub const SYNS: usize = 8;
pub const IPV6: usize = 9;
pub const FRAGMENTS: usize = 10;
pub const NON_TCP: usize = 11;
/// Sources admitted from the sketch into the per-source LRU.
pub const LRU_ADMITTED: usize = 12;
/// Admissions refused by the flood guard.
pub const FLOOD_GUARD: usize = 13;
pub const EVENTS_SENT: usize = 14;
/// Events not sent: budget spent or ring full.
pub const EVENTS_SUPPRESSED: usize = 15;
/// Outcome: a SYN from a source the program does not track, over the per-CPU budget for such
/// sources that applies while user space has declared a spoofed flood
/// ([`crate::config::GuardConfig::spoof_until_ns`]). In monitor mode these count as [`WOULD_DROP`].
pub const DROP_UNVERIFIED: usize = 16;

pub const COUNT: usize = 17;

pub const OUTCOMES: [usize; 8] = [
    PASSED,
    ALLOWLISTED,
    DROP_BLOCKLIST,
    DROP_RATE,
    WOULD_DROP,
    DROP_MALFORMED,
    NON_IP,
    DROP_UNVERIFIED,
];

/// The outcomes that drop the packet.
pub const DROPS: [usize; 4] = [DROP_BLOCKLIST, DROP_RATE, DROP_MALFORMED, DROP_UNVERIFIED];

/// Packets dropped, over every drop outcome.
pub fn dropped(counters: &[u64; COUNT]) -> u64 {
    DROPS.iter().map(|i| counters[*i]).sum()
}

/// Names as they appear in metrics and `xdp-guard stats`.
pub const NAMES: [&str; COUNT] = [
    "packets",
    "passed",
    "allowlisted",
    "dropped_blocklist",
    "dropped_rate",
    "would_drop",
    "dropped_malformed",
    "non_ip",
    "syns",
    "ipv6",
    "fragments",
    "non_tcp",
    "lru_admitted",
    "flood_guard",
    "events_sent",
    "events_suppressed",
    "dropped_unverified",
];

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub counters: [u64; COUNT],
}

const _: () = assert!(size_of::<Stats>() == COUNT * 8);

#[cfg(feature = "user")]
// SAFETY: repr(C) array of u64.
unsafe impl aya::Pod for Stats {}

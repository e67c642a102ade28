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

pub const COUNT: usize = 16;

pub const OUTCOMES: [usize; 7] = [
    PASSED,
    ALLOWLISTED,
    DROP_BLOCKLIST,
    DROP_RATE,
    WOULD_DROP,
    DROP_MALFORMED,
    NON_IP,
];

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

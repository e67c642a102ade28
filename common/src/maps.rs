//! Map names and the `repr(C)` layouts of their keys and values.
//!
//! The eBPF program names each map static exactly like the constant here (the map name in the
//! object is the static's identifier); a user-space test loads the object and checks that every
//! name in [`ALL`] is present, so the two cannot drift apart silently.

use core::mem::size_of;

/// `Array<GuardConfig>`, one entry: thresholds and switches read on every packet.
pub const CONFIG: &str = "CONFIG";
/// `Array<u64>`, [`PORT_WORDS`] entries: bitmap of protected TCP destination ports.
pub const PORTS: &str = "PORTS";
/// `LpmTrie<[u8; 4], u8>`: IPv4 allowlist, checked first.
pub const ALLOW_V4: &str = "ALLOW_V4";
/// `LpmTrie<[u8; 16], u8>`: IPv6 allowlist, checked first.
pub const ALLOW_V6: &str = "ALLOW_V6";
/// `HashMap<BlockKeyV4, BlockEntry>`: every IPv4 block, keyed by (prefix length, masked address).
pub const BLOCK_V4: &str = "BLOCK_V4";
/// `Array<V4Slot>`, 65,536 entries indexed by the top 16 address bits: a summary of
/// [`BLOCK_V4`] so the common case (source in a /16 with no blocks) costs one array load.
pub const BLOCK_V4_SLOTS: &str = "BLOCK_V4_SLOTS";
/// `HashMap<BlockKeyV6, BlockEntry>`: every IPv6 block.
pub const BLOCK_V6: &str = "BLOCK_V6";
/// `Array<PrefixLens>`, one entry: the distinct IPv6 block prefix lengths, longest first.
pub const BLOCK_V6_LENS: &str = "BLOCK_V6_LENS";
/// `LruPerCpuHashMap<SourceKey, SynCounter>`: per-source SYN accounting (counters only,
/// never blocks: LRU entries are evictable by a spoofed flood).
pub const SYN_COUNTERS: &str = "SYN_COUNTERS";
/// `PerCpuArray<SketchCell>`, `SKETCH_ROWS * SKETCH_WIDTH` entries: first-stage count-min
/// sketch that keeps never-seen sources out of the LRU.
pub const SKETCH: &str = "SKETCH";
/// `PerCpuArray<CpuState>`, one entry: flood-guard and event-budget windows.
pub const CPU_STATE: &str = "CPU_STATE";
/// `PerCpuArray<Stats>`, one entry: packet counters, see [`crate::stats`].
pub const STATS: &str = "STATS";
/// `RingBuf` of [`OverLimitEvent`].
pub const EVENTS: &str = "EVENTS";

/// Every map the program defines, for the object/contract consistency test and for pinning.
pub const ALL: [&str; 13] = [
    CONFIG,
    PORTS,
    ALLOW_V4,
    ALLOW_V6,
    BLOCK_V4,
    BLOCK_V4_SLOTS,
    BLOCK_V6,
    BLOCK_V6_LENS,
    SYN_COUNTERS,
    SKETCH,
    CPU_STATE,
    STATS,
    EVENTS,
];

/// Default map sizes; the loader may override the big ones (`set_max_entries`).
pub const ALLOW_MAX_ENTRIES: u32 = 16_384;
pub const BLOCK_MAX_ENTRIES: u32 = 2_097_152;
pub const SYN_COUNTERS_MAX_ENTRIES: u32 = 65_536;
pub const V4_SLOT_COUNT: u32 = 65_536;
pub const EVENTS_BYTES: u32 = 256 * 1024;
pub const PORT_WORDS: u32 = 1024;
pub const SKETCH_ROWS: u32 = 2;
/// Columns per sketch row; a power of two.
pub const SKETCH_WIDTH: u32 = 4096;
/// Distinct IPv6 block prefix lengths the program probes.
pub const MAX_V6_BLOCK_LENS: usize = 16;

/// Shortest IPv4 prefix that goes into a per-length probe instead of the slot summary.
pub const V4_SLOT_SPLIT: u32 = 16;

/// `expires_at_ns` value of a block that never lapses.
pub const NEVER: u64 = u64::MAX;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BlockKeyV4 {
    pub prefix_len: u32,
    /// Network order, host bits cleared.
    pub addr: [u8; 4],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BlockKeyV6 {
    pub prefix_len: u32,
    pub addr: [u8; 16],
}

/// A block as the program sees it: only when it lapses. Reason, origin and offence count are
/// user-space state (the daemon's store); the program needs nothing but the expiry, which it
/// checks itself so that blocks still lapse if the daemon is dead.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockEntry {
    /// `CLOCK_MONOTONIC` nanoseconds (`bpf_ktime_get_coarse_ns`); [`NEVER`] for permanent.
    pub expires_at_ns: u64,
}

/// Summary of the IPv4 blocks inside one /16.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct V4Slot {
    /// Latest expiry among blocks of length <= /16 covering this /16 (0: none). Blocked while
    /// it is in the future; the maximum is exact because a later expiry covers every earlier one.
    pub short_expires_at_ns: u64,
    /// Bit `len - 17` set when at least one block of length `len` (17..=32) lies in this /16.
    pub long_lens: u32,
    pub _pad: u32,
}

/// The distinct IPv6 block prefix lengths, longest first.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefixLens {
    pub count: u32,
    pub lens: [u8; MAX_V6_BLOCK_LENS],
    pub _pad: u32,
}

/// Source key of the SYN accounting: IPv4-mapped for IPv4, masked to the configured prefix
/// for IPv6.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceKey {
    pub addr: [u8; 16],
}

/// Per-CPU SYN accounting of one source. User space sums the per-CPU values.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SynCounter {
    /// GCRA theoretical arrival time (monotonic ns), see [`crate::rate::gcra`].
    pub tat_ns: u64,
    /// SYNs seen from this source on this CPU since it was admitted, including the sketch
    /// estimate it was admitted with.
    pub syns: u64,
    /// SYNs over the limit on this CPU (dropped in enforce mode, would-drop in monitor mode).
    pub over_limit: u64,
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    /// Last over-limit event sent for this source from this CPU (0: never).
    pub last_event_ns: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SketchCell {
    /// Sketch window this count belongs to; a stale epoch reads as zero (lazy reset).
    pub epoch: u32,
    pub count: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuState {
    pub guard_window_start_ns: u64,
    /// LRU admissions in the current flood-guard window.
    pub new_sources: u32,
    /// Ring-buffer events in the current window.
    pub events: u32,
    /// SYNs from untracked sources in the current window (counted while the spoof guard is
    /// on).
    pub unverified: u32,
    pub _pad: u32,
}

/// Sent on the ring buffer when a source goes over its limit (at most once per
/// `event_interval_ns` per source and CPU, and `event_budget` per window per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OverLimitEvent {
    pub source: SourceKey,
    pub at_ns: u64,
    /// SYNs counted for this source on the reporting CPU.
    pub syns: u64,
    pub cpu: u32,
    /// 1 when the packet was dropped (enforce), 0 when only counted (monitor).
    pub dropped: u32,
}

const _: () = assert!(size_of::<BlockKeyV4>() == 8);
const _: () = assert!(size_of::<BlockKeyV6>() == 20);
const _: () = assert!(size_of::<BlockEntry>() == 8);
const _: () = assert!(size_of::<V4Slot>() == 16);
const _: () = assert!(size_of::<PrefixLens>() == 24);
const _: () = assert!(size_of::<SourceKey>() == 16);
const _: () = assert!(size_of::<SynCounter>() == 48);
const _: () = assert!(size_of::<SketchCell>() == 8);
const _: () = assert!(size_of::<CpuState>() == 24);
const _: () = assert!(size_of::<OverLimitEvent>() == 40);
const _: () = assert!(SKETCH_WIDTH.is_power_of_two());

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all of these are repr(C), Copy, contain only integers and byte arrays, and have
    // no implicit padding (explicit `_pad` fields where alignment would add some).
    unsafe impl aya::Pod for BlockKeyV4 {}
    unsafe impl aya::Pod for BlockKeyV6 {}
    unsafe impl aya::Pod for BlockEntry {}
    unsafe impl aya::Pod for V4Slot {}
    unsafe impl aya::Pod for PrefixLens {}
    unsafe impl aya::Pod for SourceKey {}
    unsafe impl aya::Pod for SynCounter {}
    unsafe impl aya::Pod for SketchCell {}
    unsafe impl aya::Pod for CpuState {}
    unsafe impl aya::Pod for OverLimitEvent {}
}

//! xdp-guard's XDP program: allowlist, blocklist, then per-source SYN accounting.
//!
//! Decision order for every frame (the same table the reference classifier in
//! `xdp_guard_common::reference` implements, and the README documents):
//! 1. not IPv4/IPv6 (ARP, LLDP, a third VLAN tag, ...): PASS, `non_ip`;
//! 2. an IP header that is truncated or invalid, an IPv6 extension chain longer than the
//!    walk bound: DROP, `dropped_malformed` (the kernel would discard it too, later and
//!    after allocating an skb);
//! 3. source in the allowlist: PASS, `allowlisted`;
//! 4. source in an unexpired block: DROP every packet, `dropped_blocklist`;
//! 5. non-TCP, and non-first fragments (no TCP header to read): PASS;
//! 6. TCP header truncated or data offset < 5, SYN with FIN or RST: DROP, `dropped_malformed`;
//! 7. SYN (ACK clear) to a protected port while user space has declared a spoofed flood,
//!    from a source not in the per-source LRU, beyond this CPU's budget for such sources:
//!    DROP (`dropped_unverified`) in enforce mode, PASS (`would_drop`) in monitor mode;
//! 8. SYN (ACK clear) to a protected port: GCRA per source; over the limit: DROP
//!    (`dropped_rate`) in enforce mode, PASS (`would_drop`) in monitor mode;
//! 9. everything else: PASS.
//!
//! Internal failures (a map lookup that cannot fail, failing) pass the packet: the kernel
//! stack still guards it, and a firewall bug must not black-hole a host. XDP_ABORTED is
//! never returned.
#![no_std]
#![no_main]

mod lists;
mod parse;
mod syn;

use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS},
    helpers::bpf_ktime_get_coarse_ns,
    macros::{map, xdp},
    maps::{Array, HashMap, LpmTrie, LruPerCpuHashMap, PerCpuArray, RingBuf},
    programs::XdpContext,
};
use xdp_guard_common::{
    config::GuardConfig,
    maps::{
        ALLOW_MAX_ENTRIES, BLOCK_MAX_ENTRIES, BlockEntry, BlockKeyV4, BlockKeyV6, CpuState,
        EVENTS_BYTES, PORT_WORDS, PrefixLens, SKETCH_ROWS, SKETCH_WIDTH, SYN_COUNTERS_MAX_ENTRIES,
        SketchCell, SourceKey, SynCounter, V4_SLOT_COUNT, V4Slot,
    },
    net::{is_invalid_syn, is_syn},
    stats::{self, Stats},
};

use crate::parse::L4;

/// BPF_F_NO_PREALLOC: required for LPM tries; for the block hashes it means memory is taken
/// per entry instead of reserving two million entries up front.
const NO_PREALLOC: u32 = 1;

#[map]
static CONFIG: Array<GuardConfig> = Array::with_max_entries(1, 0);
#[map]
static PORTS: Array<u64> = Array::with_max_entries(PORT_WORDS, 0);
#[map]
static ALLOW_V4: LpmTrie<[u8; 4], u8> = LpmTrie::with_max_entries(ALLOW_MAX_ENTRIES, NO_PREALLOC);
#[map]
static ALLOW_V6: LpmTrie<[u8; 16], u8> = LpmTrie::with_max_entries(ALLOW_MAX_ENTRIES, NO_PREALLOC);
#[map]
static BLOCK_V4: HashMap<BlockKeyV4, BlockEntry> =
    HashMap::with_max_entries(BLOCK_MAX_ENTRIES, NO_PREALLOC);
#[map]
static BLOCK_V4_SLOTS: Array<V4Slot> = Array::with_max_entries(V4_SLOT_COUNT, 0);
#[map]
static BLOCK_V6: HashMap<BlockKeyV6, BlockEntry> =
    HashMap::with_max_entries(BLOCK_MAX_ENTRIES, NO_PREALLOC);
#[map]
static BLOCK_V6_LENS: Array<PrefixLens> = Array::with_max_entries(1, 0);
#[map]
static SYN_COUNTERS: LruPerCpuHashMap<SourceKey, SynCounter> =
    LruPerCpuHashMap::with_max_entries(SYN_COUNTERS_MAX_ENTRIES, 0);
#[map]
static SKETCH: PerCpuArray<SketchCell> =
    PerCpuArray::with_max_entries(SKETCH_ROWS * SKETCH_WIDTH, 0);
#[map]
static CPU_STATE: PerCpuArray<CpuState> = PerCpuArray::with_max_entries(1, 0);
#[map]
static STATS: PerCpuArray<Stats> = PerCpuArray::with_max_entries(1, 0);
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

/// What happens to the frame, and which outcome counter says why.
pub struct Verdict {
    pub action: u32,
    pub outcome: usize,
}

impl Verdict {
    #[inline(always)]
    pub const fn pass(outcome: usize) -> Self {
        Self {
            action: XDP_PASS,
            outcome,
        }
    }
    #[inline(always)]
    pub const fn drop(outcome: usize) -> Self {
        Self {
            action: XDP_DROP,
            outcome,
        }
    }
}

/// `bpf_ktime_get_coarse_ns` (CLOCK_MONOTONIC_COARSE), read at most once per packet and only
/// when a decision needs it. The coarse clock is a cached value (a few ns); the precise clocks
/// cost ~30 ns per read on a TSC-backed VM, more than the rest of a blocklist hit. Its
/// granularity is one tick (4 ms at HZ=250): fine for SYN rates and block expiry.
pub struct Clock(u64);

impl Clock {
    #[inline(always)]
    pub fn now(&mut self) -> u64 {
        if self.0 == 0 {
            // SAFETY: helper without arguments, allowed for XDP programs.
            self.0 = unsafe { bpf_ktime_get_coarse_ns() };
        }
        self.0
    }
}

pub type Counters = [u64; stats::COUNT];

#[xdp]
pub fn xdp_guard(ctx: XdpContext) -> u32 {
    let Some(stats) = STATS.get_ptr_mut(0) else {
        return XDP_PASS;
    };
    // SAFETY: a per-CPU value; XDP runs without preemption, so this CPU has one writer.
    let counters = unsafe { &mut (*stats).counters };
    counters[stats::PACKETS] += 1;
    let verdict = try_guard(&ctx, counters);
    if let Some(c) = counters.get_mut(verdict.outcome) {
        *c += 1;
    }
    verdict.action
}

#[inline(always)]
fn try_guard(ctx: &XdpContext, counters: &mut Counters) -> Verdict {
    let pkt = match parse::packet(ctx) {
        Ok(pkt) => pkt,
        Err(parse::Unparsed::NotIp) => return Verdict::pass(stats::NON_IP),
        Err(parse::Unparsed::Malformed) => return Verdict::drop(stats::DROP_MALFORMED),
    };
    if pkt.v6 {
        counters[stats::IPV6] += 1;
    }
    if pkt.fragment {
        counters[stats::FRAGMENTS] += 1;
    }
    let Some(cfg) = CONFIG.get(0) else {
        return Verdict::pass(stats::PASSED);
    };
    if lists::allowlisted(&pkt, cfg) {
        return Verdict::pass(stats::ALLOWLISTED);
    }
    let mut clock = Clock(0);
    if lists::blocked(&pkt, &mut clock) {
        return Verdict::drop(stats::DROP_BLOCKLIST);
    }
    match pkt.l4 {
        L4::Tcp => {}
        L4::BadTcp => return Verdict::drop(stats::DROP_MALFORMED),
        L4::LaterFragment => return Verdict::pass(stats::PASSED),
        L4::Other => {
            counters[stats::NON_TCP] += 1;
            return Verdict::pass(stats::PASSED);
        }
    }
    if is_invalid_syn(pkt.flags) {
        return Verdict::drop(stats::DROP_MALFORMED);
    }
    if !is_syn(pkt.flags) || !syn::port_protected(cfg, pkt.dport) {
        return Verdict::pass(stats::PASSED);
    }
    counters[stats::SYNS] += 1;
    if cfg.syn_interval_ns == 0 {
        return Verdict::pass(stats::PASSED);
    }
    syn::account(&pkt, cfg, &mut clock, counters)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

//! The per-SYN accounting math, shared verbatim by the XDP program and the reference
//! classifier. Pure functions over the map values, so host unit tests cover them.
//!
//! Pipeline for a SYN from a source that is not in the LRU yet:
//! 1. bump the source's cells in the per-CPU count-min sketch (two rows, lazily reset per
//!    window); a source whose estimate is below `sketch_admit` costs nothing more;
//! 2. a source at `sketch_admit` is admitted into the LRU, unless the flood guard has already
//!    admitted `guard_max_new` sources on this CPU in the current window;
//! 3. an admitted source is charged for the SYNs the sketch saw, so its bucket is as full as
//!    if it had been tracked from its first SYN.
//!
//! The limit itself is a GCRA (the token bucket in "theoretical arrival time" form: one u64
//! of state, no division on the hot path).

use crate::{
    config::GuardConfig,
    maps::{CpuState, SKETCH_WIDTH, SketchCell, SourceKey, SynCounter},
};

/// GCRA step. Returns the new theoretical arrival time when the cell conforms (the SYN is
/// within rate and burst), `None` when it is over the limit (state left unchanged).
#[inline(always)]
pub fn gcra(tat_ns: u64, now_ns: u64, interval_ns: u64, tolerance_ns: u64) -> Option<u64> {
    let base = if tat_ns > now_ns { tat_ns } else { now_ns };
    if base - now_ns > tolerance_ns {
        None
    } else {
        Some(base.saturating_add(interval_ns))
    }
}

/// A fresh LRU entry for a source admitted with `estimate` SYNs seen by the sketch,
/// including the current one (which [`account`] then charges).
#[inline(always)]
pub fn admitted(now_ns: u64, estimate: u32, cfg: &GuardConfig) -> SynCounter {
    let charged = saturating_mul_u32(estimate.saturating_sub(1), cfg.syn_interval_ns);
    SynCounter {
        tat_ns: now_ns.saturating_add(charged),
        syns: u64::from(estimate.saturating_sub(1)),
        over_limit: 0,
        first_seen_ns: now_ns,
        last_seen_ns: now_ns,
        last_event_ns: 0,
    }
}

/// `a * b`, saturating, without the 128-bit multiply that `u64::saturating_mul` (or any
/// check LLVM recognises as an overflow test) lowers to: the BPF backend has no such libcall.
/// Each partial product of a 32-bit `a` with a 32-bit half of `b` fits in 64 bits.
#[inline(always)]
pub fn saturating_mul_u32(a: u32, b: u64) -> u64 {
    let a = u64::from(a);
    let high = a * (b >> 32);
    let low = a * (b & 0xffff_ffff);
    if high >> 32 != 0 {
        return u64::MAX;
    }
    (high << 32).saturating_add(low)
}

/// Charge one SYN to a tracked source. Returns `true` when it is over the limit.
#[inline(always)]
pub fn account(c: &mut SynCounter, now_ns: u64, cfg: &GuardConfig) -> bool {
    c.syns += 1;
    c.last_seen_ns = now_ns;
    match gcra(c.tat_ns, now_ns, cfg.syn_interval_ns, cfg.syn_tolerance_ns) {
        Some(tat) => {
            c.tat_ns = tat;
            false
        }
        None => {
            c.over_limit += 1;
            true
        }
    }
}

const K1: u64 = 0x9E37_79B9_7F4A_7C15;
const K2: u64 = 0xC2B2_AE3D_27D4_EB4F;

/// Seeded 64-bit hash of a source key; the two sketch rows use its two halves.
#[inline(always)]
pub fn source_hash(key: &SourceKey, seed: u64) -> u64 {
    let a = &key.addr;
    let lo = u64::from_le_bytes([a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]]);
    let hi = u64::from_le_bytes([a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15]]);
    let mut x = (lo ^ seed).wrapping_mul(K1);
    x ^= hi.rotate_left(31);
    x = x.wrapping_mul(K2);
    x ^ (x >> 29)
}

/// Sketch array indices of a source: row 0 then row 1.
#[inline(always)]
pub fn sketch_slots(hash: u64) -> [u32; 2] {
    let mask = u64::from(SKETCH_WIDTH - 1);
    [
        (hash & mask) as u32,
        SKETCH_WIDTH + ((hash >> 32) & mask) as u32,
    ]
}

#[inline(always)]
pub fn sketch_epoch(now_ns: u64, window_shift: u32) -> u32 {
    (now_ns >> (window_shift & 63)) as u32
}

/// Count one SYN in a sketch cell, resetting it first if it belongs to an older window.
/// Returns the cell's count after the increment.
#[inline(always)]
pub fn sketch_bump(cell: &mut SketchCell, epoch: u32) -> u32 {
    if cell.epoch != epoch {
        cell.epoch = epoch;
        cell.count = 0;
    }
    cell.count = cell.count.saturating_add(1);
    cell.count
}

/// Roll the per-CPU window forward when it has elapsed.
#[inline(always)]
fn roll_window(s: &mut CpuState, now_ns: u64, cfg: &GuardConfig) {
    if now_ns.wrapping_sub(s.guard_window_start_ns) >= cfg.guard_window_ns {
        s.guard_window_start_ns = now_ns;
        s.new_sources = 0;
        s.events = 0;
        s.unverified = 0;
    }
}

/// Spend one unit of a per-window budget: `false` (and nothing spent) once `used` reached
/// `budget`.
#[inline(always)]
fn spend(used: &mut u32, budget: u32) -> bool {
    if *used >= budget {
        return false;
    }
    *used += 1;
    true
}

/// With the spoof guard on: may one more SYN from an untracked source pass on this CPU now?
/// Counts it when it may.
#[inline(always)]
pub fn spoof_admit(s: &mut CpuState, now_ns: u64, cfg: &GuardConfig) -> bool {
    roll_window(s, now_ns, cfg);
    spend(&mut s.unverified, cfg.spoof_budget)
}

/// May one more source be admitted into the LRU on this CPU now? Counts the admission.
#[inline(always)]
pub fn guard_admit(s: &mut CpuState, now_ns: u64, cfg: &GuardConfig) -> bool {
    roll_window(s, now_ns, cfg);
    spend(&mut s.new_sources, cfg.guard_max_new)
}

/// Should an over-limit event be sent for this source now? Counts it against the source's
/// interval and the CPU's budget when it is.
#[inline(always)]
pub fn event_due(c: &mut SynCounter, s: &mut CpuState, now_ns: u64, cfg: &GuardConfig) -> EventDue {
    if c.last_event_ns != 0 && now_ns.wrapping_sub(c.last_event_ns) < cfg.event_interval_ns {
        return EventDue::No;
    }
    roll_window(s, now_ns, cfg);
    if !spend(&mut s.events, cfg.event_budget) {
        return EventDue::Suppressed;
    }
    c.last_event_ns = now_ns;
    EventDue::Send
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventDue {
    /// Already reported recently: nothing to count.
    No,
    Send,
    /// Due, but this CPU's event budget for the window is spent.
    Suppressed,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RateParams;

    fn cfg(rate: u32, burst: u32) -> GuardConfig {
        RateParams {
            syn_rate: rate,
            syn_burst: burst,
            enforce: true,
            ipv6_prefix_len: 64,
        }
        .to_config(1)
    }

    #[test]
    fn gcra_allows_exactly_the_burst_at_once() {
        let c = cfg(10, 5);
        let mut counter = admitted(1_000, 1, &c);
        let allowed = (0..20)
            .filter(|_| !account(&mut counter, 1_000, &c))
            .count();
        assert_eq!(allowed, 5);
        assert_eq!(counter.over_limit, 15);
        assert_eq!(counter.syns, 20);
    }

    #[test]
    fn gcra_refills_at_the_rate() {
        let c = cfg(10, 1); // one SYN per 100 ms
        let mut counter = admitted(0, 1, &c);
        let mut allowed = 0;
        // 100 SYNs spread over one second, every 10 ms: exactly 10 conform.
        for i in 0..100u64 {
            if !account(&mut counter, i * 10_000_000, &c) {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 10);
    }

    #[test]
    fn admission_charges_what_the_sketch_saw() {
        let c = cfg(10, 8);
        // Admitted at the 3rd SYN: 2 earlier SYNs already count against the burst of 8.
        let mut counter = admitted(0, 3, &c);
        let allowed = (0..20).filter(|_| !account(&mut counter, 0, &c)).count();
        assert_eq!(allowed, 6, "3rd..8th SYN conform, 9th is over");
        assert_eq!(counter.syns, 22);
    }

    #[test]
    fn saturating_mul_matches_u128() {
        for a in [0u32, 1, 2, 3, 1000, u32::MAX] {
            for b in [
                0u64,
                1,
                999,
                1_000_000_000,
                86_400_000_000_000,
                1 << 40,
                u64::MAX / 3,
                u64::MAX,
            ] {
                let want = (u128::from(a) * u128::from(b)).min(u128::from(u64::MAX)) as u64;
                assert_eq!(saturating_mul_u32(a, b), want, "{a} * {b}");
            }
        }
    }

    #[test]
    fn admission_charge_saturates() {
        let mut c = cfg(10, 8);
        c.syn_interval_ns = u64::MAX / 2;
        assert_eq!(admitted(5, 4, &c).tat_ns, u64::MAX);
        c.syn_interval_ns = 86_400_000_000_000;
        assert_eq!(admitted(5, 3, &c).tat_ns, 5 + 2 * 86_400_000_000_000);
    }

    #[test]
    fn sketch_resets_lazily_per_window() {
        let mut cell = SketchCell::default();
        assert_eq!(sketch_bump(&mut cell, 5), 1);
        assert_eq!(sketch_bump(&mut cell, 5), 2);
        assert_eq!(sketch_bump(&mut cell, 6), 1);
        assert_eq!(sketch_epoch(2_500_000_000, 30), 2);
        assert_eq!(sketch_epoch(7, 0), 7);
        assert_eq!(sketch_epoch(u64::MAX / 2, 63), 0);
    }

    #[test]
    fn sketch_slots_stay_in_their_rows() {
        for i in 0..1000u32 {
            let mut key = SourceKey::default();
            key.addr[12..].copy_from_slice(&i.to_be_bytes());
            let [a, b] = sketch_slots(source_hash(&key, 42));
            assert!(a < SKETCH_WIDTH);
            assert!((SKETCH_WIDTH..2 * SKETCH_WIDTH).contains(&b));
        }
    }

    #[test]
    fn seed_changes_the_hash() {
        let key = SourceKey { addr: [7; 16] };
        assert_ne!(source_hash(&key, 1), source_hash(&key, 2));
    }

    #[test]
    fn flood_guard_caps_admissions_per_window() {
        let mut c = cfg(10, 8);
        c.guard_max_new = 3;
        c.guard_window_ns = 100;
        let mut s = CpuState::default();
        let admitted: usize = (0..10).filter(|_| guard_admit(&mut s, 1_000, &c)).count();
        assert_eq!(admitted, 3);
        assert!(guard_admit(&mut s, 1_100, &c), "a new window admits again");
    }

    #[test]
    fn events_are_rate_limited_per_source_and_per_cpu() {
        let mut c = cfg(10, 8);
        c.event_budget = 2;
        c.event_interval_ns = 1_000;
        c.guard_window_ns = 1_000_000;
        let mut s = CpuState::default();
        let mut a = SynCounter::default();
        assert_eq!(event_due(&mut a, &mut s, 10, &c), EventDue::Send);
        assert_eq!(event_due(&mut a, &mut s, 20, &c), EventDue::No);
        let mut b = SynCounter::default();
        assert_eq!(event_due(&mut b, &mut s, 30, &c), EventDue::Send);
        let mut d = SynCounter::default();
        assert_eq!(event_due(&mut d, &mut s, 40, &c), EventDue::Suppressed);
    }
}

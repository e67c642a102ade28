//! Per-source SYN accounting: LRU hit -> GCRA; miss -> sketch, and LRU admission only for
//! sources the sketch already saw `sketch_admit` times, within the flood guard's budget. A
//! never-seen source therefore costs an LRU miss plus two per-CPU array updates, about what a
//! tracked source costs, and a spoofed flood cannot churn the LRU. While user space has
//! declared a spoofed flood, untracked sources first spend a per-CPU budget; beyond it their
//! SYNs are dropped.

use aya_ebpf::helpers::bpf_get_smp_processor_id;
use xdp_guard_common::{
    config::GuardConfig,
    maps::{OverLimitEvent, SourceKey, SynCounter},
    net::mask_v6,
    rate::{self, EventDue},
    stats,
};

use crate::{
    CPU_STATE, Clock, Counters, EVENTS, PORTS, SKETCH, SYN_COUNTERS, Verdict, parse::Packet,
};

#[inline(always)]
pub fn port_protected(cfg: &GuardConfig, port: u16) -> bool {
    if cfg.all_ports() {
        return true;
    }
    match PORTS.get(u32::from(port >> 6)) {
        Some(word) => word & (1u64 << (port & 63)) != 0,
        None => false,
    }
}

#[inline(always)]
fn source_key(pkt: &Packet, cfg: &GuardConfig) -> SourceKey {
    if pkt.v6 {
        SourceKey {
            addr: mask_v6(pkt.src, cfg.ipv6_prefix_len),
        }
    } else {
        SourceKey { addr: pkt.src }
    }
}

#[inline(always)]
pub fn account(
    pkt: &Packet,
    cfg: &GuardConfig,
    clock: &mut Clock,
    counters: &mut Counters,
) -> Verdict {
    let key = source_key(pkt, cfg);
    let now = clock.now();
    let over = match SYN_COUNTERS.get_ptr_mut(key) {
        Some(counter) => {
            // SAFETY: per-CPU LRU value of this CPU; no other writer while XDP runs here.
            let counter = unsafe { &mut *counter };
            let over = rate::account(counter, now, cfg);
            if over {
                over_limit_event(&key, counter, now, cfg, counters);
            }
            over
        }
        None if cfg.spoof_guard(now) && !spoof_admit(now, cfg) => {
            // A spoofed flood is on and this source is not one the program tracks (nor one
            // user space saw complete a handshake): over the budget for such sources.
            return if cfg.enforce() {
                Verdict::drop(stats::DROP_UNVERIFIED)
            } else {
                Verdict::pass(stats::WOULD_DROP)
            };
        }
        None => match admit(&key, now, cfg, counters) {
            Some(mut counter) => {
                let over = rate::account(&mut counter, now, cfg);
                if over {
                    over_limit_event(&key, &mut counter, now, cfg, counters);
                }
                if SYN_COUNTERS.insert(key, counter, 0).is_ok() {
                    counters[stats::LRU_ADMITTED] += 1;
                }
                over
            }
            None => false,
        },
    };
    if !over {
        Verdict::pass(stats::PASSED)
    } else if cfg.enforce() {
        Verdict::drop(stats::DROP_RATE)
    } else {
        Verdict::pass(stats::WOULD_DROP)
    }
}

/// The spoof guard's budget for untracked sources on this CPU; a missing per-CPU entry
/// (impossible for an array) lets the SYN through to the normal path.
#[inline(always)]
fn spoof_admit(now: u64, cfg: &GuardConfig) -> bool {
    match CPU_STATE.get_ptr_mut(0) {
        // SAFETY: per-CPU value of this CPU.
        Some(state) => rate::spoof_admit(unsafe { &mut *state }, now, cfg),
        None => true,
    }
}

/// Count the SYN in the sketch; a fresh LRU entry when the source is heavy enough and the
/// flood guard allows another admission on this CPU.
#[inline(always)]
fn admit(
    key: &SourceKey,
    now: u64,
    cfg: &GuardConfig,
    counters: &mut Counters,
) -> Option<SynCounter> {
    let [a, b] = rate::sketch_slots(rate::source_hash(key, cfg.hash_seed));
    let epoch = rate::sketch_epoch(now, cfg.sketch_window_shift);
    let cell_a = SKETCH.get_ptr_mut(a)?;
    let cell_b = SKETCH.get_ptr_mut(b)?;
    // SAFETY: per-CPU cells of this CPU, distinct (they are in different rows).
    let estimate = unsafe {
        let ca = rate::sketch_bump(&mut *cell_a, epoch);
        let cb = rate::sketch_bump(&mut *cell_b, epoch);
        if ca < cb { ca } else { cb }
    };
    if estimate < cfg.sketch_admit {
        return None;
    }
    let state = CPU_STATE.get_ptr_mut(0)?;
    // SAFETY: per-CPU value of this CPU.
    if !rate::guard_admit(unsafe { &mut *state }, now, cfg) {
        counters[stats::FLOOD_GUARD] += 1;
        return None;
    }
    Some(rate::admitted(now, estimate, cfg))
}

#[inline(always)]
fn over_limit_event(
    key: &SourceKey,
    counter: &mut SynCounter,
    now: u64,
    cfg: &GuardConfig,
    counters: &mut Counters,
) {
    let Some(state) = CPU_STATE.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: per-CPU value of this CPU.
    match rate::event_due(counter, unsafe { &mut *state }, now, cfg) {
        EventDue::No => {}
        EventDue::Suppressed => counters[stats::EVENTS_SUPPRESSED] += 1,
        EventDue::Send => {
            let event = OverLimitEvent {
                source: *key,
                at_ns: now,
                syns: counter.syns,
                // SAFETY: helper without arguments.
                cpu: unsafe { bpf_get_smp_processor_id() },
                dropped: u32::from(cfg.enforce()),
            };
            if EVENTS.output::<OverLimitEvent>(&event, 0).is_ok() {
                counters[stats::EVENTS_SENT] += 1;
            } else {
                counters[stats::EVENTS_SUPPRESSED] += 1;
            }
        }
    }
}

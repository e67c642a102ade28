//! Allowlist (LPM tries) and blocklist (slot summary + exact hashes) lookups.

use aya_ebpf::maps::lpm_trie::Key;
use xdp_guard_common::{
    config::{FLAG_ALLOW_V4, FLAG_ALLOW_V6, GuardConfig},
    maps::{BlockKeyV4, BlockKeyV6, MAX_V6_BLOCK_LENS, V4_SLOT_SPLIT},
    net::{mask_v4, mask_v6},
};

use crate::{
    ALLOW_V4, ALLOW_V6, BLOCK_V4, BLOCK_V4_SLOTS, BLOCK_V6, BLOCK_V6_LENS, Clock, parse::Packet,
};

#[inline(always)]
fn v4(src: &[u8; 16]) -> [u8; 4] {
    [src[12], src[13], src[14], src[15]]
}

/// Allowlisted sources pass before anything else. The trie is not consulted while it is
/// empty (user space keeps the flag in step with it).
#[inline(always)]
pub fn allowlisted(pkt: &Packet, cfg: &GuardConfig) -> bool {
    if pkt.v6 {
        cfg.flags & FLAG_ALLOW_V6 != 0 && ALLOW_V6.get(Key::new(128, pkt.src)).is_some()
    } else {
        cfg.flags & FLAG_ALLOW_V4 != 0 && ALLOW_V4.get(Key::new(32, v4(&pkt.src))).is_some()
    }
}

#[inline(always)]
pub fn blocked(pkt: &Packet, clock: &mut Clock) -> bool {
    if pkt.v6 {
        blocked_v6(&pkt.src, clock)
    } else {
        blocked_v4(v4(&pkt.src), clock)
    }
}

/// One array load for a source whose /16 holds no block; otherwise the slot's short-prefix
/// expiry, then one hash probe per block length present in that /16, longest first.
#[inline(always)]
fn blocked_v4(addr: [u8; 4], clock: &mut Clock) -> bool {
    let index = u32::from(addr[0]) << 8 | u32::from(addr[1]);
    let Some(slot) = BLOCK_V4_SLOTS.get(index) else {
        return false;
    };
    if slot.short_expires_at_ns != 0 && slot.short_expires_at_ns > clock.now() {
        return true;
    }
    let lens = slot.long_lens;
    if lens == 0 {
        return false;
    }
    let mut len = 32;
    while len > V4_SLOT_SPLIT {
        if lens & (1 << (len - V4_SLOT_SPLIT - 1)) != 0 {
            let key = BlockKeyV4 {
                prefix_len: len,
                addr: mask_v4(addr, len),
            };
            // SAFETY: the value is copied out before the map can change under us.
            if let Some(entry) = unsafe { BLOCK_V4.get(key) }
                && entry.expires_at_ns > clock.now()
            {
                return true;
            }
        }
        len -= 1;
    }
    false
}

/// One hash probe per distinct IPv6 block length in use, longest first.
#[inline(always)]
fn blocked_v6(addr: &[u8; 16], clock: &mut Clock) -> bool {
    let Some(lens) = BLOCK_V6_LENS.get(0) else {
        return false;
    };
    let count = lens.count as usize;
    for i in 0..MAX_V6_BLOCK_LENS {
        if i >= count {
            break;
        }
        let len = u32::from(lens.lens[i]);
        let key = BlockKeyV6 {
            prefix_len: len,
            addr: mask_v6(*addr, len),
        };
        // SAFETY: as above.
        if let Some(entry) = unsafe { BLOCK_V6.get(key) }
            && entry.expires_at_ns > clock.now()
        {
            return true;
        }
    }
    false
}

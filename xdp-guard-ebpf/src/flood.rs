//! The benchmark's SYN-flood generator: run through BPF_PROG_TEST_RUN with live frames
//! (`BPF_F_TEST_XDP_LIVE_FRAMES`), it rewrites each copy of one template SYN frame
//! (Ethernet + 20-byte IPv4 + 20-byte TCP) and redirects it into a veth, so the kernel sends
//! millions of frames per second without a socket or an skb on the sending side.
//!
//! Per frame: the IPv4 source becomes a fixed address, the next entry of a list, or a random
//! address inside a prefix; the TCP source port optionally becomes random; both checksums are
//! updated incrementally (RFC 1624), so frames that reach the receiver's TCP stack are valid.
//! The template's own checksums must be valid (the update reads the old values from the frame,
//! so it is correct whatever an earlier run left in a recycled page).
//!
//! Not part of the firewall: a separate object (`xdp-guard-flood`), loaded only by the
//! benchmark. Its config layout is mirrored in `xdp_guard::bench::flood` with a size check on
//! both sides (the firewall's contract crate is left to the firewall).
#![no_std]
#![no_main]

use core::{mem::size_of, ptr};

use aya_ebpf::{
    bindings::xdp_action::XDP_DROP,
    helpers::{bpf_get_prandom_u32, bpf_redirect},
    macros::{map, xdp},
    maps::{Array, PerCpuArray},
    programs::XdpContext,
};

/// Every source comes from [`FloodConfig::base`].
pub const MODE_FIXED: u32 = 0;
/// Sources cycle through the first `list_len` entries of `FLOOD_SOURCES` (per CPU).
pub const MODE_LIST: u32 = 1;
/// `base | (random & host_mask)`: a random address inside a prefix.
pub const MODE_RANDOM: u32 = 2;

/// Capacity of the source list.
pub const LIST_MAX_ENTRIES: u32 = 65_536;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct FloodConfig {
    /// Interface the frames are redirected to, in the network namespace of the thread that
    /// runs the TEST_RUN (the attacker side of a veth pair; its peer receives them).
    pub ifindex: u32,
    pub mode: u32,
    /// Fixed source, or the network of the random prefix (network order, as in the frame).
    pub base: u32,
    /// Host bits of the random prefix (network order).
    pub host_mask: u32,
    /// Entries of `FLOOD_SOURCES` in use (list mode).
    pub list_len: u32,
    /// Non-zero: a random TCP source port (32768..=65535) per frame.
    pub random_sport: u32,
}

const _: () = assert!(size_of::<FloodConfig>() == 24);

#[map]
static FLOOD_CONFIG: Array<FloodConfig> = Array::with_max_entries(1, 0);
/// IPv4 sources for list mode, network order.
#[map]
static FLOOD_SOURCES: Array<u32> = Array::with_max_entries(LIST_MAX_ENTRIES, 0);
/// Next list index, per CPU.
#[map]
static FLOOD_CURSOR: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

const ETH_HLEN: usize = 14;
const IP_CHECK: usize = ETH_HLEN + 10;
const IP_SRC: usize = ETH_HLEN + 12;
const TCP_SPORT: usize = ETH_HLEN + 20;
const TCP_CHECK: usize = TCP_SPORT + 16;
const FRAME_LEN: usize = ETH_HLEN + 20 + 20;

#[xdp]
pub fn xdp_flood(ctx: XdpContext) -> u32 {
    // A frame that is not the template (cannot happen) is not sent.
    try_flood(&ctx).unwrap_or(XDP_DROP)
}

/// RFC 1624, eqn. 3: `HC' = ~(~HC + ~m + m')` in one's-complement arithmetic, for one 16-bit
/// word. Byte order does not matter as long as all three values are read the same way.
#[inline(always)]
fn csum_replace(check: u16, old: u16, new: u16) -> u16 {
    let mut sum = u32::from(!check) + u32::from(!old) + u32::from(new);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

#[inline(always)]
fn try_flood(ctx: &XdpContext) -> Option<u32> {
    let cfg = FLOOD_CONFIG.get(0)?;
    let start = ctx.data();
    if start + FRAME_LEN > ctx.data_end() {
        return None;
    }
    let src = match cfg.mode {
        MODE_LIST => {
            let cursor = FLOOD_CURSOR.get_ptr_mut(0)?;
            // SAFETY: per-CPU value of this CPU; the TEST_RUN loop does not preempt itself.
            let i = unsafe { &mut *cursor };
            if *i >= cfg.list_len || *i >= LIST_MAX_ENTRIES {
                *i = 0;
            }
            let src = *FLOOD_SOURCES.get(*i)?;
            *i += 1;
            src
        }
        // SAFETY: helper without arguments.
        MODE_RANDOM => cfg.base | (unsafe { bpf_get_prandom_u32() } & cfg.host_mask),
        _ => cfg.base,
    };
    let at = |offset: usize| (start + offset) as *mut u16;
    // SAFETY: every offset + 2 is within FRAME_LEN, checked against data_end above; the
    // frame is 2-byte aligned at these offsets, and unaligned accesses are used anyway.
    unsafe {
        let old_hi = ptr::read_unaligned(at(IP_SRC));
        let old_lo = ptr::read_unaligned(at(IP_SRC + 2));
        // `src` is in network order: its first two bytes in memory are the high word.
        let new = src.to_ne_bytes();
        let new_hi = u16::from_ne_bytes([new[0], new[1]]);
        let new_lo = u16::from_ne_bytes([new[2], new[3]]);
        ptr::write_unaligned(at(IP_SRC), new_hi);
        ptr::write_unaligned(at(IP_SRC + 2), new_lo);
        let mut ip_check = ptr::read_unaligned(at(IP_CHECK));
        ip_check = csum_replace(ip_check, old_hi, new_hi);
        ip_check = csum_replace(ip_check, old_lo, new_lo);
        ptr::write_unaligned(at(IP_CHECK), ip_check);
        // The TCP checksum covers the source address through the pseudo-header.
        let mut tcp_check = ptr::read_unaligned(at(TCP_CHECK));
        tcp_check = csum_replace(tcp_check, old_hi, new_hi);
        tcp_check = csum_replace(tcp_check, old_lo, new_lo);
        if cfg.random_sport != 0 {
            let old_port = ptr::read_unaligned(at(TCP_SPORT));
            // SAFETY: helper without arguments.
            let port = ((bpf_get_prandom_u32() as u16) | 0x8000).to_be();
            ptr::write_unaligned(at(TCP_SPORT), port);
            tcp_check = csum_replace(tcp_check, old_port, port);
        }
        ptr::write_unaligned(at(TCP_CHECK), tcp_check);
        Some(bpf_redirect(cfg.ifindex, 0) as u32)
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

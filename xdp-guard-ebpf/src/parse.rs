//! Bounds-checked header walk. Every read goes through [`ptr_at`]; nothing is logged.
//!
//! The TCP header is read here too, so that once [`packet`] returns no packet offset is live:
//! the verifier can then merge the many parse paths (VLAN depth, IPv4 options, IPv6
//! extension chains) before the list lookups and accounting, instead of verifying those once
//! per path.

use core::mem::size_of;

use aya_ebpf::programs::XdpContext;
use xdp_guard_common::net::{
    ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, IPPROTO_DSTOPTS, IPPROTO_FRAGMENT,
    IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_TCP, IPV4_MIN_HLEN, IPV6_HLEN, MAX_IPV6_EXT_HEADERS,
    MAX_VLAN_TAGS, TCP_MIN_HLEN, VLAN_HLEN, v4_mapped,
};

/// Largest offset any header can start at (two VLAN tags, a 40-byte IPv6 header and six
/// extension headers of at most 2,048 bytes each): masking with it bounds every variable
/// offset for the verifier without changing a reachable value.
const OFFSET_MASK: usize = 0x3fff;

pub enum Unparsed {
    NotIp,
    Malformed,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    /// A well-formed TCP header (`flags`, `dport` are valid).
    Tcp,
    /// TCP, but the header is truncated or its data offset is below 5.
    BadTcp,
    /// A fragment other than the first: no TCP header to read.
    LaterFragment,
    Other,
}

pub struct Packet {
    /// Source address; IPv4 as IPv4-mapped IPv6.
    pub src: [u8; 16],
    pub v6: bool,
    /// First or later fragment.
    pub fragment: bool,
    pub l4: L4,
    pub flags: u8,
    pub dport: u16,
}

#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*const T> {
    let start = ctx.data();
    let end = ctx.data_end();
    let offset = offset & OFFSET_MASK;
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *const T)
}

#[inline(always)]
fn read<T: Copy>(ctx: &XdpContext, offset: usize) -> Option<T> {
    // SAFETY: ptr_at checked that size_of::<T>() bytes from offset lie inside the frame.
    ptr_at::<T>(ctx, offset).map(|p| unsafe { p.read_unaligned() })
}

/// Ethernet, up to two VLAN tags, IPv4 or IPv6 (with the extension-header walk), TCP.
#[inline(always)]
pub fn packet(ctx: &XdpContext) -> Result<Packet, Unparsed> {
    let eth_type: [u8; 2] = read(ctx, ETH_HLEN - 2).ok_or(Unparsed::Malformed)?;
    let mut proto = u16::from_be_bytes(eth_type);
    let mut off = ETH_HLEN;
    for _ in 0..MAX_VLAN_TAGS {
        if proto != ETH_P_8021Q && proto != ETH_P_8021AD {
            break;
        }
        let tag: [u8; 4] = read(ctx, off).ok_or(Unparsed::Malformed)?;
        proto = u16::from_be_bytes([tag[2], tag[3]]);
        off += VLAN_HLEN;
    }
    let (mut pkt, tcp_off) = match proto {
        ETH_P_IP => ipv4(ctx, off)?,
        ETH_P_IPV6 => ipv6(ctx, off)?,
        _ => return Err(Unparsed::NotIp),
    };
    if pkt.l4 == L4::Tcp {
        tcp(ctx, tcp_off, &mut pkt);
    }
    Ok(pkt)
}

#[inline(always)]
fn ipv4(ctx: &XdpContext, off: usize) -> Result<(Packet, usize), Unparsed> {
    let h: [u8; IPV4_MIN_HLEN] = read(ctx, off).ok_or(Unparsed::Malformed)?;
    let ihl = usize::from(h[0] & 0x0f);
    if h[0] >> 4 != 4 || ihl < 5 {
        return Err(Unparsed::Malformed);
    }
    let hlen = ihl * 4;
    if ctx.data() + off + hlen > ctx.data_end() {
        return Err(Unparsed::Malformed);
    }
    let frag = u16::from_be_bytes([h[6], h[7]]);
    let later = frag & 0x1fff != 0;
    let l4 = if later {
        L4::LaterFragment
    } else if h[9] == IPPROTO_TCP {
        L4::Tcp
    } else {
        L4::Other
    };
    let pkt = Packet {
        src: v4_mapped([h[12], h[13], h[14], h[15]]),
        v6: false,
        fragment: later || frag & 0x2000 != 0,
        l4,
        flags: 0,
        dport: 0,
    };
    Ok((pkt, off + hlen))
}

#[inline(always)]
fn ipv6(ctx: &XdpContext, off: usize) -> Result<(Packet, usize), Unparsed> {
    let h: [u8; IPV6_HLEN] = read(ctx, off).ok_or(Unparsed::Malformed)?;
    if h[0] >> 4 != 6 {
        return Err(Unparsed::Malformed);
    }
    let mut src = [0u8; 16];
    src.copy_from_slice(&h[8..24]);
    let mut pkt = Packet {
        src,
        v6: true,
        fragment: false,
        l4: L4::Other,
        flags: 0,
        dport: 0,
    };
    let mut next = h[6];
    let mut off = off + IPV6_HLEN;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        if next == IPPROTO_FRAGMENT {
            let f: [u8; 8] = read(ctx, off).ok_or(Unparsed::Malformed)?;
            pkt.fragment = true;
            if u16::from_be_bytes([f[2], f[3]]) >> 3 != 0 {
                pkt.l4 = L4::LaterFragment;
                return Ok((pkt, 0));
            }
            next = f[0];
            off += 8;
        } else if next == IPPROTO_HOPOPTS || next == IPPROTO_ROUTING || next == IPPROTO_DSTOPTS {
            let e: [u8; 2] = read(ctx, off).ok_or(Unparsed::Malformed)?;
            next = e[0];
            off += (usize::from(e[1]) + 1) * 8;
        } else {
            break;
        }
    }
    pkt.l4 = match next {
        IPPROTO_TCP => L4::Tcp,
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_FRAGMENT => {
            return Err(Unparsed::Malformed);
        }
        _ => L4::Other,
    };
    Ok((pkt, off))
}

/// Fill in flags and port from the TCP header at `off`, or mark it bad when truncated
/// (options included) or its data offset is below 5.
#[inline(always)]
fn tcp(ctx: &XdpContext, off: usize, pkt: &mut Packet) {
    let Some(h) = read::<[u8; TCP_MIN_HLEN]>(ctx, off) else {
        pkt.l4 = L4::BadTcp;
        return;
    };
    let doff = usize::from(h[12] >> 4);
    if doff < 5 || ctx.data() + (off & OFFSET_MASK) + doff * 4 > ctx.data_end() {
        pkt.l4 = L4::BadTcp;
        return;
    }
    pkt.flags = h[13];
    pkt.dport = u16::from_be_bytes([h[2], h[3]]);
}

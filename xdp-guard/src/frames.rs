//! Building Ethernet frames by hand, for BPF_PROG_TEST_RUN tests, the differential test and
//! the benchmark. Checksums are correct, so frames are also valid on a real link.

use std::net::{Ipv4Addr, Ipv6Addr};

use xdp_guard_common::net::{
    ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, IPPROTO_DSTOPTS, IPPROTO_FRAGMENT,
    IPPROTO_HOPOPTS, IPPROTO_NONE, IPPROTO_ROUTING, IPPROTO_TCP, TCP_SYN,
};

pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const ETH_P_ARP: u16 = 0x0806;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
        option_words: u8,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    Icmp,
    /// No transport header (e.g. IPv6 "no next header", or a later fragment's payload).
    Raw(Vec<u8>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ext {
    /// Hop-by-hop options of `(len + 1) * 8` bytes.
    HopByHop(u8),
    Routing(u8),
    DestOpts(u8),
    Fragment {
        offset: u16,
        more: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L3 {
    V4 {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        option_words: u8,
        more_fragments: bool,
        frag_offset: u16,
        l4: L4,
    },
    V6 {
        src: Ipv6Addr,
        dst: Ipv6Addr,
        ext: Vec<Ext>,
        l4: L4,
    },
    Other {
        ethertype: u16,
        payload: Vec<u8>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// VLAN TPIDs, outermost first (802.1ad 0x88a8 or 802.1Q 0x8100).
    pub vlans: Vec<u16>,
    pub l3: L3,
}

pub const SERVER_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

impl Frame {
    pub fn tcp4(src: Ipv4Addr, dport: u16, flags: u8) -> Self {
        Self {
            vlans: vec![],
            l3: L3::V4 {
                src,
                dst: SERVER_V4,
                option_words: 0,
                more_fragments: false,
                frag_offset: 0,
                l4: L4::Tcp {
                    sport: 40000,
                    dport,
                    flags,
                    option_words: 0,
                },
            },
        }
    }
    pub fn syn4(src: Ipv4Addr, dport: u16) -> Self {
        Self::tcp4(src, dport, TCP_SYN)
    }
    pub fn tcp6(src: Ipv6Addr, dport: u16, flags: u8) -> Self {
        Self {
            vlans: vec![],
            l3: L3::V6 {
                src,
                dst: SERVER_V6,
                ext: vec![],
                l4: L4::Tcp {
                    sport: 40000,
                    dport,
                    flags,
                    option_words: 0,
                },
            },
        }
    }
    pub fn udp4(src: Ipv4Addr, dport: u16) -> Self {
        let mut f = Self::syn4(src, dport);
        f.set_l4(L4::Udp { sport: 5353, dport });
        f
    }
    pub fn icmp4(src: Ipv4Addr) -> Self {
        let mut f = Self::syn4(src, 0);
        f.set_l4(L4::Icmp);
        f
    }
    pub fn arp() -> Self {
        Self {
            vlans: vec![],
            l3: L3::Other {
                ethertype: ETH_P_ARP,
                payload: vec![0; 28],
            },
        }
    }
    pub fn with_vlan(mut self, tpid: u16) -> Self {
        self.vlans.push(tpid);
        self
    }
    pub fn with_qinq(self) -> Self {
        self.with_vlan(ETH_P_8021AD).with_vlan(ETH_P_8021Q)
    }
    pub fn set_l4(&mut self, new: L4) {
        match &mut self.l3 {
            L3::V4 { l4, .. } | L3::V6 { l4, .. } => *l4 = new,
            L3::Other { .. } => {}
        }
    }
    pub fn with_ipv4_options(mut self, words: u8) -> Self {
        if let L3::V4 { option_words, .. } = &mut self.l3 {
            *option_words = words;
        }
        self
    }
    pub fn with_ipv4_fragment(mut self, offset: u16, more: bool) -> Self {
        if let L3::V4 {
            frag_offset,
            more_fragments,
            ..
        } = &mut self.l3
        {
            *frag_offset = offset;
            *more_fragments = more;
        }
        self
    }
    pub fn with_ext(mut self, e: Ext) -> Self {
        if let L3::V6 { ext, .. } = &mut self.l3 {
            ext.push(e);
        }
        self
    }
    pub fn with_source_v4(mut self, a: Ipv4Addr) -> Self {
        if let L3::V4 { src, .. } = &mut self.l3 {
            *src = a;
        }
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]); // dst MAC
        out.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02]); // src MAC
        let ethertype = match &self.l3 {
            L3::V4 { .. } => ETH_P_IP,
            L3::V6 { .. } => ETH_P_IPV6,
            L3::Other { ethertype, .. } => *ethertype,
        };
        for tpid in &self.vlans {
            out.extend_from_slice(&tpid.to_be_bytes());
            out.extend_from_slice(&[0x00, 0x0a]); // VID 10
        }
        out.extend_from_slice(&ethertype.to_be_bytes());
        match &self.l3 {
            L3::V4 {
                src,
                dst,
                option_words,
                more_fragments,
                frag_offset,
                l4,
            } => {
                let (proto, payload) = l4_bytes(l4, &src.octets(), &dst.octets());
                let hlen = 20 + usize::from(*option_words) * 4;
                let total = hlen + payload.len();
                let mut h = vec![0u8; hlen];
                h[0] = 0x40 | (hlen / 4) as u8;
                h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
                let frag = (u16::from(*more_fragments) << 13) | (frag_offset & 0x1fff);
                h[6..8].copy_from_slice(&frag.to_be_bytes());
                h[8] = 64;
                h[9] = proto;
                h[12..16].copy_from_slice(&src.octets());
                h[16..20].copy_from_slice(&dst.octets());
                for b in h.iter_mut().skip(20) {
                    *b = 1; // NOP options
                }
                let c = checksum(&[&h]);
                h[10..12].copy_from_slice(&c.to_be_bytes());
                out.extend_from_slice(&h);
                out.extend_from_slice(&payload);
            }
            L3::V6 { src, dst, ext, l4 } => {
                let (proto, payload) = l4_bytes(l4, &src.octets(), &dst.octets());
                let mut chain = Vec::new();
                let kinds: Vec<u8> = ext
                    .iter()
                    .map(|e| match e {
                        Ext::HopByHop(_) => IPPROTO_HOPOPTS,
                        Ext::Routing(_) => IPPROTO_ROUTING,
                        Ext::DestOpts(_) => IPPROTO_DSTOPTS,
                        Ext::Fragment { .. } => IPPROTO_FRAGMENT,
                    })
                    .collect();
                for (i, e) in ext.iter().enumerate() {
                    let next = kinds.get(i + 1).copied().unwrap_or(proto);
                    match e {
                        Ext::HopByHop(len) | Ext::Routing(len) | Ext::DestOpts(len) => {
                            let mut b = vec![0u8; (usize::from(*len) + 1) * 8];
                            b[0] = next;
                            b[1] = *len;
                            if let Ext::Routing(_) = e {
                                b[2] = 4; // segment routing type, 0 segments left
                            } else {
                                b[2] = 1; // PadN
                                b[3] = (b.len() - 4) as u8;
                            }
                            chain.extend_from_slice(&b);
                        }
                        Ext::Fragment { offset, more } => {
                            let fo = (offset << 3) | u16::from(*more);
                            chain.extend_from_slice(&[next, 0]);
                            chain.extend_from_slice(&fo.to_be_bytes());
                            chain.extend_from_slice(&[0, 0, 0, 1]);
                        }
                    }
                }
                let first = kinds.first().copied().unwrap_or(proto);
                let mut h = vec![0u8; 40];
                h[0] = 0x60;
                h[4..6].copy_from_slice(&((chain.len() + payload.len()) as u16).to_be_bytes());
                h[6] = first;
                h[7] = 64;
                h[8..24].copy_from_slice(&src.octets());
                h[24..40].copy_from_slice(&dst.octets());
                out.extend_from_slice(&h);
                out.extend_from_slice(&chain);
                out.extend_from_slice(&payload);
            }
            L3::Other { payload, .. } => out.extend_from_slice(payload),
        }
        out
    }
}

fn l4_bytes(l4: &L4, src: &[u8], dst: &[u8]) -> (u8, Vec<u8>) {
    let v6 = src.len() == 16;
    match l4 {
        L4::Tcp {
            sport,
            dport,
            flags,
            option_words,
        } => {
            let hlen = 20 + usize::from(*option_words) * 4;
            let mut t = vec![0u8; hlen];
            t[0..2].copy_from_slice(&sport.to_be_bytes());
            t[2..4].copy_from_slice(&dport.to_be_bytes());
            t[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
            t[12] = ((hlen / 4) as u8) << 4;
            t[13] = *flags;
            t[14..16].copy_from_slice(&64240u16.to_be_bytes());
            for b in t.iter_mut().skip(20) {
                *b = 1;
            }
            let c = l4_checksum(src, dst, IPPROTO_TCP, &t);
            t[16..18].copy_from_slice(&c.to_be_bytes());
            (IPPROTO_TCP, t)
        }
        L4::Udp { sport, dport } => {
            let mut u = vec![0u8; 16];
            u[0..2].copy_from_slice(&sport.to_be_bytes());
            u[2..4].copy_from_slice(&dport.to_be_bytes());
            u[4..6].copy_from_slice(&16u16.to_be_bytes());
            let c = l4_checksum(src, dst, IPPROTO_UDP, &u);
            u[6..8].copy_from_slice(&c.to_be_bytes());
            (IPPROTO_UDP, u)
        }
        L4::Icmp => {
            let mut i = vec![8u8, 0, 0, 0, 0, 1, 0, 1];
            let proto = if v6 { IPPROTO_ICMPV6 } else { IPPROTO_ICMP };
            if v6 {
                i[0] = 128;
                let c = l4_checksum(src, dst, proto, &i);
                i[2..4].copy_from_slice(&c.to_be_bytes());
            } else {
                let c = checksum(&[&i]);
                i[2..4].copy_from_slice(&c.to_be_bytes());
            }
            (proto, i)
        }
        L4::Raw(b) => (IPPROTO_NONE, b.clone()),
    }
}

fn l4_checksum(src: &[u8], dst: &[u8], proto: u8, seg: &[u8]) -> u16 {
    let len = (seg.len() as u32).to_be_bytes();
    let pseudo_tail = [0, 0, 0, proto];
    if src.len() == 4 {
        let p = [0, proto, len[2], len[3]];
        checksum(&[src, dst, &p, seg])
    } else {
        checksum(&[src, dst, &len, &pseudo_tail, seg])
    }
}

/// RFC 1071 Internet checksum over the concatenation of `parts` (each part even-length
/// except possibly the last).
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for part in parts {
        let mut chunks = part.chunks_exact(2);
        for c in &mut chunks {
            sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            sum += u32::from(*last) << 8;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syn4_layout() {
        let b = Frame::syn4(Ipv4Addr::new(192, 0, 2, 1), 80).bytes();
        assert_eq!(b.len(), 14 + 20 + 20);
        assert_eq!(&b[12..14], &[0x08, 0x00]);
        assert_eq!(b[14], 0x45);
        assert_eq!(&b[26..30], &[192, 0, 2, 1]);
        assert_eq!(b[47], TCP_SYN);
        assert_eq!(checksum(&[&b[14..34]]), 0, "IPv4 header checksum verifies");
    }

    #[test]
    fn vlan_tags_in_order() {
        let b = Frame::syn4(Ipv4Addr::new(192, 0, 2, 1), 80)
            .with_qinq()
            .bytes();
        assert_eq!(&b[12..14], &ETH_P_8021AD.to_be_bytes());
        assert_eq!(&b[16..18], &ETH_P_8021Q.to_be_bytes());
        assert_eq!(&b[20..22], &ETH_P_IP.to_be_bytes());
        assert_eq!(b.len(), 14 + 8 + 40);
    }

    #[test]
    fn v6_chain() {
        let b = Frame::tcp6(Ipv6Addr::LOCALHOST, 443, TCP_SYN)
            .with_ext(Ext::HopByHop(0))
            .with_ext(Ext::Fragment {
                offset: 0,
                more: true,
            })
            .bytes();
        assert_eq!(b[14 + 6], IPPROTO_HOPOPTS);
        assert_eq!(b[54], IPPROTO_FRAGMENT);
        assert_eq!(b[62], IPPROTO_TCP);
        assert_eq!(b.len(), 14 + 40 + 8 + 8 + 20);
    }
}

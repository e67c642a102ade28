//! Wire constants and address helpers shared by the parser, the reference classifier and
//! user space.

pub const ETH_HLEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88A8;
pub const VLAN_HLEN: usize = 4;
/// Tags walked before giving up; a third tag is treated as "not IP" (see the verdict table).
pub const MAX_VLAN_TAGS: usize = 2;

pub const IPV4_MIN_HLEN: usize = 20;
pub const IPV6_HLEN: usize = 40;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_HOPOPTS: u8 = 0;
pub const IPPROTO_ROUTING: u8 = 43;
pub const IPPROTO_FRAGMENT: u8 = 44;
pub const IPPROTO_DSTOPTS: u8 = 60;
pub const IPPROTO_NONE: u8 = 59;
/// IPv6 extension headers walked before the packet is declared malformed.
pub const MAX_IPV6_EXT_HEADERS: usize = 6;

pub const TCP_MIN_HLEN: usize = 20;
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// IPv4 addresses are tracked and keyed as IPv4-mapped IPv6 (`::ffff:a.b.c.d`), so one
/// 16-byte key serves both families.
#[inline(always)]
pub const fn v4_mapped(a: [u8; 4]) -> [u8; 16] {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a[0], a[1], a[2], a[3],
    ]
}

/// Network-order IPv4 address with everything after `prefix_len` bits cleared.
#[inline(always)]
pub const fn mask_v4(addr: [u8; 4], prefix_len: u32) -> [u8; 4] {
    let v = u32::from_be_bytes(addr);
    let m = if prefix_len == 0 {
        0
    } else if prefix_len >= 32 {
        u32::MAX
    } else {
        u32::MAX << (32 - prefix_len)
    };
    (v & m).to_be_bytes()
}

/// IPv6 address with everything after `prefix_len` bits cleared. Two u64 halves with few
/// branches: the BPF backend has no 128-bit shifts, and a byte loop multiplies verifier states.
#[inline(always)]
pub fn mask_v6(addr: [u8; 16], prefix_len: u32) -> [u8; 16] {
    let hi = u64::from_be_bytes([
        addr[0], addr[1], addr[2], addr[3], addr[4], addr[5], addr[6], addr[7],
    ]);
    let lo = u64::from_be_bytes([
        addr[8], addr[9], addr[10], addr[11], addr[12], addr[13], addr[14], addr[15],
    ]);
    let (mh, ml) = if prefix_len >= 128 {
        (u64::MAX, u64::MAX)
    } else if prefix_len > 64 {
        (u64::MAX, u64::MAX << (128 - prefix_len))
    } else if prefix_len == 64 {
        (u64::MAX, 0)
    } else if prefix_len == 0 {
        (0, 0)
    } else {
        (u64::MAX << (64 - prefix_len), 0)
    };
    let h = (hi & mh).to_be_bytes();
    let l = (lo & ml).to_be_bytes();
    [
        h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], l[0], l[1], l[2], l[3], l[4], l[5], l[6],
        l[7],
    ]
}

/// Is this TCP flag byte a connection request the accounting counts (SYN set, ACK clear)?
#[inline(always)]
pub const fn is_syn(flags: u8) -> bool {
    flags & TCP_SYN != 0 && flags & TCP_ACK == 0
}

/// SYN together with FIN or RST: never a valid connection request. Linux discards these in
/// LISTEN state anyway, so the program drops them as malformed before an skb exists.
#[inline(always)]
pub const fn is_invalid_syn(flags: u8) -> bool {
    is_syn(flags) && flags & (TCP_FIN | TCP_RST) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(mask_v4([10, 1, 2, 3], 16), [10, 1, 0, 0]);
        assert_eq!(mask_v4([10, 1, 2, 3], 0), [0, 0, 0, 0]);
        assert_eq!(mask_v4([10, 1, 2, 3], 32), [10, 1, 2, 3]);
        assert_eq!(mask_v4([10, 1, 2, 255], 25), [10, 1, 2, 128]);
        let a = [
            0x20, 0x01, 0x0d, 0xb8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
        ];
        let m = mask_v6(a, 64);
        assert_eq!(&m[..8], &a[..8]);
        assert_eq!(&m[8..], &[0; 8]);
        assert_eq!(mask_v6(a, 128), a);
        assert_eq!(mask_v6(a, 0), [0; 16]);
        assert_eq!(mask_v6(a, 12)[..2], [0x20, 0x00]);
    }

    #[test]
    fn syn_flags() {
        assert!(is_syn(TCP_SYN));
        assert!(!is_syn(TCP_SYN | TCP_ACK));
        assert!(!is_syn(TCP_ACK));
        assert!(is_invalid_syn(TCP_SYN | TCP_FIN));
        assert!(is_invalid_syn(TCP_SYN | TCP_RST));
        assert!(!is_invalid_syn(TCP_SYN | TCP_ACK | TCP_FIN));
    }
}

//! User-space mirror of the kernel blocklist and the summaries derived from it: the IPv4
//! per-/16 slots and the list of IPv6 prefix lengths in use. Pure logic (no syscalls), so the
//! derivation is unit-tested on the host; [`super::Datapath`] writes what it returns.

use std::collections::{BTreeMap, HashMap};

use ipnet::{Ipv4Net, Ipv6Net};
use xdp_guard_common::maps::{MAX_V6_BLOCK_LENS, PrefixLens, V4_SLOT_SPLIT, V4Slot};

#[derive(Debug, Default)]
pub struct V4Index {
    entries: BTreeMap<Ipv4Net, u64>,
    /// Per /16: how many blocks of each length 17..=32 lie in it.
    long_counts: HashMap<u16, [u32; 16]>,
}

fn slot_of(addr: u32) -> u16 {
    (addr >> 16) as u16
}

/// The /16 slots a prefix touches.
pub fn v4_slots(net: &Ipv4Net) -> std::ops::RangeInclusive<u32> {
    let first = u32::from(net.network()) >> 16;
    if u32::from(net.prefix_len()) > V4_SLOT_SPLIT {
        first..=first
    } else {
        first..=first + (1u32 << (V4_SLOT_SPLIT - u32::from(net.prefix_len()))) - 1
    }
}

impl V4Index {
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub fn get(&self, net: &Ipv4Net) -> Option<u64> {
        self.entries.get(net).copied()
    }
    pub fn iter(&self) -> impl Iterator<Item = (&Ipv4Net, &u64)> {
        self.entries.iter()
    }

    /// Record a block (new, or a new expiry for an existing one).
    pub fn insert(&mut self, net: Ipv4Net, expires_at_ns: u64) {
        let net = net.trunc();
        let is_new = self.entries.insert(net, expires_at_ns).is_none();
        let len = u32::from(net.prefix_len());
        if is_new && len > V4_SLOT_SPLIT {
            let counts = self
                .long_counts
                .entry(slot_of(u32::from(net.network())))
                .or_default();
            counts[(len - V4_SLOT_SPLIT - 1) as usize] += 1;
        }
    }

    pub fn remove(&mut self, net: &Ipv4Net) -> Option<u64> {
        let net = net.trunc();
        let expiry = self.entries.remove(&net)?;
        let len = u32::from(net.prefix_len());
        if len > V4_SLOT_SPLIT {
            let slot = slot_of(u32::from(net.network()));
            if let Some(counts) = self.long_counts.get_mut(&slot) {
                counts[(len - V4_SLOT_SPLIT - 1) as usize] -= 1;
                if counts.iter().all(|c| *c == 0) {
                    self.long_counts.remove(&slot);
                }
            }
        }
        Some(expiry)
    }

    /// The kernel summary of one /16.
    pub fn slot(&self, slot: u32) -> V4Slot {
        let base = slot << 16;
        let mut short = 0u64;
        for len in 0..=V4_SLOT_SPLIT as u8 {
            if let Ok(net) = Ipv4Net::new(base.into(), len)
                && let Some(expiry) = self.entries.get(&net.trunc())
            {
                short = short.max(*expiry);
            }
        }
        let mut long_lens = 0u32;
        if let Some(counts) = self.long_counts.get(&(slot as u16)) {
            for (i, c) in counts.iter().enumerate() {
                if *c > 0 {
                    long_lens |= 1 << i;
                }
            }
        }
        V4Slot {
            short_expires_at_ns: short,
            long_lens,
            _pad: 0,
        }
    }
}

#[derive(Debug, Default)]
pub struct V6Index {
    entries: BTreeMap<Ipv6Net, u64>,
    len_counts: BTreeMap<u8, u32>,
}

impl V6Index {
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub fn get(&self, net: &Ipv6Net) -> Option<u64> {
        self.entries.get(net).copied()
    }
    pub fn iter(&self) -> impl Iterator<Item = (&Ipv6Net, &u64)> {
        self.entries.iter()
    }

    /// Would inserting this prefix need a length the program cannot probe?
    pub fn would_exceed_lengths(&self, net: &Ipv6Net) -> bool {
        !self.len_counts.contains_key(&net.prefix_len())
            && self.len_counts.len() >= MAX_V6_BLOCK_LENS
    }

    pub fn insert(&mut self, net: Ipv6Net, expires_at_ns: u64) {
        let net = net.trunc();
        if self.entries.insert(net, expires_at_ns).is_none() {
            *self.len_counts.entry(net.prefix_len()).or_default() += 1;
        }
    }

    pub fn remove(&mut self, net: &Ipv6Net) -> Option<u64> {
        let net = net.trunc();
        let expiry = self.entries.remove(&net)?;
        if let Some(c) = self.len_counts.get_mut(&net.prefix_len()) {
            *c -= 1;
            if *c == 0 {
                self.len_counts.remove(&net.prefix_len());
            }
        }
        Some(expiry)
    }

    /// The lengths in use, longest first, as the program probes them.
    pub fn lens(&self) -> PrefixLens {
        let mut out = PrefixLens::default();
        for (i, len) in self
            .len_counts
            .keys()
            .rev()
            .take(MAX_V6_BLOCK_LENS)
            .enumerate()
        {
            out.lens[i] = *len;
            out.count = i as u32 + 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> Ipv4Net {
        s.parse().expect("test prefix")
    }

    #[test]
    fn short_prefixes_cover_every_slot_with_the_latest_expiry() {
        let mut idx = V4Index::default();
        idx.insert(v4("10.0.0.0/8"), 100);
        idx.insert(v4("10.1.0.0/16"), 500);
        assert_eq!(v4_slots(&v4("10.0.0.0/8")).count(), 256);
        let s = idx.slot(u32::from_be_bytes([0, 0, 10, 1]));
        assert_eq!(s.short_expires_at_ns, 500);
        assert_eq!(
            idx.slot(u32::from_be_bytes([0, 0, 10, 2]))
                .short_expires_at_ns,
            100
        );
        assert_eq!(
            idx.slot(u32::from_be_bytes([0, 0, 11, 0]))
                .short_expires_at_ns,
            0
        );
        idx.remove(&v4("10.1.0.0/16"));
        assert_eq!(
            idx.slot(u32::from_be_bytes([0, 0, 10, 1]))
                .short_expires_at_ns,
            100
        );
    }

    #[test]
    fn long_prefixes_set_length_bits_until_the_last_one_goes() {
        let mut idx = V4Index::default();
        idx.insert(v4("192.0.2.7/32"), 1);
        idx.insert(v4("192.0.2.9/32"), 1);
        idx.insert(v4("192.0.128.0/17"), 1);
        let slot = u32::from_be_bytes([0, 0, 192, 0]);
        assert_eq!(idx.slot(slot).long_lens, 1 << 15 | 1);
        idx.remove(&v4("192.0.2.7/32"));
        assert_eq!(idx.slot(slot).long_lens, 1 << 15 | 1);
        idx.remove(&v4("192.0.2.9/32"));
        assert_eq!(idx.slot(slot).long_lens, 1);
        idx.remove(&v4("192.0.128.0/17"));
        assert_eq!(idx.slot(slot), V4Slot::default());
    }

    #[test]
    fn reinserting_updates_expiry_without_double_counting() {
        let mut idx = V4Index::default();
        idx.insert(v4("192.0.2.7/32"), 1);
        idx.insert(v4("192.0.2.7/32"), 2);
        assert_eq!(idx.get(&v4("192.0.2.7/32")), Some(2));
        idx.remove(&v4("192.0.2.7/32"));
        assert_eq!(idx.slot(u32::from_be_bytes([0, 0, 192, 0])).long_lens, 0);
    }

    #[test]
    fn v6_lengths_longest_first_and_bounded() {
        let mut idx = V6Index::default();
        idx.insert("2001:db8::/32".parse().expect("p"), 1);
        idx.insert("2001:db8:1::/64".parse().expect("p"), 1);
        idx.insert("2001:db8:1::1/128".parse().expect("p"), 1);
        let l = idx.lens();
        assert_eq!(l.count, 3);
        assert_eq!(&l.lens[..3], &[128, 64, 32]);
        let mut full = V6Index::default();
        for len in 33..33 + MAX_V6_BLOCK_LENS as u8 {
            full.insert(
                Ipv6Net::new("2001:db8::".parse().expect("a"), len).expect("n"),
                1,
            );
        }
        assert!(full.would_exceed_lengths(&"2001:db8::/100".parse().expect("p")));
        assert!(!full.would_exceed_lengths(&"2001:db8::/33".parse().expect("p")));
    }
}

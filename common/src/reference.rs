//! Host-side reference classifier: the program's decision table written plainly over a byte
//! slice, with the blocklist as a flat list (no slot summary, no per-length probing). The
//! BPF_PROG_TEST_RUN tests and the differential test hold the kernel program to it. It shares
//! only the pure rate math ([`crate::rate`]) with the program; parsing and list matching are
//! written independently here on purpose.

use std::{collections::HashMap, vec, vec::Vec};

use crate::{
    config::{FLAG_ALLOW_V4, FLAG_ALLOW_V6, GuardConfig},
    maps::{CpuState, SKETCH_ROWS, SKETCH_WIDTH, SketchCell, SourceKey, SynCounter},
    net::*,
    rate::{self, EventDue},
    stats::*,
};

/// An IPv4 or IPv6 prefix. IPv4 addresses use the first four bytes of `addr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Prefix {
    pub v6: bool,
    pub addr: [u8; 16],
    pub len: u32,
}

impl Prefix {
    pub fn v4(a: [u8; 4], len: u32) -> Self {
        let mut addr = [0; 16];
        addr[..4].copy_from_slice(&a);
        Self {
            v6: false,
            addr,
            len,
        }
    }
    pub fn v6(addr: [u8; 16], len: u32) -> Self {
        Self {
            v6: true,
            addr,
            len,
        }
    }
    /// Does the prefix contain this source (IPv4 as the bare 4 bytes)?
    pub fn contains(&self, v6: bool, src: &[u8]) -> bool {
        if self.v6 != v6 {
            return false;
        }
        let bits = self.len as usize;
        for (i, b) in src.iter().enumerate() {
            let have = bits.saturating_sub(i * 8).min(8);
            if have == 0 {
                break;
            }
            let mask = 0xffu8 << (8 - have);
            if (b & mask) != (self.addr[i] & mask) {
                return false;
            }
        }
        true
    }
}

/// What the kernel maps hold, as plain lists.
#[derive(Clone, Debug, Default)]
pub struct Tables {
    pub config: GuardConfig,
    /// Protected ports (ignored when the config says all ports).
    pub ports: Vec<u16>,
    pub allow: Vec<Prefix>,
    /// Blocks with their expiry (monotonic ns).
    pub blocks: Vec<(Prefix, u64)>,
}

/// The per-CPU accounting state of one CPU (the tests pin themselves to one).
#[derive(Clone, Debug)]
pub struct RateState {
    pub sources: HashMap<SourceKey, SynCounter>,
    pub sketch: Vec<SketchCell>,
    pub cpu: CpuState,
}

impl Default for RateState {
    fn default() -> Self {
        Self {
            sources: HashMap::new(),
            sketch: vec![SketchCell::default(); (SKETCH_ROWS * SKETCH_WIDTH) as usize],
            cpu: CpuState::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Pass,
    Drop,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    /// The stat counters this frame bumps.
    pub counters: [u64; COUNT],
}

impl Decision {
    /// The one outcome counter that was bumped.
    pub fn outcome(&self) -> usize {
        OUTCOMES
            .into_iter()
            .find(|i| self.counters[*i] == 1)
            .unwrap_or(usize::MAX)
    }
}

pub fn classify(frame: &[u8], t: &Tables, st: &mut RateState, now: u64) -> Decision {
    let mut counters = [0u64; COUNT];
    counters[PACKETS] = 1;
    let (action, outcome) = decide(frame, t, st, now, &mut counters);
    counters[outcome] += 1;
    Decision { action, counters }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

struct L3 {
    v6: bool,
    /// 4 or 16 bytes.
    src: Vec<u8>,
    fragment: bool,
    later_fragment: bool,
    /// Offset of the TCP header when the next header is TCP.
    tcp_at: Option<usize>,
}

enum Parsed {
    NotIp,
    Malformed,
    Ip(L3),
}

fn parse(f: &[u8]) -> Parsed {
    let Some(mut proto) = be16(f, 12) else {
        return Parsed::Malformed;
    };
    let mut off = ETH_HLEN;
    let mut tags = 0;
    while (proto == ETH_P_8021Q || proto == ETH_P_8021AD) && tags < MAX_VLAN_TAGS {
        if f.len() < off + VLAN_HLEN {
            return Parsed::Malformed;
        }
        proto = be16(f, off + 2).unwrap_or_default();
        off += VLAN_HLEN;
        tags += 1;
    }
    match proto {
        ETH_P_IP => parse_v4(f, off),
        ETH_P_IPV6 => parse_v6(f, off),
        _ => Parsed::NotIp,
    }
}

fn parse_v4(f: &[u8], off: usize) -> Parsed {
    if f.len() < off + IPV4_MIN_HLEN {
        return Parsed::Malformed;
    }
    let h = &f[off..];
    let ihl = usize::from(h[0] & 0x0f);
    if h[0] >> 4 != 4 || ihl < 5 || f.len() < off + ihl * 4 {
        return Parsed::Malformed;
    }
    let frag = u16::from_be_bytes([h[6], h[7]]);
    let later = frag & 0x1fff != 0;
    Parsed::Ip(L3 {
        v6: false,
        src: h[12..16].to_vec(),
        fragment: later || frag & 0x2000 != 0,
        later_fragment: later,
        tcp_at: (!later && h[9] == IPPROTO_TCP).then_some(off + ihl * 4),
    })
}

fn parse_v6(f: &[u8], off: usize) -> Parsed {
    if f.len() < off + IPV6_HLEN {
        return Parsed::Malformed;
    }
    if f[off] >> 4 != 6 {
        return Parsed::Malformed;
    }
    let mut l3 = L3 {
        v6: true,
        src: f[off + 8..off + 24].to_vec(),
        fragment: false,
        later_fragment: false,
        tcp_at: None,
    };
    let mut next = f[off + 6];
    let mut at = off + IPV6_HLEN;
    let mut walked = 0;
    loop {
        let is_ext = matches!(
            next,
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_FRAGMENT
        );
        if !is_ext {
            break;
        }
        if walked == MAX_IPV6_EXT_HEADERS {
            return Parsed::Malformed;
        }
        walked += 1;
        if next == IPPROTO_FRAGMENT {
            if f.len() < at + 8 {
                return Parsed::Malformed;
            }
            l3.fragment = true;
            if u16::from_be_bytes([f[at + 2], f[at + 3]]) >> 3 != 0 {
                l3.later_fragment = true;
                return Parsed::Ip(l3);
            }
            next = f[at];
            at += 8;
        } else {
            if f.len() < at + 2 {
                return Parsed::Malformed;
            }
            next = f[at];
            at += (usize::from(f[at + 1]) + 1) * 8;
        }
    }
    l3.tcp_at = (next == IPPROTO_TCP).then_some(at);
    Parsed::Ip(l3)
}

fn decide(
    f: &[u8],
    t: &Tables,
    st: &mut RateState,
    now: u64,
    c: &mut [u64; COUNT],
) -> (Action, usize) {
    let l3 = match parse(f) {
        Parsed::NotIp => return (Action::Pass, NON_IP),
        Parsed::Malformed => return (Action::Drop, DROP_MALFORMED),
        Parsed::Ip(l3) => l3,
    };
    if l3.v6 {
        c[IPV6] += 1;
    }
    if l3.fragment {
        c[FRAGMENTS] += 1;
    }
    let cfg = &t.config;
    let allow_on = if l3.v6 {
        cfg.flags & FLAG_ALLOW_V6 != 0
    } else {
        cfg.flags & FLAG_ALLOW_V4 != 0
    };
    if allow_on && t.allow.iter().any(|p| p.contains(l3.v6, &l3.src)) {
        return (Action::Pass, ALLOWLISTED);
    }
    if t.blocks
        .iter()
        .any(|(p, exp)| *exp > now && p.contains(l3.v6, &l3.src))
    {
        return (Action::Drop, DROP_BLOCKLIST);
    }
    if l3.later_fragment {
        return (Action::Pass, PASSED);
    }
    let Some(tcp) = l3.tcp_at else {
        c[NON_TCP] += 1;
        return (Action::Pass, PASSED);
    };
    if f.len() < tcp + TCP_MIN_HLEN {
        return (Action::Drop, DROP_MALFORMED);
    }
    let doff = usize::from(f[tcp + 12] >> 4);
    if doff < 5 || f.len() < tcp + doff * 4 {
        return (Action::Drop, DROP_MALFORMED);
    }
    let flags = f[tcp + 13];
    let dport = u16::from_be_bytes([f[tcp + 2], f[tcp + 3]]);
    if is_invalid_syn(flags) {
        return (Action::Drop, DROP_MALFORMED);
    }
    if !is_syn(flags) || !(cfg.all_ports() || t.ports.contains(&dport)) {
        return (Action::Pass, PASSED);
    }
    c[SYNS] += 1;
    if cfg.syn_interval_ns == 0 {
        return (Action::Pass, PASSED);
    }
    let key = if l3.v6 {
        let mut a = [0u8; 16];
        a.copy_from_slice(&l3.src);
        SourceKey {
            addr: mask_v6(a, cfg.ipv6_prefix_len),
        }
    } else {
        SourceKey {
            addr: v4_mapped([l3.src[0], l3.src[1], l3.src[2], l3.src[3]]),
        }
    };
    if cfg.spoof_guard(now)
        && !st.sources.contains_key(&key)
        && !rate::spoof_admit(&mut st.cpu, now, cfg)
    {
        return if cfg.enforce() {
            (Action::Drop, DROP_UNVERIFIED)
        } else {
            (Action::Pass, WOULD_DROP)
        };
    }
    let over = account(&key, cfg, st, now, c);
    if !over {
        (Action::Pass, PASSED)
    } else if cfg.enforce() {
        (Action::Drop, DROP_RATE)
    } else {
        (Action::Pass, WOULD_DROP)
    }
}

fn account(
    key: &SourceKey,
    cfg: &GuardConfig,
    st: &mut RateState,
    now: u64,
    c: &mut [u64; COUNT],
) -> bool {
    if let Some(counter) = st.sources.get_mut(key) {
        let over = rate::account(counter, now, cfg);
        if over {
            event(counter, &mut st.cpu, now, cfg, c);
        }
        return over;
    }
    let epoch = rate::sketch_epoch(now, cfg.sketch_window_shift);
    let [a, b] = rate::sketch_slots(rate::source_hash(key, cfg.hash_seed));
    let ca = rate::sketch_bump(&mut st.sketch[a as usize], epoch);
    let cb = rate::sketch_bump(&mut st.sketch[b as usize], epoch);
    let estimate = ca.min(cb);
    if estimate < cfg.sketch_admit {
        return false;
    }
    if !rate::guard_admit(&mut st.cpu, now, cfg) {
        c[FLOOD_GUARD] += 1;
        return false;
    }
    let mut counter = rate::admitted(now, estimate, cfg);
    let over = rate::account(&mut counter, now, cfg);
    if over {
        event(&mut counter, &mut st.cpu, now, cfg, c);
    }
    st.sources.insert(*key, counter);
    c[LRU_ADMITTED] += 1;
    over
}

fn event(
    counter: &mut SynCounter,
    cpu: &mut CpuState,
    now: u64,
    cfg: &GuardConfig,
    c: &mut [u64; COUNT],
) {
    match rate::event_due(counter, cpu, now, cfg) {
        EventDue::No => {}
        EventDue::Send => c[EVENTS_SENT] += 1,
        EventDue::Suppressed => c[EVENTS_SUPPRESSED] += 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RateParams;

    fn syn4(src: [u8; 4], flags: u8) -> Vec<u8> {
        let mut f = vec![0u8; 54];
        f[12..14].copy_from_slice(&ETH_P_IP.to_be_bytes());
        f[14] = 0x45;
        f[23] = IPPROTO_TCP;
        f[26..30].copy_from_slice(&src);
        f[36..38].copy_from_slice(&80u16.to_be_bytes());
        f[46] = 0x50;
        f[47] = flags;
        f
    }

    fn tables() -> Tables {
        Tables {
            config: RateParams {
                syn_rate: 1,
                syn_burst: 2,
                enforce: true,
                ipv6_prefix_len: 64,
            }
            .to_config(3),
            ..Default::default()
        }
    }

    #[test]
    fn rate_limit_then_drop() {
        let t = tables();
        let mut st = RateState::default();
        let f = syn4([192, 0, 2, 1], TCP_SYN);
        let actions: Vec<_> = (0..4)
            .map(|_| classify(&f, &t, &mut st, 10).action)
            .collect();
        assert_eq!(
            actions,
            [Action::Pass, Action::Pass, Action::Drop, Action::Drop]
        );
    }

    #[test]
    fn allowlist_beats_blocklist_and_expiry_lapses() {
        let mut t = tables();
        t.blocks.push((Prefix::v4([192, 0, 2, 0], 24), 100));
        let f = syn4([192, 0, 2, 1], TCP_ACK);
        let mut st = RateState::default();
        assert_eq!(classify(&f, &t, &mut st, 50).outcome(), DROP_BLOCKLIST);
        assert_eq!(classify(&f, &t, &mut st, 150).outcome(), PASSED);
        t.allow.push(Prefix::v4([192, 0, 2, 1], 32));
        t.config.flags |= FLAG_ALLOW_V4;
        assert_eq!(classify(&f, &t, &mut st, 50).outcome(), ALLOWLISTED);
    }

    #[test]
    fn malformed_shapes() {
        let t = tables();
        let mut st = RateState::default();
        let mut f = syn4([192, 0, 2, 1], TCP_SYN | TCP_FIN);
        assert_eq!(classify(&f, &t, &mut st, 1).outcome(), DROP_MALFORMED);
        f[47] = TCP_SYN;
        f[14] = 0x44; // IHL 4
        assert_eq!(classify(&f, &t, &mut st, 1).outcome(), DROP_MALFORMED);
        assert_eq!(classify(&f[..20], &t, &mut st, 1).outcome(), DROP_MALFORMED);
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(classify(&arp, &t, &mut st, 1).outcome(), NON_IP);
    }

    #[test]
    fn prefix_contains() {
        let p = Prefix::v4([10, 1, 0, 0], 16);
        assert!(p.contains(false, &[10, 1, 200, 3]));
        assert!(!p.contains(false, &[10, 2, 0, 0]));
        assert!(!p.contains(true, &[10, 1, 0, 0]));
        let q = Prefix::v4([10, 1, 2, 128], 25);
        assert!(q.contains(false, &[10, 1, 2, 200]));
        assert!(!q.contains(false, &[10, 1, 2, 127]));
    }
}

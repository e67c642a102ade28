//! BPF_PROG_TEST_RUN tests: hand-built frames through the loaded program, asserting verdict
//! and counter deltas. `Harness::run` also runs every frame through the reference classifier
//! and fails on any disagreement in verdict or counters, so each case checks both.

mod support;

use std::net::{Ipv4Addr, Ipv6Addr};

use xdp_guard::{
    clock,
    frames::{Ext, Frame, L4},
};
use xdp_guard_common::{
    config::{FLAG_ENFORCE, RateParams},
    net::{ETH_P_8021AD, ETH_P_8021Q, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
    stats::*,
};

use support::*;

const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

fn params() -> RateParams {
    RateParams {
        syn_rate: 1,
        syn_burst: 3,
        enforce: true,
        ipv6_prefix_len: 64,
    }
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().expect("test address")
}

/// One fixture row: a frame, the verdict, the outcome counter and the attribute counters
/// that must be bumped (all others must stay put).
struct Case {
    name: &'static str,
    frame: Frame,
    action: u32,
    outcome: usize,
    attrs: &'static [usize],
}

fn check(h: &mut Harness, c: &Case) {
    let (action, delta) = h.run(&c.frame.bytes());
    assert_eq!(action, c.action, "{}: verdict", c.name);
    let mut want = [0u64; COUNT];
    want[PACKETS] = 1;
    want[c.outcome] += 1;
    for a in c.attrs {
        want[*a] += 1;
    }
    assert_eq!(delta, want, "{}: counters", c.name);
}

fn shapes() -> Vec<Case> {
    let syn = || Frame::syn4(CLIENT, 80);
    let tcp6 = |flags| Frame::tcp6(v6("2001:db8:1:2::10"), 80, flags);
    let mut later_frag = syn().with_ipv4_fragment(185, false);
    later_frag.set_l4(L4::Raw(vec![0xab; 32]));
    let mut later_frag6 = tcp6(TCP_SYN).with_ext(Ext::Fragment {
        offset: 185,
        more: false,
    });
    later_frag6.set_l4(L4::Raw(vec![0xab; 32]));
    let mut ihl4 = syn();
    ihl4.vlans.clear();
    let mut deep6 = tcp6(TCP_SYN);
    for _ in 0..7 {
        deep6 = deep6.with_ext(Ext::DestOpts(0));
    }
    vec![
        Case {
            name: "SYN under the limit",
            frame: syn(),
            action: XDP_PASS,
            outcome: PASSED,
            attrs: &[SYNS, LRU_ADMITTED],
        },
        Case {
            name: "SYN+ACK",
            frame: Frame::tcp4(CLIENT, 80, TCP_SYN | TCP_ACK),
            action: XDP_PASS,
            outcome: PASSED,
            attrs: &[],
        },
        Case {
            name: "ACK",
            frame: Frame::tcp4(CLIENT, 80, TCP_ACK),
            action: XDP_PASS,
            outcome: PASSED,
            attrs: &[],
        },
        Case {
            name: "RST",
            frame: Frame::tcp4(CLIENT, 80, TCP_RST),
            action: XDP_PASS,
            outcome: PASSED,
            attrs: &[],
        },
        Case {
            name: "SYN+FIN",
            frame: Frame::tcp4(CLIENT, 80, TCP_SYN | TCP_FIN),
            action: XDP_DROP,
            outcome: DROP_MALFORMED,
            attrs: &[],
        },
        Case {
            name: "SYN+RST",
            frame: Frame::tcp4(CLIENT, 80, TCP_SYN | TCP_RST),
            action: XDP_DROP,
            outcome: DROP_MALFORMED,
            attrs: &[],
        },
        Case {
            name: "UDP",
            frame: Frame::udp4(CLIENT, 53),
            action: XDP_PASS,
            outcome: PASSED,
            attrs: &[NON_TCP],
        },
        Case {
            name: "ICMP",
            frame: Frame::icmp4(CLIENT),
            action: XDP_PASS,
            outcome: PASSED,
            attrs: &[NON_TCP],
        },
        Case {
            name: "ARP",
            frame: Frame::arp(),
            action: XDP_PASS,
            outcome: NON_IP,
            attrs: &[],
        },
        Case {
            name: "IPv6 SYN",
            frame: tcp6(TCP_SYN),
            action: XDP_PASS,
            outcome: PASSED,
            attrs: &[IPV6, SYNS, LRU_ADMITTED],
        },
        Case {
            name: "IPv6 ACK",
            frame: tcp6(TCP_ACK),
            action: XDP_PASS,
            outcome: PASSED,
            attrs: &[IPV6],
        },
        Case {
            name: "IPv6 hop-by-hop",
            frame: Frame::tcp6(v6("2001:db8:a::1"), 80, TCP_SYN).with_ext(Ext::HopByHop(0)),
            action: XDP_PASS,
            outcome: PASSED,
            attrs: &[IPV6, SYNS, LRU_ADMITTED],
        },
        Case {
            name: "IPv6 routing",
            frame: Frame::tcp6(v6("2001:db8:b::1"), 80, TCP_SYN).with_ext(Ext::Routing(2)),
            action: XDP_PASS,
            outcome: PASSED,
            attrs: &[IPV6, SYNS, LRU_ADMITTED],
        },
        Case {
            name: "IPv6 destination options",
            frame: Frame::tcp6(v6("2001:db8:c::1"), 80, TCP_SYN).with_ext(Ext::DestOpts(1)),
            action: XDP_PASS,
            outcome: PASSED,
            attrs: &[IPV6, SYNS, LRU_ADMITTED],
        },
        Case {
            name: "IPv6 first fragment",
            frame: Frame::tcp6(v6("2001:db8:d::1"), 80, TCP_SYN).with_ext(Ext::Fragment {
                offset: 0,
                more: true,
            }),
            action: XDP_PASS,
            outcome: PASSED,
            attrs: &[IPV6, FRAGMENTS, SYNS, LRU_ADMITTED],
        },
        Case {
            name: "IPv6 all four extension headers",
            frame: Frame::tcp6(v6("2001:db8:e::1"), 80, TCP_SYN)
                .with_ext(Ext::HopByHop(0))
                .with_ext(Ext::DestOpts(0))
                .with_ext(Ext::Routing(0))
                .with_ext(Ext::Fragment {
                    offset: 0,
                    more: true,
                }),
            action: XDP_PASS,
            outcome: PASSED,
            attrs: &[IPV6, FRAGMENTS, SYNS, LRU_ADMITTED],
        },
        Case {
            name: "IPv6 later fragment",
            frame: later_frag6,
            action: XDP_PASS,
            outcome: PASSED,
            attrs: &[IPV6, FRAGMENTS],
        },
        Case {
            name: "IPv6 chain over the walk bound",
            frame: deep6,
            action: XDP_DROP,
            outcome: DROP_MALFORMED,
            attrs: &[],
        },
        Case {
            name: "one VLAN tag",
            frame: Frame::syn4(Ipv4Addr::new(192, 0, 2, 11), 80).with_vlan(ETH_P_8021Q),
            action: XDP_PASS,
            outcome: PASSED,
            attrs: &[SYNS, LRU_ADMITTED],
        },
        Case {
            name: "two VLAN tags (QinQ)",
            frame: Frame::syn4(Ipv4Addr::new(192, 0, 2, 12), 80).with_qinq(),
            action: XDP_PASS,
            outcome: PASSED,
            attrs: &[SYNS, LRU_ADMITTED],
        },
        Case {
            name: "three VLAN tags",
            frame: Frame::syn4(CLIENT, 80).with_qinq().with_vlan(ETH_P_8021Q),
            action: XDP_PASS,
            outcome: NON_IP,
            attrs: &[],
        },
        Case {
            name: "IPv6 under QinQ",
            frame: Frame::tcp6(v6("2001:db8:f::1"), 80, TCP_SYN)
                .with_vlan(ETH_P_8021AD)
                .with_vlan(ETH_P_8021Q),
            action: XDP_PASS,
            outcome: PASSED,
            attrs: &[IPV6, SYNS, LRU_ADMITTED],
        },
        Case {
            name: "IPv4 options (IHL 15)",
            frame: Frame::syn4(Ipv4Addr::new(192, 0, 2, 13), 80).with_ipv4_options(10),
            action: XDP_PASS,
            outcome: PASSED,
            attrs: &[SYNS, LRU_ADMITTED],
        },
        Case {
            name: "IPv4 first fragment",
            frame: Frame::syn4(Ipv4Addr::new(192, 0, 2, 14), 80).with_ipv4_fragment(0, true),
            action: XDP_PASS,
            outcome: PASSED,
            attrs: &[FRAGMENTS, SYNS, LRU_ADMITTED],
        },
        Case {
            name: "IPv4 later fragment",
            frame: later_frag,
            action: XDP_PASS,
            outcome: PASSED,
            attrs: &[FRAGMENTS],
        },
    ]
}

#[test]
fn packet_shapes() {
    if !require_root() {
        return;
    }
    let mut h = Harness::new(params());
    for case in shapes() {
        check(&mut h, &case);
    }
}

#[test]
fn ipv4_header_length_below_five_is_malformed() {
    if !require_root() {
        return;
    }
    let mut h = Harness::new(params());
    let mut b = Frame::syn4(CLIENT, 80).bytes();
    b[14] = 0x44;
    let (action, delta) = h.run(&b);
    assert_eq!(action, XDP_DROP);
    assert_eq!(delta[DROP_MALFORMED], 1);
    let mut b = Frame::syn4(CLIENT, 80).bytes();
    b[46] = 0x40; // TCP data offset 4
    let (action, delta) = h.run(&b);
    assert_eq!((action, delta[DROP_MALFORMED]), (XDP_DROP, 1));
}

#[test]
fn truncation_at_every_length() {
    if !require_root() {
        return;
    }
    let mut h = Harness::new(params());
    h.block("203.0.113.0/24", 60_000_000_000);
    let frames = [
        Frame::syn4(CLIENT, 80).with_qinq().with_ipv4_options(3),
        Frame::syn4(Ipv4Addr::new(203, 0, 113, 5), 80),
        Frame::tcp6(v6("2001:db8::5"), 80, TCP_SYN)
            .with_vlan(ETH_P_8021Q)
            .with_ext(Ext::HopByHop(1))
            .with_ext(Ext::Fragment {
                offset: 0,
                more: true,
            }),
        Frame::udp4(CLIENT, 53),
    ];
    for f in frames {
        let full = f.bytes();
        for len in 14..=full.len() {
            let (action, delta) = h.run(&full[..len]);
            assert!(
                action == XDP_PASS || action == XDP_DROP,
                "len {len}: action {action}"
            );
            if len < full.len() && len < 14 + 8 + 20 {
                // Cut inside L2/L3: never passed as a parsed SYN.
                assert_eq!(delta[SYNS], 0, "len {len}");
            }
        }
    }
}

#[test]
fn syn_over_the_limit_is_dropped_and_reported() {
    if !require_root() {
        return;
    }
    let mut h = Harness::new(params());
    let mut events = h.dp.take_events().expect("event ring");
    let f = Frame::syn4(CLIENT, 80).bytes();
    for i in 0..3 {
        let (action, _) = h.run(&f);
        assert_eq!(action, XDP_PASS, "SYN {i} is within the burst of 3");
    }
    let (action, delta) = h.run(&f);
    assert_eq!(action, XDP_DROP);
    assert_eq!(delta[DROP_RATE], 1);
    assert_eq!(
        delta[EVENTS_SENT], 1,
        "first time over the limit is reported"
    );
    let (_, delta) = h.run(&f);
    assert_eq!(
        delta[EVENTS_SENT], 0,
        "reported once per interval, not per packet"
    );
    let item = events.next().expect("one event on the ring");
    let ev: xdp_guard_common::maps::OverLimitEvent =
        unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
    assert_eq!(&ev.source.addr[12..], &CLIENT.octets());
    assert_eq!(ev.dropped, 1);
    drop(item);
    assert!(events.next().is_none());
    let key = xdp_guard::bpf::source_key(CLIENT.into(), 64);
    let totals = h.dp.source(&key).expect("lookup").expect("tracked");
    assert_eq!(totals.syns, 5);
    assert_eq!(totals.over_limit, 2);
    // Non-SYN traffic from the same source is untouched by the rate limit.
    let (action, _) = h.run(&Frame::tcp4(CLIENT, 80, TCP_ACK).bytes());
    assert_eq!(action, XDP_PASS);
}

#[test]
fn monitor_mode_counts_instead_of_dropping() {
    if !require_root() {
        return;
    }
    let mut h = Harness::new(RateParams {
        enforce: false,
        ..params()
    });
    let f = Frame::syn4(CLIENT, 80).bytes();
    for _ in 0..3 {
        h.run(&f);
    }
    let (action, delta) = h.run(&f);
    assert_eq!(action, XDP_PASS);
    assert_eq!(delta[WOULD_DROP], 1);
    assert_eq!(delta[DROP_RATE], 0);
}

#[test]
fn blocklist_drops_every_packet_from_a_prefix() {
    if !require_root() {
        return;
    }
    let mut h = Harness::new(params());
    h.block("198.51.100.7/32", 60_000_000_000);
    h.block("10.20.0.0/16", 60_000_000_000);
    h.block("172.16.0.0/12", 60_000_000_000);
    h.block("192.0.2.128/25", 60_000_000_000);
    for (src, blocked) in [
        ("198.51.100.7", true),
        ("198.51.100.8", false),
        ("10.20.255.1", true),
        ("10.21.0.1", false),
        ("172.31.9.9", true),
        ("172.32.0.1", false),
        ("192.0.2.200", true),
        ("192.0.2.100", false),
    ] {
        let a: Ipv4Addr = src.parse().expect("addr");
        for frame in [
            Frame::tcp4(a, 80, TCP_ACK),
            Frame::udp4(a, 53),
            Frame::syn4(a, 80),
        ] {
            let (action, delta) = h.run(&frame.bytes());
            if blocked {
                assert_eq!(
                    (action, delta[DROP_BLOCKLIST]),
                    (XDP_DROP, 1),
                    "{src} is blocked"
                );
            } else {
                assert_eq!(action, XDP_PASS, "{src} is not blocked");
            }
        }
    }
    h.unblock("10.20.0.0/16");
    let (action, _) = h.run(&Frame::udp4("10.20.255.1".parse().expect("a"), 53).bytes());
    assert_eq!(action, XDP_PASS, "unblocked");
}

#[test]
fn allowlisted_address_inside_a_blocked_range_passes() {
    if !require_root() {
        return;
    }
    let mut h = Harness::new(params());
    h.block("198.18.0.0/16", 60_000_000_000);
    h.allow("198.18.5.5/32");
    let f = Frame::syn4("198.18.5.5".parse().expect("a"), 80);
    for _ in 0..10 {
        let (action, delta) = h.run(&f.bytes());
        assert_eq!((action, delta[ALLOWLISTED]), (XDP_PASS, 1));
        assert_eq!(delta[SYNS], 0, "allowlisted sources are not even accounted");
    }
    let (action, _) = h.run(&Frame::syn4("198.18.5.6".parse().expect("a"), 80).bytes());
    assert_eq!(action, XDP_DROP);
}

#[test]
fn expired_blocks_lapse_in_the_kernel() {
    if !require_root() {
        return;
    }
    let mut h = Harness::new(params());
    h.block("198.51.100.9/32", -1_000_000_000);
    h.block("10.30.0.0/16", -1_000_000_000);
    h.block("2001:db8:dead::/48", -1_000_000_000);
    for frame in [
        Frame::udp4("198.51.100.9".parse().expect("a"), 53),
        Frame::udp4("10.30.1.1".parse().expect("a"), 53),
        Frame::tcp6(v6("2001:db8:dead::1"), 80, TCP_ACK),
    ] {
        let (action, delta) = h.run(&frame.bytes());
        assert_eq!((action, delta[DROP_BLOCKLIST]), (XDP_PASS, 0));
    }
}

#[test]
fn ipv6_blocks_by_prefix_length() {
    if !require_root() {
        return;
    }
    let mut h = Harness::new(params());
    h.block("2001:db8:1:2::/64", 60_000_000_000);
    h.block("2001:db8:9::1/128", 60_000_000_000);
    h.block("2001:db8:77::/48", 60_000_000_000);
    for (src, blocked) in [
        ("2001:db8:1:2::99", true),
        ("2001:db8:1:3::99", false),
        ("2001:db8:9::1", true),
        ("2001:db8:9::2", false),
        ("2001:db8:77:ffff::1", true),
    ] {
        let (action, _) = h.run(&Frame::tcp6(v6(src), 80, TCP_ACK).bytes());
        assert_eq!(action == XDP_DROP, blocked, "{src}");
    }
}

#[test]
fn protected_port_filter() {
    if !require_root() {
        return;
    }
    let mut h = Harness::new(params());
    h.set_ports(&[80, 443]);
    for _ in 0..10 {
        let (action, delta) = h.run(&Frame::syn4(CLIENT, 22).bytes());
        assert_eq!(
            (action, delta[SYNS]),
            (XDP_PASS, 0),
            "port 22 is not protected"
        );
    }
    let (_, delta) = h.run(&Frame::syn4(CLIENT, 443).bytes());
    assert_eq!(delta[SYNS], 1);
    h.set_ports(&[]);
    let (_, delta) = h.run(&Frame::syn4(CLIENT, 22).bytes());
    assert_eq!(delta[SYNS], 1, "empty list protects every port");
}

#[test]
fn ipv6_sources_aggregate_per_prefix() {
    if !require_root() {
        return;
    }
    let mut h = Harness::new(params());
    let a = Frame::tcp6(v6("2001:db8:5:6::1"), 80, TCP_SYN).bytes();
    let b = Frame::tcp6(v6("2001:db8:5:6:ffff::2"), 80, TCP_SYN).bytes();
    let other = Frame::tcp6(v6("2001:db8:5:7::1"), 80, TCP_SYN).bytes();
    assert_eq!(h.run(&a).0, XDP_PASS);
    assert_eq!(h.run(&b).0, XDP_PASS);
    assert_eq!(h.run(&a).0, XDP_PASS);
    assert_eq!(
        h.run(&b).0,
        XDP_DROP,
        "4th SYN from the same /64 is over the burst of 3"
    );
    assert_eq!(h.run(&other).0, XDP_PASS, "another /64 has its own bucket");
    // Aggregation per /48 instead: the neighbour now shares the bucket.
    let mut cfg = *h.dp.config();
    cfg.ipv6_prefix_len = 48;
    h.set_config(cfg);
    let c = Frame::tcp6(v6("2001:db8:5:8::1"), 80, TCP_SYN).bytes();
    for _ in 0..3 {
        assert_eq!(h.run(&c).0, XDP_PASS);
    }
    assert_eq!(h.run(&c).0, XDP_DROP);
}

#[test]
fn sketch_keeps_one_off_sources_out_of_the_lru() {
    if !require_root() {
        return;
    }
    // Burst 40: admission at the 10th SYN seen by the sketch.
    let mut h = Harness::new(RateParams {
        syn_rate: 1,
        syn_burst: 40,
        ..params()
    });
    for i in 0..200u32 {
        let src = Ipv4Addr::from(0x0a63_0000 + i);
        let (_, delta) = h.run(&Frame::syn4(src, 80).bytes());
        assert_eq!(delta[LRU_ADMITTED], 0, "one SYN does not earn an LRU entry");
    }
    assert_eq!(h.dp.sources().expect("sources").len(), 0);
    let heavy = Frame::syn4(CLIENT, 80).bytes();
    let admitted: u64 = (0..10).map(|_| h.run(&heavy).1[LRU_ADMITTED]).sum();
    assert_eq!(admitted, 1);
    // Charged for what the sketch saw: 40 SYNs in all conform, the 41st does not.
    for _ in 10..40 {
        assert_eq!(h.run(&heavy).0, XDP_PASS);
    }
    assert_eq!(h.run(&heavy).0, XDP_DROP);
}

#[test]
fn flood_guard_caps_lru_admissions() {
    if !require_root() {
        return;
    }
    let mut h = Harness::new(params());
    let mut cfg = *h.dp.config();
    cfg.guard_max_new = 5;
    cfg.guard_window_ns = 3_600_000_000_000;
    h.set_config(cfg);
    let mut guarded = 0;
    for i in 0..20u32 {
        let (action, delta) = h.run(&Frame::syn4(Ipv4Addr::from(0x0a64_0000 + i), 80).bytes());
        assert_eq!(action, XDP_PASS);
        guarded += delta[FLOOD_GUARD];
    }
    assert_eq!(guarded, 15);
    assert_eq!(h.dp.sources().expect("sources").len(), 5);
}

#[test]
fn spoof_guard_budgets_untracked_sources_and_lapses_by_itself() {
    if !require_root() {
        return;
    }
    let mut h = Harness::new(params());
    let mut cfg = *h.dp.config();
    cfg.guard_window_ns = 3_600_000_000_000;
    cfg.spoof_budget = 3;
    cfg.spoof_until_ns = u64::MAX;
    h.set_config(cfg);
    let client = Ipv4Addr::new(192, 0, 2, 50);
    h.track(client.into());
    let mut outcomes = Vec::new();
    for i in 0..5u32 {
        let (action, delta) = h.run(&Frame::syn4(Ipv4Addr::from(0x0a66_0000 + i), 80).bytes());
        outcomes.push((action, delta[PASSED], delta[DROP_UNVERIFIED]));
    }
    assert_eq!(
        outcomes,
        [
            (XDP_PASS, 1, 0),
            (XDP_PASS, 1, 0),
            (XDP_PASS, 1, 0),
            (XDP_DROP, 0, 1),
            (XDP_DROP, 0, 1)
        ],
        "three untracked sources within the budget, then drops"
    );
    // The tracked client passes however spent the budget is (within its own burst of 3, less
    // one: its bucket starts at user space's clock, a hair ahead of the program's coarse
    // one); so does a non-SYN.
    for _ in 0..2 {
        let (action, delta) = h.run(&Frame::syn4(client, 80).bytes());
        assert_eq!((action, delta[PASSED]), (XDP_PASS, 1));
    }
    let (action, delta) = h.run(&Frame::tcp4(Ipv4Addr::new(10, 102, 9, 9), 80, TCP_ACK).bytes());
    assert_eq!((action, delta[PASSED]), (XDP_PASS, 1));
    // Monitor mode counts instead of dropping.
    let mut monitor = *h.dp.config();
    monitor.flags &= !FLAG_ENFORCE;
    h.set_config(monitor);
    let (action, delta) = h.run(&Frame::syn4(Ipv4Addr::new(10, 102, 9, 10), 80).bytes());
    assert_eq!((action, delta[WOULD_DROP]), (XDP_PASS, 1));
    // The guard lapses at spoof_until_ns without anyone turning it off.
    let mut lapsed = *h.dp.config();
    lapsed.flags |= FLAG_ENFORCE;
    // A second ago: the program's coarse clock may lag this one by a tick.
    lapsed.spoof_until_ns = clock::mono_ns() - 1_000_000_000;
    h.set_config(lapsed);
    let (action, delta) = h.run(&Frame::syn4(Ipv4Addr::new(10, 102, 9, 11), 80).bytes());
    assert_eq!(
        (action, delta[PASSED], delta[DROP_UNVERIFIED]),
        (XDP_PASS, 1, 0)
    );
}

#[test]
fn batched_and_key_by_key_reads_agree() {
    if !require_root() {
        return;
    }
    let mut h = Harness::new(RateParams {
        syn_rate: 1,
        syn_burst: 1,
        ..params()
    });
    let mut cfg = *h.dp.config();
    cfg.guard_max_new = 1 << 20;
    h.set_config(cfg);
    for i in 0..5000u32 {
        let f = Frame::syn4(Ipv4Addr::from(0x0a65_0000 + i), 80).bytes();
        h.run_kernel(&f);
        if i % 3 == 0 {
            h.run_kernel(&f);
        }
    }
    let mut a = h.dp.sources().expect("key by key");
    let mut b = h.dp.sources_batched().expect("batched");
    // The controller's reader: the same maps through duplicated fds.
    let maps =
        h.dp.counter_maps()
            .expect("second handle on the counter maps");
    let mut c = maps.sources().expect("batched, through the second handle");
    a.sort_by_key(|(k, _)| *k);
    b.sort_by_key(|(k, _)| *k);
    c.sort_by_key(|(k, _)| *k);
    assert_eq!(a.len(), 5000);
    assert_eq!(a, b);
    assert_eq!(a, c);
    assert_eq!(maps.stats().expect("stats"), h.dp.stats().expect("stats"));
    // The sketch may over-count an admitted source (count-min collisions), never under-count.
    for (k, t) in &b {
        let i = u32::from_be_bytes([k.addr[12], k.addr[13], k.addr[14], k.addr[15]]) - 0x0a65_0000;
        assert!(
            t.syns >= if i % 3 == 0 { 2 } else { 1 },
            "source {i}: {t:?}"
        );
    }
}

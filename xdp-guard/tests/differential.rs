//! Differential test: 100,000 random and mutated frames through the loaded program and the
//! reference classifier; verdicts and every counter must agree, and nothing may return
//! XDP_ABORTED. Time-dependent decisions are made time-independent for the run (GCRA
//! interval of days, windows longer than the uptime), so agreement must be exact.

mod support;

use std::net::{Ipv4Addr, Ipv6Addr};

use rand::{Rng, SeedableRng, rngs::StdRng, seq::IndexedRandom};
use xdp_guard::frames::{Ext, Frame, L4};
use xdp_guard_common::{
    config::RateParams,
    net::{ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
    stats::*,
};

use support::*;

const FRAMES: usize = 100_000;
const DAY_NS: u64 = 86_400_000_000_000;

fn v4_pool() -> Vec<Ipv4Addr> {
    let mut v: Vec<Ipv4Addr> = (1..=24).map(|i| Ipv4Addr::new(198, 51, 100, i)).collect();
    v.extend((1..=12).map(|i| Ipv4Addr::new(10, 20, i, 1)));
    v.extend((1..=12).map(|i| Ipv4Addr::new(172, 16 + i, 0, 1)));
    v.extend((1..=8).map(|i| Ipv4Addr::new(198, 18, 5, i)));
    v
}

fn v6_pool() -> Vec<Ipv6Addr> {
    (1..=16u16)
        .map(|i| Ipv6Addr::new(0x2001, 0xdb8, i % 4, i, 0, 0, 0, i))
        .collect()
}

fn random_frame(rng: &mut StdRng, v4: &[Ipv4Addr], v6: &[Ipv6Addr]) -> Vec<u8> {
    let flags = *[
        TCP_SYN,
        TCP_SYN,
        TCP_SYN,
        TCP_ACK,
        TCP_SYN | TCP_ACK,
        TCP_RST,
        TCP_SYN | TCP_FIN,
    ]
    .choose(rng)
    .unwrap_or(&TCP_SYN);
    let port = *[80u16, 443, 22, 8080].choose(rng).unwrap_or(&80);
    let mut f = if rng.random_bool(0.7) {
        let src = if rng.random_bool(0.9) {
            *v4.choose(rng).unwrap_or(&Ipv4Addr::LOCALHOST)
        } else {
            Ipv4Addr::from(rng.random::<u32>())
        };
        let mut f = Frame::tcp4(src, port, flags);
        if rng.random_bool(0.2) {
            f = f.with_ipv4_options(rng.random_range(1..=10));
        }
        if rng.random_bool(0.1) {
            f = f.with_ipv4_fragment(
                if rng.random_bool(0.5) {
                    0
                } else {
                    rng.random_range(1..100)
                },
                true,
            );
        }
        f
    } else {
        let src = if rng.random_bool(0.9) {
            *v6.choose(rng).unwrap_or(&Ipv6Addr::LOCALHOST)
        } else {
            Ipv6Addr::from(rng.random::<u128>())
        };
        let mut f = Frame::tcp6(src, port, flags);
        for _ in 0..rng.random_range(0..=7) {
            f = f.with_ext(match rng.random_range(0..4) {
                0 => Ext::HopByHop(rng.random_range(0..3)),
                1 => Ext::Routing(rng.random_range(0..3)),
                2 => Ext::DestOpts(rng.random_range(0..3)),
                _ => Ext::Fragment {
                    offset: if rng.random_bool(0.7) {
                        0
                    } else {
                        rng.random_range(1..50)
                    },
                    more: rng.random_bool(0.5),
                },
            });
        }
        f
    };
    match rng.random_range(0..10) {
        0 => f.set_l4(L4::Udp {
            sport: 1,
            dport: port,
        }),
        1 => f.set_l4(L4::Icmp),
        _ => {}
    }
    for _ in 0..rng.random_range(0..=2) {
        f = f.with_vlan(
            *[ETH_P_8021Q, ETH_P_8021AD]
                .choose(rng)
                .unwrap_or(&ETH_P_8021Q),
        );
    }
    let mut b = f.bytes();
    // Mutations: flipped bytes (biased toward the headers), a rewritten ethertype, truncation.
    for _ in 0..rng.random_range(0..=3) {
        let i = rng.random_range(12..b.len().min(90));
        b[i] = rng.random();
    }
    if rng.random_bool(0.05) {
        let t = *[ETH_P_IP, ETH_P_IPV6, ETH_P_8021Q, 0x0806, rng.random()]
            .choose(rng)
            .unwrap_or(&ETH_P_IP);
        b[12..14].copy_from_slice(&t.to_be_bytes());
    }
    if rng.random_bool(0.25) {
        b.truncate(rng.random_range(14..=b.len()));
    }
    if rng.random_bool(0.02) {
        let len = rng.random_range(14..128);
        b = (0..len).map(|_| rng.random()).collect();
    }
    b
}

#[test]
fn kernel_agrees_with_reference_on_random_frames() {
    if !require_root() {
        return;
    }
    let mut h = Harness::new(RateParams {
        syn_rate: 1,
        syn_burst: 3,
        enforce: true,
        ipv6_prefix_len: 64,
    });
    let mut cfg = *h.dp.config();
    cfg.syn_interval_ns = DAY_NS;
    cfg.syn_tolerance_ns = 2 * DAY_NS;
    cfg.sketch_admit = 2;
    cfg.sketch_window_shift = 63;
    cfg.guard_window_ns = u64::MAX / 2;
    cfg.guard_max_new = 40;
    cfg.event_interval_ns = u64::MAX / 2;
    cfg.event_budget = u32::MAX;
    h.set_config(cfg);
    h.set_ports(&[80, 443, 8080]);
    for (net, ttl) in [
        ("198.51.100.0/29", 60_000_000_000i64),
        ("198.51.100.12/32", 60_000_000_000),
        ("198.51.100.13/32", -1_000_000_000),
        ("10.20.0.0/16", 60_000_000_000),
        ("172.16.0.0/13", 60_000_000_000),
        ("172.24.0.0/14", -1_000_000_000),
        ("198.18.0.0/15", 60_000_000_000),
        ("2001:db8:1::/48", 60_000_000_000),
        ("2001:db8:2:5::/64", 60_000_000_000),
        ("2001:db8:3:b::b/128", 60_000_000_000),
    ] {
        h.block(net, ttl);
    }
    h.allow("198.18.5.0/30");
    h.allow("2001:db8:1:9::/64");
    let mut events = h.dp.take_events().expect("ring");

    let seed = std::env::var("XDP_GUARD_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_2026);
    eprintln!("differential seed {seed:#x} (set XDP_GUARD_DIFF_SEED to replay)");
    let mut rng = StdRng::seed_from_u64(seed);
    let (v4, v6) = (v4_pool(), v6_pool());
    let mut seen = [0u64; COUNT];
    for i in 0..FRAMES {
        if i == FRAMES / 2 {
            // The second half under a spoof guard: its budget runs out early, after which
            // every untracked source's SYN is dropped and tracked ones still pass.
            let mut guarded = *h.dp.config();
            guarded.spoof_budget = 500;
            guarded.spoof_until_ns = u64::MAX;
            h.set_config(guarded);
        }
        let frame = random_frame(&mut rng, &v4, &v6);
        let want = h.run_reference(&frame);
        let (action, delta) = h.run_kernel(&frame);
        assert!(
            action == XDP_PASS || action == XDP_DROP,
            "frame {i}: action {action} (XDP_ABORTED is 0)"
        );
        let want_action = match want.action {
            xdp_guard_common::reference::Action::Pass => XDP_PASS,
            xdp_guard_common::reference::Action::Drop => XDP_DROP,
        };
        assert_eq!(
            (action, delta),
            (want_action, want.counters),
            "frame {i} disagrees: {}",
            frame.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        for (s, d) in seen.iter_mut().zip(delta) {
            *s += d;
        }
        if i % 1000 == 0 {
            while events.next().is_some() {}
        }
    }
    // The mix must actually reach every branch, or agreement proves little.
    for (idx, name) in NAMES.iter().enumerate() {
        if idx == WOULD_DROP || idx == EVENTS_SUPPRESSED {
            continue; // enforce mode, unbounded budget
        }
        assert!(seen[idx] > 0, "no frame exercised {name}");
    }
    eprintln!(
        "{}",
        NAMES
            .iter()
            .zip(seen)
            .map(|(n, c)| format!("{n}={c}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
}

//! The program attached natively on a veth, a real SYN flood from a peer namespace (hping3),
//! drops observed in the counters, and everything gone afterwards.

mod support;

use std::{net::Ipv4Addr, time::Duration};

use aya::programs::XdpMode;
use xdp_guard::{
    bpf::{Datapath, LoadOptions, source_key},
    netns::{Netns, leftovers, veth_pair},
};
use xdp_guard_common::{config::RateParams, stats::*};

use support::{bed::flood, require_root};

#[test]
fn native_xdp_on_veth_drops_a_real_syn_flood() {
    if !require_root() {
        return;
    }
    let srv = Netns::new("srv").expect("namespace");
    let atk = Netns::new("atk").expect("namespace");
    let names = [srv.name().to_string(), atk.name().to_string()];
    veth_pair(&srv, "198.18.0.1/24", &atk, "198.18.0.2/24").expect("veth");

    let stats = std::thread::scope(|s| {
        s.spawn(|| {
            srv.enter_current_thread().expect("enter srv namespace");
            let mut dp = Datapath::load(&LoadOptions::default()).expect("load");
            let cfg = RateParams {
                syn_rate: 10,
                syn_burst: 20,
                enforce: true,
                ipv6_prefix_len: 64,
            }
            .to_config(1);
            dp.set_config(cfg).expect("config");
            dp.set_ports(&[80]).expect("ports");
            let link = dp
                .program()
                .expect("program")
                .attach("veth0", XdpMode::Driver)
                .expect("native attach on veth");
            let shown = srv
                .exec(&["ip", "link", "show", "dev", "veth0"])
                .expect("ip link");
            let shown = String::from_utf8_lossy(&shown.stdout).to_string();
            assert!(
                shown.contains("xdp") && !shown.contains("xdpgeneric"),
                "native mode: {shown}"
            );

            // 3,000 SYNs at ~10k/s, bounded by count and by time.
            let status = flood(&atk, "198.18.0.1", 3000)
                .wait()
                .expect("wait for hping3");
            assert!(
                status.success() || status.code() == Some(1),
                "hping3: {status}"
            );
            std::thread::sleep(Duration::from_millis(200));
            let stats = dp.stats().expect("stats");
            let attacker = dp
                .source(&source_key(Ipv4Addr::new(198, 18, 0, 2).into(), 64))
                .expect("lookup")
                .expect("the attacker is tracked");
            assert!(attacker.over_limit > 0);
            dp.program().expect("program").detach(link).expect("detach");
            let shown = srv
                .exec(&["ip", "link", "show", "dev", "veth0"])
                .expect("ip link");
            assert!(
                !String::from_utf8_lossy(&shown.stdout).contains("xdp"),
                "detached"
            );
            stats
        })
        .join()
        .expect("srv thread")
    });
    eprintln!(
        "{}",
        NAMES
            .iter()
            .zip(stats)
            .map(|(n, c)| format!("{n}={c}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    assert!(
        stats[SYNS] >= 2900,
        "the SYNs reached the program: {}",
        stats[SYNS]
    );
    assert!(
        stats[DROP_RATE] >= stats[SYNS] - 100,
        "all but the burst and refill were dropped"
    );
    drop(srv);
    drop(atk);
    let left = leftovers();
    for n in names {
        assert!(!left.contains(&n), "namespace {n} left behind");
    }
}

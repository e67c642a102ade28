//! Controller tests on an in-memory dataplane: validation, persistence and rollback,
//! aggregation into rates, auto-block with escalation, expiry on paused tokio time,
//! attack-state detection.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex, mpsc},
    time::Duration,
};

use ipnet::IpNet;
use xdp_guard_common::stats;

use super::*;
use crate::{
    controller::guard::{GuardError, Settings},
    model::{AttackState, Origin},
    store::Store,
};

struct Bed {
    guard: Guard,
    dp: Arc<Mutex<MemoryDataplane>>,
    dir: PathBuf,
}

impl Drop for Bed {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn bed_with(tag: &str, tweak: impl FnOnce(&mut Settings)) -> Bed {
    let dir = std::env::temp_dir().join(format!("xg-guard-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut settings = Settings::for_tests(&dir);
    tweak(&mut settings);
    on(dir, settings)
}

/// A guard on the state in `dir`, with a fresh dataplane.
fn on(dir: PathBuf, settings: Settings) -> Bed {
    let dp = Arc::new(Mutex::new(MemoryDataplane::new()));
    let guard = Guard::new(
        Box::new(dp.clone()),
        Store::new(dir.join("state.json")),
        settings,
        "native",
    )
    .expect("guard");
    Bed { guard, dp, dir }
}

/// A second guard on `b`'s state directory: a restart.
fn restart(b: &Bed) -> Bed {
    on(b.dir.clone(), Settings::for_tests(&b.dir))
}

fn bed(tag: &str) -> Bed {
    bed_with(tag, |_| {})
}

fn net(s: &str) -> IpNet {
    s.parse().expect("test prefix")
}

#[test]
fn bad_input_is_named_and_changes_nothing() {
    let b = bed_with("validate", |s| {
        s.protected.push((net("203.0.113.0/24"), "admin network"))
    });
    b.guard.allow("198.51.100.0/24", None).expect("allow");
    type Expect = fn(&GuardError) -> bool;
    let cases: Vec<(&str, Expect)> = vec![
        ("not-an-ip", |e| matches!(e, GuardError::InvalidCidr { .. })),
        ("10.1.2.3/33", |e| {
            matches!(e, GuardError::InvalidCidr { .. })
        }),
        (
            "10.1.2.3/8",
            |e| matches!(e, GuardError::HostBits { canonical, .. } if canonical.to_string() == "10.0.0.0/8"),
        ),
        ("10.0.0.0/7", |e| {
            matches!(e, GuardError::TooBroad { min: 8, .. })
        }),
        ("2001:db8::/31", |e| {
            matches!(e, GuardError::TooBroad { min: 32, .. })
        }),
        ("198.51.100.7", |e| {
            matches!(e, GuardError::OverlapsAllowlist { .. })
        }),
        ("198.51.0.0/16", |e| {
            matches!(e, GuardError::OverlapsAllowlist { .. })
        }),
        ("127.0.0.1", |e| {
            matches!(
                e,
                GuardError::Protected {
                    what: "loopback",
                    ..
                }
            )
        }),
        ("203.0.113.9/32", |e| {
            matches!(
                e,
                GuardError::Protected {
                    what: "admin network",
                    ..
                }
            )
        }),
    ];
    for (input, ok) in cases {
        let e = b.guard.block(input, None, None).expect_err(input);
        assert!(ok(&e), "{input}: {e}");
    }
    let msg = b
        .guard
        .block("10.1.2.3/8", None, None)
        .expect_err("host bits")
        .to_string();
    assert!(
        msg.contains("10.0.0.0/8"),
        "names the canonical form: {msg}"
    );
    assert!(b.dp.lock().expect("dp").blocks.is_empty());
    assert!(b.guard.blocklist().is_empty());
}

#[test]
fn block_unblock_persist_and_survive_a_restart() {
    let b = bed("persist");
    let r = b
        .guard
        .block(
            "192.0.2.7",
            Some(Duration::from_secs(600)),
            Some("test".into()),
        )
        .expect("block");
    assert_eq!(r.cidr, net("192.0.2.7/32"));
    assert_eq!(r.origin, Origin::Manual);
    b.guard
        .block("2001:db8:1::/48", None, None)
        .expect("permanent v6 block");
    assert_eq!(b.dp.lock().expect("dp").blocks.len(), 2);
    // A second guard on the same store (a restart) puts the same blocks in a fresh dataplane.
    let b2 = restart(&b);
    let (g2, dp2) = (&b2.guard, &b2.dp);
    assert_eq!(g2.blocklist().len(), 2);
    assert!(
        dp2.lock()
            .expect("dp")
            .blocks
            .contains_key(&net("192.0.2.7/32"))
    );
    assert_eq!(
        dp2.lock().expect("dp").blocks[&net("2001:db8:1::/48")],
        u64::MAX,
        "permanent stays permanent"
    );
    b.guard.unblock("192.0.2.7/32").expect("unblock");
    assert!(matches!(
        b.guard.unblock("192.0.2.7/32"),
        Err(GuardError::NotFound(_))
    ));
}

#[test]
fn a_failed_save_rolls_the_kernel_back() {
    let b = bed("rollback");
    b.guard.block("192.0.2.1", None, None).expect("block");
    // A restart: the snapshot now holds the block, and the journal is not open.
    let b = restart(&b);
    // Make the journal unwritable: a directory where it must be created.
    std::fs::remove_file(b.dir.join("state.journal")).expect("empty journal");
    std::fs::create_dir_all(b.dir.join("state.journal")).expect("obstacle");
    let e = b
        .guard
        .block("192.0.2.2", None, None)
        .expect_err("save fails");
    assert!(matches!(e, GuardError::Persist(_)), "{e}");
    assert!(
        !b.dp
            .lock()
            .expect("dp")
            .blocks
            .contains_key(&net("192.0.2.2/32")),
        "kernel rolled back"
    );
    assert!(matches!(
        b.guard.unblock("192.0.2.1"),
        Err(GuardError::Persist(_))
    ));
    assert!(
        b.dp.lock()
            .expect("dp")
            .blocks
            .contains_key(&net("192.0.2.1/32")),
        "unblock rolled back"
    );
    assert_eq!(b.guard.blocklist().len(), 1);
}

#[test]
fn full_blocklist_is_a_clear_error() {
    let b = bed("full");
    b.dp.lock().expect("dp").capacity = 1;
    b.guard.block("192.0.2.1", None, None).expect("first");
    let e = b.guard.block("192.0.2.2", None, None).expect_err("full");
    assert!(matches!(e, GuardError::Full(1)), "{e}");
    assert!(e.to_string().contains("full"));
}

#[tokio::test(start_paused = true)]
async fn offender_blocked_after_two_ticks_with_escalating_ttl() {
    let b = bed("auto");
    let attacker: std::net::IpAddr = "192.0.2.66".parse().expect("addr");
    let polite: std::net::IpAddr = "192.0.2.10".parse().expect("addr");
    b.guard.tick();
    for round in 0..2 {
        tokio::time::advance(Duration::from_millis(250)).await;
        b.dp.lock().expect("dp").add_syns(attacker, 500); // 2,000 SYN/s
        b.dp.lock().expect("dp").add_syns(polite, 10); // 40 SYN/s, under 100
        let r = b.guard.tick();
        if round == 0 {
            assert!(r.blocked.is_empty(), "one tick over is not enough");
        } else {
            assert_eq!(r.blocked, vec![net("192.0.2.66/32")]);
        }
    }
    let top = b.guard.offenders(10);
    assert_eq!(top[0].source, net("192.0.2.66/32"));
    assert!(
        (top[0].syn_rate - 2000.0).abs() < 1.0,
        "{}",
        top[0].syn_rate
    );
    assert!(top[0].blocked);
    assert!(!top[1].blocked);
    let first = b.guard.blocklist()[0].clone();
    assert_eq!(first.origin, Origin::Auto);
    assert_eq!(
        first.expires_at_ms.expect("ttl") - first.created_at_ms,
        600_000
    );
    assert_eq!(b.guard.attack_state(), AttackState::PerSource);

    // Expiry on paused time: nothing at 599 s, gone at 601 s.
    tokio::time::advance(Duration::from_secs(599)).await;
    assert!(b.guard.tick().expired.is_empty());
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(b.guard.tick().expired, vec![net("192.0.2.66/32")]);
    assert!(b.dp.lock().expect("dp").blocks.is_empty());

    // Second offence: twice the TTL.
    for _ in 0..2 {
        tokio::time::advance(Duration::from_millis(250)).await;
        b.dp.lock().expect("dp").add_syns(attacker, 500);
        b.guard.tick();
    }
    let second = b.guard.blocklist()[0].clone();
    assert_eq!(second.offences, 1);
    assert_eq!(
        second.expires_at_ms.expect("ttl") - second.created_at_ms,
        1_200_000
    );
}

#[tokio::test(start_paused = true)]
async fn monitor_mode_never_blocks() {
    let b = bed_with("monitor", |s| s.enforce = false);
    let attacker: std::net::IpAddr = "192.0.2.66".parse().expect("addr");
    for _ in 0..5 {
        tokio::time::advance(Duration::from_millis(250)).await;
        b.dp.lock().expect("dp").add_syns(attacker, 5000);
        b.guard.tick();
    }
    assert!(b.guard.blocklist().is_empty());
}

#[tokio::test(start_paused = true)]
async fn spoofed_flood_detected_then_quiet_again() {
    let b = bed("spoofed");
    b.guard.tick();
    tokio::time::advance(Duration::from_millis(250)).await;
    {
        let mut dp = b.dp.lock().expect("dp");
        dp.counters[stats::SYNS] += 50_000; // 200k SYN/s, none attributable
        dp.counters[stats::FLOOD_GUARD] += 10_000;
    }
    let r = b.guard.tick();
    assert_eq!(r.attack_changed, Some(AttackState::Spoofed));
    assert_eq!(b.guard.stats().attack_state, AttackState::Spoofed);
    tokio::time::advance(Duration::from_secs(30)).await;
    b.guard.tick();
    assert_eq!(
        b.guard.attack_state(),
        AttackState::Spoofed,
        "within the quiet period"
    );
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(b.guard.tick().attack_changed, Some(AttackState::None));
}

#[test]
fn allowlist_from_config_and_runtime() {
    let b = bed_with("allow", |s| s.config_allowlist = vec![net("10.9.0.0/16")]);
    assert_eq!(b.guard.allowlist()[0].origin, Origin::Config);
    b.guard
        .allow("2001:db8::/64", Some("office".into()))
        .expect("allow v6");
    assert_eq!(b.dp.lock().expect("dp").allows.len(), 2);
    b.guard.disallow("2001:db8::/64").expect("disallow");
    assert!(matches!(
        b.guard.disallow("2001:db8::/64"),
        Err(GuardError::NotFound(_))
    ));
    let mut s = Settings::for_tests(&b.dir);
    s.config_allowlist = vec![net("10.10.0.0/16")];
    b.guard.reload(s, None, None).expect("reload");
    let allows: Vec<IpNet> = b.guard.allowlist().iter().map(|a| a.cidr).collect();
    assert_eq!(allows, vec![net("10.10.0.0/16")]);
}

/// Over the limit for `ticks` ticks of 250 ms at 2,000 SYN/s; returns what was auto-blocked.
async fn flood_ticks(b: &Bed, source: std::net::IpAddr, ticks: u32) -> Vec<IpNet> {
    let mut blocked = Vec::new();
    for _ in 0..ticks {
        tokio::time::advance(Duration::from_millis(250)).await;
        b.dp.lock().expect("dp").add_syns(source, 500);
        blocked.extend(b.guard.tick().blocked);
    }
    blocked
}

#[tokio::test(start_paused = true)]
async fn operator_unblock_gives_a_grace_period() {
    let b = bed("grace");
    let client: std::net::IpAddr = "192.0.2.77".parse().expect("addr");
    b.guard.tick();
    assert_eq!(
        flood_ticks(&b, client, 2).await,
        vec![net("192.0.2.77/32")],
        "auto-blocked first"
    );
    // The operator unblocks it: its retransmitted SYNs keep it over the limit
    // for a while, and it is not blocked again for the grace period (60 s in the tests).
    b.guard.unblock("192.0.2.77/32").expect("unblock");
    let during = flood_ticks(&b, client, 8).await;
    assert!(during.is_empty(), "re-blocked during the grace: {during:?}");
    tokio::time::advance(Duration::from_secs(57)).await;
    b.guard.tick();
    assert!(flood_ticks(&b, client, 2).await.is_empty(), "still inside");
    // Past 60 s the grace is gone and the source is an offender again.
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(
        flood_ticks(&b, client, 2).await,
        vec![net("192.0.2.77/32")],
        "blocked again after the grace"
    );
    // Another source in nobody's grace is blocked as usual meanwhile.
    let other: std::net::IpAddr = "192.0.2.78".parse().expect("addr");
    assert_eq!(flood_ticks(&b, other, 2).await, vec![net("192.0.2.78/32")]);
}

#[tokio::test(start_paused = true)]
async fn a_manual_block_ends_the_grace_and_zero_disables_it() {
    let b = bed("grace-reblock");
    let client: std::net::IpAddr = "192.0.2.80".parse().expect("addr");
    b.guard.block("192.0.2.0/24", None, None).expect("block");
    b.guard.unblock("192.0.2.0/24").expect("unblock");
    b.guard.tick();
    assert!(flood_ticks(&b, client, 3).await.is_empty(), "in the grace");
    // A manual block overlapping the unblocked prefix ends its grace: once that block has
    // expired, the client is an offender like any other.
    b.guard
        .block("192.0.2.80", Some(Duration::from_secs(1)), None)
        .expect("block the client");
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(b.guard.tick().expired, vec![net("192.0.2.80/32")]);
    assert_eq!(
        flood_ticks(&b, client, 2).await,
        vec![net("192.0.2.80/32")],
        "a manual block cancels the grace it overlaps"
    );

    let z = bed_with("grace-off", |s| s.unblock_grace = Duration::ZERO);
    z.guard.block("192.0.2.80", None, None).expect("block");
    z.guard.unblock("192.0.2.80").expect("unblock");
    z.guard.tick();
    assert_eq!(
        flood_ticks(&z, client, 2).await,
        vec![net("192.0.2.80/32")],
        "unblock_grace = 0s"
    );
}

#[tokio::test(start_paused = true)]
async fn spoof_guard_follows_a_spoofed_flood_and_lapses_after() {
    let b = bed_with("spoof-guard", |s| s.attack.spoofed_syn_budget = 2_000);
    b.dp.lock().expect("dp").config.guard_window_ns = 100_000_000;
    b.guard.tick();
    let flood = |b: &Bed| {
        let mut dp = b.dp.lock().expect("dp");
        dp.counters[stats::SYNS] += 50_000; // 200k SYN/s, none attributable
        dp.counters[stats::FLOOD_GUARD] += 10_000;
    };
    tokio::time::advance(Duration::from_millis(250)).await;
    flood(&b);
    assert_eq!(b.guard.tick().attack_changed, Some(AttackState::Spoofed));
    let on = b.dp.lock().expect("dp").config;
    let now = crate::clock::mono_ns();
    assert_eq!(on.spoof_budget, 200, "2,000/s as a 100 ms window's budget");
    assert!(b.guard.stats().spoof_guard, "reported by /v1/stats");
    assert!(
        on.spoof_until_ns > now && on.spoof_until_ns <= now + 5_000_000_000,
        "held a few seconds ahead: {} vs now {now}",
        on.spoof_until_ns
    );
    // Quiet ticks (still "spoofed" until the quiet period ends) do not push it further: the
    // program lets it lapse by itself.
    tokio::time::advance(Duration::from_millis(250)).await;
    b.guard.tick();
    assert_eq!(b.guard.attack_state(), AttackState::Spoofed);
    assert_eq!(
        b.dp.lock().expect("dp").config.spoof_until_ns,
        on.spoof_until_ns
    );
    // Handshaken clients are tracked once; tracked ones are not written again.
    let clients: Vec<std::net::IpAddr> = vec![
        "198.51.100.7".parse().expect("addr"),
        "2001:db8::1".parse().expect("addr"),
    ];
    b.guard.track_clients(&clients);
    b.guard.track_clients(&clients);
    assert_eq!(b.dp.lock().expect("dp").sources.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn no_spoof_guard_without_a_budget() {
    let b = bed("spoof-off");
    b.guard.tick();
    tokio::time::advance(Duration::from_millis(250)).await;
    {
        let mut dp = b.dp.lock().expect("dp");
        dp.counters[stats::SYNS] += 50_000;
        dp.counters[stats::DROP_UNVERIFIED] += 10_000;
    }
    assert_eq!(
        b.guard.tick().attack_changed,
        Some(AttackState::Spoofed),
        "unverified drops count as new sources"
    );
    assert_eq!(b.dp.lock().expect("dp").config.spoof_until_ns, 0);
    assert!(!b.guard.stats().spoof_guard);
}

/// The tick reads the per-source map (the slow part: ~30 ms at 65,536 sources, ~400 ms at
/// 1M) before it takes the guard's lock, so an API call during that read does not wait.
/// (The call here, `GET /v1/blocks`, does not touch the dataplane: this test's dataplane is
/// behind a mutex its reader holds, unlike the real one, whose reader has its own fds.)
#[test]
fn api_calls_do_not_wait_for_the_counter_read() {
    let b = Arc::new(bed("unlocked-read"));
    b.guard.block("192.0.2.0/24", None, None).expect("block");
    let (reading_tx, reading) = mpsc::sync_channel(0);
    let (resume, resume_rx) = mpsc::sync_channel(0);
    b.dp.lock().expect("dp").pause_reads = Some((reading_tx, resume_rx));
    let ticker = {
        let b = Arc::clone(&b);
        std::thread::spawn(move || b.guard.tick())
    };
    reading.recv().expect("the tick reads the counters");
    // The tick is now inside its read. A call that takes the guard's lock, from a third
    // thread so that a tick holding the lock shows up as a timeout, not a deadlock.
    let (done_tx, done) = mpsc::channel();
    let caller = {
        let b = Arc::clone(&b);
        std::thread::spawn(move || {
            let _ = done_tx.send(b.guard.blocklist().len());
        })
    };
    let during_read = done.recv_timeout(Duration::from_secs(10));
    resume.send(()).expect("resume the tick");
    let report = ticker.join().expect("tick thread");
    caller.join().expect("caller thread");
    assert_eq!(
        during_read,
        Ok(1),
        "listing the blocks during the tick's read waited for the tick"
    );
    assert!(report.locked <= report.duration);
}

/// `offenders(n)` picks the first `n` of the whole ranking (rate, then SYNs, then source)
/// without sorting every track.
#[tokio::test(start_paused = true)]
async fn offenders_are_the_top_of_the_full_ranking() {
    let b = bed("top");
    b.guard.tick();
    tokio::time::advance(Duration::from_millis(250)).await;
    for i in 0..200u32 {
        // 50 distinct rates, four sources each: the ties are broken by source.
        let addr = std::net::Ipv4Addr::from(0x0a00_0000 + 37 * i);
        b.dp.lock()
            .expect("dp")
            .add_syns(addr.into(), u64::from(i % 50));
    }
    b.guard.tick();
    let ranked = |list: Vec<Offender>| -> Vec<(IpNet, u64)> {
        list.into_iter().map(|o| (o.source, o.syns)).collect()
    };
    let all = ranked(b.guard.offenders(usize::MAX));
    assert_eq!(all.len(), 200);
    for w in all.windows(2) {
        assert!(
            w[0].1 > w[1].1 || (w[0].1 == w[1].1 && w[0].0 < w[1].0),
            "out of order: {w:?}"
        );
    }
    for limit in [0, 1, 3, 4, 5, 199, 200, 500] {
        assert_eq!(
            ranked(b.guard.offenders(limit)),
            all[..limit.min(200)],
            "limit {limit}"
        );
    }
}

/// Each change is one journal line, and the journal is folded into the snapshot as it grows:
/// 3,000 blocks and 1,000 unblocks survive a restart, and the journal never holds more lines
/// than the compaction threshold allows.
#[test]
fn many_changes_go_through_the_journal_and_survive_a_restart() {
    let b = bed("journal");
    let cidr = |i: u32| format!("10.{}.{}.0/24", i >> 8, i & 255);
    let journal = b.dir.join("state.journal");
    let mut longest = 0;
    for i in 0..3000 {
        b.guard.block(&cidr(i), None, None).expect("block");
        let lines = std::fs::read_to_string(&journal)
            .expect("journal")
            .lines()
            .count();
        longest = longest.max(lines);
    }
    for i in 0..1000 {
        b.guard.unblock(&cidr(i)).expect("unblock");
    }
    assert!(
        longest <= 3000 / 2 + 1,
        "journal grew to {longest} lines: no compaction"
    );
    let b2 = restart(&b);
    let (g2, dp2) = (&b2.guard, &b2.dp);
    let blocks: std::collections::BTreeSet<IpNet> =
        g2.blocklist().into_iter().map(|r| r.cidr).collect();
    let want: std::collections::BTreeSet<IpNet> = (1000..3000).map(|i| net(&cidr(i))).collect();
    assert_eq!(blocks, want);
    assert_eq!(dp2.lock().expect("dp").blocks.len(), 2000);
}

/// A source inside a blocked prefix is shown as blocked (with that block's expiry) and is not
/// blocked again on its own, whichever prefix length covers it.
#[tokio::test(start_paused = true)]
async fn a_source_inside_a_blocked_prefix_counts_as_blocked() {
    let b = bed("covering");
    b.guard
        .block("192.0.2.0/24", Some(Duration::from_secs(600)), None)
        .expect("block /24");
    b.guard
        .block("2001:db8::/32", None, None)
        .expect("block /32");
    let v4: std::net::IpAddr = "192.0.2.66".parse().expect("addr");
    let v6: std::net::IpAddr = "2001:db8:5::1".parse().expect("addr");
    let outside: std::net::IpAddr = "192.0.3.66".parse().expect("addr");
    // IPv6 sources are counted per /64, as the program does with the default config.
    b.dp.lock().expect("dp").config.ipv6_prefix_len = 64;
    b.guard.tick();
    for _ in 0..3 {
        tokio::time::advance(Duration::from_millis(250)).await;
        for a in [v4, v6, outside] {
            b.dp.lock().expect("dp").add_syns(a, 500);
        }
        b.guard.tick();
    }
    let blocked: Vec<IpNet> = b.guard.blocklist().into_iter().map(|r| r.cidr).collect();
    assert_eq!(
        blocked,
        vec![
            net("192.0.2.0/24"),
            net("192.0.3.66/32"),
            net("2001:db8::/32")
        ]
    );
    let top = b.guard.offenders(10);
    let shown = |s: &str| top.iter().find(|o| o.source == net(s)).expect(s).clone();
    assert!(shown("192.0.2.66/32").blocked);
    assert!(shown("192.0.2.66/32").blocked_until_ms.is_some());
    assert!(shown("2001:db8:5::/64").blocked);
    assert_eq!(shown("2001:db8:5::/64").blocked_until_ms, None);
    assert!(shown("192.0.3.66/32").blocked);
}

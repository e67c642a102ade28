//! The seven scenarios of issue 5, each a function that runs against the bed, adds its rows
//! to the report and checks its pass figures:
//!
//! 1. one real source flooding at full rate;
//! 2. 250 real sources, each over the threshold;
//! 3. spoofed random sources;
//! 4. a heavy legitimate client (`ab -c 50`, no keep-alive) below the threshold;
//! 5. the daemon SIGKILLed mid-flood and restarted;
//! 6. the operator's flow through the CLI: block, list, top, unblock, TTL;
//! 7. `xdp-guard conns --port 80` against `ss` while connections are held open.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddrV4,
    time::{Duration, Instant},
};

use xdp_guard_common::stats as counters;

use super::{
    E2eError,
    bed::{
        self, ATK_ADDR, MANY_SOURCES, Mode, OPERATOR_CLIENT, OPERATOR_PREFIX, SRV_ADDR,
        client_addrs, holder_addrs, many_source_addrs,
    },
    daemon::{self, Api, Daemon, Thresholds, pinned_stats},
    flood::{Flood, Sources},
    legit::{self, Load},
    report::{Check, Row, Timing, group},
    run::{
        AB_CONCURRENCY, AB_REQUESTS, BASELINE, CLIENT_RATE, Ctx, HEAVY, Outcome, PollHook,
        legit_addrs, ms, pct, plan, say,
    },
    wait_for,
};
use crate::{cli::Connections, model::BlockRecord, tcpstate::TcpState};

// ---- 1. one real source ----

/// What the demo prints as before and after.
pub(super) struct OneSource {
    pub(super) outcomes: Vec<(Mode, Row)>,
}

/// `confirm`: when the xdp-guard run misses a pass figure, run it once more (with its own
/// no-flood baseline) and judge that confirmation run; both runs stay in the table and the
/// figures name both. The timings are sub-millisecond p99s on a 2-vCPU machine whose one
/// "outside" CPU also carries the flood, and a vCPU hiccup in one run moves them by a
/// millisecond; a real regression misses in both runs. The demo does not confirm.
pub(super) fn one_source(
    ctx: &mut Ctx,
    hook: &mut PollHook,
    confirm: bool,
) -> Result<OneSource, E2eError> {
    const S: &str = "1 one source";
    let mut rows = Vec::new();
    for mode in [Mode::Unprotected, Mode::Syncookies] {
        let out = ctx.flood_run(&plan("s1", mode, Some(Sources::One(ATK_ADDR))), hook)?;
        let row = out.row(S, mode);
        ctx.report.rows.push(row.clone());
        rows.push((mode, row));
    }
    let mut first: Option<Vec<Check>> = None;
    for run in 1..=2 {
        let mut p = plan(
            if run == 1 { "s1" } else { "s1-confirm" },
            Mode::XdpGuard,
            Some(Sources::One(ATK_ADDR)),
        );
        p.baseline = Some(BASELINE);
        let out = ctx.flood_run(&p, hook)?;
        let label = |name: &str| {
            if run == 1 {
                name.to_string()
            } else {
                format!("{name} (run 2)")
            }
        };
        if let Some((base, syns)) = &out.baseline {
            let mut row = Row::new(S, &label("xdp-guard, no flood")).with_legit(base);
            row.kernel_syns = Some(*syns);
            ctx.report.rows.push(row);
        }
        let mut row = out.row(S, Mode::XdpGuard);
        row.mode = label(&row.mode);
        let block = out.time_to_block(&format!("{ATK_ADDR}/32"));
        row.to_block = Some(block.map_or(Timing::Never, Timing::Measured));
        ctx.report.rows.push(row.clone());
        let checks = one_source_checks(&out, block);
        if let Some(settled) = settle(&mut first, checks, confirm) {
            rows.push((Mode::XdpGuard, row));
            ctx.report.checks.extend(settled);
            break;
        }
    }
    Ok(OneSource { outcomes: rows })
}

/// The checks of one xdp-guard run, or `None` when one missed and a confirmation run is due
/// (`confirm`, and this was the first run). After a confirmation run the second run's
/// verdicts stand, and each figure names both measurements.
fn settle(first: &mut Option<Vec<Check>>, checks: Vec<Check>, confirm: bool) -> Option<Vec<Check>> {
    match first.take() {
        None if confirm && checks.iter().any(|c| !c.pass) => {
            say("  a pass figure missed: confirmation run");
            *first = Some(checks);
            None
        }
        None => Some(checks),
        Some(earlier) => Some(
            checks
                .into_iter()
                .zip(earlier)
                .map(|(now, then)| Check {
                    measured: format!("run 1: {}; run 2: {}", then.measured, now.measured),
                    ..now
                })
                .collect(),
        ),
    }
}

/// Scenario 1's pass figures for one xdp-guard run.
fn one_source_checks(out: &Outcome, block: Option<Duration>) -> Vec<Check> {
    let success = out.legit.success();
    let base = out
        .baseline
        .as_ref()
        .and_then(|(b, _)| b.percentile(99.0))
        .flatten();
    let p99 = out.legit.percentile(99.0).flatten();
    let paced = out.legit.kept_pace() && out.baseline.as_ref().is_some_and(|(b, _)| b.kept_pace());
    vec![
        Check::new(
            1,
            "flooding source blocked within 1 s of flood start",
            block.map_or("never blocked".into(), ms),
            block.is_some_and(|b| b <= Duration::from_secs(1)),
        ),
        Check::new(
            1,
            "legitimate success >= 99%",
            format!("{} ({} of {})", pct(success), out.legit.ok, out.legit.sent),
            success >= 0.99,
        ),
        Check::new(
            1,
            "p99 latency within 3x of the no-flood baseline",
            match (p99, base) {
                (Some(p), Some(b)) => format!(
                    "p99 {} vs baseline {} ({:.2}x)",
                    Timing::Measured(p),
                    Timing::Measured(b),
                    p.as_secs_f64() / b.as_secs_f64()
                ),
                (None, _) => "p99 fell on a failed request".into(),
                (_, None) => "no baseline p99".into(),
            } + if paced {
                ""
            } else {
                "; the clients fell behind their pace: the machine was busy with something else"
            },
            matches!((p99, base), (Some(p), Some(b)) if p <= b * 3),
        ),
    ]
}

// ---- 2. many real sources ----

pub(super) fn many_sources(ctx: &mut Ctx) -> Result<(), E2eError> {
    const S: &str = "2 250 sources";
    let first = many_source_addrs()[0];
    for mode in Mode::ALL {
        let p = plan(
            "s2",
            mode,
            Some(Sources::Range {
                first,
                count: MANY_SOURCES,
            }),
        );
        let out = ctx.flood_run(&p, &mut |_, _, _| {})?;
        let mut row = out.row(S, mode);
        if mode != Mode::XdpGuard {
            ctx.report.rows.push(row);
            continue;
        }
        let attackers: BTreeSet<String> = many_source_addrs()
            .iter()
            .map(|a| format!("{a}/32"))
            .collect();
        let blocked: Vec<&BlockRecord> = out
            .blocks
            .iter()
            .filter(|b| attackers.contains(&b.cidr.to_string()))
            .collect();
        let last = blocked
            .iter()
            .map(|b| b.created_at_ms.saturating_sub(out.flood_started_ms))
            .max();
        row.to_block = Some(last.map_or(Timing::Never, |m| {
            Timing::Measured(Duration::from_millis(m))
        }));
        ctx.report.rows.push(row);
        ctx.report.checks.push(Check::new(
            2,
            "all 250 flooding sources blocked",
            format!(
                "{} of {} blocked{}",
                blocked.len(),
                attackers.len(),
                last.map_or(String::new(), |m| format!(
                    ", the last {m} ms after flood start"
                ))
            ),
            blocked.len() == attackers.len(),
        ));
        ctx.report.checks.push(Check::new(
            2,
            "no legitimate client blocked",
            if out.legit_blocked.is_empty() {
                format!(
                    "none of {} client addresses blocked; legit success {}",
                    legit_addrs().len(),
                    pct(out.legit.success())
                )
            } else {
                format!("blocked: {:?}", out.legit_blocked)
            },
            out.legit_blocked.is_empty(),
        ));
    }
    Ok(())
}

// ---- 3. spoofed random sources ----

pub(super) fn spoofed(ctx: &mut Ctx) -> Result<(), E2eError> {
    const S: &str = "3 spoofed";
    let spoofed_plan = |tag, mode| {
        let mut p = plan(
            tag,
            mode,
            Some(Sources::Random {
                first_octet: bed::SPOOFED_FIRST_OCTET,
            }),
        );
        // Start the xdp-guard run without syncookies: the daemon must switch them on.
        p.cookies = Some(false);
        p
    };
    for mode in [Mode::Unprotected, Mode::Syncookies] {
        let out = ctx.flood_run(&spoofed_plan("s3", mode), &mut |_, _, _| {})?;
        ctx.report.rows.push(out.row(S, mode));
    }
    // Like scenario 1's, the xdp-guard run is confirmed once when it misses a figure: its
    // success depends on how many SYNs the queue drops before the daemon's next tick.
    let mut first = None;
    for run in 1..=2 {
        let tag = if run == 1 { "s3" } else { "s3-confirm" };
        let out = ctx.flood_run(&spoofed_plan(tag, Mode::XdpGuard), &mut |_, _, _| {})?;
        let mut row = out.row(S, Mode::XdpGuard);
        if run == 2 {
            row.mode = format!("{} (run 2)", row.mode);
        }
        ctx.report.rows.push(row);
        if let Some(settled) = settle(&mut first, spoofed_checks(&out), true) {
            ctx.report.checks.extend(settled);
            break;
        }
    }
    spoof_guard(ctx)
}

/// Scenario 3's pass figures for one xdp-guard run.
fn spoofed_checks(out: &Outcome) -> Vec<Check> {
    let forced = !out.syncookies.is_empty() && out.syncookies.iter().all(|v| v == "1");
    let success = out.legit.success();
    vec![
        Check::new(
            3,
            "detected as spoofed (API attack_state)",
            format!(
                "attack states seen: {}",
                out.attack_states
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            out.attack_states.contains("spoofed"),
        ),
        Check::new(
            3,
            "syncookies forced by the daemon (tcp_syncookies 0 -> 1 in srv)",
            format!(
                "0 before the flood; halfway through and at its end: {}",
                out.syncookies.join(", ")
            ),
            forced,
        ),
        Check::new(
            3,
            "legitimate success >= 95%",
            format!("{} ({} of {})", pct(success), out.legit.ok, out.legit.sent),
            success >= 0.95,
        ),
    ]
}

/// `attack.spoofed_syn_budget` of the extra scenario 3 run (the shipped default is 0, off).
pub(super) const SPOOF_BUDGET: u32 = 2_000;

/// Scenario 3 once more with the spoof guard on (beyond the three runs): the clients
/// that completed a handshake pass, the untracked sources share the budget, and the rest of
/// the flood is dropped in XDP instead of costing the server a syncookie each.
fn spoof_guard(ctx: &mut Ctx) -> Result<(), E2eError> {
    const S: &str = "3 spoofed";
    let mut p = plan(
        "s3-guard",
        Mode::XdpGuard,
        Some(Sources::Random {
            first_octet: bed::SPOOFED_FIRST_OCTET,
        }),
    );
    p.cookies = Some(false);
    p.thresholds = Thresholds {
        spoofed_syn_budget: SPOOF_BUDGET,
        ..Thresholds::DEFAULT
    };
    let out = ctx.flood_run(&p, &mut |_, _, _| {})?;
    let mut row = out.row(S, Mode::XdpGuard);
    row.mode = format!(
        "xdp-guard, spoof guard {}/s",
        group(u64::from(SPOOF_BUDGET))
    );
    ctx.report.rows.push(row);
    let counter = |name: &str| {
        out.stats
            .as_ref()
            .and_then(|s| s.counters.get(name).copied())
            .unwrap_or(0)
    };
    let unverified = counter("dropped_unverified");
    let sent = out.flood.map_or(0, |f| f.packets);
    ctx.report.checks.push(Check::new(
        3,
        "spoof guard on: most of the spoofed flood dropped in XDP",
        format!(
            "{} of {} flood packets dropped as unverified",
            group(unverified),
            group(sent)
        ),
        sent > 0 && unverified * 2 > sent,
    ));
    let success = out.legit.success();
    ctx.report.checks.push(Check::new(
        3,
        "spoof guard on: legitimate success >= 95% (handshaken clients let through)",
        format!("{} ({} of {})", pct(success), out.legit.ok, out.legit.sent),
        success >= 0.95,
    ));
    Ok(())
}

// ---- 4. heavy legitimate client ----

pub(super) fn heavy_client(ctx: &mut Ctx) -> Result<(), E2eError> {
    const S: &str = "4 heavy client";
    let url = format!("http://{SRV_ADDR}/");
    for mode in Mode::ALL {
        ctx.bed.prepare(mode, None)?;
        let dir = ctx.run_dir("s4", mode);
        let daemon = match mode {
            Mode::XdpGuard => Some(Daemon::start(&ctx.bin, ctx.bed.srv(), &dir, HEAVY)?),
            _ => None,
        };
        let before = ctx.bed.kernel_syns()?;
        let ab_started_ms = crate::model::now_ms();
        let ab = legit::ab(
            &ctx.bed.legit().ns,
            &url,
            AB_CONCURRENCY,
            AB_REQUESTS,
            Duration::from_secs(90),
        )?;
        let mut row = Row::new(S, mode.name()).with_ab(&ab);
        row.kernel_syns = Some(ctx.bed.kernel_syns()? - before);
        say(format!(
            "  {:<15} ab -c {AB_CONCURRENCY}: {}/{} ok, {:.0} connections/s",
            mode.name(),
            ab.ok(),
            ab.requests,
            ab.per_sec
        ));
        let Some(d) = daemon else {
            ctx.report.rows.push(row);
            continue;
        };
        let api = Api::new(ctx.bed.srv(), &d.token);
        let stats = api.stats()?;
        let blocks = api.blocklist()?;
        d.stop()?;
        row.xdp_drops = Some(daemon::dropped(&stats));
        row.to_block = Some(
            blocks
                .iter()
                .map(|b| b.created_at_ms.saturating_sub(ab_started_ms))
                .min()
                .map_or(Timing::Never, |m| {
                    Timing::Measured(Duration::from_millis(m))
                }),
        );
        ctx.report.rows.push(row);
        let below = ab.per_sec < f64::from(HEAVY.rate);
        ctx.report.checks.push(Check::new(
            4,
            "heavy legitimate client below the threshold: zero blocks",
            format!(
                "{} blocks, {} SYNs dropped; ab -c {AB_CONCURRENCY} (no keep-alive) made {:.0} \
                 connections/s from one address against syn.rate {}/s, burst {}{}",
                blocks.len(),
                daemon::dropped(&stats),
                ab.per_sec,
                HEAVY.rate,
                HEAVY.burst,
                if below {
                    ""
                } else {
                    " -- the client was NOT below the threshold, the scenario is void"
                }
            ),
            blocks.is_empty() && below,
        ));
    }
    Ok(())
}

// ---- 5. SIGKILL mid-flood and restart ----

pub(super) fn sigkill_restart(ctx: &mut Ctx) -> Result<(), E2eError> {
    const S: &str = "5 sigkill+restart";
    let (dir, mut daemon) = ctx.xdp_guard_only(S, "s5")?;
    let iface = ctx.bed.srv().iface.clone();
    let secs = ctx.flood_secs.max(10) + 4;
    let syns_before = ctx.bed.kernel_syns()?;
    let mut flood = Flood::start(
        ctx.bed.atk(),
        &ctx.flood_spec(Sources::One(ATK_ADDR), secs)?,
        &dir,
        "flood",
    )?;
    let flood_started_ms = flood.started_ms;
    let load = Load::start(
        &ctx.bed.legit().ns,
        ctx.load_spec(&client_addrs(), CLIENT_RATE, Duration::from_secs(secs)),
    );
    let attacker = format!("{ATK_ADDR}/32");
    let auto = {
        let api = Api::new(ctx.bed.srv(), &daemon.token);
        wait_for(
            "the flooding source's block",
            Duration::from_secs(5),
            Duration::from_millis(50),
            || {
                api.blocklist()
                    .ok()?
                    .into_iter()
                    .find(|b| b.cidr.to_string() == attacker)
            },
        )?
    };
    let manual = Api::new(ctx.bed.srv(), &daemon.token).block("203.0.113.0/24", "e2e manual")?;
    let before: Vec<BlockRecord> = Api::new(ctx.bed.srv(), &daemon.token).blocklist()?;

    // The gap: no daemon at all, only the pinned program and maps.
    daemon.kill9();
    let gap_start = Instant::now();
    let d0 = pinned_stats(&iface)?[counters::DROP_BLOCKLIST];
    std::thread::sleep(Duration::from_millis(1500));
    let d1 = pinned_stats(&iface)?[counters::DROP_BLOCKLIST];
    let dead = !daemon.running();
    let gap_drops = d1.saturating_sub(d0);
    let gap_secs = gap_start.elapsed().as_secs_f64();

    daemon.restart(ctx.bed.srv())?;
    let restarted_after = gap_start.elapsed();
    let after: Vec<BlockRecord> = Api::new(ctx.bed.srv(), &daemon.token).blocklist()?;
    let r0 = pinned_stats(&iface)?[counters::DROP_BLOCKLIST];
    let still_flooding = flood.running();
    std::thread::sleep(Duration::from_millis(1000));
    let r1 = pinned_stats(&iface)?[counters::DROP_BLOCKLIST];
    let post_drops = r1.saturating_sub(r0);

    // Seen what there was to see: end the flood and the clients early.
    let flood = flood.stop()?;
    load.stop();
    let legit = load.join()?;
    let kernel_syns = ctx.bed.kernel_syns()? - syns_before;
    let totals = pinned_stats(&iface)?;
    daemon.stop()?;

    let mut row = Row::new(S, Mode::XdpGuard.name()).with_legit(&legit);
    row.kernel_syns = Some(kernel_syns);
    row.xdp_drops = Some(counters::dropped(&totals));
    row.to_block = Some(Timing::Measured(Duration::from_millis(
        auto.created_at_ms.saturating_sub(flood_started_ms),
    )));
    row.flood = Some((flood.packets, flood.secs));
    ctx.report.rows.push(row);

    let kept: Vec<&BlockRecord> = before.iter().filter(|b| after.contains(b)).collect();
    ctx.report.checks.push(Check::new(
        5,
        "no block lost across SIGKILL and restart",
        format!(
            "{} of {} kept unchanged (auto {}, manual {})",
            kept.len(),
            before.len(),
            auto.cidr,
            manual.cidr
        ),
        kept.len() == before.len() && before.len() >= 2,
    ));
    ctx.report.checks.push(Check::new(
        5,
        "drops continue while the daemon is dead",
        format!(
            "{} blocklist drops in {gap_secs:.1} s with no daemon running{}",
            group(gap_drops),
            if dead {
                ""
            } else {
                " (but the daemon was still running!)"
            }
        ),
        dead && gap_drops > 1000,
    ));
    ctx.report.checks.push(Check::new(
        5,
        "drops continue after the restart",
        format!(
            "restarted {:.1} s after the kill; {} blocklist drops in the next second{}",
            restarted_after.as_secs_f64(),
            group(post_drops),
            if still_flooding {
                ""
            } else {
                " (the flood had ended)"
            }
        ),
        still_flooding && post_drops > 1000,
    ));
    Ok(())
}

// ---- 6. the operator's flow through the CLI ----

pub(super) fn operator_cli(ctx: &mut Ctx) -> Result<(), E2eError> {
    const S: &str = "6 operator CLI";
    let (_, daemon) = ctx.xdp_guard_only(S, "s6")?;
    // The client is first busy enough to be tracked (the sketch admits a source after
    // burst/4 = 50 SYNs in a window), then slows to 10 requests/s for the rest, so that the
    // SYNs its kernel retransmits while blocked stay far under the limit after the unblock.
    // (At 60/s they took it over the limit; `blocking.unblock_grace` now keeps the
    // controller from re-blocking such a client, and the guard's unit tests cover that.)
    let busy = Load::start(
        &ctx.bed.legit().ns,
        ctx.load_spec(&[OPERATOR_CLIENT], 60, Duration::from_secs(10)),
    );
    let client = OPERATOR_CLIENT.to_string();
    wait_for(
        "the operator's client to be tracked",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || {
            let json = ctx.cli(&daemon, &["top", "--once", "--json"]).ok()?;
            json.contains(&format!("\"{client}/32\"")).then_some(())
        },
    )?;
    busy.stop();
    let _ = busy.join()?;
    let load = Load::start(
        &ctx.bed.legit().ns,
        ctx.load_spec(&[OPERATOR_CLIENT], 10, Duration::from_secs(30)),
    );
    let api = Api::new(ctx.bed.srv(), &daemon.token);
    let drops = || -> Result<u64, E2eError> {
        Ok(api
            .stats()?
            .counters
            .get("dropped_blocklist")
            .copied()
            .unwrap_or(0))
    };
    let flowing_for_a_second = |blocked: bool| -> Result<(bool, u64), E2eError> {
        let d0 = drops()?;
        std::thread::sleep(Duration::from_millis(1000));
        let n = drops()? - d0;
        Ok((if blocked { n > 0 } else { n == 0 }, n))
    };

    // Block a CIDR; it shows in `list` and `top --once`, and the client's packets drop.
    let blocked_line = ctx.cli(
        &daemon,
        &["block", OPERATOR_PREFIX, "--reason", "e2e operator"],
    )?;
    let list = ctx.cli(&daemon, &["list"])?;
    let top = ctx.cli(&daemon, &["top", "--once"])?;
    let in_list = list.contains(OPERATOR_PREFIX);
    let top_row = top
        .lines()
        .find(|l| l.split_whitespace().next() == Some(client.as_str()))
        .unwrap_or("")
        .to_string();
    let in_top = top.contains("blocklist: 1") && top_row.contains("yes");
    let (dropping, blocked_drops) = flowing_for_a_second(true)?;
    ctx.report.checks.push(Check::new(
        6,
        "`block` a CIDR: shown by `list` and `top --once`, traffic dropped",
        format!(
            "{}; list {}; top row `{}`; {} drops/s",
            blocked_line.trim(),
            if in_list {
                "shows it"
            } else {
                "does NOT show it"
            },
            top_row.split_whitespace().collect::<Vec<_>>().join(" "),
            blocked_drops
        ),
        in_list && in_top && dropping,
    ));

    // Unblock: gone from the list, traffic flows.
    let unblocked_line = ctx.cli(&daemon, &["unblock", OPERATOR_PREFIX])?;
    let list = ctx.cli(&daemon, &["list"])?;
    let (flowing, leftover) = flowing_for_a_second(false)?;
    ctx.report.checks.push(Check::new(
        6,
        "`unblock` removes it from the list and the datapath",
        format!(
            "{}; list {}; {} drops in the next second",
            unblocked_line.trim(),
            if list.contains(OPERATOR_PREFIX) {
                "still shows it"
            } else {
                "no longer shows it"
            },
            leftover
        ),
        !list.contains(OPERATOR_PREFIX) && flowing,
    ));

    // A 2 s TTL: the controller removes the block on time.
    ctx.cli(
        &daemon,
        &[
            "block",
            OPERATOR_PREFIX,
            "--ttl",
            "2s",
            "--reason",
            "e2e ttl",
        ],
    )?;
    let record = api
        .blocklist()?
        .into_iter()
        .find(|b| b.cidr.to_string() == OPERATOR_PREFIX)
        .ok_or_else(|| E2eError::Setup("the TTL block is not in the blocklist".into()))?;
    let expires = record.expires_at_ms.unwrap_or(0);
    let gone_at = wait_for(
        "the 2 s block to expire",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            let list = ctx.cli(&daemon, &["list", "--json"]).ok()?;
            (!list.contains(OPERATOR_PREFIX)).then(crate::model::now_ms)
        },
    )?;
    let late = gone_at as i64 - expires as i64;
    let (flowing, leftover) = flowing_for_a_second(false)?;
    ctx.report.checks.push(Check::new(
        6,
        "a 2 s TTL expires on time (gone from `list` within 1 s of expiry, traffic flows)",
        format!(
            "gone from `list` {} ms after {} ms of TTL ({late:+} ms); {} drops afterwards",
            gone_at.saturating_sub(record.created_at_ms),
            expires.saturating_sub(record.created_at_ms),
            leftover
        ),
        (-100..=1000).contains(&late) && flowing,
    ));
    load.stop();
    let _ = load.join()?;
    let stats = api.stats()?;
    let auto: Vec<String> = api
        .blocklist()?
        .iter()
        .map(|b| b.cidr.to_string())
        .collect();
    daemon.stop()?;
    ctx.report.checks.push(Check::new(
        6,
        "the client itself is never auto-blocked",
        if auto.is_empty() {
            "blocklist empty at the end".to_string()
        } else {
            format!("blocklist at the end: {}", auto.join(", "))
        },
        auto.is_empty(),
    ));
    let mut row = Row::new(S, Mode::XdpGuard.name());
    row.xdp_drops = Some(daemon::dropped(&stats));
    ctx.report.rows.push(row);
    Ok(())
}

// ---- 7. conns against ss ----

/// Connections held per source address in scenario 7.
pub const HELD_PER_SOURCE: usize = 10;

/// Port-80 sockets as `ss -tan` shows them: by netstat state name, and non-LISTEN ones by
/// peer address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortView {
    pub states: BTreeMap<String, u64>,
    pub clients: BTreeMap<String, u64>,
}

pub fn parse_ss(text: &str, port: u16) -> Result<PortView, E2eError> {
    let mut view = PortView::default();
    let suffix = format!(":{port}");
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [state, _, _, local, peer, ..] = fields[..] else {
            continue;
        };
        if !local.ends_with(&suffix) {
            continue;
        }
        let state = TcpState::from_name(state).ok_or_else(|| E2eError::Parse {
            what: "ss -tan".into(),
            reason: format!("unknown state in {line:?}"),
        })?;
        let state = state.netstat();
        *view.states.entry(state.name().to_string()).or_default() += 1;
        if state != TcpState::Listen {
            let addr = peer.rsplit_once(':').map_or(peer, |(a, _)| a);
            let addr = addr.trim_start_matches('[').trim_end_matches(']');
            let addr = addr.strip_prefix("::ffff:").unwrap_or(addr);
            *view.clients.entry(addr.to_string()).or_default() += 1;
        }
    }
    Ok(view)
}

fn conns_view(c: &Connections) -> PortView {
    PortView {
        states: c.port_states.clone(),
        clients: c
            .clients
            .iter()
            .map(|cc| (cc.addr.to_string(), cc.connections))
            .collect(),
    }
}

pub(super) fn conns_vs_ss(ctx: &mut Ctx) -> Result<(), E2eError> {
    const S: &str = "7 conns vs ss";
    let (_, daemon) = ctx.xdp_guard_only(S, "s7")?;
    let holders = holder_addrs();
    let held = legit::hold_connections(
        &ctx.bed.legit().ns,
        &holders,
        HELD_PER_SOURCE,
        SocketAddrV4::new(SRV_ADDR, 80),
    )?;
    let ss = || -> Result<PortView, E2eError> {
        let out = bed::exec_in(ctx.bed.srv(), &["ss", "-tan"])?;
        parse_ss(&String::from_utf8_lossy(&out.stdout), 80)
    };
    // The two views of the same moment: ss, conns, ss again; only a sandwich whose two ss
    // views agree pins down the moment (TIME_WAIT sockets of earlier scenarios expire).
    let mut attempt = 0;
    let (view, conns) = loop {
        attempt += 1;
        let before = ss()?;
        let json = ctx.cli(&daemon, &["conns", "--port", "80", "--json"])?;
        let after = ss()?;
        let conns: Connections = serde_json::from_str(&json).map_err(|e| E2eError::Parse {
            what: "xdp-guard conns --json".into(),
            reason: e.to_string(),
        })?;
        if before == after || attempt >= 20 {
            break (before, conns);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(held);
    daemon.stop()?;
    let theirs = conns_view(&conns);
    let held_ok = holders
        .iter()
        .all(|a| view.clients.get(&a.to_string()).copied() == Some(HELD_PER_SOURCE as u64));
    let established = view.states.get("ESTABLISHED").copied().unwrap_or(0);
    ctx.report.checks.push(Check::new(
        7,
        "`conns --port 80` agrees with `ss -tan` (states and per-client counts)",
        format!(
            "{} with {} connections held ({} x {HELD_PER_SOURCE}); port 80: {}; {} clients; \
             sandwich attempt {attempt}",
            if theirs == view {
                "identical"
            } else {
                "DIFFERENT"
            },
            holders.len() * HELD_PER_SOURCE,
            holders.len(),
            view.states
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", "),
            view.clients.len(),
        ),
        theirs == view && held_ok && established >= (holders.len() * HELD_PER_SOURCE) as u64,
    ));
    if theirs != view {
        say(format!("  ss:    {view:?}\n  conns: {theirs:?}"));
    }
    ctx.report.rows.push(Row::new(S, Mode::XdpGuard.name()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ss_port_view() {
        let text = "State      Recv-Q Send-Q Local Address:Port  Peer Address:Port Process\n\
            LISTEN     0      511       198.18.0.1:80         0.0.0.0:*\n\
            ESTAB      0      0         198.18.0.1:80      198.18.7.1:40000\n\
            ESTAB      0      0         198.18.0.1:80      198.18.7.1:40002\n\
            TIME-WAIT  0      0         198.18.0.1:80      198.18.1.3:51000\n\
            ESTAB      0      0          127.0.0.1:9180     127.0.0.1:33000\n\
            SYN-RECV   0      0         198.18.0.1:80     203.0.113.9:1234\n\
            ESTAB      0      0     [::ffff:198.18.0.1]:80 [::ffff:198.18.7.2]:4\n";
        let v = parse_ss(text, 80).expect("parses");
        let states: Vec<(&str, u64)> = v.states.iter().map(|(k, n)| (k.as_str(), *n)).collect();
        assert_eq!(
            states,
            [
                ("ESTABLISHED", 3),
                ("LISTEN", 1),
                ("SYN_RECV", 1),
                ("TIME_WAIT", 1)
            ]
        );
        assert_eq!(v.clients.get("198.18.7.1"), Some(&2));
        assert_eq!(v.clients.get("198.18.7.2"), Some(&1));
        assert_eq!(v.clients.get("198.18.1.3"), Some(&1));
        assert_eq!(v.clients.get("127.0.0.1"), None, "another port");
        assert!(parse_ss("State\nBOGUS 0 0 1.2.3.4:80 5.6.7.8:9\n", 80).is_err());
    }
}

//! Running the scenarios: the run's options, the context every scenario works with, and
//! one flood run in one mode ([`Ctx::flood_run`]); [`run`] runs the scenarios in order,
//! [`demo`] runs the short newcomer's version.

use std::{
    collections::BTreeSet,
    net::{Ipv4Addr, SocketAddrV4},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use ipnet::IpNet;

use super::{
    E2eError,
    bed::{ATK_ADDR, Bed, LEGIT_ADDR, Mode, OPERATOR_CLIENT, SRV_ADDR, client_addrs, holder_addrs},
    cpus::Spinners,
    daemon::{self, API_LISTEN, Api, Daemon, Thresholds},
    flood::{Flood, FloodResult, FloodSpec, Sources},
    legit::{LegitStats, Load, LoadSpec},
    output,
    report::{Check, Report, Row, Timing, group},
    scenarios,
};
use crate::{cli::Stats, model::BlockRecord};

/// Requests per second from each paced client; eight clients make 200/s. Each stays at a
/// quarter of the default per-source limit (100 SYN/s).
pub const CLIENT_RATE: u32 = 25;
/// A request not fully answered within this failed (the first SYN retransmission, at 1 s,
/// can still make it; the second, at 3 s, cannot).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Unmeasured load after every Apache restart.
pub const WARM_UP: Duration = Duration::from_secs(1);
/// The no-flood baseline before scenario 1's xdp-guard run.
pub const BASELINE: Duration = Duration::from_secs(5);
/// Packet bound of a flood per second of its time bound: above what one trafgen process can
/// send here, so the time bound normally ends a flood; the packet bound is the backstop.
pub const PACKETS_PER_SEC_BOUND: u64 = 2_000_000;
/// Scenario 4's client and its threshold: `ab -c 50` without keep-alive opens thousands
/// of connections per second from one address (7,000-12,500/s measured on the 2-core
/// reference machine), so the scenario raises the per-source limit above that; the check
/// fails if the client was not below it after all. The other scenarios run with the
/// shipped defaults ([`Thresholds::DEFAULT`]).
pub const HEAVY: Thresholds = Thresholds {
    rate: 20_000,
    burst: 20_000,
    spoofed_syn_budget: 0,
};
pub const AB_CONCURRENCY: u32 = 50;
pub const AB_REQUESTS: u32 = 15_000;

#[derive(Clone, Debug)]
pub struct Options {
    /// The `xdp-guard` binary the daemon and CLI runs use.
    pub xdp_guard: PathBuf,
    /// Scenarios to run (1-7); empty runs all.
    pub scenarios: Vec<u8>,
    /// Time bound of each flood.
    pub flood_secs: u64,
    /// Where configs and logs go (a fresh directory under the system temp dir by default).
    pub work_dir: Option<PathBuf>,
    /// Keep the work directory even when everything passed.
    pub keep_work_dir: bool,
}

impl Options {
    pub fn new(xdp_guard: PathBuf) -> Options {
        Options {
            xdp_guard,
            scenarios: Vec::new(),
            flood_secs: 6,
            work_dir: None,
            keep_work_dir: false,
        }
    }
}

/// Everything a scenario works with.
pub(super) struct Ctx {
    pub(super) bed: Bed,
    pub(super) bin: PathBuf,
    pub(super) dir: PathBuf,
    pub(super) flood_secs: u64,
    pub(super) report: Report,
}

impl Ctx {
    /// The bed up in `dir`, and an empty report.
    fn new(dir: &Path, bin: &Path, flood_secs: u64) -> Result<Ctx, E2eError> {
        Ok(Ctx {
            bed: Bed::new(dir)?,
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            flood_secs,
            report: Report::default(),
        })
    }
}

pub(super) fn say(msg: impl AsRef<str>) {
    eprintln!("e2e: {}", msg.as_ref());
}

/// Runs the scenarios and returns the report. Scenario failures are failed checks in the
/// report (the other scenarios still run); an error means the bed itself failed.
pub fn run(opts: &Options) -> Result<Report, E2eError> {
    let started = Instant::now();
    let dir = work_dir(opts.work_dir.as_deref())?;
    say(format!("work directory {}", dir.display()));
    let _spinners = Spinners::start();
    let mut ctx = Ctx::new(&dir, &opts.xdp_guard, opts.flood_secs)?;
    say(format!(
        "test bed up: srv {} ({}), legit {}, atk {}; Apache answering",
        ctx.bed.srv().ns.name(),
        ctx.bed.srv().iface,
        ctx.bed.legit().ns.name(),
        ctx.bed.atk().ns.name()
    ));
    let wanted = |n: u8| opts.scenarios.is_empty() || opts.scenarios.contains(&n);
    type Scenario = fn(&mut Ctx) -> Result<(), E2eError>;
    let all: [(u8, &str, Scenario); 7] = [
        (1, "one real source at full rate", |c| {
            scenarios::one_source(c, &mut |_, _, _| {}, true).map(|_| ())
        }),
        (2, "250 real sources", scenarios::many_sources),
        (3, "spoofed random sources", scenarios::spoofed),
        (4, "heavy legitimate client", scenarios::heavy_client),
        (
            5,
            "SIGKILL mid-flood and restart",
            scenarios::sigkill_restart,
        ),
        (6, "operator flow through the CLI", scenarios::operator_cli),
        (7, "conns against ss", scenarios::conns_vs_ss),
    ];
    for (n, name, scenario) in all {
        if !wanted(n) {
            continue;
        }
        say(format!("scenario {n}: {name}"));
        let t = Instant::now();
        if let Err(e) = scenario(&mut ctx) {
            say(format!("scenario {n} failed: {e}"));
            ctx.report.checks.push(Check::new(
                n,
                "scenario ran to the end",
                e.to_string(),
                false,
            ));
        }
        say(format!(
            "scenario {n} done in {:.0} s",
            t.elapsed().as_secs_f64()
        ));
    }
    let Ctx {
        bed, mut report, ..
    } = ctx;
    report.notes = notes(opts.flood_secs);
    finish(bed, &mut report, &dir, opts.keep_work_dir, started);
    Ok(report)
}

/// Tears the bed down, records whether anything was left, and removes the work directory
/// unless something failed (its logs are the evidence) or it is to be kept.
fn finish(bed: Bed, report: &mut Report, dir: &Path, keep: bool, started: Instant) {
    let teardown = bed.teardown();
    report.checks.push(Check::new(
        0,
        "nothing left behind (namespaces, pins)",
        match &teardown {
            Ok(()) => "none left".to_string(),
            Err(e) => e.to_string(),
        },
        teardown.is_ok(),
    ));
    report.elapsed = started.elapsed();
    if keep || !report.failed_checks().is_empty() {
        say(format!("logs and configs kept in {}", dir.display()));
    } else {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn work_dir(given: Option<&Path>) -> Result<PathBuf, E2eError> {
    let dir = match given {
        Some(d) => d.to_path_buf(),
        None => std::env::temp_dir().join(format!("xg-e2e-{}", std::process::id())),
    };
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(E2eError::io(format!("creating {}", dir.display())))?;
    Ok(dir)
}

fn notes(flood_secs: u64) -> Vec<String> {
    vec![
        format!(
            "legit: {} clients (198.18.1.1-8) x {CLIENT_RATE} requests/s, a new connection per \
             request, GET / (Apache's default page); success = a complete 200 within {} s; \
             percentiles over all requests, a failed one counting as slowest (\"failed\"). \
             Scenario 4: ab's own figures (ms).",
            client_addrs().len(),
            REQUEST_TIMEOUT.as_secs()
        ),
        "KERNEL SYNS: SYNs to port 80 that reached srv's IP stack (an nftables counter on the \
         input hook, behind XDP). XDP DROPS: dropped_blocklist + dropped_rate + \
         dropped_malformed + dropped_unverified (API /v1/stats; scenario 5: the pinned STATS map). TO BLOCK: the \
         block's created_at_ms minus the wall clock just before trafgen started (scenario 2: \
         the last of 250)."
            .to_string(),
        format!(
            "floods: one trafgen process, TCP SYNs at full rate, at most {flood_secs} s and \
             {} packets. xdp-guard: the shipped defaults (syn.rate {}/s, burst {}, tick 250 \
             ms, 2 over-limit ticks) plus native XDP, protected_ports [80], sysctl.mode auto, \
             detach_on_exit; scenario 4 raises syn.rate/burst to {}/{}.",
            group(flood_secs * PACKETS_PER_SEC_BOUND),
            Thresholds::DEFAULT.rate,
            Thresholds::DEFAULT.burst,
            group(u64::from(HEAVY.rate)),
            group(u64::from(HEAVY.burst)),
        ),
        "modes: no protection = no XDP, tcp_syncookies 0; syncookies only = no XDP, \
         tcp_syncookies 1; xdp-guard = daemon attached, tcp_syncookies 1 (scenario 3: 0, \
         which the daemon must switch on). Apache is restarted before every run and warmed \
         up for 1 s. The attack host drops its own RSTs (as flooding tools do); spoofed \
         sources are random in 10.0.0.0/8, which srv routes to the attack host."
            .to_string(),
        format!(
            "CPUs: CPU {} is the outside (trafgen at nice 19, the clients at SCHED_FIFO, the \
             transport through veths and the bridge, XDP verdicts); CPU(s) {} the server \
             (Apache, the daemon, srv's network stack through RPS); an idle-class spinner on \
             every CPU keeps vCPUs from halting (waking one costs milliseconds at times).",
            super::cpus::generator(),
            super::cpus::list(&super::cpus::server())
        ),
        "confirmation: when the xdp-guard run of scenario 1 or 3 misses a pass figure, it runs \
         once more (scenario 1 with its own no-flood baseline; rows \"(run 2)\") and that run \
         is judged; the figures name both runs. Scenario 1's p99s are fractions of a \
         millisecond on a CPU that also carries the flood, where one vCPU hiccup moves them \
         by a millisecond; scenario 3's success depends on how many SYNs the queue drops \
         before the daemon's next tick. A real regression misses twice. (The e2e and the \
         test confirm; the demo does not.)"
            .to_string(),
    ]
}

// ---- one run of a flood scenario ----

pub(super) struct Plan<'a> {
    pub(super) scenario: &'a str,
    pub(super) mode: Mode,
    /// Syncookies for an xdp-guard run (default: on).
    pub(super) cookies: Option<bool>,
    pub(super) thresholds: Thresholds,
    pub(super) sources: Option<Sources>,
    pub(super) clients: Vec<Ipv4Addr>,
    /// A legitimate-only phase before the flood, with the same server and daemon.
    pub(super) baseline: Option<Duration>,
}

#[derive(Default)]
pub(super) struct Outcome {
    pub(super) baseline: Option<(LegitStats, u64)>,
    pub(super) legit: LegitStats,
    pub(super) kernel_syns: u64,
    pub(super) stats: Option<Stats>,
    pub(super) blocks: Vec<BlockRecord>,
    pub(super) flood: Option<FloodResult>,
    pub(super) flood_started_ms: u64,
    pub(super) attack_states: BTreeSet<String>,
    /// `net.ipv4.tcp_syncookies` in srv, halfway through the flood and at its end.
    pub(super) syncookies: Vec<String>,
    /// Blocks covering a legitimate client at the end (blocks last 10 minutes, so any
    /// made during the run is still there).
    pub(super) legit_blocked: BTreeSet<IpNet>,
}

impl Outcome {
    pub(super) fn row(&self, scenario: &str, mode: Mode) -> Row {
        let mut row = Row::new(scenario, mode.name()).with_legit(&self.legit);
        row.kernel_syns = Some(self.kernel_syns);
        row.xdp_drops = self.stats.as_ref().map(daemon::dropped);
        row.flood = self.flood.map(|f| (f.packets, f.secs));
        if mode == Mode::XdpGuard {
            row.to_block = Some(Timing::Never);
        }
        row
    }

    /// From flood start to the block of `cidr`.
    pub(super) fn time_to_block(&self, cidr: &str) -> Option<Duration> {
        self.blocks
            .iter()
            .find(|b| b.cidr.to_string() == cidr)
            .map(|b| Duration::from_millis(b.created_at_ms.saturating_sub(self.flood_started_ms)))
    }
}

/// Every address a legitimate client uses.
pub(super) fn legit_addrs() -> Vec<Ipv4Addr> {
    let mut all = vec![LEGIT_ADDR, OPERATOR_CLIENT];
    all.extend(client_addrs());
    all.extend(holder_addrs());
    all
}

pub(super) type PollHook<'h> = dyn FnMut(&Bed, &Daemon, Duration) + 'h;

impl Ctx {
    /// A scenario that is about xdp-guard alone: "n/a" rows for the other two modes, the bed
    /// prepared for xdp-guard, and a daemon with the default thresholds in the run's
    /// directory (returned too, for a restart).
    pub(super) fn xdp_guard_only(
        &mut self,
        scenario: &str,
        tag: &str,
    ) -> Result<(PathBuf, Daemon), E2eError> {
        for mode in [Mode::Unprotected, Mode::Syncookies] {
            self.report.rows.push(Row::new(scenario, mode.name()));
        }
        self.bed.prepare(Mode::XdpGuard, None)?;
        let dir = self.run_dir(tag, Mode::XdpGuard);
        let daemon = Daemon::start(&self.bin, self.bed.srv(), &dir, Thresholds::DEFAULT)?;
        Ok((dir, daemon))
    }

    pub(super) fn run_dir(&self, scenario: &str, mode: Mode) -> PathBuf {
        let slug = match mode {
            Mode::Unprotected => "unprotected",
            Mode::Syncookies => "syncookies",
            Mode::XdpGuard => "xdp-guard",
        };
        self.dir.join(format!("{scenario}-{slug}"))
    }

    pub(super) fn flood_spec(&self, sources: Sources, secs: u64) -> Result<FloodSpec, E2eError> {
        Ok(FloodSpec {
            sources,
            dst: SRV_ADDR,
            dst_port: 80,
            src_mac: self.bed.mac(self.bed.atk())?,
            dst_mac: self.bed.mac(self.bed.srv())?,
            max_packets: secs * PACKETS_PER_SEC_BOUND,
            max_duration: Duration::from_secs(secs),
            cpu: super::cpus::generator(),
        })
    }

    pub(super) fn load_spec(
        &self,
        clients: &[Ipv4Addr],
        rate: u32,
        duration: Duration,
    ) -> LoadSpec {
        LoadSpec {
            sources: clients.to_vec(),
            per_source_rate: rate,
            duration,
            timeout: REQUEST_TIMEOUT,
            server: SocketAddrV4::new(SRV_ADDR, 80),
        }
    }

    /// The `xdp-guard` CLI inside srv, against the daemon's API; its stdout.
    pub(super) fn cli(&self, daemon: &Daemon, args: &[&str]) -> Result<String, E2eError> {
        let mut cmd = self.bed.srv().ns.command(&self.bin.to_string_lossy());
        cmd.args(["--api", &format!("http://{API_LISTEN}"), "--token-file"])
            .arg(&daemon.token)
            .args(args);
        let out = output(&mut cmd)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Records the attack state and srv's syncookies setting now.
    pub(super) fn look(&self, daemon: Option<&Daemon>, outcome: &mut Outcome) {
        if let Some(d) = daemon
            && let Ok(s) = Api::new(self.bed.srv(), &d.token).stats()
        {
            outcome
                .attack_states
                .insert(s.attack_state.as_str().to_string());
        }
        if let Ok(v) = self.bed.sysctl("net.ipv4.tcp_syncookies") {
            outcome.syncookies.push(v);
        }
    }

    /// One run: prepare srv for `plan.mode`, start the daemon if the mode has one, measure
    /// the baseline if asked, then flood (if the plan has one) while the clients run.
    pub(super) fn flood_run(
        &mut self,
        plan: &Plan,
        hook: &mut PollHook,
    ) -> Result<Outcome, E2eError> {
        self.bed.prepare(plan.mode, plan.cookies)?;
        let dir = self.run_dir(plan.scenario, plan.mode);
        std::fs::create_dir_all(&dir)
            .map_err(E2eError::io(format!("creating {}", dir.display())))?;
        let daemon = match plan.mode {
            Mode::XdpGuard => Some(Daemon::start(
                &self.bin,
                self.bed.srv(),
                &dir,
                plan.thresholds,
            )?),
            _ => None,
        };
        let mut outcome = Outcome::default();
        let legit_ns = &self.bed.legit().ns;
        // A second of the same load first, unmeasured: a fresh Apache starts its workers as
        // requests come, and that is not what any run is about.
        Load::start(
            legit_ns,
            self.load_spec(&plan.clients, CLIENT_RATE, WARM_UP),
        )
        .join()?;
        if let Some(d) = plan.baseline {
            let before = self.bed.kernel_syns()?;
            let stats =
                Load::start(legit_ns, self.load_spec(&plan.clients, CLIENT_RATE, d)).join()?;
            let _ = std::fs::write(dir.join("baseline.csv"), stats.csv());
            outcome.baseline = Some((stats, self.bed.kernel_syns()? - before));
        }
        let secs = self.flood_secs;
        let syns_before = self.bed.kernel_syns()?;
        let mut flood = match &plan.sources {
            Some(s) => Some(Flood::start(
                self.bed.atk(),
                &self.flood_spec(s.clone(), secs)?,
                &dir,
                "flood",
            )?),
            None => None,
        };
        outcome.flood_started_ms = flood.as_ref().map_or(0, |f| f.started_ms);
        let load = Load::start(
            legit_ns,
            self.load_spec(&plan.clients, CLIENT_RATE, Duration::from_secs(secs)),
        );
        // One look at the daemon and the syncookies setting halfway through the flood; a
        // poll loop would cost the server CPU it is being measured on.
        let start = Instant::now();
        let mut looked = false;
        loop {
            let flooding = flood.as_mut().is_some_and(Flood::running);
            if !flooding && start.elapsed() >= Duration::from_secs(secs) {
                break;
            }
            if !looked && start.elapsed() >= Duration::from_secs(secs) / 2 {
                looked = true;
                self.look(daemon.as_ref(), &mut outcome);
            }
            if let Some(d) = &daemon {
                hook(&self.bed, d, start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        outcome.flood = flood.take().map(Flood::wait).transpose()?;
        outcome.legit = load.join()?;
        let _ = std::fs::write(dir.join("legit.csv"), outcome.legit.csv());
        outcome.kernel_syns = self.bed.kernel_syns()? - syns_before;
        self.look(daemon.as_ref(), &mut outcome);
        if let Some(d) = daemon {
            let api = Api::new(self.bed.srv(), &d.token);
            outcome.stats = Some(api.stats()?);
            outcome.blocks = api.blocklist()?;
            d.stop()?;
        }
        let legit = legit_addrs();
        for b in &outcome.blocks {
            if legit
                .iter()
                .any(|a| b.cidr.contains(&std::net::IpAddr::V4(*a)))
            {
                outcome.legit_blocked.insert(b.cidr);
            }
        }
        say(format!(
            "  {:<15} legit {}/{} ok, kernel SYNs {}, XDP drops {}{}",
            plan.mode.name(),
            outcome.legit.ok,
            outcome.legit.sent,
            group(outcome.kernel_syns),
            outcome
                .stats
                .as_ref()
                .map_or("n/a".into(), |s| group(daemon::dropped(s))),
            outcome.flood.map_or(String::new(), |f| format!(
                ", flood {} packets",
                group(f.packets)
            ))
        ));
        Ok(outcome)
    }
}

pub(super) fn plan<'a>(scenario: &'a str, mode: Mode, sources: Option<Sources>) -> Plan<'a> {
    Plan {
        scenario,
        mode,
        cookies: None,
        thresholds: Thresholds::DEFAULT,
        sources,
        clients: client_addrs(),
        baseline: None,
    }
}

pub(super) fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

pub(super) fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

// ---- the demo ----

#[derive(Clone, Debug)]
pub struct DemoOptions {
    pub xdp_guard: PathBuf,
    /// Time bound of each flood.
    pub flood_secs: u64,
    /// `top --once` frames printed during the xdp-guard flood, a second apart.
    pub frames: u32,
}

/// The newcomer's demo: the bed, Apache, a bounded flood from one source against the server
/// without protection, with kernel syncookies and with xdp-guard (printing `xdp-guard top`
/// frames meanwhile), and the before/after figures. Returns scenario 1's report.
pub fn demo(opts: &DemoOptions) -> Result<Report, E2eError> {
    let started = Instant::now();
    let dir = work_dir(None)?;
    let _spinners = Spinners::start();
    println!(
        "xdp-guard demo: Apache in one network namespace, a SYN flood from a second, \
         well-behaved clients in a third.\n"
    );
    let mut ctx = Ctx::new(&dir, &opts.xdp_guard, opts.flood_secs)?;
    println!(
        "test bed: srv {SRV_ADDR} (Apache, namespace {}), legit 198.18.1.1-8 ({} requests/s \
         each), atk {ATK_ADDR} (trafgen, at most {} s)\n",
        ctx.bed.srv().ns.name(),
        CLIENT_RATE,
        opts.flood_secs
    );
    let bin = opts.xdp_guard.clone();
    let frames = opts.frames;
    let mut printed = 0u32;
    let mut hook = |bed: &Bed, d: &Daemon, t: Duration| {
        // Frames during the flood only (the baseline phase has no flood and no offender).
        let due = Duration::from_secs(u64::from(printed) + 1);
        if printed >= frames || t < due {
            return;
        }
        // On the outside's CPU at the lowest priority, like the generator: the frames are
        // for the reader, not part of what the clients measure.
        let mut cmd = std::process::Command::new("taskset");
        cmd.args(["-c", &super::cpus::list(&super::cpus::outside())])
            .args([
                "nice",
                "-n",
                "19",
                "ip",
                "netns",
                "exec",
                bed.srv().ns.name(),
            ])
            .arg(&bin)
            .args(["--api", &format!("http://{API_LISTEN}"), "--token-file"])
            .arg(&d.token)
            .args(["top", "--once", "--limit", "5"]);
        if let Ok(out) = output(&mut cmd) {
            printed += 1;
            println!(
                "---- xdp-guard top --once ({:.1} s into the flood) ----\n{}",
                t.as_secs_f64(),
                String::from_utf8_lossy(&out.stdout)
            );
        }
    };
    let result = scenarios::one_source(&mut ctx, &mut hook, false);
    let Ctx {
        bed, mut report, ..
    } = ctx;
    report.notes = notes(opts.flood_secs);
    finish(bed, &mut report, &dir, false, started);
    let rows = result?.outcomes;
    println!("before and after: the legitimate clients during the flood");
    for (mode, row) in &rows {
        println!(
            "  {:<16} success {:>6}  p50 {:>9}  p99 {:>9}  SYNs reaching the kernel {:>10}{}",
            mode.name(),
            row.success().map_or("n/a".into(), pct),
            row.p50.map_or("n/a".into(), |t| t.to_string()),
            row.p99.map_or("n/a".into(), |t| t.to_string()),
            row.kernel_syns.map_or("n/a".into(), group),
            match row.to_block {
                Some(Timing::Measured(d)) => format!("  (source blocked after {})", ms(d)),
                _ => String::new(),
            }
        );
    }
    println!();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e2e::bed::many_source_addrs;

    #[test]
    fn legit_addresses_are_not_attackers() {
        let legit = legit_addrs();
        assert!(!legit.contains(&ATK_ADDR));
        assert!(many_source_addrs().iter().all(|a| !legit.contains(a)));
    }
}

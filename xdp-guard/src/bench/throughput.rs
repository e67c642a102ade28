//! Drop throughput on a veth, every filter fed by the same generator in the same run.
//!
//! For each (filter, scenario) a fresh [`Bed`] is built, the filter installed on the server
//! veth, and a flood started from the attacker namespace on one CPU while the server veth's
//! receive kthread runs on the other. After a warm-up, consecutive windows are measured: the
//! frames the server veth took (`rx_packets`, whatever happened to them next) and the frames
//! the filter dropped, by the filter's own counter (xdp-guard's `STATS`, the nft rule counter,
//! the iptables rule counter). Rates are per second of wall time between two counter reads
//! (the midpoint of each read, so the few milliseconds an `nft`/`iptables` listing takes do
//! not bias them).

use std::{
    net::Ipv4Addr,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use aya::{
    Ebpf,
    programs::{Xdp, XdpMode},
};
use ipnet::Ipv4Net;
use xdp_guard_common::{config::RateParams, maps::NEVER, stats};

use super::{
    Spread,
    flood::{FloodError, FloodOutcome, FloodSpec, Generator, Sources},
    veth::{Bed, BedError, PORT, SERVER, in_ns},
};
use crate::bpf::{AttachMode, BASELINE_OBJECT, BpfError, Datapath, LoadOptions};

/// The single-source flood's address, and the prefix the drop rules name.
pub const SINGLE_SOURCE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
pub const SINGLE_PREFIX: &str = "203.0.113.0/24";
/// The spoofed flood's range (4,194,304 addresses).
pub const SPOOFED_RANGE: &str = "100.64.0.0/10";
/// The per-source SYN limit every rate-limiting filter is given.
pub const SYN_RATE: u32 = 100;
pub const SYN_BURST: u32 = 200;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Filter {
    /// A bare XDP_DROP program in native mode: what the generator can deliver.
    BareDrop,
    /// No filter: GRO on, the kernel stack (listener on port 80, syncookies) takes the flood.
    NoFilter,
    Iptables,
    Nftables,
    XdpGuardNative,
    XdpGuardGeneric,
    /// xdp-guard native with one part of the SYN path switched off, to see where a
    /// spoofed SYN's time goes.
    XdpGuardVariant(GuardVariant),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum GuardVariant {
    /// `syn_interval_ns` 0: no SYN accounting (blocklist only, then PASS).
    AccountingOff,
    /// `sketch_admit` u32::MAX: every never-seen source stays in the sketch.
    SketchOnly,
    /// `guard_max_new` 0: the sketch admits, the flood guard refuses every admission.
    GuardRefusesAll,
    /// The spoof guard on for the whole flood at [`SPOOF_BUDGET`] untracked SYNs per second
    /// per CPU: the rest of the flood is dropped in XDP.
    SpoofGuard,
}

/// The spoof guard's budget in the benchmark (`attack.spoofed_syn_budget`, per CPU).
pub const SPOOF_BUDGET: u32 = 2_000;

impl GuardVariant {
    pub const ALL: [GuardVariant; 4] = [
        Self::AccountingOff,
        Self::SketchOnly,
        Self::GuardRefusesAll,
        Self::SpoofGuard,
    ];

    fn apply(self, cfg: &mut xdp_guard_common::config::GuardConfig) {
        match self {
            Self::AccountingOff => cfg.syn_interval_ns = 0,
            Self::SketchOnly => cfg.sketch_admit = u32::MAX,
            Self::GuardRefusesAll => cfg.guard_max_new = 0,
            Self::SpoofGuard => {
                cfg.spoof_budget =
                    crate::controller::spoof_budget_per_window(SPOOF_BUDGET, cfg.guard_window_ns);
                cfg.spoof_until_ns = u64::MAX;
            }
        }
    }
}

impl Filter {
    pub fn label(self) -> &'static str {
        match self {
            Self::BareDrop => "bare XDP_DROP (native)",
            Self::NoFilter => "no filter",
            Self::Iptables => "iptables raw PREROUTING",
            Self::Nftables => "nftables netdev ingress",
            Self::XdpGuardNative => "xdp-guard native",
            Self::XdpGuardGeneric => "xdp-guard generic",
            Self::XdpGuardVariant(GuardVariant::AccountingOff) => {
                "xdp-guard native, SYN accounting off"
            }
            Self::XdpGuardVariant(GuardVariant::SketchOnly) => {
                "xdp-guard native, sketch never admits"
            }
            Self::XdpGuardVariant(GuardVariant::GuardRefusesAll) => {
                "xdp-guard native, flood guard refuses every admission"
            }
            Self::XdpGuardVariant(GuardVariant::SpoofGuard) => {
                "xdp-guard native, spoof guard on (2,000 untracked SYN/s per CPU pass, the rest dropped)"
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Scenario {
    /// One source (random source ports); every filter has a drop rule for its /24.
    SingleBlocked,
    /// One source; every filter limits SYNs per source (100/s, burst 200), no drop rule.
    SingleRateLimited,
    /// Random sources across a /10; every filter has a drop rule for the /10.
    SpoofedBlocked,
    /// Random sources across a /10; every filter limits SYNs per source (as above), no drop
    /// rule: no source reaches its limit, so the flood meets each filter's per-source path.
    SpoofedPerSource,
}

impl Scenario {
    pub const ALL: [Scenario; 4] = [
        Self::SingleBlocked,
        Self::SingleRateLimited,
        Self::SpoofedBlocked,
        Self::SpoofedPerSource,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::SingleBlocked => "single source, drop rule",
            Self::SingleRateLimited => "single source, per-source SYN limit",
            Self::SpoofedBlocked => "random sources in a /10, drop rule for the /10",
            Self::SpoofedPerSource => "random sources in a /10, per-source SYN limit",
        }
    }

    pub fn spoofed(self) -> bool {
        matches!(self, Self::SpoofedBlocked | Self::SpoofedPerSource)
    }

    fn blocked(self) -> bool {
        matches!(self, Self::SingleBlocked | Self::SpoofedBlocked)
    }

    fn prefix(self) -> &'static str {
        if self.spoofed() {
            SPOOFED_RANGE
        } else {
            SINGLE_PREFIX
        }
    }

    fn sources(self) -> Result<Sources, ThroughputError> {
        Ok(if self.spoofed() {
            Sources::Random(parse_net(SPOOFED_RANGE)?)
        } else {
            Sources::Fixed(SINGLE_SOURCE)
        })
    }

    /// What the filter is given in this scenario, as an admin would type it.
    pub fn rule(self, filter: Filter, iface: &str) -> String {
        let prefix = self.prefix();
        match (filter, self.blocked()) {
            (Filter::BareDrop, _) => "every frame dropped".into(),
            (Filter::NoFilter, _) => "none".into(),
            (Filter::Iptables, true) => {
                format!("iptables -t raw -A PREROUTING -s {prefix} -j DROP")
            }
            (Filter::Iptables, false) => format!(
                "iptables -t raw -A PREROUTING -p tcp --syn -m hashlimit --hashlimit-name xgsyn --hashlimit-mode srcip --hashlimit-above {SYN_RATE}/sec --hashlimit-burst {SYN_BURST} -j DROP"
            ),
            (Filter::Nftables, true) => format!(
                "table netdev xg {{ chain ingress {{ type filter hook ingress device \"{iface}\" priority -500; policy accept; ip saddr {prefix} counter drop; }}; }}"
            ),
            (Filter::Nftables, false) => format!(
                "table netdev xg {{ set syn_sources {{ type ipv4_addr; size 65536; flags dynamic,timeout; timeout 10s; }}; chain ingress {{ type filter hook ingress device \"{iface}\" priority -500; policy accept; tcp flags & (fin|syn|rst|ack) == syn update @syn_sources {{ ip saddr limit rate over {SYN_RATE}/second burst {SYN_BURST} packets }} counter drop; }}; }}"
            ),
            (Filter::XdpGuardVariant(v), _) => format!(
                "syn.rate {SYN_RATE}, syn.burst {SYN_BURST}, enforce, then {}",
                match v {
                    GuardVariant::AccountingOff => "syn_interval_ns = 0",
                    GuardVariant::SketchOnly => "sketch_admit = u32::MAX",
                    GuardVariant::GuardRefusesAll => "guard_max_new = 0",
                    GuardVariant::SpoofGuard =>
                        "spoof_until_ns = u64::MAX, spoof_budget = 200 per 100 ms window",
                }
            ),
            (Filter::XdpGuardNative | Filter::XdpGuardGeneric, true) => {
                format!("block {prefix}; syn.rate {SYN_RATE}, syn.burst {SYN_BURST}, enforce")
            }
            (Filter::XdpGuardNative | Filter::XdpGuardGeneric, false) => {
                format!("syn.rate {SYN_RATE}, syn.burst {SYN_BURST}, enforce (defaults otherwise)")
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ThroughputError {
    #[error(transparent)]
    Bed(#[from] BedError),
    #[error(transparent)]
    Netns(#[from] crate::netns::NetnsError),
    #[error(transparent)]
    Flood(#[from] FloodError),
    #[error(transparent)]
    Bpf(#[from] BpfError),
    #[error("baseline XDP program: {0}")]
    Baseline(String),
    #[error("bad prefix {0}")]
    Prefix(String),
    #[error("pinning the generator: {0}")]
    Pin(std::io::Error),
    #[error("the flood thread panicked")]
    Panicked,
}

fn parse_net(s: &str) -> Result<Ipv4Net, ThroughputError> {
    s.parse().map_err(|_| ThroughputError::Prefix(s.into()))
}

#[derive(Clone, Debug)]
pub struct Options {
    pub windows: usize,
    pub window: Duration,
    pub warmup: Duration,
    /// CPU of the generator thread; the server veth's receive kthread gets `rx_cpu`.
    pub gen_cpu: usize,
    /// `None`: the receive path stays in softirq, on whichever CPU raised it.
    pub rx_cpu: Option<usize>,
    /// Frames per live-frames batch.
    pub batch: u32,
    /// Generator thread and receive kthread under SCHED_FIFO (other work on the machine
    /// would otherwise take their CPUs at random moments).
    pub realtime: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            windows: 2,
            window: Duration::from_secs(1),
            warmup: Duration::from_millis(500),
            gen_cpu: 0,
            rx_cpu: Some(1),
            batch: 64,
            realtime: true,
        }
    }
}

/// One (filter, scenario): per-window rates in Mpps.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Measurement {
    pub filter: Filter,
    pub scenario: Scenario,
    pub rule: String,
    /// Frames the server veth took per second, one sample per window.
    pub handled: Vec<f64>,
    /// Frames the filter dropped per second (its own counter), one sample per window.
    pub dropped: Vec<f64>,
    /// What the generator sent per second, one sample per flood (warm-up included).
    pub offered: Vec<f64>,
    /// Frames the server veth could not queue (ring full), share of those offered, per flood.
    pub ring_full: Vec<f64>,
    /// Receive kthreads pinned (0: the receive path ran in softirq wherever it was raised).
    pub napi_threads: usize,
    /// TCP segments the server's stack took during the floods, and how many of them failed
    /// the checksum (a check of the generator's incremental checksum updates).
    pub tcp_in_segs: u64,
    pub tcp_csum_errors: u64,
}

impl Measurement {
    pub fn handled(&self) -> Spread {
        Spread::of(&mut self.handled.clone())
    }
    pub fn dropped(&self) -> Spread {
        Spread::of(&mut self.dropped.clone())
    }
    pub fn offered(&self) -> Spread {
        Spread::of(&mut self.offered.clone())
    }
    pub fn ring_full(&self) -> Spread {
        Spread::of(&mut self.ring_full.clone())
    }
    /// Floods (passes) merged into one measurement.
    pub fn merge(&mut self, other: Measurement) {
        self.handled.extend(other.handled);
        self.dropped.extend(other.dropped);
        self.offered.extend(other.offered);
        self.ring_full.extend(other.ring_full);
        self.napi_threads = self.napi_threads.min(other.napi_threads);
        self.tcp_in_segs += other.tcp_in_segs;
        self.tcp_csum_errors += other.tcp_csum_errors;
    }
}

enum Installed {
    Stack,
    Iptables,
    Nftables,
    XdpGuard(Box<Datapath>),
    /// Holds the program (and its attachment) until the measurement ends.
    Bare {
        _program: Box<Ebpf>,
    },
}

fn guard_params() -> RateParams {
    RateParams {
        syn_rate: SYN_RATE,
        syn_burst: SYN_BURST,
        enforce: true,
        ipv6_prefix_len: 64,
    }
}

fn install(bed: &Bed, filter: Filter, scenario: Scenario) -> Result<Installed, ThroughputError> {
    let iface = bed.server_if.clone();
    Ok(match filter {
        Filter::BareDrop => {
            let ebpf = in_ns(&bed.server, move || {
                let fail = |e: &dyn std::fmt::Display| BedError::Parse {
                    what: "the baseline program".into(),
                    text: e.to_string(),
                };
                let mut ebpf = Ebpf::load(BASELINE_OBJECT).map_err(|e| fail(&e))?;
                let prog: &mut Xdp = ebpf
                    .program_mut("xdp_drop")
                    .ok_or_else(|| fail(&"no program xdp_drop"))?
                    .try_into()
                    .map_err(|e| fail(&e))?;
                prog.load().map_err(|e| fail(&e))?;
                prog.attach(&iface, XdpMode::Driver).map_err(|e| fail(&e))?;
                Ok(Box::new(ebpf))
            })?;
            Installed::Bare { _program: ebpf }
        }
        Filter::NoFilter => {
            bed.set_gro(true)?;
            Installed::Stack
        }
        Filter::Iptables => {
            bed.set_gro(true)?;
            let mut cmd = vec!["iptables", "-t", "raw", "-A", "PREROUTING"];
            let prefix = scenario.prefix();
            let (rate, burst) = (format!("{SYN_RATE}/sec"), SYN_BURST.to_string());
            if scenario.blocked() {
                cmd.extend(["-s", prefix]);
            } else {
                cmd.extend([
                    "-p",
                    "tcp",
                    "--syn",
                    "-m",
                    "hashlimit",
                    "--hashlimit-name",
                    "xgsyn",
                    "--hashlimit-mode",
                    "srcip",
                    "--hashlimit-above",
                    &rate,
                    "--hashlimit-burst",
                    &burst,
                ]);
            }
            cmd.extend(["-j", "DROP"]);
            bed.server.exec(&cmd)?;
            Installed::Iptables
        }
        Filter::Nftables => {
            bed.set_gro(true)?;
            let rules = scenario.rule(filter, &iface).replace("; ", ";\n");
            let mut child = bed
                .server
                .command("nft")
                .args(["-f", "-"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .map_err(|source| BedError::Io {
                    what: "running nft".into(),
                    source,
                })?;
            if let Some(mut stdin) = child.stdin.take() {
                use std::io::Write as _;
                stdin
                    .write_all(rules.as_bytes())
                    .map_err(|source| BedError::Io {
                        what: "writing the nft ruleset".into(),
                        source,
                    })?;
            }
            let out = child.wait_with_output().map_err(|source| BedError::Io {
                what: "running nft".into(),
                source,
            })?;
            if !out.status.success() {
                return Err(BedError::Parse {
                    what: format!("nft -f - <<< {rules}"),
                    text: String::from_utf8_lossy(&out.stderr).into(),
                }
                .into());
            }
            Installed::Nftables
        }
        Filter::XdpGuardNative | Filter::XdpGuardGeneric | Filter::XdpGuardVariant(_) => {
            let variant = match filter {
                Filter::XdpGuardVariant(v) => Some(v),
                _ => None,
            };
            let mode = if filter != Filter::XdpGuardGeneric {
                AttachMode::Native
            } else {
                // Generic XDP runs after the skb is built: the veth needs GRO to take the
                // redirected frames at all.
                bed.set_gro(true)?;
                AttachMode::Generic
            };
            let block = scenario.blocked().then(|| parse_net(scenario.prefix()));
            let block = block.transpose()?;
            let dp = in_ns(&bed.server, move || {
                let bpf = |e: BpfError| BedError::Parse {
                    what: "xdp-guard".into(),
                    text: e.to_string(),
                };
                let mut dp = Datapath::load(&LoadOptions::default()).map_err(bpf)?;
                let mut cfg = guard_params().to_config(rand::random());
                if let Some(v) = variant {
                    v.apply(&mut cfg);
                }
                dp.set_config(cfg).map_err(bpf)?;
                if let Some(net) = block {
                    dp.block(net.into(), NEVER).map_err(bpf)?;
                }
                dp.attach(&iface, mode, None).map_err(bpf)?;
                Ok(Box::new(dp))
            })?;
            Installed::XdpGuard(dp)
        }
    })
}

/// The filter's own count of dropped frames.
fn dropped(bed: &Bed, installed: &Installed) -> Result<u64, ThroughputError> {
    Ok(match installed {
        Installed::Stack => 0,
        Installed::Bare { .. } => bed.rx()?.packets,
        Installed::XdpGuard(dp) => stats::dropped(&dp.stats()?),
        Installed::Iptables => {
            let out = bed
                .server
                .exec(&["iptables", "-t", "raw", "-nvxL", "PREROUTING"])?;
            let text = String::from_utf8_lossy(&out.stdout);
            parse_iptables(&text).ok_or_else(|| BedError::Parse {
                what: "iptables -nvxL".into(),
                text: text.into(),
            })?
        }
        Installed::Nftables => {
            let out = bed.server.exec(&["nft", "list", "table", "netdev", "xg"])?;
            let text = String::from_utf8_lossy(&out.stdout);
            parse_nft(&text).ok_or_else(|| BedError::Parse {
                what: "nft list table".into(),
                text: text.into(),
            })?
        }
    })
}

/// Packets of the DROP rules in `iptables -nvxL` output.
fn parse_iptables(text: &str) -> Option<u64> {
    let mut found = None;
    for line in text.lines().skip(2) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.get(2) == Some(&"DROP") {
            *found.get_or_insert(0) += f.first()?.parse::<u64>().ok()?;
        }
    }
    found
}

/// Packets of every `counter` in `nft list` output.
fn parse_nft(text: &str) -> Option<u64> {
    let mut found = None;
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w == "counter" && words.next() == Some("packets") {
            *found.get_or_insert(0) += words.next()?.parse::<u64>().ok()?;
        }
    }
    found
}

/// A counter value and the midpoint of the time it took to read it.
fn read_at<T>(
    f: impl FnOnce() -> Result<T, ThroughputError>,
) -> Result<(T, Instant), ThroughputError> {
    let t0 = Instant::now();
    let v = f()?;
    let t1 = Instant::now();
    Ok((v, t0 + (t1 - t0) / 2))
}

/// Flood a fresh bed with `filter` installed and measure it.
pub fn measure(
    filter: Filter,
    scenario: Scenario,
    opts: &Options,
) -> Result<Measurement, ThroughputError> {
    let bed = Bed::new()?;
    let installed = install(&bed, filter, scenario)?;
    let napi_threads = match opts.rx_cpu {
        Some(cpu) => bed.pin_napi(cpu, opts.realtime)?,
        None => 0,
    };
    let total = opts.warmup + opts.window * opts.windows as u32 + Duration::from_secs(2);
    // Bounded by time and by count: 15 Mpps is twice what this generator reaches here.
    let mut spec = FloodSpec::new(
        scenario.sources()?,
        bed.server_mac,
        SERVER,
        PORT,
        (total.as_secs_f64() * 15e6) as u64,
        total,
    );
    spec.batch = opts.batch;
    let stop = AtomicBool::new(false);
    let (windows, outcome, ring, tcp) = std::thread::scope(|s| {
        let flood = s.spawn(|| -> Result<FloodOutcome, ThroughputError> {
            bed.attacker
                .enter_current_thread()
                .map_err(BedError::from)?;
            super::pin_to_cpu(opts.gen_cpu).map_err(ThroughputError::Pin)?;
            if opts.realtime {
                super::realtime(0, 50).map_err(ThroughputError::Pin)?;
            }
            let mut generator = Generator::new(&bed.attacker_if, spec)?;
            Ok(generator.run(&stop)?)
        });
        let measured = (|| -> Result<_, ThroughputError> {
            std::thread::sleep(opts.warmup);
            let rx0 = bed.rx()?;
            let tcp0 = bed.tcp()?;
            let mut prev_rx = read_at(|| Ok(bed.rx()?.packets))?;
            let mut prev_drop = read_at(|| dropped(&bed, &installed))?;
            let mut windows = Vec::with_capacity(opts.windows);
            for _ in 0..opts.windows {
                std::thread::sleep(opts.window);
                let rx = read_at(|| Ok(bed.rx()?.packets))?;
                let drop = read_at(|| dropped(&bed, &installed))?;
                let rate = |(a, ta): (u64, Instant), (b, tb): (u64, Instant)| {
                    b.saturating_sub(a) as f64 / (tb - ta).as_secs_f64() / 1e6
                };
                windows.push((rate(prev_rx, rx), rate(prev_drop, drop)));
                (prev_rx, prev_drop) = (rx, drop);
            }
            let rx1 = bed.rx()?;
            let tcp1 = bed.tcp()?;
            Ok((windows, rx0, rx1, tcp0, tcp1))
        })();
        stop.store(true, Ordering::Relaxed);
        let outcome = flood.join().map_err(|_| ThroughputError::Panicked)?;
        let (windows, rx0, rx1, tcp0, tcp1) = measured?;
        let handled = rx1.packets - rx0.packets;
        let ring = rx1.dropped - rx0.dropped;
        let ring_share = ring as f64 / (handled + ring).max(1) as f64;
        let tcp = (
            tcp1.in_segs - tcp0.in_segs,
            tcp1.in_csum_errors - tcp0.in_csum_errors,
        );
        Ok::<_, ThroughputError>((windows, outcome?, ring_share, tcp))
    })?;
    drop(installed);
    let (handled, dropped): (Vec<f64>, Vec<f64>) = windows.into_iter().unzip();
    Ok(Measurement {
        filter,
        scenario,
        rule: scenario.rule(filter, "<iface>"),
        handled,
        dropped,
        offered: vec![outcome.mpps()],
        ring_full: vec![ring],
        napi_threads,
        tcp_in_segs: tcp.0,
        tcp_csum_errors: tcp.1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counters() {
        let ipt = "Chain PREROUTING (policy ACCEPT 10 packets, 400 bytes)\n    pkts      bytes target     prot opt in     out     source               destination\n  123456  5000000 DROP       all  --  *      *       203.0.113.0/24       0.0.0.0/0\n";
        assert_eq!(parse_iptables(ipt), Some(123_456));
        let nft = "table netdev xg {\n\tchain ingress {\n\t\ttype filter hook ingress device \"xgs1\" priority -500; policy accept;\n\t\tip saddr 203.0.113.0/24 counter packets 42 bytes 2268 drop\n\t}\n}\n";
        assert_eq!(parse_nft(nft), Some(42));
        assert_eq!(parse_nft("table netdev xg {}"), None);
    }
}

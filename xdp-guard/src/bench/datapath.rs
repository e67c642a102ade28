//! Per-packet cost of each packet class through BPF_PROG_TEST_RUN, beside a bare XDP_DROP
//! program measured in the same run.
//!
//! TEST_RUN repeats one frame, so caches stay warm and a "never-seen" source is measured by
//! configuring the program so that every repetition takes the never-seen path (sketch below
//! admission, or admission refused by the flood guard). The veth throughput benchmark covers
//! truly random sources.

use std::net::{Ipv4Addr, Ipv6Addr};

use aya::{
    Ebpf,
    programs::{TestRun, TestRunOptions, Xdp},
};
use ipnet::{IpNet, Ipv4Net};
use rand::{Rng, SeedableRng, rngs::StdRng};
use xdp_guard_common::{
    config::{GuardConfig, RateParams},
    maps::NEVER,
    net::{TCP_ACK, TCP_SYN},
};

use super::Spread;
use crate::{
    bpf::{BASELINE_OBJECT, BpfError, Datapath, LoadOptions},
    frames::Frame,
};

/// The classes the 6x goal names.
pub const HOT_PATHS: [&str; 6] = [
    "ACK, unknown source",
    "SYN, tracked source, within rate",
    "ACK, blocked /32",
    "SYN, blocked /32",
    "SYN, never-seen source (sketch below admission)",
    "SYN, never-seen source (flood guard refuses)",
];

#[derive(Clone, Debug)]
pub struct Options {
    pub repeat: u32,
    pub rounds: usize,
    /// Prefixes in the blocklist while measuring.
    pub blocks: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            repeat: 1_000_000,
            rounds: 7,
            blocks: 10_000,
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct ClassCost {
    pub class: &'static str,
    pub ns: Spread,
    /// Median over the baseline's median.
    pub ratio: f64,
    pub verdict: &'static str,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    pub machine: String,
    pub repeat: u32,
    pub rounds: usize,
    pub blocks: usize,
    pub baseline: Spread,
    pub classes: Vec<ClassCost>,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Bpf(#[from] BpfError),
    #[error("loading the baseline program: {0}")]
    Baseline(String),
    #[error("BPF_PROG_TEST_RUN: {0}")]
    Run(#[from] aya::programs::ProgramError),
}

/// One packet class: a frame, and the config the program runs with while it is measured
/// (`None`: the bare XDP_DROP baseline instead of xdp-guard).
struct Probe {
    frame: Vec<u8>,
    config: Option<GuardConfig>,
}

/// Every probe `opts.rounds` times, round-robin (round 1 of every probe, then round 2...), so
/// that a burst of other work on the machine lands on all of them alike instead of on the one
/// being measured. Each sample is the kernel's own figure: mean time per repetition in whole
/// nanoseconds. (Wall time around the syscall is no substitute: it adds the loop's
/// per-repetition overhead, which flatters every ratio, and is quantised by the tick.)
fn measure_interleaved(
    dp: &mut Datapath,
    baseline: &mut Baseline,
    probes: &[Probe],
    opts: &Options,
) -> Result<Vec<(Spread, u32)>, BenchError> {
    let mut samples = vec![Vec::with_capacity(opts.rounds); probes.len()];
    let mut verdicts = vec![0; probes.len()];
    for _ in 0..opts.rounds {
        for (i, probe) in probes.iter().enumerate() {
            let prog = match probe.config {
                Some(cfg) => {
                    if *dp.config() != cfg {
                        dp.set_config(cfg)?;
                    }
                    dp.program()?
                }
                None => baseline.program()?,
            };
            let r = prog.test_run(TestRunOptions {
                data_in: Some(&probe.frame),
                repeat: opts.repeat,
                ..Default::default()
            })?;
            verdicts[i] = r.return_value;
            samples[i].push(r.duration.as_nanos() as f64);
        }
    }
    Ok(samples
        .iter_mut()
        .zip(verdicts)
        .map(|(s, v)| (Spread::of(s), v))
        .collect())
}

fn verdict_name(v: u32) -> &'static str {
    match v {
        0 => "ABORTED",
        1 => "DROP",
        2 => "PASS",
        _ => "other",
    }
}

/// `count` random prefixes (60% /32, 25% /24, 10% /20, 5% /16), none covering the addresses
/// the benchmark sends from except where a class asks for it.
fn random_blocks(count: usize, rng: &mut StdRng) -> Vec<IpNet> {
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let len = match rng.random_range(0..100) {
            0..60 => 32,
            60..85 => 24,
            85..95 => 20,
            _ => 16,
        };
        let addr = Ipv4Addr::from(rng.random::<u32>());
        let first = addr.octets()[0];
        // Keep clear of the benchmark's own sources (192.0.2.0/24, 198.51.100.0/24,
        // 203.0.113.0/24) and of non-unicast space.
        if matches!(first, 0 | 127 | 192 | 198 | 203) || first >= 224 {
            continue;
        }
        if let Ok(net) = Ipv4Net::new(addr, len) {
            out.push(IpNet::V4(net.trunc()));
        }
    }
    out
}

/// The bare XDP_DROP program, loaded (not attached).
pub struct Baseline(Ebpf);

impl Baseline {
    pub fn load() -> Result<Self, BenchError> {
        let mut obj =
            Ebpf::load(BASELINE_OBJECT).map_err(|e| BenchError::Baseline(e.to_string()))?;
        let prog: &mut Xdp = obj
            .program_mut("xdp_drop")
            .ok_or_else(|| BenchError::Baseline("no program xdp_drop".into()))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| BenchError::Baseline(e.to_string()))?;
        prog.load()
            .map_err(|e| BenchError::Baseline(e.to_string()))?;
        Ok(Self(obj))
    }

    pub fn program(&mut self) -> Result<&mut Xdp, BenchError> {
        self.0
            .program_mut("xdp_drop")
            .ok_or_else(|| BenchError::Baseline("no program xdp_drop".into()))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| BenchError::Baseline(e.to_string()))
    }
}

/// Within rate however fast TEST_RUN repeats: a 1 ns interval and a huge tolerance; every
/// never-seen source admitted at once.
fn generous_config() -> GuardConfig {
    let base = RateParams {
        syn_rate: 100,
        syn_burst: 200,
        enforce: true,
        ipv6_prefix_len: 64,
    }
    .to_config(0xbe7c);
    GuardConfig {
        syn_interval_ns: 1,
        syn_tolerance_ns: u64::MAX / 4,
        sketch_admit: 1,
        ..base
    }
}

fn prefix(s: &str) -> Result<IpNet, BenchError> {
    s.parse()
        .map_err(|_| BenchError::Baseline(format!("bad prefix {s}")))
}

pub fn run(opts: &Options) -> Result<Report, BenchError> {
    let mut baseline_obj = Baseline::load()?;
    let mut dp = Datapath::load(&LoadOptions::default())?;
    let generous = generous_config();
    dp.set_config(generous)?;
    dp.set_ports(&[])?;
    let mut rng = StdRng::seed_from_u64(0xb10c);
    for net in random_blocks(opts.blocks, &mut rng) {
        dp.block(net, NEVER)?;
    }
    // A /16 crowded with blocks of three lengths that do not cover the probe source.
    for net in [
        "198.51.7.0/24",
        "198.51.100.16/28",
        "198.51.100.9/32",
        "203.0.113.66/32",
        "10.99.0.0/16",
    ] {
        dp.block(prefix(net)?, NEVER)?;
    }

    let syn_tracked = Frame::syn4(Ipv4Addr::new(192, 0, 2, 1), 80).bytes();
    let syn6 = Frame::tcp6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1), 80, TCP_SYN).bytes();
    // Admit the tracked sources once; the probes then measure their steady state.
    for f in [&syn_tracked, &syn6] {
        dp.program()?.test_run(TestRunOptions {
            data_in: Some(f),
            repeat: 1,
            ..Default::default()
        })?;
    }
    let never = Frame::syn4(Ipv4Addr::new(192, 0, 2, 150), 80).bytes();
    let g = Some(generous);
    let classes: Vec<(&'static str, Probe)> = vec![
        (
            "ACK, unknown source",
            Probe {
                frame: Frame::tcp4(Ipv4Addr::new(192, 0, 2, 200), 80, TCP_ACK).bytes(),
                config: g,
            },
        ),
        (
            "ACK, unknown source in a /16 holding 3 block lengths",
            Probe {
                frame: Frame::tcp4(Ipv4Addr::new(198, 51, 100, 200), 80, TCP_ACK).bytes(),
                config: g,
            },
        ),
        (
            "SYN, tracked source, within rate",
            Probe {
                frame: syn_tracked.clone(),
                config: g,
            },
        ),
        (
            "IPv6 SYN, tracked /64, within rate",
            Probe {
                frame: syn6,
                config: g,
            },
        ),
        (
            "ACK, blocked /32",
            Probe {
                frame: Frame::tcp4(Ipv4Addr::new(203, 0, 113, 66), 80, TCP_ACK).bytes(),
                config: g,
            },
        ),
        (
            "SYN, blocked /32",
            Probe {
                frame: Frame::syn4(Ipv4Addr::new(203, 0, 113, 66), 80).bytes(),
                config: g,
            },
        ),
        (
            "ACK, blocked /16",
            Probe {
                frame: Frame::tcp4(Ipv4Addr::new(10, 99, 1, 2), 80, TCP_ACK).bytes(),
                config: g,
            },
        ),
        (
            "ARP (not IP)",
            Probe {
                frame: Frame::arp().bytes(),
                config: g,
            },
        ),
        // Never-seen sources: every repetition takes the never-seen path.
        (
            "SYN, never-seen source (sketch below admission)",
            Probe {
                frame: never.clone(),
                config: Some(GuardConfig {
                    sketch_admit: u32::MAX,
                    ..generous
                }),
            },
        ),
        (
            "SYN, never-seen source (flood guard refuses)",
            Probe {
                frame: never,
                config: Some(GuardConfig {
                    sketch_admit: 1,
                    guard_max_new: 0,
                    ..generous
                }),
            },
        ),
        // Over the limit: a tiny tolerance, the tracked source is dropped on every repetition.
        (
            "SYN, tracked source, over the limit",
            Probe {
                frame: syn_tracked.clone(),
                config: Some(GuardConfig {
                    syn_interval_ns: 1_000_000_000,
                    syn_tolerance_ns: 0,
                    ..generous
                }),
            },
        ),
    ];
    let mut probes = vec![Probe {
        frame: syn_tracked,
        config: None,
    }];
    let names: Vec<&'static str> = classes.iter().map(|(n, _)| *n).collect();
    probes.extend(classes.into_iter().map(|(_, p)| p));
    let mut results = measure_interleaved(&mut dp, &mut baseline_obj, &probes, opts)?.into_iter();
    let (base, _) = results
        .next()
        .ok_or_else(|| BenchError::Baseline("no baseline sample".into()))?;
    let classes = names
        .into_iter()
        .zip(results)
        .map(|(class, (ns, v))| ClassCost {
            class,
            ns,
            ratio: ns.median / base.median,
            verdict: verdict_name(v),
        })
        .collect();

    Ok(Report {
        machine: super::machine(),
        repeat: opts.repeat,
        rounds: opts.rounds,
        blocks: opts.blocks,
        baseline: base,
        classes,
    })
}

/// What fills the blocklist in the scaling figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum BlockKind {
    /// Single addresses (/32).
    Addresses,
    /// The mix of [`random_blocks`] (60% /32, 25% /24, 10% /20, 5% /16), and a /16 holding
    /// blocks of every length from /17 to /32 around the probe source.
    Cidrs,
}

impl BlockKind {
    pub fn label(self) -> &'static str {
        match self {
            Self::Addresses => "single addresses",
            Self::Cidrs => "CIDRs",
        }
    }
}

pub const SCALING_SIZES: [usize; 4] = [10, 1_000, 100_000, 1_000_000];

/// The classes measured at every blocklist size.
pub const SCALING_CLASSES: [&str; 4] = [
    "ACK, unknown source in a /16 holding blocks",
    "SYN, blocked /32",
    "SYN, tracked source, within rate",
    "SYN, never-seen source",
];

/// [`SCALING_CLASSES`] in a few words, for chart legends.
pub const SCALING_SHORT: [&str; 4] = [
    "ACK, miss in a /16 with blocks",
    "SYN, blocked /32",
    "SYN, tracked",
    "SYN, never-seen",
];

#[derive(Clone, Debug, serde::Serialize)]
pub struct ScalingPoint {
    pub kind: BlockKind,
    pub requested: usize,
    /// Distinct prefixes in the blocklist (random CIDRs may repeat).
    pub entries: usize,
    /// Distinct prefix lengths inside the probe source's /16 (hash probes for a miss).
    pub probe_lengths: u32,
    /// Wall time to insert them, one `Datapath::block` each.
    pub insert_secs: f64,
    pub baseline: Spread,
    pub costs: Vec<Spread>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Scaling {
    pub machine: String,
    pub repeat: u32,
    pub rounds: usize,
    pub points: Vec<ScalingPoint>,
}

/// `count` random /32s outside the benchmark's own sources and non-unicast space.
fn random_addresses(count: usize, rng: &mut StdRng) -> Vec<IpNet> {
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let addr = Ipv4Addr::from(rng.random::<u32>());
        let first = addr.octets()[0];
        if matches!(first, 0 | 127 | 192 | 198 | 203) || first >= 224 {
            continue;
        }
        out.push(IpNet::V4(Ipv4Net::from(addr)));
    }
    out
}

/// Per-packet cost of [`SCALING_CLASSES`] with `sizes` entries in the blocklist, for single
/// addresses and for CIDRs; a fresh program for every point.
pub fn scaling(opts: &Options, sizes: &[usize]) -> Result<Scaling, BenchError> {
    let mut baseline_obj = Baseline::load()?;
    let mut points = Vec::new();
    let probe_miss = Frame::tcp4(Ipv4Addr::new(198, 51, 100, 200), 80, TCP_ACK).bytes();
    let probe_blocked = Frame::syn4(Ipv4Addr::new(203, 0, 113, 66), 80).bytes();
    let tracked = Frame::syn4(Ipv4Addr::new(192, 0, 2, 1), 80).bytes();
    let never = Frame::syn4(Ipv4Addr::new(192, 0, 2, 150), 80).bytes();
    for kind in [BlockKind::Addresses, BlockKind::Cidrs] {
        for &requested in sizes {
            let mut dp = Datapath::load(&LoadOptions {
                block_max_entries: 2_097_152,
                ..LoadOptions::default()
            })?;
            let generous = generous_config();
            dp.set_config(generous)?;
            dp.set_ports(&[])?;
            let mut rng = StdRng::seed_from_u64(0x5ca1e ^ requested as u64);
            let mut fixed = vec![prefix("203.0.113.66/32")?];
            let probe_lengths = match kind {
                BlockKind::Addresses => {
                    fixed.push(prefix("198.51.100.9/32")?);
                    1
                }
                BlockKind::Cidrs => {
                    // Every length from /17 to /32 in the probe's /16, none covering it.
                    for len in 17..=32u8 {
                        let net = Ipv4Net::new(Ipv4Addr::new(198, 51, 200, 0), len)
                            .map_err(|_| BenchError::Baseline("bad length".into()))?;
                        fixed.push(IpNet::V4(net.trunc()));
                    }
                    16
                }
            };
            let rest = requested.saturating_sub(fixed.len());
            let random = match kind {
                BlockKind::Addresses => random_addresses(rest, &mut rng),
                BlockKind::Cidrs => random_blocks(rest, &mut rng),
            };
            let started = std::time::Instant::now();
            for net in fixed.into_iter().chain(random) {
                dp.block(net, NEVER)?;
            }
            let insert_secs = started.elapsed().as_secs_f64();
            let entries = dp.block_count();

            dp.program()?.test_run(TestRunOptions {
                data_in: Some(&tracked),
                repeat: 1,
                ..Default::default()
            })?;
            let g = Some(generous);
            let probes = [
                Probe {
                    frame: tracked.clone(),
                    config: None,
                },
                Probe {
                    frame: probe_miss.clone(),
                    config: g,
                },
                Probe {
                    frame: probe_blocked.clone(),
                    config: g,
                },
                Probe {
                    frame: tracked.clone(),
                    config: g,
                },
                Probe {
                    frame: never.clone(),
                    config: Some(GuardConfig {
                        sketch_admit: u32::MAX,
                        ..generous
                    }),
                },
            ];
            let mut results = measure_interleaved(&mut dp, &mut baseline_obj, &probes, opts)?
                .into_iter()
                .map(|(s, _)| s);
            let baseline = results
                .next()
                .ok_or_else(|| BenchError::Baseline("no baseline sample".into()))?;
            let costs: Vec<Spread> = results.collect();
            points.push(ScalingPoint {
                kind,
                requested,
                entries,
                probe_lengths,
                insert_secs,
                baseline,
                costs,
            });
        }
    }
    Ok(Scaling {
        machine: super::machine(),
        repeat: opts.repeat,
        rounds: opts.rounds,
        points,
    })
}

impl Scaling {
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "Median ns per packet via BPF_PROG_TEST_RUN ({} repetitions, {} rounds; [min-max] below each median), a fresh program per row. \"hash probes\": distinct block lengths in the probe source's /16, one hash lookup each on a miss.\n\n| blocklist | entries | insert (s) | hash probes | bare XDP_DROP |",
            self.repeat, self.rounds
        );
        for c in SCALING_CLASSES {
            s += &format!(" {c} |");
        }
        s += "\n|---|---:|---:|---:|---:|";
        for _ in SCALING_CLASSES {
            s += "---:|";
        }
        s += "\n";
        let cell = |x: &Spread| format!("{:.1} [{:.0}-{:.0}]", x.median, x.min, x.max);
        for p in &self.points {
            s += &format!(
                "| {} | {} | {:.1} | {} | {} |",
                p.kind.label(),
                p.entries,
                p.insert_secs,
                p.probe_lengths,
                cell(&p.baseline)
            );
            for c in &p.costs {
                s += &format!(" {} |", cell(c));
            }
            s += "\n";
        }
        s
    }
}

impl Report {
    pub fn cost(&self, class: &str) -> Option<f64> {
        self.classes
            .iter()
            .find(|c| c.class == class)
            .map(|c| c.ns.median)
    }

    pub fn markdown(&self) -> String {
        let mut s = format!(
            "Per-packet cost via BPF_PROG_TEST_RUN ({} repetitions, {} rounds, min/median/max ns), {} blocklist prefixes.\nMachine: {}\n\n| class | verdict | min | median | max | x bare XDP_DROP |\n|---|---|---:|---:|---:|---:|\n| bare XDP_DROP (baseline) | DROP | {:.1} | {:.1} | {:.1} | 1.00 |\n",
            self.repeat,
            self.rounds,
            self.blocks,
            self.machine,
            self.baseline.min,
            self.baseline.median,
            self.baseline.max
        );
        for c in &self.classes {
            s += &format!(
                "| {} | {} | {:.1} | {:.1} | {:.1} | {:.2} |\n",
                c.class, c.verdict, c.ns.min, c.ns.median, c.ns.max, c.ratio
            );
        }
        s += "\n";
        s += &self.goals_line();
        s
    }

    /// The datapath issue's goals on these figures, one line.
    pub fn goals_line(&self) -> String {
        let worst = self
            .classes
            .iter()
            .filter(|c| HOT_PATHS.contains(&c.class))
            .map(|c| c.ratio)
            .fold(0.0f64, f64::max);
        let tracked = self
            .cost("SYN, tracked source, within rate")
            .unwrap_or(f64::NAN);
        let never = [
            "SYN, never-seen source (sketch below admission)",
            "SYN, never-seen source (flood guard refuses)",
        ]
        .iter()
        .filter_map(|c| self.cost(c))
        .fold(0.0f64, f64::max);
        format!(
            "Datapath goals: every hot path (ACK from an unknown source, SYN from a tracked or never-seen source, any packet from a blocked /32) within 6x bare XDP_DROP: worst {:.2}x ({}). Never-seen source within 1.5x of a tracked one: {:.2}x ({}).\n",
            worst,
            if worst <= 6.0 { "met" } else { "MISSED" },
            never / tracked,
            if never / tracked <= 1.5 {
                "met"
            } else {
                "MISSED"
            },
        )
    }
}

//! Every benchmark in one run, written as `report.md` with SVG charts and `results.json`
//! beside it (`cargo xtask bench` runs this through `xdp-guard-bench report`).
//!
//! Sections are independent: one that fails is reported as not measured, with its error, and
//! the others still run. Figures are printed with their spread and ratios; nothing here
//! passes or fails on time.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    time::Instant,
};

use super::{
    Spread, api_load, conns, controller, datapath, store,
    svg::{self, Bar, Group, Series},
    throughput::{self, Filter, GuardVariant, Measurement, Scenario},
};

#[derive(Clone, Debug)]
pub struct Options {
    pub out_dir: PathBuf,
    pub datapath: datapath::Options,
    pub scaling_sizes: Vec<usize>,
    pub throughput: throughput::Options,
    /// Floods per (filter, scenario), interleaved: pass 1 of every configuration, then pass 2...
    pub passes: usize,
    /// Floods per filter of the placement check (0: skip it).
    pub placement_passes: usize,
    pub controller: controller::Options,
    pub api: api_load::Options,
    pub store: store::Options,
    pub conns: conns::Options,
    /// Sections to run (see [`SECTIONS`]); empty: all of them.
    pub only: Vec<String>,
}

/// Section names for [`Options::only`].
pub const SECTIONS: [&str; 9] = [
    "datapath",
    "scaling",
    "throughput",
    "placement",
    "spoofed",
    "controller",
    "api",
    "store",
    "conns",
];

impl Options {
    fn wants(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            out_dir: PathBuf::from("bench"),
            datapath: datapath::Options::default(),
            scaling_sizes: datapath::SCALING_SIZES.to_vec(),
            throughput: throughput::Options::default(),
            passes: 4,
            placement_passes: 2,
            controller: controller::Options::default(),
            api: api_load::Options::default(),
            store: store::Options::default(),
            conns: conns::Options::default(),
            only: Vec::new(),
        }
    }
}

/// The (filter, scenario) pairs of the throughput figure, in measuring order.
pub fn throughput_configs() -> Vec<(Filter, Scenario)> {
    let mut v = vec![
        (Filter::BareDrop, Scenario::SingleBlocked),
        (Filter::BareDrop, Scenario::SpoofedBlocked),
    ];
    for scenario in Scenario::ALL {
        for filter in [
            Filter::NoFilter,
            Filter::Iptables,
            Filter::Nftables,
            Filter::XdpGuardNative,
            Filter::XdpGuardGeneric,
        ] {
            v.push((filter, scenario));
        }
    }
    v
}

#[derive(Default, serde::Serialize)]
struct Results {
    datapath: Option<datapath::Report>,
    scaling: Option<datapath::Scaling>,
    throughput: Vec<Measurement>,
    /// The placement check: receive path in softirq on the generator's CPU.
    throughput_same_cpu: Vec<Measurement>,
    /// The spoofed-flood breakdown of xdp-guard's SYN path.
    spoofed_breakdown: Vec<Measurement>,
    controller: Option<controller::Report>,
    api: Option<api_load::Report>,
    store: Option<store::Report>,
    conns: Option<conns::Report>,
    errors: BTreeMap<String, String>,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn now_utc() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Run `f` on a thread pinned to `cpu` (TEST_RUN figures are per CPU; the caller's thread
/// stays unpinned).
fn on_cpu<T: Send>(cpu: usize, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let _ = super::pin_to_cpu(cpu);
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

struct Timed {
    secs: f64,
    load_before: String,
    load_after: String,
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Timed) {
    let load_before = loadavg();
    let t = Instant::now();
    let v = f();
    (
        v,
        Timed {
            secs: t.elapsed().as_secs_f64(),
            load_before,
            load_after: loadavg(),
        },
    )
}

impl Timed {
    fn line(&self) -> String {
        format!(
            "_Section time {:.0} s; load average {} before, {} after._\n",
            self.secs, self.load_before, self.load_after
        )
    }
}

fn write(dir: &Path, name: &str, text: &str) -> std::io::Result<()> {
    std::fs::write(dir.join(name), text)
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**missed**" }
}

struct Goal {
    goal: String,
    measured: String,
    status: String,
    note: String,
}

/// Runs everything, writes `report.md`, the charts and `results.json` into `out_dir`, and
/// returns the Markdown.
pub fn run(opts: &Options) -> std::io::Result<String> {
    std::fs::create_dir_all(&opts.out_dir)?;
    let started = Instant::now();
    let load_start = loadavg();
    let mut r = Results::default();
    let mut sections = String::new();
    let mut goals: Vec<Goal> = Vec::new();

    // 1. Per-packet cost by class.
    if opts.wants("datapath") {
        eprintln!("bench: per-packet cost by class");
        let (res, t) = timed(|| on_cpu(0, || datapath::run(&opts.datapath)));
        sections += "## 1. Per-packet cost by class\n\n";
        match res {
            Ok(rep) => {
                sections += &rep.markdown();
                let mut bars = vec![Bar {
                    label: "bare XDP_DROP (baseline)".into(),
                    value: rep.baseline.median,
                    range: Some((rep.baseline.min, rep.baseline.max)),
                    color: svg::GREY,
                }];
                for c in &rep.classes {
                    bars.push(Bar {
                        label: c.class.into(),
                        value: c.ns.median,
                        range: Some((c.ns.min, c.ns.max)),
                        color: if c.verdict == "DROP" {
                            svg::RED
                        } else {
                            svg::BLUE
                        },
                    });
                }
                write(
                    &opts.out_dir,
                    "cost_by_class.svg",
                    &svg::hbars(
                        &format!(
                            "Per-packet cost via BPF_PROG_TEST_RUN (median of {}, whiskers min-max; red: dropped)",
                            rep.rounds
                        ),
                        "ns per packet",
                        &[Group {
                            label: String::new(),
                            bars,
                        }],
                        Some((rep.baseline.median * 6.0, "6x bare XDP_DROP")),
                    ),
                )?;
                sections += "\n![Per-packet cost by class](cost_by_class.svg)\n\n";
                r.datapath = Some(rep);
            }
            Err(e) => {
                sections += &format!("Not measured: {e}\n\n");
                r.errors.insert("datapath".into(), e.to_string());
            }
        }
        sections += &t.line();
    }

    // 2. Blocklist scaling.
    if opts.wants("scaling") {
        eprintln!("bench: blocklist scaling");
        let (res, t) =
            timed(|| on_cpu(0, || datapath::scaling(&opts.datapath, &opts.scaling_sizes)));
        sections += "\n## 2. Blocklist scaling\n\n";
        match res {
            Ok(sc) => {
                sections += &sc.markdown();
                sections += "\nTEST_RUN repeats one frame, so the probed hash bucket stays in cache whatever the table size: these rows show the work per packet (how many lookups), not cache misses. Cold lookups with random sources are in section 3 (`random sources in a /10`).\n";
                let mut series = Vec::new();
                for (kind, dashed) in [
                    (datapath::BlockKind::Addresses, false),
                    (datapath::BlockKind::Cidrs, true),
                ] {
                    let pts: Vec<&datapath::ScalingPoint> =
                        sc.points.iter().filter(|p| p.kind == kind).collect();
                    series.push(Series {
                        label: format!("bare XDP_DROP ({})", kind.label()),
                        color: svg::GREY,
                        dashed,
                        points: pts
                            .iter()
                            .map(|p| (p.entries as f64, p.baseline.median))
                            .collect(),
                    });
                    for (i, class) in datapath::SCALING_SHORT.iter().enumerate() {
                        series.push(Series {
                            label: format!("{class} ({})", kind.label()),
                            color: svg::PALETTE[i % 5],
                            dashed,
                            points: pts
                                .iter()
                                .filter_map(|p| Some((p.entries as f64, p.costs.get(i)?.median)))
                                .collect(),
                        });
                    }
                }
                write(
                    &opts.out_dir,
                    "blocklist_scaling.svg",
                    &svg::log_lines(
                        "Per-packet cost by blocklist size (solid: single addresses, dashed: CIDRs)",
                        "blocklist entries",
                        "ns per packet (median)",
                        &series,
                    ),
                )?;
                sections += "\n![Blocklist scaling](blocklist_scaling.svg)\n\n";
                r.scaling = Some(sc);
            }
            Err(e) => {
                sections += &format!("Not measured: {e}\n\n");
                r.errors.insert("scaling".into(), e.to_string());
            }
        }
        sections += &t.line();
    }

    // 3. Throughput.
    if opts.wants("throughput") {
        eprintln!("bench: drop throughput on veth");
        let (measured, t) = timed(|| {
            let mut merged: Vec<Measurement> = Vec::new();
            let mut errors = BTreeMap::new();
            for pass in 0..opts.passes {
                for (filter, scenario) in throughput_configs() {
                    eprintln!(
                        "bench:   pass {}/{}: {} / {}",
                        pass + 1,
                        opts.passes,
                        filter.label(),
                        scenario.label()
                    );
                    match throughput::measure(filter, scenario, &opts.throughput) {
                        Ok(m) => match merged
                            .iter_mut()
                            .find(|x| x.filter == filter && x.scenario == scenario)
                        {
                            Some(x) => x.merge(m),
                            None => merged.push(m),
                        },
                        Err(e) => {
                            errors.insert(
                                format!("throughput {} / {}", filter.label(), scenario.label()),
                                e.to_string(),
                            );
                        }
                    }
                }
            }
            (merged, errors)
        });
        let (merged, errors) = measured;
        r.errors.extend(errors.clone());
        sections += "\n## 3. Drop throughput on veth\n\n";
        sections += &throughput_markdown(&merged, &errors, opts);
        sections += &t.line();
        if opts.placement_passes > 0 && opts.wants("placement") {
            eprintln!("bench: placement check (receive path in softirq on the generator's CPU)");
            let softirq = throughput::Options {
                rx_cpu: None,
                ..opts.throughput.clone()
            };
            let (same_cpu, t) = timed(|| {
                let mut merged: Vec<Measurement> = Vec::new();
                for _ in 0..opts.placement_passes {
                    for filter in PLACEMENT_FILTERS {
                        match throughput::measure(filter, Scenario::SingleBlocked, &softirq) {
                            Ok(m) => match merged.iter_mut().find(|x| x.filter == filter) {
                                Some(x) => x.merge(m),
                                None => merged.push(m),
                            },
                            Err(e) => {
                                r.errors.insert(
                                    format!("placement check {}", filter.label()),
                                    e.to_string(),
                                );
                            }
                        }
                    }
                }
                merged
            });
            sections += &placement_markdown(&merged, &same_cpu, opts);
            sections += &t.line();
            r.throughput_same_cpu = same_cpu;
        }
        if !merged.is_empty() {
            write(&opts.out_dir, "throughput.svg", &throughput_svg(&merged))?;
        }
        goals.extend(throughput_goals(&merged));
        r.throughput = merged;
    }

    if opts.placement_passes > 0 && opts.wants("spoofed") {
        eprintln!("bench: xdp-guard's SYN path under a spoofed flood, part by part");
        let (parts, t) = timed(|| {
            let mut merged: Vec<Measurement> = Vec::new();
            for _ in 0..opts.placement_passes {
                for v in GuardVariant::ALL {
                    let filter = Filter::XdpGuardVariant(v);
                    match throughput::measure(filter, Scenario::SpoofedPerSource, &opts.throughput)
                    {
                        Ok(m) => match merged.iter_mut().find(|x| x.filter == filter) {
                            Some(x) => x.merge(m),
                            None => merged.push(m),
                        },
                        Err(e) => {
                            r.errors.insert(
                                format!("spoofed breakdown {}", filter.label()),
                                e.to_string(),
                            );
                        }
                    }
                }
            }
            merged
        });
        sections += &spoofed_markdown(&r.throughput, &parts, opts);
        sections += &t.line();
        r.spoofed_breakdown = parts;
    }

    // 4. Controller.
    if opts.wants("controller") {
        eprintln!("bench: controller aggregation");
        sections +=
            "\n## 4. Controller\n\n### Reading and aggregating 1,000,000 per-source counters\n\n";
        let (res, t) = timed(|| {
            on_cpu(1, || {
                let _ = super::realtime(0, 40);
                controller::run(&opts.controller)
            })
        });
        match res {
            Ok(c) => {
                sections += &controller_markdown(&c);
                write(
                    &opts.out_dir,
                    "controller.svg",
                    &svg::hbars(
                        &format!(
                            "Reading {} per-source entries and summing over CPUs (median of {} / {} runs)",
                            c.entries, c.batched_runs, c.key_by_key_runs
                        ),
                        "milliseconds",
                        &[Group {
                            label: String::new(),
                            bars: vec![
                                Bar {
                                    label: "batched (BPF_MAP_LOOKUP_BATCH)".into(),
                                    value: c.batched_ms.median,
                                    range: Some((c.batched_ms.min, c.batched_ms.max)),
                                    color: svg::GREEN,
                                },
                                Bar {
                                    label: "key by key (next_key + lookup)".into(),
                                    value: c.key_by_key_ms.median,
                                    range: Some((c.key_by_key_ms.min, c.key_by_key_ms.max)),
                                    color: svg::ORANGE,
                                },
                            ],
                        }],
                        Some((62.5, "quarter of a 250 ms tick")),
                    ),
                )?;
                sections += "\n![Controller aggregation](controller.svg)\n\n";
                sections += &ticks_markdown(&c.ticks, opts.controller.tick_secs);
                let rel = ratio(c.batched_ms.median, c.key_by_key_ms.median);
                goals.push(Goal {
                    goal: "1M-entry aggregation: batched <= 0.3x key-by-key".into(),
                    measured: format!(
                        "{:.3}x ({:.1} ms vs {:.1} ms)",
                        rel, c.batched_ms.median, c.key_by_key_ms.median
                    ),
                    status: verdict(rel <= 0.3).into(),
                    note: String::new(),
                });
                goals.push(Goal {
                    goal: "1M-entry aggregation: batched <= a quarter of the 250 ms tick".into(),
                    measured: format!(
                        "{:.1} ms (max {:.1})",
                        c.batched_ms.median, c.batched_ms.max
                    ),
                    status: verdict(c.batched_ms.median <= 62.5).into(),
                    note: if c.batched_ms.median > 62.5 {
                        "see section 4".into()
                    } else {
                        String::new()
                    },
                });
                r.controller = Some(c);
            }
            Err(e) => {
                sections += &format!("Not measured: {e}\n\n");
                r.errors.insert("controller".into(), e.to_string());
            }
        }
        sections += &t.line();
    }

    if opts.wants("api") {
        eprintln!("bench: API latency under wrk");
        sections += "\n### API latency under load\n\n";
        let (res, t) = timed(|| api_load::run(&opts.api));
        match res {
            Ok(a) => {
                sections += &api_markdown(&a);
                r.api = Some(a);
            }
            Err(e) => {
                sections += &format!("Not measured: {e}\n\n");
                r.errors.insert("api".into(), e.to_string());
            }
        }
        sections += &t.line();
    }

    if opts.wants("store") {
        eprintln!("bench: durable changes with a large blocklist");
        sections += "\n### Durable changes with a large blocklist\n\n";
        let (res, t) = timed(|| store::run(&opts.store));
        match res {
            Ok(s) => {
                sections += &store_markdown(&s);
                r.store = Some(s);
            }
            Err(e) => {
                sections += &format!("Not measured: {e}\n\n");
                r.errors.insert("store".into(), e);
            }
        }
        sections += &t.line();
    }

    // 5. Sockets.
    if opts.wants("conns") {
        eprintln!(
            "bench: the memo's pipelines on {} sockets",
            opts.conns.sockets
        );
        sections += &format!(
            "\n## 5. The memo's pipelines on {} sockets\n\n",
            opts.conns.sockets
        );
        let (res, t) = timed(|| conns::run(&opts.conns));
        match res {
            Ok(c) => {
                sections += &conns_markdown(&c);
                let bars = c
                    .methods
                    .iter()
                    .zip([svg::ORANGE, svg::PURPLE, svg::GREEN, svg::BLUE, svg::GREY])
                    .map(|(m, color)| Bar {
                        label: m.name.clone(),
                        value: m.ms.median,
                        range: Some((m.ms.min, m.ms.max)),
                        color,
                    })
                    .collect();
                write(
                    &opts.out_dir,
                    "conns.svg",
                    &svg::hbars(
                        &format!(
                            "TCP state views on {} sockets (median of {} runs, whiskers min-max)",
                            c.connections, c.runs
                        ),
                        "milliseconds",
                        &[Group {
                            label: String::new(),
                            bars,
                        }],
                        None,
                    ),
                )?;
                sections += "\n![TCP state views](conns.svg)\n\n";
                goals.extend(conns_goals(&c));
                r.conns = Some(c);
            }
            Err(e) => {
                sections += &format!("Not measured: {e}\n\n");
                r.errors.insert("conns".into(), e.to_string());
            }
        }
        sections += &t.line();
    }

    let mut md = format!(
        "# xdp-guard benchmark report\n\nWritten by `cargo xtask bench` on {}. Machine: {}. Load average at the start {}, at the end {}; measurements took {:.0} s.\n\nOther work on the machine shares its 2 CPUs with the benchmark: every figure gives min/median/max over its runs, and the throughput and controller measurements run their threads under SCHED_FIFO so that work cannot take their CPU at random moments.\n\n",
        now_utc(),
        super::machine(),
        load_start,
        loadavg(),
        started.elapsed().as_secs_f64()
    );
    md += "## Goals\n\n| goal | measured | status | reason / note |\n|---|---|---|---|\n";
    for g in &goals {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            g.goal, g.measured, g.status, g.note
        );
    }
    md += "\nThe datapath issue's own goals (per-packet cost against bare XDP_DROP) are in section 1.\n\n";
    md += &sections;
    if !r.errors.is_empty() {
        md += "\n## Not measured\n\n";
        for (k, v) in &r.errors {
            let _ = writeln!(md, "- {k}: {v}");
        }
    }
    write(&opts.out_dir, "report.md", &md)?;
    write(
        &opts.out_dir,
        "results.json",
        &serde_json::to_string_pretty(&r).unwrap_or_default(),
    )?;
    Ok(md)
}

/// Text for a Markdown table cell: a `|` would end the cell, even inside a code span.
fn md_cell(s: &str) -> String {
    s.replace('|', "\\|")
}

fn get(ms: &[Measurement], f: Filter, s: Scenario) -> Option<&Measurement> {
    ms.iter().find(|m| m.filter == f && m.scenario == s)
}

fn cell(s: &Spread) -> String {
    format!("{:.2} [{:.2}-{:.2}]", s.median, s.min, s.max)
}

fn throughput_markdown(
    ms: &[Measurement],
    errors: &BTreeMap<String, String>,
    opts: &Options,
) -> String {
    let o = &opts.throughput;
    let mut s = format!(
        "Setup: two network namespaces joined by a veth pair. The generator (`xdp-guard-ebpf/src/flood.rs`, BPF_PROG_TEST_RUN with live frames, batches of {}) runs on CPU {} in the attacker namespace and redirects SYNs to 198.18.0.1:80 into the veth; the server veth's receive path (NAPI) runs in its own kthread pinned to CPU {}{}. **The machine has 2 CPUs: the generator takes one, the receiver the other**; counter reads, `nft`/`iptables` listings and other work on the machine share them. The server namespace has a listener on port 80, syncookies on (default), reverse-path filtering off and no default route, so SYN-ACKs to spoofed sources fail at the route lookup.\n\nReceive path: for xdp-guard native and the bare XDP_DROP receiver, the native XDP program gives the veth its NAPI; for no filter, iptables, nftables and xdp-guard generic, GRO is turned on (the `ethtool -K <if> gro on` ioctl), which veth needs to accept redirected frames without a native XDP program.\n\nEach (filter, scenario) runs {} floods (interleaved with the other configurations, a fresh namespace pair each time), each with {:.1} s of warm-up and {} windows of {:.1} s: {} samples per figure. *handled*: frames the server veth took per second (`rx_packets`), whatever happened to them next; *dropped*: frames per second the filter's own counter counted as dropped (xdp-guard `STATS`, the nft rule counter, the iptables rule counter); *offered*: frames the generator sent per second; *ring full*: share of the offered frames the veth could not queue because the receiver was behind (the receiver, not the generator, is the bottleneck when this is well above 0). Mpps, median [min-max].\n\n",
        o.batch,
        o.gen_cpu,
        o.rx_cpu.map_or("(none: softirq)".into(), |c| c.to_string()),
        if o.realtime {
            ", both threads under SCHED_FIFO"
        } else {
            ""
        },
        opts.passes,
        o.warmup.as_secs_f64(),
        o.windows,
        o.window.as_secs_f64(),
        opts.passes * o.windows
    );
    let bare = get(ms, Filter::BareDrop, Scenario::SingleBlocked);
    if let Some(b) = bare {
        s += &format!(
            "**Generator**: into the bare XDP_DROP receiver it offered {:.2} Mpps (single source) and the receiver took {:.2} Mpps",
            b.offered().median,
            b.handled().median
        );
        if let Some(r) = get(ms, Filter::BareDrop, Scenario::SpoofedBlocked) {
            s += &format!(
                "; random sources: offered {:.2}, taken {:.2} Mpps",
                r.offered().median,
                r.handled().median
            );
        }
        s += ".\n\n";
    }
    let (segs, csum) = ms
        .iter()
        .filter(|m| m.filter == Filter::NoFilter)
        .fold((0, 0), |(a, b), m| {
            (a + m.tcp_in_segs, b + m.tcp_csum_errors)
        });
    if segs > 0 {
        s += &format!(
            "Checksums: in the no-filter floods the server's TCP stack took {segs} segments from the generator, {csum} of them with a bad checksum (`/proc/net/snmp` `InSegs`, `InCsumErrors`).\n\n"
        );
    }
    for scenario in Scenario::ALL {
        s += &format!(
            "### {}\n\n| filter | dropped (Mpps) | handled (Mpps) | offered (Mpps) | ring full | x nftables (dropped) | rule |\n|---|---:|---:|---:|---:|---:|---|\n",
            scenario.label()
        );
        let nft = get(ms, Filter::Nftables, scenario).map(|m| m.dropped().median);
        let mut filters = vec![
            Filter::NoFilter,
            Filter::Iptables,
            Filter::Nftables,
            Filter::XdpGuardNative,
            Filter::XdpGuardGeneric,
        ];
        if matches!(scenario, Scenario::SingleBlocked | Scenario::SpoofedBlocked) {
            filters.insert(0, Filter::BareDrop);
        }
        for f in filters {
            let Some(m) = get(ms, f, scenario) else {
                let _ = writeln!(s, "| {} | not measured | | | | | |", f.label());
                continue;
            };
            let x = nft.map_or(String::new(), |n| {
                let x = ratio(m.dropped().median, n);
                if f == Filter::NoFilter || f == Filter::BareDrop {
                    String::new()
                } else if x.is_finite() {
                    format!("{x:.2}")
                } else {
                    "n/a".into()
                }
            });
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.2} | {:.0}% | {} | `{}` |",
                f.label(),
                cell(&m.dropped()),
                cell(&m.handled()),
                m.offered().median,
                m.ring_full().median * 100.0,
                x,
                md_cell(&m.rule)
            );
        }
        s += "\n";
    }
    s += "![Drop throughput on veth](throughput.svg)\n\n";
    s += &format!(
        "The per-source limit is {} SYN/s with a burst of {} in every filter: iptables `hashlimit` (table of at most 65,536 sources here), an nftables dynamic set of 65,536 sources with a `limit` per element, xdp-guard's own GCRA (sketch admission, LRU of 65,536 sources per CPU). For the spoofed flood (4,194,304 possible sources) no source reaches that limit, so the figure is what each filter's per-source bookkeeping costs while the kernel stack takes the SYNs. iptables is the Debian default `iptables` (nf_tables backend: the rule becomes an nft rule in the ip `raw` table, `hashlimit` an xt match).\n\n",
        throughput::SYN_RATE,
        throughput::SYN_BURST
    );
    if !errors.is_empty() {
        s += "Not measured:\n\n";
        for (k, v) in errors {
            let _ = writeln!(s, "- {k}: {v}");
        }
        s += "\n";
    }
    s
}

/// Filters of the placement check (single source, drop rule).
const PLACEMENT_FILTERS: [Filter; 4] = [
    Filter::BareDrop,
    Filter::Nftables,
    Filter::XdpGuardNative,
    Filter::XdpGuardGeneric,
];

fn placement_markdown(
    pipeline: &[Measurement],
    same_cpu: &[Measurement],
    opts: &Options,
) -> String {
    let mut s = format!(
        "\n### Placement check: receiver on the generator's CPU\n\nThe same single-source drop-rule floods with the server veth's receive path left in softirq, which then runs on the generator's CPU between its batches (frames still hot in that CPU's cache, no cross-CPU page recycling, but generator and receiver share one CPU, so every rate includes the generator's own cost per frame). {} floods per filter, {} windows each. Dropped Mpps, median [min-max]:\n\n| filter | receiver on its own CPU (above) | receiver on the generator's CPU | x nftables (own CPU) | x nftables (shared CPU) |\n|---|---:|---:|---:|---:|\n",
        opts.placement_passes, opts.throughput.windows
    );
    let nft_a =
        get(pipeline, Filter::Nftables, Scenario::SingleBlocked).map(|m| m.dropped().median);
    let nft_b = same_cpu
        .iter()
        .find(|m| m.filter == Filter::Nftables)
        .map(|m| m.dropped().median);
    for f in PLACEMENT_FILTERS {
        let a = get(pipeline, f, Scenario::SingleBlocked).map(|m| m.dropped());
        let b = same_cpu.iter().find(|m| m.filter == f).map(|m| m.dropped());
        let show = |x: Option<Spread>| x.map_or("not measured".into(), |x| cell(&x));
        let rel = |x: Option<Spread>, n: Option<f64>| match (x, n) {
            (Some(x), Some(n)) if f != Filter::BareDrop => format!("{:.2}", ratio(x.median, n)),
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            f.label(),
            show(a),
            show(b),
            rel(a, nft_a),
            rel(b, nft_b)
        );
    }
    s += "\nSharing one CPU compresses every ratio towards 1 (the generator's cost per frame is added to every filter's); the pipeline above is the figure the goals use.\n\n";
    s
}

fn spoofed_markdown(main: &[Measurement], parts: &[Measurement], opts: &Options) -> String {
    let mut s = format!(
        "\n### xdp-guard's SYN path under the spoofed flood, part by part\n\nThe random-source flood without a drop rule (last table above), with xdp-guard native switched part by part ({} floods each, {} windows). Every SYN is passed to the kernel in all of these but the spoof guard row, so the rate is the receiver's whole cost per SYN: XDP plus the TCP stack (listener, syncookies). Differences between rows are what the switched-off part costs per SYN. The spoof guard row is what the daemon switches on while it sees a spoofed flood (`attack.spoofed_syn_budget`): all but 2,000 SYN/s per CPU are dropped in XDP, so its rate is mostly the cost of a drop.\n\n| receiver | handled (Mpps) | µs per SYN | + µs vs accounting off |\n|---|---:|---:|---:|\n",
        opts.placement_passes, opts.throughput.windows
    );
    let off = parts
        .iter()
        .find(|m| m.filter == Filter::XdpGuardVariant(GuardVariant::AccountingOff))
        .map(|m| 1.0 / m.handled().median);
    let mut rows: Vec<&Measurement> = Vec::new();
    rows.extend(get(main, Filter::NoFilter, Scenario::SpoofedPerSource));
    for v in GuardVariant::ALL {
        rows.extend(
            parts
                .iter()
                .find(|m| m.filter == Filter::XdpGuardVariant(v)),
        );
    }
    rows.extend(get(
        main,
        Filter::XdpGuardNative,
        Scenario::SpoofedPerSource,
    ));
    for m in rows {
        let h = m.handled();
        let us = 1.0 / h.median;
        let extra = off.map_or(String::new(), |o| format!("{:+.2}", us - o));
        let label = if m.filter == Filter::XdpGuardNative {
            "xdp-guard native, as configured (sketch, flood guard admits 4,096 per 100 ms per CPU into the LRU)"
        } else {
            m.filter.label()
        };
        let _ = writeln!(s, "| {} | {} | {:.2} | {} |", label, cell(&h), us, extra);
    }
    s += "\nIn BPF_PROG_TEST_RUN (section 1) the never-seen-source path costs about as much as a tracked source (about 50 ns), because one repeated frame keeps the same sketch cells and LRU bucket in cache. Here every SYN comes from a different random source, on a receiver whose CPU also runs the TCP stack for it; each row is a few floods at different moments of a shared machine, so differences of a tenth of a microsecond are within the spread.\n\n";
    s
}

fn throughput_svg(ms: &[Measurement]) -> String {
    let color = |f: Filter| match f {
        Filter::BareDrop => svg::GREY,
        Filter::NoFilter => svg::PURPLE,
        Filter::Iptables => svg::ORANGE,
        Filter::Nftables => svg::RED,
        Filter::XdpGuardNative => svg::GREEN,
        Filter::XdpGuardGeneric => svg::BLUE,
        Filter::XdpGuardVariant(_) => svg::GREY,
    };
    let groups: Vec<Group> = Scenario::ALL
        .iter()
        .map(|&scenario| Group {
            label: scenario.label().into(),
            bars: ms
                .iter()
                .filter(|m| m.scenario == scenario)
                .map(|m| {
                    let h = m.handled();
                    let d = m.dropped();
                    Bar {
                        label: format!(
                            "{} ({:.0}% dropped)",
                            m.filter.label(),
                            100.0 * ratio(d.median, h.median).min(1.0)
                        ),
                        value: h.median,
                        range: Some((h.min, h.max)),
                        color: color(m.filter),
                    }
                })
                .collect(),
        })
        .collect();
    svg::hbars(
        "Frames the server took per second (median, whiskers min-max; share dropped by the filter)",
        "million frames per second (generator on one CPU, receiver on the other)",
        &groups,
        None,
    )
}

fn throughput_goals(ms: &[Measurement]) -> Vec<Goal> {
    let mut goals = Vec::new();
    let d = |f, s| get(ms, f, s).map(|m| m.dropped());
    let h = |f, s| get(ms, f, s).map(|m| m.handled());
    let ring = |f, s| get(ms, f, s).map_or(0.0, |m| m.ring_full().median);
    let native_ring_note = |s| {
        if ring(Filter::XdpGuardNative, s) < 0.05 {
            "xdp-guard native kept up with the generator (ring full < 5%): its figure is bounded by the generator on the shared machine, so the ratio is a lower bound. "
        } else {
            ""
        }
    };
    // Interference from other work only ever slows a flood down, so the best windows are
    // shown beside the medians the verdict is taken on.
    let pair = |label: &str, target: f64, a: Option<Spread>, b: Option<Spread>, note: String| {
        let (status, measured) = match (a, b) {
            (Some(a), Some(b)) => {
                let x = ratio(a.median, b.median);
                (
                    verdict(x >= target).to_string(),
                    format!(
                        "{x:.3} ({:.2} / {:.2} Mpps, medians); best windows {:.2}",
                        a.median,
                        b.median,
                        ratio(a.max, b.max)
                    ),
                )
            }
            _ => ("not measured".to_string(), String::new()),
        };
        Goal {
            goal: format!("{label} >= {target}"),
            measured,
            status,
            note,
        }
    };
    goals.push(pair(
        "single source, drop rule: xdp-guard native / nftables dropped",
        2.5,
        d(Filter::XdpGuardNative, Scenario::SingleBlocked),
        d(Filter::Nftables, Scenario::SingleBlocked),
        native_ring_note(Scenario::SingleBlocked).into(),
    ));
    goals.push(pair(
        "single source, per-source SYN limit: xdp-guard native / nftables dropped",
        2.5,
        d(Filter::XdpGuardNative, Scenario::SingleRateLimited),
        d(Filter::Nftables, Scenario::SingleRateLimited),
        native_ring_note(Scenario::SingleRateLimited).into(),
    ));
    goals.push(pair(
        "random sources, drop rule for the range: xdp-guard native / nftables dropped",
        2.0,
        d(Filter::XdpGuardNative, Scenario::SpoofedBlocked),
        d(Filter::Nftables, Scenario::SpoofedBlocked),
        native_ring_note(Scenario::SpoofedBlocked).into(),
    ));
    let spoofed_dropped =
        d(Filter::XdpGuardNative, Scenario::SpoofedPerSource).map_or(0.0, |s| s.median);
    let mut per_source = pair(
        "random sources, per-source SYN limit (no drop rule): xdp-guard native / nftables, frames handled",
        2.0,
        h(Filter::XdpGuardNative, Scenario::SpoofedPerSource),
        h(Filter::Nftables, Scenario::SpoofedPerSource),
        format!(
            "Nothing is dropped by either ({spoofed_dropped:.2} Mpps by xdp-guard): no spoofed source reaches its limit, and xdp-guard passes the SYNs of sources below it (never-seen sources go to the sketch, then PASS), so the kernel stack behind it takes the whole flood. With no filter at all the server took {:.2} Mpps: xdp-guard's per-source path adds to the stack's cost per spoofed SYN instead of removing it. The spoof guard, which the daemon switches on while it sees a spoofed flood when `attack.spoofed_syn_budget` is set, drops all but that budget in XDP instead (section 3, part by part).",
            h(Filter::NoFilter, Scenario::SpoofedPerSource).map_or(f64::NAN, |s| s.median)
        ),
    );
    // A drop-rate goal cannot be met or missed where neither side drops anything.
    if spoofed_dropped == 0.0 && !per_source.measured.is_empty() {
        per_source.status = "n/a: nothing dropped".into();
    }
    goals.push(per_source);
    goals.push(pair(
        "xdp-guard random-source / single-source, drop rule",
        0.7,
        d(Filter::XdpGuardNative, Scenario::SpoofedBlocked),
        d(Filter::XdpGuardNative, Scenario::SingleBlocked),
        String::new(),
    ));
    goals.push(pair(
        "xdp-guard random-source (per-source limit, handled) / single-source (limit, dropped)",
        0.7,
        h(Filter::XdpGuardNative, Scenario::SpoofedPerSource),
        d(Filter::XdpGuardNative, Scenario::SingleRateLimited),
        "The spoofed SYNs are passed to the kernel, so the rate is the TCP stack's, not XDP's (see section 3).".into(),
    ));
    goals.push(pair(
        "native / generic, single source, drop rule",
        1.8,
        d(Filter::XdpGuardNative, Scenario::SingleBlocked),
        d(Filter::XdpGuardGeneric, Scenario::SingleBlocked),
        native_ring_note(Scenario::SingleBlocked).into(),
    ));
    goals.push(pair(
        "native / generic, random sources, drop rule",
        1.8,
        d(Filter::XdpGuardNative, Scenario::SpoofedBlocked),
        d(Filter::XdpGuardGeneric, Scenario::SpoofedBlocked),
        native_ring_note(Scenario::SpoofedBlocked).into(),
    ));
    goals
}

fn controller_markdown(c: &controller::Report) -> String {
    format!(
        "{} sources inserted by the program itself (one BPF_PROG_TEST_RUN per distinct source, admission at the first SYN, no flood-guard cap) into the `LRU_PERCPU_HASH` of 1,048,576 entries; {} entries found by the reads ({} possible CPUs, 48-byte value per CPU); filling took {:.1} s. Each read returns every (source, per-CPU values) pair and sums them into totals, as the controller tick does. Thread pinned to CPU 1 under SCHED_FIFO.\n\n| method | runs | min ms | median ms | max ms | x key-by-key |\n|---|---:|---:|---:|---:|---:|\n| batched `BPF_MAP_LOOKUP_BATCH`, 4,096 per call (`Datapath::sources_batched`) | {} | {:.1} | {:.1} | {:.1} | {:.3} |\n| the same batched walk, buffers reused, summed in place (no allocation per entry) | {} | {:.1} | {:.1} | {:.1} | {:.3} |\n| of which inside the `BPF_MAP_LOOKUP_BATCH` syscalls | {} | {:.1} | {:.1} | {:.1} | {:.3} |\n| key by key, `get_next_key` + lookup (`Datapath::sources`) | {} | {:.1} | {:.1} | {:.1} | 1.000 |\n\nMachine: {}\n",
        c.requested,
        c.entries,
        c.possible_cpus,
        c.fill_secs,
        c.batched_runs,
        c.batched_ms.min,
        c.batched_ms.median,
        c.batched_ms.max,
        ratio(c.batched_ms.median, c.key_by_key_ms.median),
        c.batched_runs,
        c.raw_batched_ms.min,
        c.raw_batched_ms.median,
        c.raw_batched_ms.max,
        ratio(c.raw_batched_ms.median, c.key_by_key_ms.median),
        c.batched_runs,
        c.raw_in_kernel_ms.min,
        c.raw_in_kernel_ms.median,
        c.raw_in_kernel_ms.max,
        ratio(c.raw_in_kernel_ms.median, c.key_by_key_ms.median),
        c.key_by_key_runs,
        c.key_by_key_ms.min,
        c.key_by_key_ms.median,
        c.key_by_key_ms.max,
        c.machine
    )
}

fn ticks_markdown(ticks: &[controller::TickWait], secs: f64) -> String {
    let mut out = format!(
        "### API calls while the controller ticks\n\nA `controller::Guard` over the loaded program, ticking on the daemon's 250 ms schedule for {secs:.0} s on CPU 1 (SCHED_FIFO), while a thread on CPU 0 calls `Guard::blocklist` (what `GET /v1/blocks` does: the guard's lock and a copy of the list) once a millisecond. The daemon's way reads the per-source map and updates its per-source tracks (their own lock) before it takes the guard's lock, which it holds only to decide; the baseline reads the map under the guard's lock (the daemon used to, and aggregated under it too, so it held the lock for the whole tick). At 1M sources a tick takes longer than 250 ms, so ticks run back to back.\n\n| sources | counters read | ticks | tick ms (median) | lock held ms (median / max) | calls completed | calls over 1 ms | longest call ms | longest x baseline |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    for t in ticks {
        let base = ticks
            .iter()
            .find(|b| b.entries == t.entries && !b.reads_outside_lock);
        out += &format!(
            "| {} | {} | {} | {:.1} | {:.2} / {:.2} | {} | {} | {:.2} | {} |\n",
            t.entries,
            if t.reads_outside_lock {
                "before the lock (the daemon)"
            } else {
                "under the lock (baseline)"
            },
            t.ticks,
            t.tick_ms.median,
            t.locked_ms.median,
            t.locked_ms.max,
            t.calls,
            t.slow_calls,
            t.longest_call_ms,
            base.map_or("-".into(), |b| format!(
                "{:.3}",
                ratio(t.longest_call_ms, b.longest_call_ms)
            )),
        );
    }
    out + "\n"
}

fn store_markdown(s: &store::Report) -> String {
    format!(
        "`Guard::block` (what `POST /v1/blocklist` does: validate, write the dataplane, append one journal line and fsync it, fold the journal into a snapshot when due) for {calls} new /32s, on `controller::MemoryDataplane` so the figures are the store's, in the state directory under {tmp}. Before the journal every change rewrote the whole state; the last row is one such rewrite ({bytes:.1} MB of JSON for {n} blocks, written to a temp file, fsynced, renamed, directory fsynced). The journal is folded into a new snapshot once it holds as many lines as the snapshot has entries (at least 1,024), so with {n} blocks saved one change in {n} also pays one such rewrite: none did among these calls.\n\n| case | runs | min ms | median ms | p99 ms | max ms | median x none saved |\n|---|---:|---:|---:|---:|---:|---:|\n| one block, none saved before | {calls} | {:.2} | {:.2} | {:.2} | {:.2} | 1.000 |\n| one block, {n} saved before | {calls} | {:.2} | {:.2} | {:.2} | {:.2} | {:.3} |\n| the whole state rewritten once ({n} blocks) | {runs} | {:.1} | {:.1} | - | {:.1} | {:.1} |\n| one batch of {batch} new prefixes ({n} saved before; `Guard::block_many`) | {runs} | {:.1} | {:.1} | - | {:.1} | {:.1} |\n\n",
        s.empty_ms.min,
        s.empty_ms.median,
        s.empty_p99_ms,
        s.empty_ms.max,
        s.full_ms.min,
        s.full_ms.median,
        s.full_p99_ms,
        s.full_ms.max,
        ratio(s.full_ms.median, s.empty_ms.median),
        s.rewrite_ms.min,
        s.rewrite_ms.median,
        s.rewrite_ms.max,
        ratio(s.rewrite_ms.median, s.empty_ms.median),
        s.batch_ms.min,
        s.batch_ms.median,
        s.batch_ms.max,
        ratio(s.batch_ms.median, s.empty_ms.median),
        batch = store::BATCH,
        calls = s.calls,
        n = s.existing,
        runs = s.rewrite_runs,
        bytes = s.snapshot_bytes as f64 / 1e6,
        tmp = std::env::temp_dir().display(),
    )
}

fn api_markdown(a: &api_load::Report) -> String {
    let row = |name: &str, s: &Spread| {
        format!(
            "| {name} | {:.0} | {:.0} | {:.0} |\n",
            s.min, s.median, s.max
        )
    };
    let mut s = format!(
        "The daemon's router (`xdp_guard::api::router`) over a `controller::Guard` on `controller::MemoryDataplane`, served on 127.0.0.1 (port 0) by a 2-worker tokio runtime in the benchmark process; `{}`, {} runs. wrk and the server share the 2 CPUs. Errors reported by wrk: {}.\n\n| | min | median | max |\n|---|---:|---:|---:|\n",
        a.command, a.runs, a.errors
    );
    s += &row("p50 latency (µs)", &a.p50_us);
    s += &row("p75 latency (µs)", &a.p75_us);
    s += &row("p90 latency (µs)", &a.p90_us);
    s += &row("p99 latency (µs)", &a.p99_us);
    s += &row("requests/s", &a.requests_per_sec);
    s
}

fn conns_markdown(c: &conns::Report) -> String {
    let mut s = format!(
        "{} established connections to port 80 in a server namespace, opened in {:.1} s: the clients in a second namespace over a veth (held by helper processes of at most {} connections, the open-files limit here being 20,000 per process), so the server's table holds exactly one socket per connection plus the listener (the server does not accept; the connections wait, established, in its accept queue). Each method ran {} times, in turn, inside the server namespace, its output read to the end; the measuring thread and the commands it starts under SCHED_FIFO. \"ESTABLISHED seen\" checks each saw the whole table (`xdp-guard conns` also sees its own connection to the API).\n\n| method | min ms | median ms | max ms | ESTABLISHED seen | x netstat pipeline |\n|---|---:|---:|---:|---:|---:|\n",
        c.connections,
        c.open_secs,
        conns::PER_HELPER,
        c.runs
    );
    let netstat = c.methods.first().map(|m| m.ms.median).unwrap_or(f64::NAN);
    for m in &c.methods {
        let _ = writeln!(
            s,
            "| `{}` | {:.1} | {:.1} | {:.1} | {} | {:.3} |",
            md_cell(&m.name),
            m.ms.min,
            m.ms.median,
            m.ms.max,
            m.established_seen,
            ratio(m.ms.median, netstat)
        );
    }
    if !c.methods.iter().any(|m| m.name == conns::CONNS) {
        s += "\n`xdp-guard conns` itself was not timed (no `xdp-guard` binary beside the benchmark binary); the library call is what it asks the daemon for.\n";
    }
    s += &format!("\nMachine: {}\n", c.machine);
    s
}

fn conns_goals(c: &conns::Report) -> Vec<Goal> {
    let find = |name: &str| {
        c.methods
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.ms.median)
    };
    let netstat = find(conns::NETSTAT_PIPELINE);
    let walk = find(conns::WALK_ONLY);
    let snapshot = find(conns::SNAPSHOT);
    let mut goals = Vec::new();
    for name in [conns::CONNS, conns::SNAPSHOT] {
        if let (Some(n), Some(m)) = (netstat, find(name)) {
            let x = ratio(n, m);
            let note = match (walk, snapshot) {
                (Some(w), Some(snap)) if x < 10.0 => format!(
                    "Both read the same kernel socket table. A sock_diag dump that returns nothing still walks it: {w:.1} ms here (IPv4 then IPv6, and the walk also skips the other namespace's {} client sockets, which share the kernel's table); producing one record per socket brings the library call to {snap:.1} ms ({}). netstat's text and the awk/sort pipeline add {:.0} ms on top of a similar walk, so 10x would need the whole dump under {:.1} ms.",
                    c.connections,
                    c.methods
                        .iter()
                        .find(|m| m.name == conns::SNAPSHOT)
                        .and_then(|m| Some(format!(
                            "{:.1} ms of the thread's CPU time in the kernel, {:.1} ms in user space",
                            m.sys_ms?, m.user_ms?
                        )))
                        .unwrap_or_else(|| "most of it".into()),
                    n - snap,
                    n / 10.0
                ),
                _ => String::new(),
            };
            goals.push(Goal {
                goal: format!(
                    "`{}` >= 10x faster than the netstat pipeline",
                    md_cell(name)
                ),
                measured: format!("{x:.1}x ({m:.1} ms vs {n:.1} ms)"),
                status: verdict(x >= 10.0).into(),
                note,
            });
        }
    }
    goals
}

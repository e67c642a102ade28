//! Benchmark driver; `cargo xtask bench` runs `report` in release mode as root, and
//! `cargo xtask flood` runs `flood`.
use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use xdp_guard::bench::{
    self,
    throughput::{Filter, Scenario},
};

#[derive(Parser)]
#[command(about = "xdp-guard benchmarks (figures and ratios, not pass/fail tests)")]
struct Cli {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// Everything: writes report.md, SVG charts and results.json into --out-dir.
    Report {
        #[arg(long, default_value = "bench")]
        out_dir: PathBuf,
        /// BPF_PROG_TEST_RUN repetitions per round.
        #[arg(long, default_value_t = 1_000_000)]
        repeat: u32,
        /// Rounds per packet class (median reported).
        #[arg(long, default_value_t = 7)]
        rounds: usize,
        /// Floods per (filter, scenario) in the throughput figure.
        #[arg(long, default_value_t = 4)]
        passes: usize,
        /// Measurement windows per flood, and their length in seconds.
        #[arg(long, default_value_t = 2)]
        windows: usize,
        #[arg(long, default_value_t = 1.0)]
        window_secs: f64,
        /// Sources in the controller's per-source map.
        #[arg(long, default_value_t = 1_000_000)]
        sources: u32,
        /// Sockets for the netstat / ss / sock_diag comparison.
        #[arg(long, default_value_t = 50_000)]
        sockets: usize,
        /// Seconds per wrk run.
        #[arg(long, default_value_t = 5)]
        wrk_secs: u32,
        /// The `xdp-guard` binary, for timing `xdp-guard conns` (default: beside this one).
        #[arg(long)]
        cli: Option<PathBuf>,
        /// Run only these sections (comma-separated): datapath, scaling, throughput,
        /// placement, controller, api, conns.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Per-packet cost by class via BPF_PROG_TEST_RUN, beside a bare XDP_DROP program.
    Datapath {
        #[arg(long, default_value_t = 1_000_000)]
        repeat: u32,
        #[arg(long, default_value_t = 7)]
        rounds: usize,
        #[arg(long, default_value_t = 10_000)]
        blocks: usize,
        #[arg(long)]
        json: bool,
    },
    /// One SYN flood into a fresh namespace pair with a filter on the server veth; prints
    /// what was sent, taken and dropped per second. The flood stops by itself after
    /// --secs + 2.5 s or 15 million frames per second of that, whichever comes first.
    Flood {
        #[arg(long, value_enum, default_value_t = FilterArg::Bare)]
        filter: FilterArg,
        #[arg(long, value_enum, default_value_t = ScenarioArg::SingleBlocked)]
        scenario: ScenarioArg,
        /// Measurement windows of one second (after 0.5 s of warm-up).
        #[arg(long, default_value_t = 3)]
        secs: usize,
        #[arg(long, default_value_t = 64)]
        batch: u32,
        #[arg(long, default_value_t = 0)]
        gen_cpu: usize,
        /// CPU of the receive kthread; `none` leaves the receive path in softirq.
        #[arg(long, default_value = "1")]
        rx_cpu: String,
        /// Do not run the generator and receiver under SCHED_FIFO.
        #[arg(long)]
        no_realtime: bool,
    },
    /// Helper of the socket benchmark: open --count connections to --to, print `ready N`,
    /// hold them until stdin closes or --max-secs pass.
    #[command(hide = true)]
    ConnsClient {
        #[arg(long)]
        from: std::net::Ipv4Addr,
        #[arg(long)]
        to: std::net::SocketAddr,
        #[arg(long)]
        count: usize,
        #[arg(long, default_value_t = 600)]
        max_secs: u64,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum FilterArg {
    Bare,
    None,
    Iptables,
    Nftables,
    Native,
    Generic,
}

#[derive(Clone, Copy, ValueEnum)]
enum ScenarioArg {
    SingleBlocked,
    SingleRate,
    SpoofedBlocked,
    SpoofedPerSource,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().what {
        What::Report {
            out_dir,
            repeat,
            rounds,
            passes,
            windows,
            window_secs,
            sources,
            sockets,
            wrk_secs,
            cli,
            only,
        } => {
            if let Some(bad) = only
                .iter()
                .find(|s| !bench::report::SECTIONS.contains(&s.as_str()))
            {
                anyhow::bail!(
                    "--only: no section {bad} (sections: {})",
                    bench::report::SECTIONS.join(", ")
                );
            }
            let cli = cli.or_else(|| {
                let sibling = std::env::current_exe().ok()?.with_file_name("xdp-guard");
                sibling.exists().then_some(sibling)
            });
            let defaults = bench::report::Options::default();
            let opts = bench::report::Options {
                out_dir,
                datapath: bench::datapath::Options {
                    repeat,
                    rounds,
                    ..defaults.datapath
                },
                throughput: bench::throughput::Options {
                    windows,
                    window: Duration::from_secs_f64(window_secs),
                    ..defaults.throughput
                },
                passes,
                controller: bench::controller::Options {
                    sources,
                    ..defaults.controller
                },
                api: bench::api_load::Options {
                    secs: wrk_secs,
                    ..defaults.api
                },
                conns: bench::conns::Options {
                    sockets,
                    cli,
                    ..defaults.conns
                },
                only,
                ..defaults
            };
            let md = bench::report::run(&opts).context("writing the report")?;
            print!("{md}");
        }
        What::ConnsClient {
            from,
            to,
            count,
            max_secs,
        } => bench::conns::hold_clients(from, to, count, max_secs)
            .with_context(|| format!("holding {count} connections to {to}"))?,
        What::Datapath {
            repeat,
            rounds,
            blocks,
            json,
        } => {
            bench::pin_to_cpu(0).context("pinning to CPU 0")?;
            let report = bench::datapath::run(&bench::datapath::Options {
                repeat,
                rounds,
                blocks,
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.markdown());
            }
        }
        What::Flood {
            filter,
            scenario,
            secs,
            batch,
            gen_cpu,
            rx_cpu,
            no_realtime,
        } => {
            let filter = match filter {
                FilterArg::Bare => Filter::BareDrop,
                FilterArg::None => Filter::NoFilter,
                FilterArg::Iptables => Filter::Iptables,
                FilterArg::Nftables => Filter::Nftables,
                FilterArg::Native => Filter::XdpGuardNative,
                FilterArg::Generic => Filter::XdpGuardGeneric,
            };
            let scenario = match scenario {
                ScenarioArg::SingleBlocked => Scenario::SingleBlocked,
                ScenarioArg::SingleRate => Scenario::SingleRateLimited,
                ScenarioArg::SpoofedBlocked => Scenario::SpoofedBlocked,
                ScenarioArg::SpoofedPerSource => Scenario::SpoofedPerSource,
            };
            let rx_cpu = match rx_cpu.as_str() {
                "none" => None,
                n => Some(n.parse().context("--rx-cpu: a CPU number or `none`")?),
            };
            let m = bench::throughput::measure(
                filter,
                scenario,
                &bench::throughput::Options {
                    windows: secs,
                    batch,
                    gen_cpu,
                    rx_cpu,
                    realtime: !no_realtime,
                    ..Default::default()
                },
            )?;
            println!(
                "{} / {}: offered {:.2} Mpps, server took {:.2} Mpps [{:.2}-{:.2}], filter dropped {:.2} Mpps [{:.2}-{:.2}], ring full {:.0}% ({} windows of 1 s); the server's TCP stack took {} segments, {} with a bad checksum",
                filter.label(),
                scenario.label(),
                m.offered().median,
                m.handled().median,
                m.handled().min,
                m.handled().max,
                m.dropped().median,
                m.dropped().min,
                m.dropped().max,
                m.ring_full().median * 100.0,
                secs,
                m.tcp_in_segs,
                m.tcp_csum_errors
            );
        }
    }
    Ok(())
}

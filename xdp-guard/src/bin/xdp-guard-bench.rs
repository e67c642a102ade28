//! Benchmark driver; `cargo xtask bench` runs it in release mode as root.
use anyhow::Context as _;
use clap::{Parser, Subcommand};
use xdp_guard::bench;

#[derive(Parser)]
#[command(about = "xdp-guard benchmarks (figures and ratios, not pass/fail tests)")]
struct Cli {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
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
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().what {
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
    }
    Ok(())
}

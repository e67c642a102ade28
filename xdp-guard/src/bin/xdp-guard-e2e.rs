//! End-to-end runs against a real Apache (root): `cargo xtask e2e` runs the scenarios and
//! prints the table, `cargo xtask demo` runs `--demo`.
use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::Parser;
use xdp_guard::e2e;

#[derive(Parser)]
#[command(about = "xdp-guard in front of a real Apache under real SYN floods (needs root)")]
struct Cli {
    /// The newcomer's demo: one flood, without and with xdp-guard, `top` frames.
    #[arg(long)]
    demo: bool,
    /// Scenarios to run, e.g. `--scenario 1 --scenario 5` (default: all seven).
    #[arg(long = "scenario", value_parser = clap::value_parser!(u8).range(1..=7))]
    scenarios: Vec<u8>,
    /// Time bound of each flood, in seconds.
    #[arg(long, value_parser = clap::value_parser!(u64).range(3..=60))]
    flood_secs: Option<u64>,
    /// The xdp-guard binary (default: beside this one).
    #[arg(long, value_name = "PATH")]
    xdp_guard: Option<PathBuf>,
    /// Keep configs and logs (kept anyway when a figure fails).
    #[arg(long)]
    keep: bool,
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xdp-guard-e2e: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        anyhow::bail!("the test bed creates network namespaces and attaches XDP: run as root");
    }
    let bin = match cli.xdp_guard {
        Some(p) => p,
        None => e2e::sibling_binary("xdp-guard")
            .context("no xdp-guard binary beside this one; build it or pass --xdp-guard")?,
    };
    if cli.demo {
        let report = e2e::demo(&e2e::DemoOptions {
            xdp_guard: bin,
            flood_secs: cli.flood_secs.unwrap_or(5),
            frames: 4,
        })?;
        println!("{report}");
        // The demo shows; `cargo xtask e2e` and the tests judge. It fails only when the bed
        // did not come down clean.
        let clean = report.checks.iter().all(|c| c.scenario != 0 || c.pass);
        return Ok(if clean {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let mut options = e2e::Options::new(bin);
    options.scenarios = cli.scenarios;
    if let Some(secs) = cli.flood_secs {
        options.flood_secs = secs;
    }
    options.keep_work_dir = cli.keep;
    let report = e2e::run(&options)?;
    println!("{report}");
    Ok(exit_code(&report))
}

fn exit_code(report: &e2e::Report) -> ExitCode {
    if report.failed_checks().is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

//! `cargo xtask bench`: the project's benchmarks, in release mode, as root. Figures are
//! ratios against a baseline measured in the same run; nothing here passes or fails on time.
use std::path::PathBuf;

use clap::Args;

use crate::{cmd, setup};

#[derive(Args)]
pub struct Options {
    /// Do not run `cargo xtask setup` first.
    #[arg(long)]
    skip_setup: bool,
    /// BPF_PROG_TEST_RUN repetitions per round.
    #[arg(long, default_value_t = 1_000_000)]
    repeat: u32,
    /// Rounds per packet class (the median is reported).
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// Where the Markdown report goes (relative to the workspace root).
    #[arg(long, default_value = "bench/report.md")]
    out: PathBuf,
}

pub fn run(options: Options) -> anyhow::Result<()> {
    if !options.skip_setup {
        setup::run(setup::Options {})?;
    }
    if !cmd::is_root() {
        anyhow::bail!("the benchmarks load XDP programs: run `cargo xtask bench` as root");
    }
    cmd::run(cmd::cargo().args([
        "build",
        "--release",
        "-p",
        "xdp-guard",
        "--bin",
        "xdp-guard-bench",
    ]))?;
    let bin = cmd::workspace_root().join("target/release/xdp-guard-bench");
    let datapath = cmd::output(std::process::Command::new(&bin).args([
        "datapath",
        "--repeat",
        &options.repeat.to_string(),
        "--rounds",
        &options.rounds.to_string(),
    ]))?;
    print!("{datapath}");
    let out = cmd::workspace_root().join(&options.out);
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(
        &out,
        format!("# xdp-guard benchmark report\n\n## Per-packet cost by class\n\n{datapath}"),
    )?;
    eprintln!("bench: report written to {}", out.display());
    Ok(())
}

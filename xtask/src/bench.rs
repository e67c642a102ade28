//! `cargo xtask bench`: the project's benchmarks, in release mode, as root. Builds the
//! `xdp-guard-bench` and `xdp-guard` binaries and runs `xdp-guard-bench report`, which measures
//! everything (code in `xdp-guard/src/bench/`) and writes `bench/report.md`, its SVG charts and
//! `results.json`. Figures are ratios against baselines measured in the same run; nothing here
//! passes or fails on time.
use std::{path::PathBuf, process::Command, time::Instant};

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
    /// Floods per (filter, scenario) in the veth throughput figure.
    #[arg(long, default_value_t = 4)]
    passes: usize,
    /// Sockets for the netstat / ss / sock_diag comparison.
    #[arg(long, default_value_t = 50_000)]
    sockets: usize,
    /// Where the report and its charts go (relative to the workspace root).
    #[arg(long, default_value = "bench")]
    out_dir: PathBuf,
}

/// Where cargo puts its output: `CARGO_TARGET_DIR` when set, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => cmd::workspace_root().join(dir),
        None => cmd::workspace_root().join("target"),
    }
}

/// Build the release benchmark binary (and the `xdp-guard` CLI, which it times) and return
/// the directory holding them.
pub fn build() -> anyhow::Result<PathBuf> {
    cmd::run(cmd::cargo().args([
        "build",
        "--release",
        "-p",
        "xdp-guard",
        "--bin",
        "xdp-guard-bench",
        "--bin",
        "xdp-guard",
    ]))?;
    Ok(target_dir().join("release"))
}

pub fn run(options: Options) -> anyhow::Result<()> {
    let started = Instant::now();
    if !options.skip_setup {
        setup::run(setup::Options {})?;
    }
    if !cmd::is_root() {
        anyhow::bail!(
            "the benchmarks load XDP programs and create namespaces: run `cargo xtask bench` as root"
        );
    }
    let bin = build()?;
    let built = started.elapsed();
    let out = cmd::workspace_root().join(&options.out_dir);
    cmd::run(
        Command::new(bin.join("xdp-guard-bench"))
            .arg("report")
            .arg("--out-dir")
            .arg(&out)
            .arg("--cli")
            .arg(bin.join("xdp-guard"))
            .args(["--repeat", &options.repeat.to_string()])
            .args(["--rounds", &options.rounds.to_string()])
            .args(["--passes", &options.passes.to_string()])
            .args(["--sockets", &options.sockets.to_string()]),
    )?;
    let report = out.join("report.md");
    let mut text = std::fs::read_to_string(&report)?;
    text += &format!(
        "\n---\n`cargo xtask bench` took {:.0} s in all ({:.0} s of setup and build).\n",
        started.elapsed().as_secs_f64(),
        built.as_secs_f64()
    );
    std::fs::write(&report, text)?;
    eprintln!(
        "bench: report written to {} ({:.0} s)",
        report.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

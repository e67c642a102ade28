//! `cargo xtask flood [ARGS]`: one bounded SYN flood from the project's generator into a fresh
//! namespace pair, with a filter on the receiving veth (as root). Builds the release benchmark
//! binary and runs `xdp-guard-bench flood ARGS`; `cargo xtask flood -- --help` lists them.
use std::process::Command;

use clap::Args;

use crate::{bench, cmd};

#[derive(Args)]
pub struct Options {
    /// Arguments for `xdp-guard-bench flood` (e.g. `--filter nftables --scenario spoofed-blocked`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

pub fn run(options: Options) -> anyhow::Result<()> {
    if !cmd::is_root() {
        anyhow::bail!("the flood creates namespaces and loads XDP programs: run it as root");
    }
    let bin = bench::build()?;
    cmd::run(
        Command::new(bin.join("xdp-guard-bench"))
            .arg("flood")
            .args(&options.args),
    )
}

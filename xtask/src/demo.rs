//! `cargo xtask demo`: the first command on a fresh machine. Installs what is missing,
//! builds, and runs `xdp-guard-e2e --demo` as root: Apache in a network namespace, a short
//! bounded SYN flood from one source without protection, with kernel syncookies and with
//! xdp-guard (printing `xdp-guard top --once` frames meanwhile), the before/after figures,
//! and everything removed afterwards.
use std::process::Command;

use clap::Args;

use crate::{cmd, e2e};

#[derive(Args)]
pub struct Options {
    #[command(flatten)]
    build: e2e::Build,
    /// Time bound of each flood, in seconds.
    #[arg(long, default_value_t = 5)]
    flood_secs: u64,
}

pub fn run(options: Options) -> anyhow::Result<()> {
    let bin = e2e::prepare(&options.build)?;
    cmd::run(Command::new(bin).args(["--demo", "--flood-secs", &options.flood_secs.to_string()]))
}

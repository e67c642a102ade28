//! `cargo xtask e2e`: setup, build, then xdp-guard in front of a real Apache under real SYN
//! floods (`xdp-guard-e2e`, as root): every scenario, the table and the pass figures.
//! `cargo xtask demo` (demo.rs) runs the short version.
use std::{path::PathBuf, process::Command};

use anyhow::bail;
use clap::Args;

use crate::{cmd, setup};

#[derive(Args)]
pub struct Options {
    #[command(flatten)]
    build: Build,
    /// Passed on to xdp-guard-e2e, e.g. `cargo xtask e2e -- --scenario 1 --keep`.
    #[arg(last = true)]
    e2e_args: Vec<String>,
}

/// How `cargo xtask e2e` and `cargo xtask demo` prepare the bed's binaries.
#[derive(Args)]
pub struct Build {
    /// Do not run `cargo xtask setup` first.
    #[arg(long)]
    skip_setup: bool,
    /// Build and run the release profile (default: dev, which builds faster and is what
    /// `cargo xtask test` runs).
    #[arg(long)]
    release: bool,
}

pub fn run(options: Options) -> anyhow::Result<()> {
    let bin = prepare(&options.build)?;
    cmd::run(Command::new(bin).args(&options.e2e_args))
}

/// Setup (unless skipped), a root check, and a build of `xdp-guard` and `xdp-guard-e2e`;
/// returns the path of `xdp-guard-e2e` (which finds `xdp-guard` beside it).
pub fn prepare(
    &Build {
        skip_setup,
        release,
    }: &Build,
) -> anyhow::Result<PathBuf> {
    if !skip_setup {
        setup::run(setup::Options {})?;
    }
    if !cmd::is_root() {
        bail!("the end-to-end bed creates network namespaces and attaches XDP: run as root");
    }
    let mut build = cmd::cargo();
    build.args([
        "build",
        "-p",
        "xdp-guard",
        "--bin",
        "xdp-guard",
        "--bin",
        "xdp-guard-e2e",
    ]);
    if release {
        build.arg("--release");
    }
    cmd::run(&mut build)?;
    Ok(target_dir()
        .join(if release { "release" } else { "debug" })
        .join("xdp-guard-e2e"))
}

/// Where cargo puts what it builds: `CARGO_TARGET_DIR`, or `target/` in the workspace.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                cmd::workspace_root().join(dir)
            }
        }
        _ => cmd::workspace_root().join("target"),
    }
}

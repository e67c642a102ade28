//! `cargo xtask lint`: rustfmt check, clippy on the host crates, clippy on the eBPF crate.
//! Every check runs even when an earlier one fails, so one run shows every problem.
use std::process::Command;

use anyhow::bail;
use clap::Args;

use crate::{cmd, setup};

#[derive(Args)]
pub struct Options {
    /// Do not run `cargo xtask setup` first (clippy on xdp-guard runs its build.rs, which
    /// builds the eBPF object with the nightly toolchain and bpf-linker).
    #[arg(long)]
    skip_setup: bool,
}

pub fn run(options: Options) -> anyhow::Result<()> {
    if !options.skip_setup {
        setup::run(setup::Options {})?;
    }
    for (toolchain, component) in [
        (None, "rustfmt"),
        (None, "clippy"),
        (Some("nightly"), "clippy"),
    ] {
        let status = setup::ensure_component(toolchain, component)?;
        let name = format!("{component} ({})", toolchain.unwrap_or("default"));
        eprintln!("lint: {name:<20} {status}");
    }

    let mut fmt = cmd::cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);

    let mut clippy = cmd::cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--exclude",
        "xdp-guard-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);

    // The eBPF crate only builds for bpfel-unknown-none with core rebuilt from rust-src;
    // `rustup run` because the `+nightly` shorthand needs the rustup cargo proxy.
    let mut clippy_ebpf = Command::new("rustup");
    clippy_ebpf
        .current_dir(cmd::workspace_root().join("xdp-guard-ebpf"))
        .args(["run", "nightly", "cargo", "clippy", "--release"])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .args(["--", "-D", "warnings"])
        .env_remove("CARGO");

    let mut failed = Vec::new();
    for (name, command) in [
        ("rustfmt", &mut fmt),
        ("clippy", &mut clippy),
        ("clippy (eBPF)", &mut clippy_ebpf),
    ] {
        eprintln!("lint: {name}: {}", cmd::display(command));
        match cmd::run(command) {
            Ok(()) => eprintln!("lint: {name}: ok"),
            Err(err) => {
                eprintln!("lint: {name}: FAILED: {err:#}");
                failed.push(name);
            }
        }
    }
    if !failed.is_empty() {
        bail!("lint failed: {}", failed.join(", "));
    }
    Ok(())
}

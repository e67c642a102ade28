//! `cargo xtask test`: setup, then every test in the workspace with output streamed as
//! cargo prints it (CI reads the `test result:` lines from stdout), then a check that the
//! tests left no network namespace behind.
use std::process::Command;

use anyhow::bail;
use clap::Args;

use crate::{cmd, setup};

/// Tests name every network namespace they create with this prefix.
const TEST_NETNS_PREFIX: &str = "xg-";

#[derive(Args)]
pub struct Options {
    /// Do not run `cargo xtask setup` first.
    #[arg(long)]
    skip_setup: bool,
    /// Passed on to `cargo test`, e.g. `cargo xtask test -- datapath -- --nocapture`.
    #[arg(last = true)]
    cargo_test_args: Vec<String>,
}

pub fn run(options: Options) -> anyhow::Result<()> {
    if !options.skip_setup {
        setup::run(setup::Options {})?;
    }
    if !cmd::is_root() {
        eprintln!(
            "test: not root: the BPF_PROG_TEST_RUN and netns tests will fail (XDP_GUARD_SKIP_PRIVILEGED=1 skips them)"
        );
    }
    // Namespaces that exist before the run (another process's, or a killed run's) are
    // reported but are not this run's doing; only new ones fail it.
    let before = test_namespaces().unwrap_or_default();
    if !before.is_empty() {
        eprintln!(
            "test: warning: namespaces left by an earlier run: {}",
            before.join(" ")
        );
    }

    // The eBPF crate is a workspace member that only builds for bpfel-unknown-none
    // (xdp-guard/build.rs builds it); `--workspace` alone would try it on the host.
    let mut test = cmd::cargo();
    test.args([
        "test",
        "--workspace",
        "--exclude",
        "xdp-guard-ebpf",
        "--no-fail-fast",
    ])
    .args(&options.cargo_test_args)
    .env("RUST_BACKTRACE", "1");
    let tests = cmd::run(&mut test);

    let leftovers = match test_namespaces() {
        Ok(names) => names
            .into_iter()
            .filter(|n| !before.contains(n))
            .collect::<Vec<_>>(),
        Err(err) => {
            eprintln!("test: warning: cannot check for leftover namespaces: {err:#}");
            Vec::new()
        }
    };
    if !leftovers.is_empty() {
        eprintln!(
            "test: network namespaces left behind: {}; remove with: {}",
            leftovers.join(" "),
            leftovers
                .iter()
                .map(|name| format!("ip netns delete {name}"))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    match (tests, leftovers.is_empty()) {
        (Ok(()), true) => Ok(()),
        (Ok(()), false) => bail!("tests passed but left network namespaces behind"),
        (Err(err), true) => Err(err),
        (Err(err), false) => Err(err.context("tests failed and left network namespaces behind")),
    }
}

/// Namespaces named like the tests' (`xg-*`), from `ip netns list`.
fn test_namespaces() -> anyhow::Result<Vec<String>> {
    let list = cmd::output(Command::new("ip").args(["netns", "list"]))?;
    Ok(test_namespaces_in(&list))
}

/// Lines look like `xg-abc (id: 3)` or just `xg-abc`.
fn test_namespaces_in(list: &str) -> Vec<String> {
    list.lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.starts_with(TEST_NETNS_PREFIX))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::test_namespaces_in;

    #[test]
    fn finds_only_test_namespaces() {
        let list = "xg-datapath-1 (id: 3)\nother (id: 0)\nxg-smoke\n\n";
        assert_eq!(test_namespaces_in(list), ["xg-datapath-1", "xg-smoke"]);
    }
}

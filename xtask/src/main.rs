//! `cargo xtask <command>`: orchestration for xdp-guard (toolchain setup, test and lint
//! runners). It never builds the eBPF object itself; `xdp-guard/build.rs` does that.
//!
//! Adding a command: write `src/<name>.rs` with an `Options` struct deriving `clap::Args`
//! and a `pub fn run(Options) -> anyhow::Result<()>`, then add a `mod` line, a variant to
//! `Command` and an arm to the `match` in `main`.

mod bench;
mod cmd;
mod demo;
mod e2e;
mod flood;
mod lint;
mod setup;
mod test;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "xdp-guard development tasks", arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what building and testing need (nightly rust-src, bpf-linker, Debian
    /// packages, bpffs). Idempotent.
    Setup(setup::Options),
    /// Run setup, then every test of the workspace (the privileged ones need root).
    Test(test::Options),
    /// rustfmt check, clippy on the host crates and clippy on the eBPF crate.
    Lint(lint::Options),
    /// Benchmarks (release, root): per-packet cost by class beside a bare XDP_DROP program.
    Bench(bench::Options),
    /// One bounded SYN flood into a namespace pair (root): `cargo xtask flood -- --help`.
    Flood(flood::Options),
    /// End to end (root): xdp-guard in front of a real Apache under real SYN floods, every
    /// scenario three ways; prints the table and the pass figures.
    E2e(e2e::Options),
    /// The first command on a new machine (root): setup, build, a short flood against Apache
    /// without and with xdp-guard, the live `top` view, before/after figures, cleanup.
    Demo(demo::Options),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Setup(options) => setup::run(options),
        Command::Test(options) => test::run(options),
        Command::Lint(options) => lint::run(options),
        Command::Bench(options) => bench::run(options),
        Command::Flood(options) => flood::run(options),
        Command::E2e(options) => e2e::run(options),
        Command::Demo(options) => demo::run(options),
    };
    // The error chain alone: with RUST_BACKTRACE set (tests want it) returning the error
    // from main would also print xtask's own backtrace, which says nothing useful.
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

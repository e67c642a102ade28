//! End to end: xdp-guard in front of a real Apache under real SYN floods.
//!
//! A test bed of network namespaces on one bridge ([`Bed`]): `srv` runs Apache httpd from
//! the Debian package with its default site, and xdp-guard on its veth; `legit` runs
//! well-behaved HTTP clients ([`legit`]: paced requests of our own, and `ab`); `atk` sends
//! SYN floods with `trafgen`, bounded in packets and seconds ([`flood`]). Every scenario of
//! [`scenarios`] runs against the bed, most of them three times (no protection, kernel
//! syncookies only, xdp-guard), and the figures go into one [`Report`]: the table, and the
//! pass figures the issue asks of the xdp-guard runs.
//!
//! `xdp-guard-e2e` prints the report (`--demo` runs the short newcomer's version);
//! `tests/e2e.rs` runs the same and asserts the pass figures. Both need root.

mod apache;
mod bed;
pub mod cpus;
mod daemon;
pub mod flood;
pub mod legit;
mod report;
mod run;
pub mod scenarios;

use std::{path::PathBuf, process::Output, time::Duration};

pub use bed::{Bed, Mode};
pub use report::{Check, Report, Row, Timing};
pub use run::{DemoOptions, Options, demo, run};

use crate::netns::NetnsError;

#[derive(Debug, thiserror::Error)]
pub enum E2eError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("running `{cmd}`: {source}")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command {
        cmd: String,
        status: String,
        stderr: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout { what: String, after: Duration },
    #[error("the xdp-guard API at {path}: {reason}")]
    Api { path: String, reason: String },
    #[error("cannot read {what}: {reason}")]
    Parse { what: String, reason: String },
    #[error("reading the pinned STATS map: {0}")]
    Map(#[from] aya::maps::MapError),
    #[error("{0}")]
    Setup(String),
}

impl E2eError {
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> E2eError {
        let what = what.into();
        move |source| E2eError::Io { what, source }
    }
}

/// The command line of `cmd`, for messages.
fn display(cmd: &std::process::Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` to completion; a non-zero exit is an error carrying its stderr.
fn output(cmd: &mut std::process::Command) -> Result<Output, E2eError> {
    let line = display(cmd);
    let out = cmd.output().map_err(|source| E2eError::Spawn {
        cmd: line.clone(),
        source,
    })?;
    if !out.status.success() {
        return Err(E2eError::Command {
            cmd: line,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out)
}

/// Polls `f` every `every` until it returns `Some`, for at most `timeout`.
/// Send `signal` to `child` unless it has exited, give it `grace` to exit, then SIGKILL it.
/// Returns its exit status (`None` if waiting for it failed).
fn stop_child(
    child: &mut std::process::Child,
    signal: libc::c_int,
    grace: Duration,
) -> Option<std::process::ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    // SAFETY: our child's pid, not yet reaped (try_wait above saw it running).
    unsafe { libc::kill(child.id() as i32, signal) };
    let start = std::time::Instant::now();
    while start.elapsed() < grace {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait().ok()
}

fn wait_for<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Result<T, E2eError> {
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if start.elapsed() >= timeout {
            return Err(E2eError::Timeout {
                what: what.to_string(),
                after: timeout,
            });
        }
        std::thread::sleep(every);
    }
}

/// Where the xdp-guard binary is when none is given: beside the running executable
/// (`target/<profile>/xdp-guard` next to `xdp-guard-e2e`).
pub fn sibling_binary(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    // Test executables live in target/<profile>/deps.
    [dir.join(name), dir.parent()?.join(name)]
        .into_iter()
        .find(|p| p.is_file())
}

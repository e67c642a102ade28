//! Running external commands with errors that say which command failed and why.
use std::{
    io,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, anyhow, bail};

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    let xtask_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask_dir.parent().unwrap_or(xtask_dir).to_path_buf()
}

/// `cargo` as a command, using the same cargo that runs xtask when there is one.
pub fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(workspace_root());
    command
}

/// The command line as one would type it, for messages.
pub fn display(command: &Command) -> String {
    let mut line = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

fn spawn_error(command: &Command, err: io::Error) -> anyhow::Error {
    let program = command.get_program().to_string_lossy();
    if err.kind() == io::ErrorKind::NotFound {
        anyhow!("`{program}` not found on PATH")
    } else {
        anyhow!("cannot run `{}`: {err}", display(command))
    }
}

/// Runs `command` with inherited stdin/stdout/stderr; fails unless it exits with 0.
pub fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command.status().map_err(|err| spawn_error(command, err))?;
    if !status.success() {
        bail!("`{}` failed ({status})", display(command));
    }
    Ok(())
}

/// Runs `command` and returns its stdout; on failure the error carries its stderr.
pub fn output(command: &mut Command) -> anyhow::Result<String> {
    let out = command.output().map_err(|err| spawn_error(command, err))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            display(command),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout)
        .with_context(|| format!("`{}`: output is not UTF-8", display(command)))
}

/// Whether this process runs with effective uid 0 (from /proc, no libc needed).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let uids = status
                .lines()
                .find(|line| line.starts_with("Uid:"))?
                .to_owned();
            // "Uid:\treal\teffective\tsaved\tfs"
            uids.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

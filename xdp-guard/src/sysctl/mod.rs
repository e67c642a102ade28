//! Sysctl audit, apply and restore: the operator memo's kernel tuning against SYN floods and
//! TIME_WAIT pile-ups, turned into an audited, reversible, attack-aware tuner.
//!
//! The memo is followed where it is right and corrected where it is not (see each setting's
//! `why`): `tcp_tw_recycle` is reported as removed and never written, `tcp_tw_reuse` and
//! `ip_local_port_range` are explained as outgoing-only, syncookies stay at 1 rather than 2,
//! buffer and queue sizes are never lowered, and `net.core.somaxconn`, which decides Apache's
//! real queue length, is added.
//!
//! Every function takes the procfs sysctl root (normally [`DEFAULT_ROOT`]) so tests can point
//! it at a directory tree of their own.

mod audit;
mod backup;
mod procfs;
mod settings;
mod tune;

#[cfg(test)]
mod tests;

use std::{io, path::PathBuf};

pub use audit::{AuditEntry, Status, audit, audit_profile};
pub use backup::{BACKUP_FORMAT, Backup};
pub use procfs::normalize;
pub use settings::{Profile, Rule, SETTINGS, Scope, Setting, TCP_TW_RECYCLE, setting};
pub use tune::{Change, Rollback, apply, apply_selected, restore};

/// The live sysctl tree.
pub const DEFAULT_ROOT: &str = "/proc/sys";

/// Where the daemon keeps the originals it replaced.
pub const DEFAULT_BACKUP: &str = "/var/lib/xdp-guard/sysctl-backup.json";

#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    #[error("reading {key} ({}): {source}", path.display())]
    Read {
        key: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing {key} = {value:?} ({}): {source}", path.display())]
    Write {
        key: String,
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },
    #[error("{key}: wrote {wanted:?} but the kernel reports {got:?}")]
    NotTaken {
        key: String,
        wanted: String,
        got: Option<String>,
    },
    #[error("{key} is never written: removed in Linux 4.12, it broke clients behind NAT")]
    NeverWritten { key: String },
    #[error("backup {} names {key}, which is not a setting xdp-guard manages", path.display())]
    UnknownKey { key: String, path: PathBuf },
    #[error("backup {}: {source}", path.display())]
    Backup {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("backup {} is not valid: {source}", path.display())]
    BackupFormat {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("backup {} has format {found}, this build reads {BACKUP_FORMAT}", path.display())]
    BackupVersion { path: PathBuf, found: u32 },
    #[error("no backup at {}: nothing to restore", path.display())]
    NoBackup { path: PathBuf },
    #[error("applying sysctls failed: {failed}; {}", rollback.summary())]
    Apply {
        #[source]
        failed: Box<SysctlError>,
        rollback: Rollback,
    },
    #[error(
        "restore incomplete ({}); the backup is kept",
        restore_summary(restored, failures)
    )]
    Restore {
        restored: Vec<String>,
        failures: Vec<SysctlError>,
    },
}

impl SysctlError {
    /// The key the error is about, if it is about one (for `Apply`, the key that failed).
    pub fn key(&self) -> Option<&str> {
        match self {
            SysctlError::Read { key, .. }
            | SysctlError::Write { key, .. }
            | SysctlError::NotTaken { key, .. }
            | SysctlError::NeverWritten { key }
            | SysctlError::UnknownKey { key, .. } => Some(key),
            SysctlError::Apply { failed, .. } => failed.key(),
            _ => None,
        }
    }

    /// The OS error underneath, if any (for `Apply`, that of the failed write).
    pub fn os_error(&self) -> Option<&io::Error> {
        match self {
            SysctlError::Read { source, .. }
            | SysctlError::Write { source, .. }
            | SysctlError::Backup { source, .. } => Some(source),
            SysctlError::Apply { failed, .. } => failed.os_error(),
            _ => None,
        }
    }
}

fn restore_summary(restored: &[String], failures: &[SysctlError]) -> String {
    let failed: Vec<String> = failures.iter().map(|e| e.to_string()).collect();
    format!(
        "restored {}; failed: {}",
        if restored.is_empty() {
            "none".to_owned()
        } else {
            restored.join(", ")
        },
        failed.join("; ")
    )
}

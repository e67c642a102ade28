//! Applying a profile and restoring the originals.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{
    SysctlError,
    backup::Backup,
    procfs,
    settings::{Profile, Rule, SETTINGS, Setting, TCP_TW_RECYCLE, setting},
};

/// One value written, with what it was before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub key: String,
    pub before: String,
    pub after: String,
}

/// A write apply intends to make.
struct Planned {
    key: &'static str,
    before: String,
    after: String,
}

/// Applies every setting of `profile` under `root` (normally `/proc/sys`).
///
/// The original value of every key about to change is saved in `backup_path` first (keys
/// already in an existing backup keep their saved originals). Keys that are absent (e.g.
/// conntrack timeouts without nf_conntrack) are skipped with a warning, and
/// `net.ipv4.tcp_tw_recycle` is never written. If a write fails, the keys this call already
/// changed get their previous values back and the error names the failing key and the OS
/// error.
pub fn apply(
    profile: Profile,
    root: &Path,
    backup_path: &Path,
) -> Result<Vec<Change>, SysctlError> {
    apply_selected(profile, root, backup_path, |_| true)
}

/// [`apply`] restricted to the settings `select` accepts, e.g. only `Scope::PerNetns` ones
/// inside a container, where host-wide keys are read-only.
pub fn apply_selected(
    profile: Profile,
    root: &Path,
    backup_path: &Path,
    select: impl Fn(&Setting) -> bool,
) -> Result<Vec<Change>, SysctlError> {
    let plan = plan(profile, root, &select)?;
    if plan.is_empty() {
        log::info!("sysctl: profile {profile} already in effect, nothing to change");
        return Ok(Vec::new());
    }

    // Originals first: nothing is written until they are safely on disk.
    let existing = Backup::load(backup_path)?;
    let mut backup = existing.clone().unwrap_or_default();
    for p in &plan {
        backup
            .originals
            .entry(p.key.to_owned())
            .or_insert_with(|| p.before.clone());
    }
    if existing.as_ref() != Some(&backup) {
        backup.save(backup_path)?;
    }

    let mut changes = Vec::with_capacity(plan.len());
    for p in &plan {
        if let Err(failed) = procfs::write(root, p.key, &p.after) {
            let rollback = roll_back(root, &plan[..changes.len()], p);
            log::error!("sysctl: {failed}; {}", rollback.summary());
            if rollback.not_restored.is_empty() {
                // Every key is as it was before this call; so is the backup file.
                let reverted = match &existing {
                    None => Backup::remove(backup_path),
                    Some(previous) if *previous != backup => previous.save(backup_path),
                    Some(_) => Ok(()),
                };
                if let Err(e) = reverted {
                    log::warn!("sysctl: {e}");
                }
            }
            return Err(SysctlError::Apply {
                failed: Box::new(failed),
                rollback,
            });
        }
        log::info!("sysctl {}: {} -> {} ({profile})", p.key, p.before, p.after);
        changes.push(Change {
            key: p.key.to_owned(),
            before: p.before.clone(),
            after: p.after.clone(),
        });
    }
    Ok(changes)
}

/// What `profile` would change under `root`, in table order. Reads every key before anything
/// is written, so an unreadable key stops apply while nothing has changed yet.
fn plan(
    profile: Profile,
    root: &Path,
    select: &impl Fn(&Setting) -> bool,
) -> Result<Vec<Planned>, SysctlError> {
    let mut plan = Vec::new();
    for s in SETTINGS.iter().filter(|s| select(s)) {
        let Some(target) = s.target(profile) else {
            continue; // Rule::NeverSet
        };
        debug_assert!(s.rule != Rule::NeverSet && s.key != TCP_TW_RECYCLE);
        let Some(current) = procfs::read(root, s.key)? else {
            log::warn!("sysctl {}: not present, skipped", s.key);
            continue;
        };
        if let Some(after) = procfs::wanted(s.rule, &current, target) {
            plan.push(Planned {
                key: s.key,
                before: current,
                after,
            });
        }
    }
    Ok(plan)
}

/// The outcome of undoing a failed apply.
#[derive(Debug, Default)]
pub struct Rollback {
    /// Keys put back to their value from before the failed apply.
    pub restored: Vec<String>,
    /// Keys that could not be put back; their originals stay in the backup file.
    pub not_restored: Vec<SysctlError>,
}

impl Rollback {
    pub fn summary(&self) -> String {
        let mut s = if self.restored.is_empty() {
            "nothing had been changed".to_owned()
        } else {
            format!("rolled back {}", self.restored.join(", "))
        };
        if !self.not_restored.is_empty() {
            let failed: Vec<String> = self.not_restored.iter().map(|e| e.to_string()).collect();
            s.push_str(&format!(
                "; ROLLBACK INCOMPLETE ({}); originals remain in the backup file",
                failed.join("; ")
            ));
        }
        s
    }
}

/// Puts back, newest first, the keys a failed apply changed, plus the failing key itself if
/// the kernel kept part of the write (multi-value settings are stored field by field).
///
/// The values restored are those from just before this apply, which for a first apply are
/// exactly the backup's originals; on top of an earlier apply they are that apply's values, so
/// the system is left as it was before this call rather than in a third, mixed state.
fn roll_back(root: &Path, written: &[Planned], failing: &Planned) -> Rollback {
    let mut rollback = Rollback::default();
    let mut undo = |key: &str, value: &str| match procfs::write(root, key, value) {
        Ok(()) => {
            log::info!("sysctl {key}: rolled back to {value}");
            rollback.restored.push(key.to_owned());
        }
        Err(e) => rollback.not_restored.push(e),
    };
    if let Ok(Some(now)) = procfs::read(root, failing.key)
        && now != failing.before
    {
        undo(failing.key, &failing.before);
    }
    for p in written.iter().rev() {
        undo(p.key, &p.before);
    }
    rollback
}

/// Writes the originals saved in `backup_path` back under `root`, then deletes the backup.
///
/// Every key is attempted; if any fails, the backup is kept (so restore can be retried) and
/// the error lists the failures. Keys that are absent now (nf_conntrack unloaded since) are
/// skipped with a warning: their tuned value has gone with them.
pub fn restore(root: &Path, backup_path: &Path) -> Result<Vec<Change>, SysctlError> {
    let backup = Backup::load(backup_path)?.ok_or_else(|| SysctlError::NoBackup {
        path: backup_path.to_owned(),
    })?;
    // Validate the whole file before writing anything: only keys of the table, never
    // tcp_tw_recycle (a hand-edited backup must not become a way to set it).
    for key in backup.originals.keys() {
        match setting(key) {
            None => {
                return Err(SysctlError::UnknownKey {
                    key: key.clone(),
                    path: backup_path.to_owned(),
                });
            }
            Some(s) if s.rule == Rule::NeverSet => {
                return Err(SysctlError::NeverWritten { key: key.clone() });
            }
            Some(_) => {}
        }
    }

    // Reverse table order, mirroring apply.
    let mut keys: Vec<&Setting> = SETTINGS
        .iter()
        .filter(|s| backup.originals.contains_key(s.key))
        .collect();
    keys.reverse();

    let mut changes = Vec::new();
    let mut failures = Vec::new();
    for s in keys {
        let original = procfs::normalize(&backup.originals[s.key]);
        let current = match procfs::read(root, s.key) {
            Ok(Some(v)) => v,
            Ok(None) => {
                log::warn!(
                    "sysctl {}: not present, original {original} not restored",
                    s.key
                );
                continue;
            }
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        if current == original {
            log::info!("sysctl {}: already {original}", s.key);
            continue;
        }
        match procfs::write(root, s.key, &original) {
            Ok(()) => {
                log::info!("sysctl {}: {current} -> {original} (restored)", s.key);
                changes.push(Change {
                    key: s.key.to_owned(),
                    before: current,
                    after: original,
                });
            }
            Err(e) => failures.push(e),
        }
    }

    if !failures.is_empty() {
        return Err(SysctlError::Restore {
            restored: changes.iter().map(|c| c.key.clone()).collect(),
            failures,
        });
    }
    Backup::remove(backup_path)?;
    Ok(changes)
}

//! Comparing the live values with a profile, without changing anything.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{
    procfs,
    settings::{Profile, Rule, SETTINGS, Scope, Setting},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// The current value satisfies the profile.
    Ok,
    /// Present with another value; apply would change it (for `tcp_tw_recycle` on an old
    /// kernel: present and non-zero, to be set to 0 by hand).
    Differs,
    /// Not present: nf_conntrack not loaded, or not visible in this network namespace.
    Absent,
    /// Removed from Linux (tcp_tw_recycle); never set.
    Removed,
    /// Present but could not be read; `error` says why.
    Unreadable,
}

/// One row of an audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub key: String,
    /// Whitespace-normalised current value; `None` when absent or unreadable.
    pub current: Option<String>,
    /// The profile's target; `None` for a setting that is never set.
    pub recommended: Option<String>,
    pub rule: Rule,
    pub scope: Scope,
    pub status: Status,
    pub why: String,
    /// The read error, for `Status::Unreadable`.
    pub error: Option<String>,
}

/// Audits `root` (normally `/proc/sys`) against the recommended profile.
pub fn audit(root: &Path) -> Vec<AuditEntry> {
    audit_profile(Profile::Recommended, root)
}

/// Audits `root` against `profile`.
pub fn audit_profile(profile: Profile, root: &Path) -> Vec<AuditEntry> {
    SETTINGS
        .iter()
        .map(|s| audit_one(s, profile, root))
        .collect()
}

fn audit_one(setting: &Setting, profile: Profile, root: &Path) -> AuditEntry {
    let target = setting.target(profile);
    let (current, error) = match procfs::read(root, setting.key) {
        Ok(v) => (v, None),
        Err(e) => (None, Some(e.to_string())),
    };
    let status = match (&current, &error, target) {
        (_, Some(_), _) => Status::Unreadable,
        (None, None, None) => Status::Removed,
        (None, None, Some(_)) => Status::Absent,
        // Still present on a pre-4.12 kernel: harmless at 0, a NAT hazard otherwise.
        (Some(cur), None, None) if cur == "0" => Status::Removed,
        (Some(_), None, None) => Status::Differs,
        (Some(cur), None, Some(t)) if procfs::satisfies(setting.rule, cur, t) => Status::Ok,
        (Some(_), None, Some(_)) => Status::Differs,
    };
    AuditEntry {
        key: setting.key.to_owned(),
        current,
        recommended: target.map(str::to_owned),
        rule: setting.rule,
        scope: setting.scope,
        status,
        why: setting.why.to_owned(),
        error,
    }
}

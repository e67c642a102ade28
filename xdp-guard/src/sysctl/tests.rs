//! Unit tests against a temporary directory laid out like `/proc/sys`.
#![allow(clippy::unwrap_used)]

use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::atomic::{AtomicUsize, Ordering},
};

use super::*;

/// A throwaway directory tree shaped like `/proc/sys`, removed on drop.
struct FakeProc {
    dir: PathBuf,
}

impl FakeProc {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "xg-sysctl-unit-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("proc/sys")).unwrap();
        Self { dir }
    }

    /// A tree holding the values of a stock Linux 6.x host with nf_conntrack loaded (the kernel
    /// separates fields with tabs, as here).
    fn stock() -> Self {
        let fake = Self::new();
        for (key, value) in STOCK {
            fake.set(key, value);
        }
        fake
    }

    fn root(&self) -> PathBuf {
        self.dir.join("proc/sys")
    }

    fn backup(&self) -> PathBuf {
        self.dir.join("state/sysctl-backup.json")
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root().join(key.replace('.', "/"))
    }

    fn set(&self, key: &str, value: &str) {
        let path = self.path(key);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, format!("{value}\n")).unwrap();
    }

    fn get(&self, key: &str) -> Option<String> {
        fs::read_to_string(self.path(key))
            .ok()
            .map(|v| normalize(&v))
    }

    /// Every file under the root, key -> normalised value.
    fn snapshot(&self) -> BTreeMap<String, String> {
        fn walk(dir: &Path, prefix: &str, out: &mut BTreeMap<String, String>) {
            for entry in fs::read_dir(dir).unwrap() {
                let entry = entry.unwrap();
                let name = entry.file_name().into_string().unwrap();
                let key = if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}.{name}")
                };
                if entry.file_type().unwrap().is_dir() {
                    walk(&entry.path(), &key, out);
                } else {
                    let v = fs::read_to_string(entry.path()).unwrap();
                    out.insert(key, normalize(&v));
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.root(), "", &mut out);
        out
    }

    /// Replaces a key's file with a directory: reading and writing it both fail (EISDIR).
    fn break_key(&self, key: &str) {
        let path = self.path(key);
        fs::remove_file(&path).unwrap();
        fs::create_dir(&path).unwrap();
    }

    /// Makes a key readable but not writable, even by root (a chmod would not stop root): it
    /// becomes a symlink to a read-only sysctl of the real kernel, which refuses every write
    /// with EACCES before anything is changed, just like `net.core.rmem_max` inside a
    /// container. Its value (the kernel release) never satisfies a profile, so apply tries to
    /// write it.
    fn make_read_only(&self, key: &str) {
        let target = Path::new(READ_ONLY_SYSCTL);
        let mode = fs::metadata(target).unwrap().permissions().mode();
        assert_eq!(mode & 0o222, 0, "{READ_ONLY_SYSCTL} must be read-only");
        let path = self.path(key);
        fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(target, &path).unwrap();
    }
}

const READ_ONLY_SYSCTL: &str = "/proc/sys/kernel/osrelease";

impl Drop for FakeProc {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

const STOCK: &[(&str, &str)] = &[
    ("net.ipv4.tcp_syncookies", "1"),
    ("net.ipv4.tcp_synack_retries", "5"),
    ("net.ipv4.tcp_syn_retries", "6"),
    ("net.ipv4.tcp_max_syn_backlog", "2048"),
    ("net.core.somaxconn", "4096"),
    ("net.ipv4.tcp_window_scaling", "1"),
    ("net.core.rmem_max", "4194304"),
    ("net.core.wmem_max", "4194304"),
    ("net.ipv4.tcp_rmem", "4096\t131072\t33554432"),
    ("net.ipv4.tcp_wmem", "4096\t16384\t4194304"),
    ("net.ipv4.tcp_fin_timeout", "60"),
    ("net.ipv4.tcp_keepalive_time", "7200"),
    ("net.ipv4.tcp_tw_reuse", "2"),
    ("net.ipv4.ip_local_port_range", "32768\t60999"),
    ("net.netfilter.nf_conntrack_tcp_timeout_time_wait", "120"),
    ("net.netfilter.nf_conntrack_tcp_timeout_close_wait", "60"),
    ("net.netfilter.nf_conntrack_tcp_timeout_fin_wait", "120"),
];

fn entry<'a>(audit: &'a [AuditEntry], key: &str) -> &'a AuditEntry {
    audit.iter().find(|e| e.key == key).unwrap()
}

fn stock_value(key: &str) -> &'static str {
    STOCK.iter().find(|(k, _)| *k == key).unwrap().1
}

#[test]
fn table_is_consistent() {
    let mut keys: Vec<&str> = SETTINGS.iter().map(|s| s.key).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), SETTINGS.len(), "duplicate keys");
    for s in SETTINGS {
        assert!(!s.why.is_empty(), "{} has no why", s.key);
        if s.rule == Rule::NeverSet {
            assert_eq!(s.target(Profile::Recommended), None);
            assert_eq!(s.target(Profile::UnderAttack), None);
        } else {
            assert!(s.recommended.is_some(), "{} has no target", s.key);
        }
        if s.rule == Rule::AtLeast {
            for p in Profile::ALL {
                let t = s.target(p).unwrap();
                assert!(t.split_whitespace().all(|f| f.parse::<i64>().is_ok()));
            }
        }
    }
    // Every key the memo and the brief name is there.
    for (key, _) in STOCK {
        assert!(setting(key).is_some(), "{key} missing from the table");
    }
    assert_eq!(setting(TCP_TW_RECYCLE).unwrap().rule, Rule::NeverSet);
    // The attack profile differs exactly where it should.
    let attack: Vec<(&str, &str)> = SETTINGS
        .iter()
        .filter(|s| s.target(Profile::UnderAttack) != s.target(Profile::Recommended))
        .map(|s| (s.key, s.target(Profile::UnderAttack).unwrap()))
        .collect();
    assert_eq!(
        attack,
        [
            ("net.ipv4.tcp_synack_retries", "2"),
            ("net.ipv4.tcp_max_syn_backlog", "8192"),
            ("net.core.somaxconn", "8192"),
        ]
    );
    assert_eq!(
        setting("net.ipv4.tcp_syncookies")
            .unwrap()
            .target(Profile::UnderAttack),
        Some("1")
    );
}

#[test]
fn profile_names_round_trip() {
    for p in Profile::ALL {
        assert_eq!(p.name().parse::<Profile>().unwrap(), p);
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            format!("\"{}\"", p.name())
        );
    }
    assert!("aggressive".parse::<Profile>().is_err());
}

#[test]
fn audit_reports_each_status() {
    let fake = FakeProc::new();
    fake.set("net.ipv4.tcp_syncookies", "2"); // always-on cookies: differs
    fake.set("net.ipv4.tcp_synack_retries", "3");
    fake.set("net.ipv4.tcp_rmem", "4096\t131072\t33554432"); // above the target: ok
    fake.set("net.ipv4.tcp_wmem", "4096\t16384\t4194304"); // below: differs
    fake.set("net.ipv4.ip_local_port_range", "5000\t65000"); // tabs vs spaces: ok
    fake.set("net.core.somaxconn", "65535");
    // No tcp_tw_recycle (removed since 4.12) and no conntrack (module not loaded).

    let audit = audit(&fake.root());
    assert_eq!(audit.len(), SETTINGS.len());
    let status = |key: &str| entry(&audit, key).status;
    assert_eq!(status("net.ipv4.tcp_syncookies"), Status::Differs);
    assert_eq!(status("net.ipv4.tcp_synack_retries"), Status::Ok);
    assert_eq!(status("net.ipv4.tcp_rmem"), Status::Ok);
    assert_eq!(status("net.ipv4.tcp_wmem"), Status::Differs);
    assert_eq!(status("net.ipv4.ip_local_port_range"), Status::Ok);
    assert_eq!(status("net.core.somaxconn"), Status::Ok);
    assert_eq!(status(TCP_TW_RECYCLE), Status::Removed);
    assert_eq!(
        status("net.netfilter.nf_conntrack_tcp_timeout_time_wait"),
        Status::Absent
    );
    assert_eq!(status("net.ipv4.tcp_fin_timeout"), Status::Absent);

    let cookies = entry(&audit, "net.ipv4.tcp_syncookies");
    assert_eq!(cookies.current.as_deref(), Some("2"));
    assert_eq!(cookies.recommended.as_deref(), Some("1"));
    let range = entry(&audit, "net.ipv4.ip_local_port_range");
    assert_eq!(range.current.as_deref(), Some("5000 65000"));
    let recycle = entry(&audit, TCP_TW_RECYCLE);
    assert_eq!(recycle.current, None);
    assert_eq!(recycle.recommended, None);
    assert!(recycle.why.contains("4.12") && recycle.why.contains("NAT"));
    assert!(
        entry(&audit, "net.ipv4.tcp_tw_reuse")
            .why
            .contains("OUTGOING")
    );

    // Against the attack profile the same SYN-ACK retries are too many.
    let attack = audit_profile(Profile::UnderAttack, &fake.root());
    assert_eq!(
        entry(&attack, "net.ipv4.tcp_synack_retries").status,
        Status::Differs
    );
    assert_eq!(
        entry(&attack, "net.ipv4.tcp_synack_retries")
            .recommended
            .as_deref(),
        Some("2")
    );
}

#[test]
fn audit_flags_tcp_tw_recycle_still_enabled_on_old_kernels() {
    let fake = FakeProc::new();
    fake.set(TCP_TW_RECYCLE, "0");
    assert_eq!(
        entry(&audit(&fake.root()), TCP_TW_RECYCLE).status,
        Status::Removed
    );
    fake.set(TCP_TW_RECYCLE, "1");
    let audit = audit(&fake.root());
    assert_eq!(entry(&audit, TCP_TW_RECYCLE).status, Status::Differs);
    assert_eq!(entry(&audit, TCP_TW_RECYCLE).recommended, None);
}

#[test]
fn audit_reports_unreadable_keys() {
    let fake = FakeProc::stock();
    fake.break_key("net.ipv4.tcp_fin_timeout"); // reading a directory fails with EISDIR
    let audit = audit(&fake.root());
    let e = entry(&audit, "net.ipv4.tcp_fin_timeout");
    assert_eq!(e.status, Status::Unreadable);
    assert!(
        e.error
            .as_deref()
            .unwrap()
            .contains("net.ipv4.tcp_fin_timeout")
    );
}

#[test]
fn apply_and_restore_round_trip() {
    let fake = FakeProc::stock();
    let before = fake.snapshot();

    let changes = apply(Profile::Recommended, &fake.root(), &fake.backup()).unwrap();
    let changed: Vec<&str> = changes.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(
        changed,
        [
            "net.ipv4.tcp_synack_retries",
            "net.ipv4.tcp_syn_retries",
            "net.core.rmem_max",
            "net.core.wmem_max",
            "net.ipv4.tcp_wmem",
            "net.ipv4.tcp_fin_timeout",
            "net.ipv4.tcp_keepalive_time",
            "net.ipv4.tcp_tw_reuse",
            "net.ipv4.ip_local_port_range",
        ]
    );
    for c in &changes {
        assert_eq!(c.before, normalize(stock_value(&c.key)));
        assert_eq!(fake.get(&c.key).unwrap(), c.after);
    }
    assert_eq!(fake.get("net.ipv4.tcp_synack_retries").unwrap(), "3");
    assert_eq!(
        fake.get("net.ipv4.ip_local_port_range").unwrap(),
        "5000 65000"
    );
    // Everything now satisfies the profile (nothing absent in a stock tree).
    for e in audit(&fake.root()) {
        let want = if e.key == TCP_TW_RECYCLE {
            Status::Removed
        } else {
            Status::Ok
        };
        assert_eq!(e.status, want, "{}", e.key);
    }
    // The backup holds exactly the originals of the keys that changed.
    let backup = Backup::load(&fake.backup()).unwrap().unwrap();
    let expected: BTreeMap<String, String> = changes
        .iter()
        .map(|c| (c.key.clone(), c.before.clone()))
        .collect();
    assert_eq!(backup.originals, expected);
    // A second apply of the same profile changes nothing.
    assert!(
        apply(Profile::Recommended, &fake.root(), &fake.backup())
            .unwrap()
            .is_empty()
    );

    let restored = restore(&fake.root(), &fake.backup()).unwrap();
    assert_eq!(restored.len(), changes.len());
    for r in &restored {
        let c = changes.iter().find(|c| c.key == r.key).unwrap();
        assert_eq!((&r.before, &r.after), (&c.after, &c.before));
    }
    assert_eq!(fake.snapshot(), before);
    assert!(!fake.backup().exists(), "backup removed after restore");
    // No temp files left behind by the atomic writes.
    let leftovers: Vec<_> = fs::read_dir(fake.backup().parent().unwrap())
        .unwrap()
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn at_least_settings_are_raised_but_never_lowered() {
    let fake = FakeProc::stock();
    fake.set("net.core.somaxconn", "65535");
    fake.set("net.ipv4.tcp_max_syn_backlog", "1024");
    fake.set("net.ipv4.tcp_wmem", "8192\t16384\t4194304");
    apply(Profile::Recommended, &fake.root(), &fake.backup()).unwrap();
    assert_eq!(fake.get("net.core.somaxconn").unwrap(), "65535");
    assert_eq!(fake.get("net.ipv4.tcp_max_syn_backlog").unwrap(), "2048");
    // Higher fields kept, lower ones raised.
    assert_eq!(
        fake.get("net.ipv4.tcp_rmem").unwrap(),
        "4096 131072 33554432"
    );
    assert_eq!(
        fake.get("net.ipv4.tcp_wmem").unwrap(),
        "8192 65536 16777216"
    );
    assert_eq!(fake.get("net.core.rmem_max").unwrap(), "16777216");
}

#[test]
fn second_apply_keeps_the_first_originals() {
    let fake = FakeProc::stock();
    let before = fake.snapshot();
    apply(Profile::Recommended, &fake.root(), &fake.backup()).unwrap();
    let changes = apply(Profile::UnderAttack, &fake.root(), &fake.backup()).unwrap();
    let changed: Vec<(&str, &str, &str)> = changes
        .iter()
        .map(|c| (c.key.as_str(), c.before.as_str(), c.after.as_str()))
        .collect();
    assert_eq!(
        changed,
        [
            ("net.ipv4.tcp_synack_retries", "3", "2"),
            ("net.ipv4.tcp_max_syn_backlog", "2048", "8192"),
            ("net.core.somaxconn", "4096", "8192"),
        ]
    );
    let originals = Backup::load(&fake.backup()).unwrap().unwrap().originals;
    // The original, not the value the first apply left behind.
    assert_eq!(originals["net.ipv4.tcp_synack_retries"], "5");
    assert_eq!(originals["net.ipv4.tcp_max_syn_backlog"], "2048");
    assert_eq!(originals["net.core.somaxconn"], "4096");
    assert_eq!(originals["net.ipv4.tcp_fin_timeout"], "60");

    restore(&fake.root(), &fake.backup()).unwrap();
    assert_eq!(fake.snapshot(), before);
}

#[test]
fn failed_write_rolls_back_what_was_written() {
    let fake = FakeProc::stock();
    fake.make_read_only("net.ipv4.tcp_wmem");
    let before = fake.snapshot();

    let err = apply(Profile::Recommended, &fake.root(), &fake.backup()).unwrap_err();
    assert_eq!(err.key(), Some("net.ipv4.tcp_wmem"));
    assert_eq!(
        err.os_error().and_then(|e| e.raw_os_error()),
        Some(libc::EACCES)
    );
    let msg = err.to_string();
    assert!(msg.contains("net.ipv4.tcp_wmem"), "{msg}");
    assert!(msg.contains("os error 13"), "{msg}");
    let SysctlError::Apply { rollback, .. } = &err else {
        panic!("expected an Apply error, got {err:?}");
    };
    assert_eq!(
        rollback.restored,
        [
            "net.core.wmem_max",
            "net.core.rmem_max",
            "net.ipv4.tcp_syn_retries",
            "net.ipv4.tcp_synack_retries",
        ]
    );
    assert!(rollback.not_restored.is_empty());
    assert!(msg.contains("rolled back"), "{msg}");
    // Nothing half-applied, and no backup of a change that did not happen.
    assert_eq!(fake.snapshot(), before);
    assert!(!fake.backup().exists());
}

#[test]
fn unreadable_key_stops_apply_before_any_write() {
    let fake = FakeProc::stock();
    fake.break_key("net.ipv4.tcp_wmem");
    let before = fake.snapshot();
    let err = apply(Profile::Recommended, &fake.root(), &fake.backup()).unwrap_err();
    assert!(matches!(err, SysctlError::Read { .. }), "{err:?}");
    assert_eq!(err.key(), Some("net.ipv4.tcp_wmem"));
    assert_eq!(
        err.os_error().and_then(|e| e.raw_os_error()),
        Some(libc::EISDIR)
    );
    assert_eq!(fake.snapshot(), before);
    assert!(!fake.backup().exists());
}

#[test]
fn failed_apply_on_top_of_another_returns_to_the_first() {
    let fake = FakeProc::stock();
    apply(Profile::Recommended, &fake.root(), &fake.backup()).unwrap();
    let tuned = fake.snapshot();
    let backup = Backup::load(&fake.backup()).unwrap().unwrap();
    fake.make_read_only("net.core.somaxconn");
    let tuned_with_read_only = fake.snapshot();

    let err = apply(Profile::UnderAttack, &fake.root(), &fake.backup()).unwrap_err();
    assert_eq!(err.key(), Some("net.core.somaxconn"));
    // synack_retries went 3 -> 2 -> back to 3, the state before this call.
    assert_eq!(fake.get("net.ipv4.tcp_synack_retries").unwrap(), "3");
    assert_eq!(fake.get("net.ipv4.tcp_max_syn_backlog").unwrap(), "2048");
    assert_eq!(fake.snapshot(), tuned_with_read_only);
    assert_eq!(tuned.len(), tuned_with_read_only.len());
    // The first apply's backup is back as it was, with the true originals.
    assert_eq!(Backup::load(&fake.backup()).unwrap().unwrap(), backup);
    assert_eq!(backup.originals["net.ipv4.tcp_synack_retries"], "5");
}

#[test]
fn missing_keys_are_skipped_not_created() {
    let fake = FakeProc::stock();
    for key in [
        "net.netfilter.nf_conntrack_tcp_timeout_time_wait",
        "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
        "net.netfilter.nf_conntrack_tcp_timeout_fin_wait",
    ] {
        fs::remove_file(fake.path(key)).unwrap();
    }
    // Out of range for the profile, so apply would write it if it were there.
    fs::remove_file(fake.path("net.ipv4.tcp_fin_timeout")).unwrap();

    let changes = apply(Profile::UnderAttack, &fake.root(), &fake.backup()).unwrap();
    assert!(changes.iter().all(|c| c.key != "net.ipv4.tcp_fin_timeout"));
    assert_eq!(fake.get("net.ipv4.tcp_fin_timeout"), None);
    assert_eq!(
        fake.get("net.netfilter.nf_conntrack_tcp_timeout_time_wait"),
        None
    );
    let audit = audit(&fake.root());
    assert_eq!(
        entry(&audit, "net.netfilter.nf_conntrack_tcp_timeout_fin_wait").status,
        Status::Absent
    );
}

#[test]
fn tcp_tw_recycle_is_never_written() {
    let fake = FakeProc::stock();
    // An old kernel that still has it, with the memo's value.
    fake.set(TCP_TW_RECYCLE, "1");
    let recycle = fake.path(TCP_TW_RECYCLE);
    let mtime = || fs::metadata(&recycle).unwrap().modified().unwrap();
    let stamp = mtime();

    for profile in Profile::ALL {
        let changes = apply(profile, &fake.root(), &fake.backup()).unwrap();
        assert!(changes.iter().all(|c| c.key != TCP_TW_RECYCLE));
    }
    let backup = Backup::load(&fake.backup()).unwrap().unwrap();
    assert!(!backup.originals.contains_key(TCP_TW_RECYCLE));
    restore(&fake.root(), &fake.backup()).unwrap();

    // The low-level writer refuses it too.
    let err = procfs::write(&fake.root(), TCP_TW_RECYCLE, "0").unwrap_err();
    assert!(matches!(err, SysctlError::NeverWritten { .. }), "{err:?}");

    // So does restore, even from a hand-edited backup, and it writes nothing at all.
    let mut forged = Backup::default();
    forged
        .originals
        .insert("net.ipv4.tcp_syn_retries".into(), "2".into());
    forged.originals.insert(TCP_TW_RECYCLE.into(), "1".into());
    forged.save(&fake.backup()).unwrap();
    let err = restore(&fake.root(), &fake.backup()).unwrap_err();
    assert_eq!(err.key(), Some(TCP_TW_RECYCLE));
    assert_eq!(fake.get("net.ipv4.tcp_syn_retries").unwrap(), "6");

    assert_eq!(fake.get(TCP_TW_RECYCLE).unwrap(), "1");
    assert_eq!(mtime(), stamp, "tcp_tw_recycle was touched");
}

#[test]
fn unknown_keys_in_a_backup_are_refused() {
    let fake = FakeProc::stock();
    let mut forged = Backup::default();
    forged
        .originals
        .insert("kernel.core_pattern".into(), "|/tmp/x".into());
    forged.save(&fake.backup()).unwrap();
    let err = restore(&fake.root(), &fake.backup()).unwrap_err();
    assert!(
        matches!(&err, SysctlError::UnknownKey { key, .. } if key == "kernel.core_pattern"),
        "{err:?}"
    );
    assert!(fake.backup().exists());
}

#[test]
fn corrupt_backup_stops_apply_before_any_write() {
    let fake = FakeProc::stock();
    let before = fake.snapshot();
    fs::create_dir_all(fake.backup().parent().unwrap()).unwrap();
    fs::write(fake.backup(), b"{ not json").unwrap();
    let err = apply(Profile::Recommended, &fake.root(), &fake.backup()).unwrap_err();
    assert!(matches!(err, SysctlError::BackupFormat { .. }), "{err:?}");
    assert_eq!(fake.snapshot(), before);
    assert_eq!(fs::read(fake.backup()).unwrap(), b"{ not json");
}

#[test]
fn restore_without_backup_is_an_error() {
    let fake = FakeProc::stock();
    let err = restore(&fake.root(), &fake.backup()).unwrap_err();
    assert!(matches!(err, SysctlError::NoBackup { .. }), "{err:?}");
}

#[test]
fn failed_restore_keeps_the_backup_and_restores_the_rest() {
    let fake = FakeProc::stock();
    let before = fake.snapshot();
    apply(Profile::Recommended, &fake.root(), &fake.backup()).unwrap();
    fake.break_key("net.ipv4.tcp_keepalive_time");

    let err = restore(&fake.root(), &fake.backup()).unwrap_err();
    let SysctlError::Restore { restored, failures } = &err else {
        panic!("expected a Restore error, got {err:?}");
    };
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].key(), Some("net.ipv4.tcp_keepalive_time"));
    assert_eq!(restored.len(), 8);
    assert!(fake.backup().exists(), "backup kept for a retry");

    // Once the key is writable again, a retry finishes the job.
    fs::remove_dir(fake.path("net.ipv4.tcp_keepalive_time")).unwrap();
    fake.set("net.ipv4.tcp_keepalive_time", "300");
    let retried = restore(&fake.root(), &fake.backup()).unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!(fake.snapshot(), before);
    assert!(!fake.backup().exists());
}

#[test]
fn value_comparison() {
    use procfs::{satisfies, wanted};
    assert!(satisfies(Rule::Exact, "5000\t65000", "5000 65000"));
    assert!(!satisfies(Rule::Exact, "2", "1"));
    assert!(satisfies(Rule::AtLeast, "65535", "4096"));
    assert!(!satisfies(
        Rule::AtLeast,
        "4096 87380",
        "4096 87380 16777216"
    ));
    assert_eq!(wanted(Rule::Exact, "2", "1").as_deref(), Some("1"));
    assert_eq!(wanted(Rule::AtLeast, "65535", "4096"), None);
    assert_eq!(
        wanted(Rule::AtLeast, "4096 131072 4194304", "4096 87380 16777216").as_deref(),
        Some("4096 131072 16777216")
    );
    // A malformed current value is simply replaced.
    assert_eq!(
        wanted(Rule::AtLeast, "4096 87380", "4096 87380 16777216").as_deref(),
        Some("4096 87380 16777216")
    );
}

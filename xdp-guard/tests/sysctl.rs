//! The sysctl tuner against the real kernel, inside a network namespace of the test's own so
//! the host is untouched. Needs root.
//!
//! `/proc/sys/net` shows the network namespace of the task that reads it, and
//! `unshare(CLONE_NEWNET)` moves only the calling thread, so a thread that unshares sees and
//! writes its own namespace's values through the ordinary `/proc/sys` while the rest of the
//! process (and the host) keeps its own. The namespace disappears with the thread: there is
//! nothing named to clean up and nothing can leak. Only per-namespace keys can be exercised this
//! way; on Linux 6.x that is every key of the table except `net.core.rmem_max` and
//! `net.core.wmem_max`, which are read-only outside the initial namespace (test 2 uses that).

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    fs, io,
    path::{Path, PathBuf},
    sync::atomic::{AtomicUsize, Ordering},
    thread,
};

use xdp_guard::sysctl::{
    self, Profile, SETTINGS, Scope, Status, SysctlError, TCP_TW_RECYCLE, normalize,
};

use support::require_root;

const ROOT: &str = "/proc/sys";

fn init_log() {
    let _ = env_logger::builder().is_test(true).try_init();
}

/// A directory for the backup file, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "xg-sysctl-it-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("scratch dir");
        Self(dir)
    }

    fn backup(&self) -> PathBuf {
        self.0.join("sysctl-backup.json")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn path(key: &str) -> PathBuf {
    Path::new(ROOT).join(key.replace('.', "/"))
}

fn read(key: &str) -> Option<String> {
    fs::read_to_string(path(key)).ok().map(|v| normalize(&v))
}

/// Every key of the table as the calling thread sees it.
fn snapshot() -> BTreeMap<&'static str, Option<String>> {
    SETTINGS.iter().map(|s| (s.key, read(s.key))).collect()
}

fn interfaces() -> BTreeSet<String> {
    fs::read_dir(path("net.ipv4.conf"))
        .expect("read /proc/sys/net/ipv4/conf")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

fn netns_id() -> String {
    fs::read_link("/proc/thread-self/ns/net")
        .expect("readlink /proc/thread-self/ns/net")
        .to_string_lossy()
        .into_owned()
}

/// Runs `f` on a new thread moved into a fresh network namespace, after proving that the
/// thread's `/proc/sys/net` is the new namespace's and not the host's. Nothing is written
/// before that proof.
fn in_new_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let host_ns = netns_id();
    let host_ifaces = interfaces();
    let worker = thread::spawn(move || {
        // SAFETY: unshare only affects the calling thread's namespaces.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "unshare(CLONE_NEWNET): {}",
            io::Error::last_os_error()
        );
        assert_ne!(netns_id(), host_ns, "the thread did not change namespace");
        // A new namespace has only the loopback device; the host has more, so this also
        // shows that /proc/sys follows the thread, not the process.
        let ifaces = interfaces();
        let fresh: BTreeSet<String> = ["all", "default", "lo"].map(String::from).into();
        assert_eq!(ifaces, fresh, "/proc/sys/net is not the new namespace's");
        assert_ne!(
            ifaces, host_ifaces,
            "cannot tell the namespace from the host (the host has only lo); not writing"
        );
        f()
    });
    worker
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

fn write(key: &str, value: &str) {
    fs::write(path(key), value).unwrap_or_else(|e| panic!("priming {key}: {e}"));
}

/// Starting values that differ from every target of the attack profile, so each of the four
/// SYN-flood keys really changes (a fresh namespace's defaults already match some targets).
fn prime() {
    write("net.ipv4.tcp_syncookies", "2");
    write("net.ipv4.tcp_synack_retries", "5");
    write("net.ipv4.tcp_max_syn_backlog", "512");
    write("net.core.somaxconn", "1024");
}

#[test]
fn per_netns_settings_apply_and_restore_in_own_namespace() {
    if !require_root() {
        return;
    }
    init_log();
    let scratch = Scratch::new();
    let backup = scratch.backup();
    let host_before = snapshot();

    let (netns_before, changes, applied, restored, audit_after) = in_new_netns(move || {
        prime();
        let before = snapshot();
        let changes = sysctl::apply_selected(Profile::UnderAttack, Path::new(ROOT), &backup, |s| {
            s.scope == Scope::PerNetns
        })
        .expect("apply the attack profile inside the namespace");
        let applied = snapshot();
        assert!(backup.exists(), "backup written before the changes");
        let audit_after = sysctl::audit_profile(Profile::UnderAttack, Path::new(ROOT));
        let restored_changes =
            sysctl::restore(Path::new(ROOT), &backup).expect("restore inside the namespace");
        assert!(!backup.exists(), "backup removed after restore");
        assert_eq!(restored_changes.len(), changes.len());
        (before, changes, applied, snapshot(), audit_after)
    });

    // Changed in the namespace...
    for (key, before, after) in [
        ("net.ipv4.tcp_syncookies", "2", "1"),
        ("net.ipv4.tcp_synack_retries", "5", "2"),
        ("net.ipv4.tcp_max_syn_backlog", "512", "8192"),
        ("net.core.somaxconn", "1024", "8192"),
    ] {
        let c = changes
            .iter()
            .find(|c| c.key == key)
            .unwrap_or_else(|| panic!("{key} not changed: {changes:?}"));
        assert_eq!((c.before.as_str(), c.after.as_str()), (before, after));
        assert_eq!(
            applied[key].as_deref(),
            Some(after),
            "{key} in the namespace"
        );
    }
    for e in &audit_after {
        let s = sysctl::setting(&e.key).expect("table key");
        let ok = match s.scope {
            Scope::PerNetns if e.key == TCP_TW_RECYCLE => e.status == Status::Removed,
            Scope::PerNetns => matches!(e.status, Status::Ok | Status::Absent),
            Scope::Host => true,
        };
        assert!(ok, "{} after apply: {:?}", e.key, e.status);
    }
    assert!(changes.iter().all(|c| c.key != TCP_TW_RECYCLE));
    assert!(!path(TCP_TW_RECYCLE).exists(), "removed since Linux 4.12");
    // ...restored in the namespace...
    assert_eq!(restored, netns_before, "namespace values restored");
    // ...and never visible on the host.
    assert_eq!(snapshot(), host_before, "host values changed");
}

#[test]
fn read_only_host_key_in_a_namespace_rolls_back_the_rest() {
    if !require_root() {
        return;
    }
    init_log();
    let scratch = Scratch::new();
    let backup = scratch.backup();
    let host_before = snapshot();

    let outcome = in_new_netns(move || {
        prime();
        let before = snapshot();
        let result = sysctl::apply(Profile::UnderAttack, Path::new(ROOT), &backup);
        (before, result, snapshot(), backup.exists())
    });
    let (netns_before, result, netns_after, backup_left) = outcome;

    // rmem_max/wmem_max are shown read-only in a namespace; apply must try one of them
    // unless the host already has 16 MB or more in both.
    let needs_write = ["net.core.rmem_max", "net.core.wmem_max"].iter().any(|k| {
        let current = netns_before[k]
            .as_deref()
            .and_then(|v| v.parse::<u64>().ok());
        matches!(current, Some(v) if v < 16777216)
    });
    if !needs_write {
        eprintln!("skipping: rmem_max and wmem_max already >= 16 MB, no read-only write to fail");
        return;
    }
    let err = result.expect_err("writing a host-wide key from a namespace must fail");
    assert!(
        matches!(err.key(), Some("net.core.rmem_max" | "net.core.wmem_max")),
        "{err}"
    );
    assert_eq!(
        err.os_error().and_then(io::Error::raw_os_error),
        Some(libc::EACCES),
        "{err}"
    );
    let SysctlError::Apply { rollback, .. } = &err else {
        panic!("expected an Apply error: {err:?}");
    };
    for key in [
        "net.ipv4.tcp_syncookies",
        "net.ipv4.tcp_synack_retries",
        "net.ipv4.tcp_max_syn_backlog",
        "net.core.somaxconn",
    ] {
        assert!(rollback.restored.iter().any(|k| k == key), "{key}: {err}");
    }
    assert!(rollback.not_restored.is_empty(), "{err}");
    assert_eq!(netns_after, netns_before, "namespace left half-applied");
    assert!(!backup_left, "backup of a change that was rolled back");
    assert_eq!(snapshot(), host_before, "host values changed");
}

//! Where xdp-guard keeps things on the host. Every filesystem path and the default API
//! address are spelled here once; other modules take them as parameters so tests can point
//! them at temporary directories.

use std::path::{Path, PathBuf};

/// The daemon's configuration file.
pub const DEFAULT_CONFIG: &str = "/etc/xdp-guard/xdp-guard.toml";

/// Daemon state (controller snapshot, sysctl originals, per-interface locks). systemd creates
/// it through `StateDirectory=xdp-guard`.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/xdp-guard";

/// Bearer token the API requires for writes.
pub const DEFAULT_TOKEN_FILE: &str = "/etc/xdp-guard/api.token";

/// Mount point of the BPF filesystem.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf";

/// Directory under bpffs holding one directory of pins per interface.
pub const PIN_ROOT: &str = "/sys/fs/bpf/xdp-guard";

/// The REST API's default listen address: loopback only.
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:9180";

/// The live sysctl tree.
pub const SYSCTL_ROOT: &str = "/proc/sys";

/// Pins (program, link, maps) for one interface: `PIN_ROOT/<iface>`.
pub fn pin_dir(iface: &str) -> PathBuf {
    Path::new(PIN_ROOT).join(iface)
}

/// The controller's persisted state: `<state_dir>/state.json`.
pub fn state_file(state_dir: &Path) -> PathBuf {
    state_dir.join("state.json")
}

/// Original sysctl values saved before the tuner changed them: `<state_dir>/sysctl-backup.json`.
pub fn sysctl_backup(state_dir: &Path) -> PathBuf {
    state_dir.join("sysctl-backup.json")
}

/// Lock held by the daemon that keeps its state in `state_dir`: `<state_dir>/daemon:state.lock`
/// (the colon keeps it apart from every `<iface>.lock`: the kernel refuses it in interface
/// names).
pub fn state_lock(state_dir: &Path) -> PathBuf {
    state_dir.join("daemon:state.lock")
}

/// Lock held by the daemon guarding one interface: `<state_dir>/<iface>.lock`.
pub fn lock_file(state_dir: &Path, iface: &str) -> PathBuf {
    state_dir.join(format!("{iface}.lock"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_paths() {
        assert_eq!(pin_dir("eth0"), Path::new("/sys/fs/bpf/xdp-guard/eth0"));
        assert!(PIN_ROOT.starts_with(BPFFS_ROOT));
        let state = Path::new(DEFAULT_STATE_DIR);
        assert_eq!(
            state_file(state),
            Path::new("/var/lib/xdp-guard/state.json")
        );
        assert_eq!(
            sysctl_backup(state),
            Path::new("/var/lib/xdp-guard/sysctl-backup.json")
        );
        assert_eq!(
            lock_file(state, "eth0"),
            Path::new("/var/lib/xdp-guard/eth0.lock")
        );
    }

    #[test]
    fn default_api_listen_parses() {
        let addr: std::net::SocketAddr = DEFAULT_API_LISTEN.parse().expect("valid address");
        assert!(addr.ip().is_loopback());
    }
}

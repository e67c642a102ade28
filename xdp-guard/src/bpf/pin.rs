//! Pins under bpffs, one directory per interface:
//!
//! ```text
//! /sys/fs/bpf/xdp-guard/<iface>/layout-<N>/<MAP>   every map of xdp_guard_common::maps::ALL
//! /sys/fs/bpf/xdp-guard/<iface>/layout-<N>/link    the XDP link
//! ```
//!
//! The layout version in the path is what makes adoption safe: aya reuses a pinned map by
//! name without checking its key and value sizes, so pins of another layout are refused
//! (with the command that clears them), never reused.

use std::{
    fs,
    path::{Path, PathBuf},
};

use xdp_guard_common::{LAYOUT_VERSION, maps};

use super::{AttachedMode, BpfError};

/// Where one interface's pins live.
#[derive(Clone, Debug)]
pub struct PinDir {
    pub iface_dir: PathBuf,
    pub iface: String,
}

impl PinDir {
    pub fn new(root: &Path, iface: &str) -> Self {
        Self {
            iface_dir: root.join(iface),
            iface: iface.to_string(),
        }
    }

    pub fn layout_dir(&self) -> PathBuf {
        self.iface_dir.join(format!("layout-{LAYOUT_VERSION}"))
    }

    pub fn link(&self) -> PathBuf {
        self.layout_dir().join("link")
    }

    /// Ready the directory: refuse pins of another layout, create ours. Returns whether
    /// pins of this layout already exist (a restart adopts them).
    pub fn prepare(&self) -> Result<bool, BpfError> {
        if let Ok(entries) = fs::read_dir(&self.iface_dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if name != format!("layout-{LAYOUT_VERSION}") {
                    return Err(BpfError::LayoutMismatch {
                        dir: self.iface_dir.clone(),
                        iface: self.iface.clone(),
                        found: name,
                        expected: LAYOUT_VERSION,
                    });
                }
            }
        }
        let existed = self.layout_dir().join(maps::CONFIG).exists();
        fs::create_dir_all(self.layout_dir()).map_err(|e| BpfError::Pin {
            path: self.layout_dir(),
            message: e.to_string(),
        })?;
        Ok(existed)
    }

    /// Whether anything of ours is pinned for this interface.
    pub fn exists(&self) -> bool {
        self.iface_dir.exists()
    }
}

/// bpffs holds only BPF objects, so the attach mode of a pinned link is recorded in a sidecar
/// file under /run (lost on reboot, like the pins themselves).
fn mode_file(link_pin: &Path) -> PathBuf {
    let key = link_pin.to_string_lossy().replace('/', "_");
    PathBuf::from("/run/xdp-guard").join(format!("{key}.mode"))
}

pub fn record_mode(link_pin: &Path, mode: AttachedMode) {
    let f = mode_file(link_pin);
    if let Some(dir) = f.parent() {
        let _ = fs::create_dir_all(dir);
    }
    let _ = fs::write(f, mode.as_str());
}

pub fn recorded_mode(link_pin: &Path) -> Option<AttachedMode> {
    match fs::read_to_string(mode_file(link_pin)).ok()?.trim() {
        "native" => Some(AttachedMode::Native),
        "generic" => Some(AttachedMode::Generic),
        _ => None,
    }
}

/// Remove the link pin (detaching the program once no process holds the link) and every
/// map pin of the interface, whatever its layout.
pub fn remove(dir: &PinDir) -> Result<bool, BpfError> {
    if !dir.iface_dir.exists() {
        return Ok(false);
    }
    let err = |p: &Path, e: std::io::Error| BpfError::Pin {
        path: p.to_path_buf(),
        message: e.to_string(),
    };
    let entries = fs::read_dir(&dir.iface_dir).map_err(|e| err(&dir.iface_dir, e))?;
    for layout in entries.flatten() {
        let lp = layout.path();
        let _ = fs::remove_file(mode_file(&lp.join("link")));
        // The link first: that is what detaches the program.
        let link = lp.join("link");
        if link.exists() {
            fs::remove_file(&link).map_err(|e| err(&link, e))?;
        }
        if lp.is_dir() {
            for f in fs::read_dir(&lp).map_err(|e| err(&lp, e))?.flatten() {
                fs::remove_file(f.path()).map_err(|e| err(&f.path(), e))?;
            }
            fs::remove_dir(&lp).map_err(|e| err(&lp, e))?;
        } else {
            fs::remove_file(&lp).map_err(|e| err(&lp, e))?;
        }
    }
    fs::remove_dir(&dir.iface_dir).map_err(|e| err(&dir.iface_dir, e))?;
    if let Some(root) = dir.iface_dir.parent() {
        let _ = fs::remove_dir(root); // only when empty
    }
    Ok(true)
}

fn is_bpffs(path: &Path) -> bool {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let target = path.to_string_lossy();
    mounts.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 2 && f[1] == target && f[2] == "bpf"
    })
}

/// Make sure bpffs is mounted at `bpffs` (`/sys/fs/bpf`), mounting it when it is not.
///
/// Pins live as long as the bpffs instance they are in. Under `ip netns exec`, `/sys` is
/// remounted in a private mount namespace: a bpffs mounted there vanishes with the last
/// process in it, and the pinned link with it. Run the daemon in the host's mount namespace
/// (systemd, or `nsenter --net=...` for a network namespace) so its pins outlive it.
pub fn ensure_bpffs(bpffs: &Path) -> Result<(), BpfError> {
    if is_bpffs(bpffs) {
        return Ok(());
    }
    let err = |message: String| BpfError::Pin {
        path: bpffs.to_path_buf(),
        message,
    };
    let target = std::ffi::CString::new(bpffs.as_os_str().as_encoded_bytes())
        .map_err(|e| err(e.to_string()))?;
    // SAFETY: NUL-terminated strings that outlive the call; no mount data.
    let rc = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            target.as_ptr(),
            c"bpf".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(err(format!(
            "not a bpf filesystem, and mounting one failed ({}); mount it with `mount -t bpf bpf {}`",
            std::io::Error::last_os_error(),
            bpffs.display()
        )));
    }
    log::warn!("mounted bpffs at {}", bpffs.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_of_another_layout_are_refused_with_the_fix() {
        let root = std::env::temp_dir().join(format!("xg-pins-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let dir = PinDir::new(&root, "eth9");
        assert!(!dir.prepare().expect("fresh"), "nothing to adopt");
        fs::write(dir.layout_dir().join(maps::CONFIG), b"").expect("fake pin");
        assert!(dir.prepare().expect("same layout"), "adopts its own layout");
        fs::create_dir_all(dir.iface_dir.join("layout-0")).expect("old layout");
        let e = dir.prepare().expect_err("another layout");
        let msg = e.to_string();
        assert!(
            msg.contains("layout-0") && msg.contains("xdp-guard detach --iface eth9"),
            "{msg}"
        );
        assert!(remove(&dir).expect("remove"));
        assert!(!dir.iface_dir.exists());
        let _ = fs::remove_dir_all(&root);
    }
}

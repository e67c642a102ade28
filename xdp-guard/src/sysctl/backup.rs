//! The backup file: the values each key had before xdp-guard first changed it.
//!
//! Written atomically (temp file, fsync, rename, fsync of the directory) so a crash leaves
//! either the old backup or the new one, never a torn file. Once a key is in the backup its
//! original is never replaced: a second apply (say, the attack profile on top of the
//! recommended one) must not record already-tuned values as "originals".

use std::{
    collections::BTreeMap,
    fs::{self, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::SysctlError;

/// Bumped if the layout ever changes incompatibly.
pub const BACKUP_FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backup {
    pub format: u32,
    /// Dotted key -> whitespace-normalised value before xdp-guard's first change.
    pub originals: BTreeMap<String, String>,
}

impl Default for Backup {
    fn default() -> Self {
        Self {
            format: BACKUP_FORMAT,
            originals: BTreeMap::new(),
        }
    }
}

impl Backup {
    /// The backup at `path`, or `None` if there is none. A file that exists but cannot be
    /// parsed is an error: silently starting a new one would lose the originals.
    pub fn load(path: &Path) -> Result<Option<Self>, SysctlError> {
        let text = match fs::read(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(backup_io(path, source)),
        };
        let backup: Backup =
            serde_json::from_slice(&text).map_err(|source| SysctlError::BackupFormat {
                path: path.to_owned(),
                source,
            })?;
        if backup.format != BACKUP_FORMAT {
            return Err(SysctlError::BackupVersion {
                path: path.to_owned(),
                found: backup.format,
            });
        }
        Ok(Some(backup))
    }

    /// Replaces the file at `path` atomically, creating its directory if needed.
    pub fn save(&self, path: &Path) -> Result<(), SysctlError> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&dir).map_err(|e| backup_io(&dir, e))?;
        let name = path.file_name().map_or_else(
            || "sysctl-backup".into(),
            |n| n.to_string_lossy().into_owned(),
        );
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));

        let mut json =
            serde_json::to_vec_pretty(self).map_err(|source| SysctlError::BackupFormat {
                path: path.to_owned(),
                source,
            })?;
        json.push(b'\n');

        let written = (|| -> io::Result<()> {
            // A temp file left by a crashed run is ours to replace.
            match fs::remove_file(&tmp) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(&json)?;
            file.sync_all()?;
            fs::rename(&tmp, path)?;
            File::open(&dir)?.sync_all()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(backup_io(path, e));
        }
        Ok(())
    }

    /// Deletes the backup file (after a complete restore).
    pub(crate) fn remove(path: &Path) -> Result<(), SysctlError> {
        fs::remove_file(path).map_err(|e| backup_io(path, e))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Best effort: the removal itself has succeeded.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

fn backup_io(path: &Path, source: io::Error) -> SysctlError {
    SysctlError::Backup {
        path: path.to_owned(),
        source,
    }
}

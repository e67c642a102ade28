//! Durable state: the blocklist, the allowlist and the offence history, in one JSON document
//! under the state directory, replaced atomically (write a temp file, fsync it, rename it over
//! the old one, fsync the directory). A crash at any moment leaves either the old or the new
//! document, never a torn one; callers acknowledge a change only after [`Store::save`]
//! returned, so `kill -9` loses nothing that was acknowledged.

use std::{
    collections::BTreeMap,
    fs::{self, File, OpenOptions},
    io::Write as _,
    path::{Path, PathBuf},
};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::model::{AllowRecord, BlockRecord, Offence};

/// Bumped when the document's meaning changes; older documents are refused, not guessed at.
pub const STATE_FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid xdp-guard state file: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("{path} has state format {found}; this build reads format {STATE_FORMAT}")]
    Format { path: PathBuf, found: u32 },
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub format: u32,
    pub blocks: Vec<BlockRecord>,
    pub allows: Vec<AllowRecord>,
    /// Keyed by the source's prefix as text (JSON object keys must be strings).
    pub offences: BTreeMap<IpNet, Offence>,
}

#[derive(Debug)]
pub struct Store {
    path: PathBuf,
}

impl Store {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved state, or an empty one when nothing was saved yet.
    pub fn load(&self) -> Result<State, StoreError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(State {
                    format: STATE_FORMAT,
                    ..Default::default()
                });
            }
            Err(source) => {
                return Err(StoreError::Read {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let state: State = serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        if state.format != STATE_FORMAT {
            return Err(StoreError::Format {
                path: self.path.clone(),
                found: state.format,
            });
        }
        Ok(state)
    }

    /// Replace the saved state atomically and durably.
    pub fn save(&self, state: &State) -> Result<(), StoreError> {
        let err = |source| StoreError::Write {
            path: self.path.clone(),
            source,
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(err)?;
        let tmp = self.path.with_extension("json.tmp");
        let mut doc = State {
            format: STATE_FORMAT,
            ..state.clone()
        };
        doc.format = STATE_FORMAT;
        let bytes = serde_json::to_vec(&doc).map_err(|e| err(std::io::Error::other(e)))?;
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)
                .map_err(err)?;
            f.write_all(&bytes).map_err(err)?;
            f.sync_all().map_err(err)?;
        }
        fs::rename(&tmp, &self.path).map_err(err)?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Origin;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xg-store-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).expect("temp dir");
        d
    }

    fn block(cidr: &str) -> BlockRecord {
        BlockRecord {
            cidr: cidr.parse().expect("cidr"),
            expires_at_ms: Some(123),
            reason: "test".into(),
            origin: Origin::Manual,
            offences: 1,
            created_at_ms: 100,
        }
    }

    #[test]
    fn missing_file_is_empty_state() {
        let d = tmpdir("missing");
        let s = Store::new(d.join("state.json")).load().expect("load");
        assert!(s.blocks.is_empty() && s.allows.is_empty());
        let _ = fs::remove_dir_all(d);
    }

    #[test]
    fn round_trip_and_no_temp_left() {
        let d = tmpdir("rt");
        let store = Store::new(d.join("state.json"));
        let mut s = State::default();
        s.blocks.push(block("192.0.2.1/32"));
        s.offences.insert(
            "192.0.2.1/32".parse().expect("p"),
            Offence {
                count: 2,
                last_at_ms: 5,
            },
        );
        store.save(&s).expect("save");
        let back = store.load().expect("load");
        assert_eq!(back.blocks, s.blocks);
        assert_eq!(back.offences, s.offences);
        assert!(!d.join("state.json.tmp").exists());
        let _ = fs::remove_dir_all(d);
    }

    #[test]
    fn corrupt_and_foreign_files_are_refused_with_their_path() {
        let d = tmpdir("bad");
        let p = d.join("state.json");
        fs::write(&p, "{not json").expect("write");
        let e = Store::new(&p).load().expect_err("corrupt");
        assert!(e.to_string().contains("state.json"), "{e}");
        fs::write(&p, r#"{"format":99,"blocks":[],"allows":[],"offences":{}}"#).expect("write");
        assert!(matches!(
            Store::new(&p).load(),
            Err(StoreError::Format { found: 99, .. })
        ));
        let _ = fs::remove_dir_all(d);
    }

    /// A child process saves in a loop and is killed with SIGKILL at an arbitrary moment:
    /// the file must always load, with one of the documents that were saved.
    #[test]
    fn sigkill_mid_save_leaves_a_whole_document() {
        let d = tmpdir("kill");
        let p = d.join("state.json");
        for round in 0..5 {
            // SAFETY: fork in a test; the child only runs the save loop and exits.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                let store = Store::new(&p);
                let mut s = State::default();
                for i in 0..100_000u32 {
                    s.blocks.push(block(&format!(
                        "10.{}.{}.{}/32",
                        (i >> 16) & 255,
                        (i >> 8) & 255,
                        i & 255
                    )));
                    if store.save(&s).is_err() {
                        break;
                    }
                }
                // SAFETY: leave the child without running the test harness's atexit code.
                unsafe { libc::_exit(0) };
            }
            std::thread::sleep(std::time::Duration::from_millis(30 + round * 20));
            // SAFETY: pid is our child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
            let s = Store::new(&p)
                .load()
                .expect("a whole document after SIGKILL");
            for (i, b) in s.blocks.iter().enumerate() {
                assert_eq!(
                    b.cidr.to_string(),
                    format!("10.{}.{}.{}/32", (i >> 16) & 255, (i >> 8) & 255, i & 255)
                );
            }
        }
        let _ = fs::remove_dir_all(d);
    }
}

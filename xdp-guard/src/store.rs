//! Durable state: the blocklist, the allowlist and the offence history.
//!
//! Two files under the state directory:
//! - `state.json`, a snapshot, replaced atomically (write a temp file, fsync it, rename it over
//!   the old one, fsync the directory): a crash leaves the old or the new one, never a torn one.
//! - `state.journal`, the changes since that snapshot, one JSON line each, appended and
//!   fsynced before the change is acknowledged. A change costs one short append whatever the
//!   size of the lists (rewriting the whole snapshot per change cost 38 ms at 100,000 blocks,
//!   and 46,500 blocks one after another took ten minutes, each slower than the last).
//!
//! Loading replays the journal over the snapshot. When the journal holds as many lines as the
//! snapshot has entries (at least [`COMPACT_AFTER`]), [`Store::save`] writes a new snapshot and
//! empties the journal, so the work per change stays constant on average. A journal line cut
//! short by a crash was never acknowledged, and is ignored; `kill -9` loses nothing that was.

use std::{
    collections::BTreeMap,
    fs::{self, File, OpenOptions},
    io::{Read as _, Seek as _, SeekFrom, Write as _},
    path::{Path, PathBuf},
};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::model::{AllowRecord, BlockRecord, Offence};

/// Bumped when the document's meaning changes; newer documents are refused, not guessed at.
/// 2: changes since the snapshot are in the journal beside it (a build that knows only
/// format 1 would miss them, so it must refuse the directory). Format 1 snapshots load.
pub const STATE_FORMAT: u32 = 2;

/// The journal is folded into a new snapshot once it has this many lines, or as many as the
/// snapshot has entries if that is more.
pub const COMPACT_AFTER: usize = 1024;

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
    #[error("{path} has state format {found}; this build reads formats 1 to {STATE_FORMAT}")]
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

impl State {
    fn entries(&self) -> usize {
        self.blocks.len() + self.allows.len() + self.offences.len()
    }
}

/// One change to the durable state: a journal line. Applying a change again gives the same
/// state (each one sets or removes one entry), so replaying a journal over a snapshot that
/// already holds some of its changes is harmless.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Add or replace the block on `record.cidr`.
    Block(BlockRecord),
    Unblock(IpNet),
    Allow(AllowRecord),
    Disallow(IpNet),
    /// Set the offence history of a prefix.
    Offence(IpNet, Offence),
}

/// The state as maps, while a journal is replayed.
struct Replay {
    blocks: BTreeMap<IpNet, BlockRecord>,
    allows: BTreeMap<IpNet, AllowRecord>,
    offences: BTreeMap<IpNet, Offence>,
}

impl Replay {
    fn new(state: State) -> Self {
        Self {
            blocks: state.blocks.into_iter().map(|b| (b.cidr, b)).collect(),
            allows: state.allows.into_iter().map(|a| (a.cidr, a)).collect(),
            offences: state.offences,
        }
    }

    fn apply(&mut self, change: Change) {
        match change {
            Change::Block(b) => {
                self.blocks.insert(b.cidr, b);
            }
            Change::Unblock(net) => {
                self.blocks.remove(&net);
            }
            Change::Allow(a) => {
                self.allows.insert(a.cidr, a);
            }
            Change::Disallow(net) => {
                self.allows.remove(&net);
            }
            Change::Offence(net, o) => {
                self.offences.insert(net, o);
            }
        }
    }

    fn into_state(self) -> State {
        State {
            format: STATE_FORMAT,
            blocks: self.blocks.into_values().collect(),
            allows: self.allows.into_values().collect(),
            offences: self.offences,
        }
    }
}

#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    /// The journal, open for appending once this process wrote to it or compacted.
    journal: Option<File>,
    /// Its length in bytes and lines (this process's view; it is the only writer).
    journal_bytes: u64,
    journal_lines: usize,
    /// Entries in the last snapshot this process wrote.
    snapshot_entries: usize,
}

impl Store {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            journal: None,
            journal_bytes: 0,
            journal_lines: 0,
            snapshot_entries: 0,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the changes since the snapshot go: `state.journal` beside `state.json`.
    pub fn journal_path(&self) -> PathBuf {
        self.path.with_extension("journal")
    }

    /// The saved state (the snapshot with the journal replayed over it), or an empty one
    /// when nothing was saved yet.
    pub fn load(&self) -> Result<State, StoreError> {
        let mut replay = Replay::new(self.load_snapshot()?);
        let journal = self.journal_path();
        let bytes = match fs::read(&journal) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(StoreError::Read {
                    path: journal,
                    source,
                });
            }
        };
        let complete = complete_lines(&bytes);
        for (n, line) in bytes[..complete].split(|b| *b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            let change: Change = serde_json::from_slice(line).map_err(|e| StoreError::Corrupt {
                path: journal.clone(),
                message: format!("line {}: {e}", n + 1),
            })?;
            replay.apply(change);
        }
        if complete < bytes.len() {
            log::warn!(
                "{}: ignoring its last {} bytes, a change cut short by a crash (never acknowledged)",
                journal.display(),
                bytes.len() - complete
            );
        }
        Ok(replay.into_state())
    }

    fn load_snapshot(&self) -> Result<State, StoreError> {
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
        if !(1..=STATE_FORMAT).contains(&state.format) {
            return Err(StoreError::Format {
                path: self.path.clone(),
                found: state.format,
            });
        }
        Ok(state)
    }

    /// Append `changes` to the journal and fsync it: durable when this returns. On an error
    /// the journal is cut back to where it was, so a half-written line cannot end up in front
    /// of the next change.
    pub fn append(&mut self, changes: &[Change]) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let path = self.journal_path();
        let err = write_err(&path);
        let mut buf = Vec::new();
        for c in changes {
            serde_json::to_writer(&mut buf, c).map_err(|e| err(std::io::Error::other(e)))?;
            buf.push(b'\n');
        }
        let before = self.journal_bytes;
        let file = self.open_journal()?;
        let written = file.write_all(&buf).and_then(|()| file.sync_data());
        if let Err(e) = written {
            let _ = file.set_len(before);
            return Err(err(e));
        }
        self.journal_bytes += buf.len() as u64;
        self.journal_lines += changes.len();
        Ok(())
    }

    /// Whether the journal has grown enough that [`Store::save`] should fold it into a new
    /// snapshot.
    pub fn wants_compaction(&self) -> bool {
        self.journal_lines >= COMPACT_AFTER.max(self.snapshot_entries)
    }

    /// Lines in the journal since the last snapshot.
    pub fn journal_lines(&self) -> usize {
        self.journal_lines
    }

    /// The journal, opened (and created, with the directory fsynced so the file itself is
    /// durable) on first use. A tail without a newline, from a crash mid-append, is cut off.
    fn open_journal(&mut self) -> Result<&mut File, StoreError> {
        if self.journal.is_none() {
            let path = self.journal_path();
            let err = write_err(&path);
            let dir = self.path.parent().unwrap_or(Path::new("."));
            fs::create_dir_all(dir).map_err(&err)?;
            let existed = path.exists();
            let mut file = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(&path)
                .map_err(&err)?;
            if !existed {
                File::open(dir).and_then(|d| d.sync_all()).map_err(&err)?;
            }
            let mut bytes = Vec::new();
            file.seek(SeekFrom::Start(0)).map_err(&err)?;
            file.read_to_end(&mut bytes).map_err(&err)?;
            let complete = complete_lines(&bytes);
            if complete < bytes.len() {
                file.set_len(complete as u64).map_err(&err)?;
                file.sync_data().map_err(&err)?;
            }
            self.journal_bytes = complete as u64;
            self.journal_lines = bytes[..complete].iter().filter(|b| **b == b'\n').count();
            self.journal = Some(file);
        }
        Ok(self.journal.as_mut().expect("opened above"))
    }

    /// Write `state` as the new snapshot, atomically and durably, then empty the journal
    /// (every change in it is in the snapshot now).
    pub fn save(&mut self, state: &State) -> Result<(), StoreError> {
        let err = write_err(&self.path);
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(&err)?;
        let tmp = self.path.with_extension("json.tmp");
        let doc = State {
            format: STATE_FORMAT,
            ..state.clone()
        };
        let bytes = serde_json::to_vec(&doc).map_err(|e| err(std::io::Error::other(e)))?;
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)
                .map_err(&err)?;
            f.write_all(&bytes).map_err(&err)?;
            f.sync_all().map_err(&err)?;
        }
        fs::rename(&tmp, &self.path).map_err(&err)?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(&err)?;
        self.snapshot_entries = state.entries();
        // A crash before this point replays the old journal over the new snapshot: harmless
        // (see [`Change`]).
        let journal = self.journal_path();
        let jerr = write_err(&journal);
        let emptied = match &self.journal {
            Some(file) => file.set_len(0).and_then(|()| file.sync_data()),
            None => match OpenOptions::new().write(true).open(&journal) {
                Ok(file) => file.set_len(0).and_then(|()| file.sync_data()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            },
        };
        emptied.map_err(&jerr)?;
        self.journal_bytes = 0;
        self.journal_lines = 0;
        Ok(())
    }
}

fn write_err(path: &Path) -> impl Fn(std::io::Error) -> StoreError + use<> {
    let path = path.to_path_buf();
    move |source| StoreError::Write {
        path: path.clone(),
        source,
    }
}

/// The length of the part of `bytes` made of whole lines (up to and including the last
/// newline).
fn complete_lines(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1)
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
        let mut store = Store::new(d.join("state.json"));
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
        // Format 1 (before the journal) is the same document.
        fs::write(&p, r#"{"format":1,"blocks":[],"allows":[],"offences":{}}"#).expect("write");
        assert!(Store::new(&p).load().is_ok());
        let _ = fs::remove_dir_all(d);
    }

    fn addr(i: u32) -> String {
        format!("10.{}.{}.{}/32", (i >> 16) & 255, (i >> 8) & 255, i & 255)
    }

    #[test]
    fn the_journal_replays_over_the_snapshot() {
        let d = tmpdir("journal");
        let mut store = Store::new(d.join("state.json"));
        let mut s = State::default();
        s.blocks.push(block("192.0.2.1/32"));
        s.blocks.push(block("192.0.2.2/32"));
        store.save(&s).expect("snapshot");
        let allow = AllowRecord {
            cidr: "198.51.100.0/24".parse().expect("p"),
            origin: Origin::Manual,
            note: "office".into(),
            created_at_ms: 7,
        };
        let offence = Offence {
            count: 3,
            last_at_ms: 9,
        };
        let net = |c: &str| -> IpNet { c.parse().expect("p") };
        store
            .append(&[
                Change::Unblock(net("192.0.2.1/32")),
                Change::Block(block("203.0.113.0/24")),
            ])
            .expect("append");
        store
            .append(&[
                Change::Allow(allow.clone()),
                Change::Offence(net("203.0.113.0/24"), offence),
                Change::Allow(AllowRecord {
                    note: "gone".into(),
                    ..allow.clone()
                }),
                Change::Disallow(allow.cidr),
                Change::Allow(allow.clone()),
            ])
            .expect("append");
        assert_eq!(store.journal_lines(), 7);
        let back = Store::new(d.join("state.json")).load().expect("load");
        let cidrs: Vec<String> = back.blocks.iter().map(|b| b.cidr.to_string()).collect();
        assert_eq!(cidrs, ["192.0.2.2/32", "203.0.113.0/24"]);
        assert_eq!(back.allows, vec![allow]);
        assert_eq!(back.offences.get(&net("203.0.113.0/24")), Some(&offence));
        // A new snapshot takes the journal in and empties it.
        store.save(&back).expect("compact");
        assert_eq!(
            fs::metadata(store.journal_path()).expect("journal").len(),
            0
        );
        assert_eq!(Store::new(d.join("state.json")).load().expect("load"), back);
        let _ = fs::remove_dir_all(d);
    }

    /// A line cut short (a crash mid-append) is ignored on load and cut off before the next
    /// append; a bad line before the end is corruption, named with the file and line.
    #[test]
    fn a_torn_last_line_is_dropped_a_bad_middle_line_is_an_error() {
        let d = tmpdir("torn");
        let p = d.join("state.json");
        let mut store = Store::new(&p);
        store
            .append(&[Change::Block(block("192.0.2.1/32"))])
            .expect("append");
        let journal = store.journal_path();
        drop(store);
        let mut f = OpenOptions::new()
            .append(true)
            .open(&journal)
            .expect("open");
        f.write_all(br#"{"block":{"cidr":"192.0.2.9/32","#)
            .expect("torn write");
        drop(f);
        let s = Store::new(&p).load().expect("a torn tail loads");
        assert_eq!(s.blocks.len(), 1);
        let mut store = Store::new(&p);
        store
            .append(&[Change::Block(block("192.0.2.2/32"))])
            .expect("append after the tear");
        let s = Store::new(&p).load().expect("load");
        let cidrs: Vec<String> = s.blocks.iter().map(|b| b.cidr.to_string()).collect();
        assert_eq!(cidrs, ["192.0.2.1/32", "192.0.2.2/32"]);

        let text = fs::read_to_string(&journal).expect("read");
        fs::write(&journal, format!("{text}not json\n{text}")).expect("write");
        let e = Store::new(&p).load().expect_err("corrupt");
        assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("state.journal") && msg.contains("line 3"),
            "{msg}"
        );
        let _ = fs::remove_dir_all(d);
    }

    #[test]
    fn compaction_is_due_after_as_many_lines_as_entries() {
        let d = tmpdir("compact");
        let mut store = Store::new(d.join("state.json"));
        let mut s = State::default();
        for i in 0..(COMPACT_AFTER as u32 * 2) {
            s.blocks.push(block(&addr(i)));
        }
        store.save(&s).expect("snapshot");
        for i in 0..(COMPACT_AFTER as u32 * 2) {
            assert!(!store.wants_compaction(), "after {i} lines");
            store
                .append(&[Change::Unblock(addr(i).parse().expect("p"))])
                .expect("append");
        }
        assert!(store.wants_compaction());
        assert!(
            Store::new(d.join("state.json"))
                .load()
                .expect("load")
                .blocks
                .is_empty()
        );
        let _ = fs::remove_dir_all(d);
    }

    /// Run `child` in a forked process and SIGKILL it after `ms` milliseconds.
    fn killed_after(ms: u64, child: impl FnOnce()) {
        // SAFETY: fork in a test; the child only runs `child` and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            child();
            // SAFETY: leave the child without running the test harness's atexit code.
            unsafe { libc::_exit(0) };
        }
        std::thread::sleep(std::time::Duration::from_millis(ms));
        // SAFETY: pid is our child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }

    /// A child process appends changes (and compacts when due) in a loop and is killed with
    /// SIGKILL at an arbitrary moment: the state always loads, as a prefix of what was
    /// appended.
    #[test]
    fn sigkill_mid_append_loses_nothing_before_the_last_change() {
        let d = tmpdir("kill-journal");
        let p = d.join("state.json");
        for round in 0..5 {
            let _ = fs::remove_file(&p);
            let _ = fs::remove_file(p.with_extension("journal"));
            killed_after(100 + round * 70, || {
                let mut store = Store::new(&p);
                let mut s = State::default();
                for i in 0..1_000_000u32 {
                    let b = block(&addr(i));
                    s.blocks.push(b.clone());
                    if store.append(&[Change::Block(b)]).is_err() {
                        break;
                    }
                    if store.wants_compaction() && store.save(&s).is_err() {
                        break;
                    }
                }
            });
            let s = Store::new(&p).load().expect("state after SIGKILL");
            assert!(!s.blocks.is_empty(), "round {round}: nothing appended");
            for (i, b) in s.blocks.iter().enumerate() {
                assert_eq!(b.cidr.to_string(), addr(i as u32), "round {round}");
            }
        }
        let _ = fs::remove_dir_all(d);
    }

    /// A child process saves in a loop and is killed with SIGKILL at an arbitrary moment:
    /// the file must always load, with one of the documents that were saved.
    #[test]
    fn sigkill_mid_save_leaves_a_whole_document() {
        let d = tmpdir("kill");
        let p = d.join("state.json");
        for round in 0..5 {
            killed_after(30 + round * 20, || {
                let mut store = Store::new(&p);
                let mut s = State::default();
                for i in 0..100_000u32 {
                    s.blocks.push(block(&addr(i)));
                    if store.save(&s).is_err() {
                        break;
                    }
                }
            });
            let s = Store::new(&p)
                .load()
                .expect("a whole document after SIGKILL");
            for (i, b) in s.blocks.iter().enumerate() {
                assert_eq!(b.cidr.to_string(), addr(i as u32));
            }
        }
        let _ = fs::remove_dir_all(d);
    }
}

//! Reading and writing sysctl files under a procfs root, and comparing their values.
//!
//! `/proc/sys/net` shows the network namespace of the task that looks at it, so a thread that
//! has moved into another namespace reads and writes that namespace's values.

use std::{
    fs::{self, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
};

use super::{
    SysctlError,
    settings::{Rule, TCP_TW_RECYCLE},
};

/// `net.ipv4.tcp_syncookies` -> `<root>/net/ipv4/tcp_syncookies`.
pub(crate) fn key_path(root: &Path, key: &str) -> PathBuf {
    root.join(key.replace('.', "/"))
}

/// Collapses runs of whitespace (the kernel separates fields with tabs) into one space.
pub fn normalize(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The current value, whitespace-normalised; `None` when the file does not exist (a removed
/// key, a module that is not loaded, a key not visible in this network namespace).
pub(crate) fn read(root: &Path, key: &str) -> Result<Option<String>, SysctlError> {
    let path = key_path(root, key);
    match fs::read_to_string(&path) {
        Ok(text) => Ok(Some(normalize(&text))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SysctlError::Read {
            key: key.to_owned(),
            path,
            source,
        }),
    }
}

/// Writes `value` and reads it back. Never creates a file (a missing key is ENOENT) and never
/// writes `net.ipv4.tcp_tw_recycle`.
pub(crate) fn write(root: &Path, key: &str, value: &str) -> Result<(), SysctlError> {
    if key == TCP_TW_RECYCLE {
        return Err(SysctlError::NeverWritten {
            key: key.to_owned(),
        });
    }
    let path = key_path(root, key);
    let write_err = |source| SysctlError::Write {
        key: key.to_owned(),
        path: path.clone(),
        value: value.to_owned(),
        source,
    };
    // One write() of the whole line: procfs parses each write on its own.
    let mut file = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .map_err(write_err)?;
    file.write_all(format!("{value}\n").as_bytes())
        .map_err(write_err)?;
    drop(file);

    // The kernel may accept a write and still keep another value (clamping, a read-only
    // mirror); a change that did not take is a failure like any other.
    let got = read(root, key)?;
    if got.as_deref() != Some(normalize(value).as_str()) {
        return Err(SysctlError::NotTaken {
            key: key.to_owned(),
            wanted: normalize(value),
            got,
        });
    }
    Ok(())
}

/// Numeric fields of a value, or `None` if any field is not an integer.
fn fields(value: &str) -> Option<Vec<i64>> {
    value.split_whitespace().map(|f| f.parse().ok()).collect()
}

/// Whether `current` satisfies `target` under `rule`.
pub(crate) fn satisfies(rule: Rule, current: &str, target: &str) -> bool {
    match (rule, fields(current), fields(target)) {
        (Rule::AtLeast, Some(cur), Some(want)) if cur.len() == want.len() => {
            cur.iter().zip(&want).all(|(c, w)| c >= w)
        }
        (Rule::Exact, Some(cur), Some(want)) => cur == want,
        _ => normalize(current) == normalize(target),
    }
}

/// The value to write so that `current` satisfies `target`, or `None` if it already does.
/// For `AtLeast` only the fields below the target are raised; higher fields are kept.
pub(crate) fn wanted(rule: Rule, current: &str, target: &str) -> Option<String> {
    if satisfies(rule, current, target) {
        return None;
    }
    if let (Rule::AtLeast, Some(cur), Some(want)) = (rule, fields(current), fields(target))
        && cur.len() == want.len()
    {
        let merged: Vec<String> = cur
            .iter()
            .zip(&want)
            .map(|(c, w)| (*c).max(*w).to_string())
            .collect();
        return Some(merged.join(" "));
    }
    Some(normalize(target))
}

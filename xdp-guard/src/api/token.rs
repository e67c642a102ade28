//! The bearer token: created once with 256 random bits, kept in a file only its owner can
//! read, compared in constant time.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read as _, Write as _},
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use rand::{TryRngCore as _, rngs::OsRng};

/// Random bytes in a new token (64 hex characters).
pub const TOKEN_BYTES: usize = 32;

/// Tokens shorter than this are accepted, with a warning.
const SHORT_TOKEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("reading the API token file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("creating the API token file {}: {source}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the API token file {} is empty; delete it to have a new token generated", path.display())]
    Empty { path: PathBuf },
    #[error(
        "the API token file {} has mode {mode:04o}, open to group or others; run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    Permissive { path: PathBuf, mode: u32 },
    #[error(
        "the API token file {} holds characters other than printable ASCII (spaces included)",
        path.display()
    )]
    Malformed { path: PathBuf },
}

/// The token in `path`, trimmed. A missing file is created (parent directories too) with
/// mode 0600 holding a new random token; a file that is empty, holds whitespace or control
/// characters inside the token, or is open to group or others is refused.
pub fn load_or_create_token(path: &Path) -> Result<String, TokenError> {
    match OpenOptions::new().read(true).open(path) {
        Ok(file) => read_token(path, file),
        Err(e) if e.kind() == io::ErrorKind::NotFound => match create_token(path) {
            Ok(token) => {
                log::info!("created a new API token in {}", path.display());
                Ok(token)
            }
            // Another process created it between our open and our create: use theirs.
            Err(TokenError::Create { source, .. })
                if source.kind() == io::ErrorKind::AlreadyExists =>
            {
                let file = File::open(path).map_err(|source| TokenError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                read_token(path, file)
            }
            Err(e) => Err(e),
        },
        Err(source) => Err(TokenError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn read_token(path: &Path, mut file: File) -> Result<String, TokenError> {
    let read_err = |source| TokenError::Read {
        path: path.to_path_buf(),
        source,
    };
    // The mode of the file we opened, not of whatever the path names a moment later.
    let mode = file.metadata().map_err(read_err)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(TokenError::Permissive {
            path: path.to_path_buf(),
            mode: mode & 0o7777,
        });
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(read_err)?;
    let token = text.trim();
    if token.is_empty() {
        return Err(TokenError::Empty {
            path: path.to_path_buf(),
        });
    }
    // It has to fit in an `Authorization` header as one word.
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(TokenError::Malformed {
            path: path.to_path_buf(),
        });
    }
    if token.len() < SHORT_TOKEN {
        log::warn!(
            "the API token in {} is only {} characters; a generated one has {}",
            path.display(),
            token.len(),
            TOKEN_BYTES * 2
        );
    }
    Ok(token.to_string())
}

fn create_token(path: &Path) -> Result<String, TokenError> {
    let create_err = |source| TokenError::Create {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = [0u8; TOKEN_BYTES];
    OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| create_err(io::Error::other(e)))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(create_err)?;
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(create_err)?;
    let written = file
        .write_all(format!("{token}\n").as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(source) = written {
        // An empty or torn token file would be refused at the next start; leave none.
        let _ = fs::remove_file(path);
        return Err(create_err(source));
    }
    Ok(token)
}

/// Equality that takes the same time wherever the first difference is. The length is not
/// secret (every generated token has 64 characters).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }
}

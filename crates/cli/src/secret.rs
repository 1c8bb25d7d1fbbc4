//! The data directory and the persisted token-signing secret (decision 8).
//!
//! Unless a secret is configured, `<data_dir>/token_secret` holds 32 OS-random bytes
//! as 64 lowercase hex characters (mode 0600), generated on first start. It is
//! written to a temporary file and linked into place atomically, so a crash never
//! leaves a partial secret and two processes starting at once agree on one value.

use crate::config::MIN_SECRET_BYTES;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// File name of the persisted secret inside the data directory.
pub const SECRET_FILE: &str = "token_secret";

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("cannot create data directory {}: {source}", path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("data directory {} exists but is not a directory", path.display())]
    NotADirectory { path: PathBuf },
    #[error("cannot read token secret {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "token secret file {} is malformed ({problem}); fix it or delete it to generate a \
         new secret (outstanding tokens then become invalid)",
        path.display()
    )]
    Malformed { path: PathBuf, problem: String },
    #[error("cannot write token secret {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where the secret in use came from (logged, never the value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretSource {
    Configured,
    Persisted,
    Generated,
}

impl SecretSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Configured => "configured",
            Self::Persisted => "persisted",
            Self::Generated => "generated",
        }
    }
}

/// `<platform data dir>/mse`, e.g. `~/.local/share/mse`; `./.mse-data` when the
/// platform has none.
pub fn default_data_dir() -> PathBuf {
    dirs::data_dir()
        .map(|d| d.join("mse"))
        .unwrap_or_else(|| PathBuf::from(".mse-data"))
}

/// Create the directory (and parents, mode 0700) if missing; return it absolute.
pub fn ensure_data_dir(dir: &Path) -> Result<PathBuf, DataDirError> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(DataDirError::NotADirectory {
                path: dir.to_path_buf(),
            })
        }
        Err(_) => DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| DataDirError::Create {
                path: dir.to_path_buf(),
                source,
            })?,
    }
    Ok(fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf()))
}

/// Read `<dir>/token_secret`, or generate and persist one if there is none.
pub fn load_or_create(dir: &Path) -> Result<(Vec<u8>, SecretSource), DataDirError> {
    let path = dir.join(SECRET_FILE);
    if let Some(secret) = read_secret(&path)? {
        return Ok((secret, SecretSource::Persisted));
    }
    let mut secret = vec![0u8; 32];
    mse_engine::ids::random_bytes(&mut secret);
    match persist(dir, &path, &secret)? {
        true => Ok((secret, SecretSource::Generated)),
        // Another process created it first: use theirs.
        false => match read_secret(&path)? {
            Some(theirs) => Ok((theirs, SecretSource::Persisted)),
            None => Err(DataDirError::Malformed {
                path,
                problem: "disappeared while starting".into(),
            }),
        },
    }
}

/// `Ok(None)` if the file does not exist.
fn read_secret(path: &Path) -> Result<Option<Vec<u8>>, DataDirError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(DataDirError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let malformed = |problem: &str| DataDirError::Malformed {
        path: path.to_path_buf(),
        problem: problem.into(),
    };
    let bytes = hex::decode(text.trim()).map_err(|_| malformed("not hex"))?;
    if bytes.len() < MIN_SECRET_BYTES {
        return Err(malformed("shorter than 32 bytes"));
    }
    if let Ok(m) = fs::metadata(path) {
        if m.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                "token secret file is accessible to other users; run: chmod 600 {}",
                path.display()
            );
        }
    }
    Ok(Some(bytes))
}

/// Write the secret to a private temporary file, then link it into place without
/// overwriting. `Ok(false)` if the file already existed.
fn persist(dir: &Path, path: &Path, secret: &[u8]) -> Result<bool, DataDirError> {
    let werr = |source| DataDirError::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = dir.join(format!(
        ".{SECRET_FILE}.{}.{}.tmp",
        std::process::id(),
        mse_engine::ids::random_hex(8)
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(format!("{}\n", hex::encode(secret)).as_bytes())?;
        f.sync_all()?;
        drop(f);
        match fs::hard_link(&tmp, path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
            // File systems without hard links: an atomic rename (last writer wins).
            Err(_) => fs::rename(&tmp, path).map(|()| true),
        }
    })();
    let _ = fs::remove_file(&tmp);
    let created = result.map_err(werr)?;
    if created {
        // Make the new directory entry durable.
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "mse-cli-secret-{name}-{}-{}",
            std::process::id(),
            mse_engine::ids::random_hex(4)
        ));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn creates_nested_private_dir() {
        let base = tmpdir("dir");
        let d = base.join("a/b");
        let abs = ensure_data_dir(&d).unwrap();
        assert!(abs.is_absolute() && abs.is_dir());
        let mode = fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // Idempotent.
        ensure_data_dir(&d).unwrap();
        let f = base.join("file");
        fs::write(&f, "x").unwrap();
        assert!(matches!(
            ensure_data_dir(&f),
            Err(DataDirError::NotADirectory { .. })
        ));
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn generates_once_then_reuses() {
        let d = tmpdir("gen");
        ensure_data_dir(&d).unwrap();
        let (a, src) = load_or_create(&d).unwrap();
        assert_eq!((a.len(), src), (32, SecretSource::Generated));
        let p = d.join(SECRET_FILE);
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let text = fs::read_to_string(&p).unwrap();
        assert_eq!(text.trim().len(), 64);
        let (b, src) = load_or_create(&d).unwrap();
        assert_eq!((a, src), (b, SecretSource::Persisted));
        // No temporary files left behind.
        assert_eq!(fs::read_dir(&d).unwrap().count(), 1);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn malformed_secret_is_an_error() {
        let d = tmpdir("bad");
        ensure_data_dir(&d).unwrap();
        fs::write(d.join(SECRET_FILE), "not hex").unwrap();
        let e = load_or_create(&d).unwrap_err().to_string();
        assert!(e.contains("malformed (not hex)"), "{e}");
        fs::write(d.join(SECRET_FILE), "abcd").unwrap();
        let e = load_or_create(&d).unwrap_err().to_string();
        assert!(e.contains("shorter than 32 bytes"), "{e}");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn persist_does_not_overwrite() {
        let d = tmpdir("race");
        ensure_data_dir(&d).unwrap();
        let p = d.join(SECRET_FILE);
        assert!(persist(&d, &p, &[1; 32]).unwrap());
        assert!(!persist(&d, &p, &[2; 32]).unwrap());
        assert_eq!(read_secret(&p).unwrap(), Some(vec![1; 32]));
        fs::remove_dir_all(&d).unwrap();
    }
}

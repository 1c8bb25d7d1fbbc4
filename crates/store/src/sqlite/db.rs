//! The SQLite database behind every persistent store: one file, WAL mode,
//! versioned migrations applied at open, and blocking work kept off the async
//! runtime (`spawn_blocking`).

use crate::StoreError;
use parking_lot::Mutex;
use rusqlite::{Connection, ErrorCode, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Schema migrations, applied in order; `schema_version` = how many ran. A released
/// migration is never edited: changes come as a new entry.
const MIGRATIONS: &[&str] = &[
    // 1: every store.
    r#"
    CREATE TABLE blueprint_ids (
        id          TEXT PRIMARY KEY,
        archived    INTEGER NOT NULL DEFAULT 0,
        head_seq    INTEGER
    );
    CREATE TABLE blueprint_versions (
        seq           INTEGER PRIMARY KEY AUTOINCREMENT,
        blueprint_id  TEXT NOT NULL,
        version       TEXT NOT NULL,
        parent        TEXT,
        epoch_id      TEXT,
        rationale     TEXT NOT NULL,
        patch_hash    TEXT,
        created_at_ms INTEGER NOT NULL,
        version_label TEXT,
        body          TEXT NOT NULL
    );
    CREATE INDEX blueprint_versions_by_id ON blueprint_versions(blueprint_id, seq);
    CREATE INDEX blueprint_versions_by_version ON blueprint_versions(blueprint_id, version, seq);

    CREATE TABLE outputs (
        seq              INTEGER PRIMARY KEY AUTOINCREMENT,
        id               TEXT NOT NULL UNIQUE,
        task_id          TEXT NOT NULL,
        attempt          INTEGER NOT NULL,
        producer_agent   TEXT NOT NULL,
        event_json       TEXT NOT NULL,
        parent_refs_json TEXT NOT NULL
    );
    CREATE INDEX outputs_by_attempt ON outputs(task_id, attempt, seq);
    CREATE INDEX outputs_by_producer ON outputs(producer_agent, seq);

    CREATE TABLE issues (
        seq           INTEGER PRIMARY KEY AUTOINCREMENT,
        id            TEXT NOT NULL UNIQUE,
        blueprint_id  TEXT NOT NULL,
        intent        TEXT NOT NULL,
        status        TEXT NOT NULL,
        reason        TEXT,
        new_version   TEXT,
        attempts      INTEGER NOT NULL DEFAULT 0,
        created_at_ms INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL
    );
    CREATE INDEX issues_by_status ON issues(status, seq);

    CREATE TABLE enhance_settings (
        id            TEXT PRIMARY KEY,
        body          TEXT NOT NULL,
        updated_at_ms INTEGER NOT NULL
    );

    CREATE TABLE enhance_log (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        issue_id     TEXT NOT NULL UNIQUE,
        blueprint_id TEXT NOT NULL,
        status       TEXT NOT NULL,
        ts_ms        INTEGER NOT NULL,
        entry        TEXT NOT NULL
    );
    CREATE INDEX enhance_log_by_blueprint ON enhance_log(blueprint_id, ts_ms, seq);
    CREATE INDEX enhance_log_by_ts ON enhance_log(ts_ms, seq);
    "#,
];

/// A handle to the database. Cheap to clone; one connection serialises writes
/// (SQLite allows one writer at a time anyway).
#[derive(Clone)]
pub struct Database {
    conn: Arc<Mutex<Connection>>,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("path", &self.path)
            .finish()
    }
}

impl Database {
    /// Open (or create) the database file and apply pending migrations.
    pub fn open(path: &Path) -> Result<Database, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| open_error(path, e))?;
        let db = Database {
            conn: Arc::new(Mutex::new(conn)),
            path: Some(path.to_path_buf()),
        };
        db.configure().map_err(|e| match e {
            StoreError::Unavailable(m) => {
                StoreError::Unavailable(format!("{}: {m}", path.display()))
            }
            other => other,
        })?;
        Ok(db)
    }

    /// A private in-memory database (tests).
    pub fn in_memory() -> Result<Database, StoreError> {
        let conn = Connection::open_in_memory().map_err(map_error)?;
        let db = Database {
            conn: Arc::new(Mutex::new(conn)),
            path: None,
        };
        db.configure()?;
        Ok(db)
    }

    fn configure(&self) -> Result<(), StoreError> {
        let mut c = self.conn.lock();
        c.busy_timeout(Duration::from_secs(5)).map_err(map_error)?;
        // Reading the schema first turns "file is not a database" into a clear error.
        c.query_row("PRAGMA schema_version", [], |r| r.get::<_, i64>(0))
            .map_err(map_error)?;
        c.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
            .map_err(map_error)?;
        c.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
            .map_err(map_error)?;
        migrate(&mut c)
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Size of the database file (plus its WAL), in bytes.
    pub fn size_bytes(&self) -> u64 {
        let Some(p) = &self.path else { return 0 };
        let wal = PathBuf::from(format!("{}-wal", p.display()));
        [p.as_path(), wal.as_path()]
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Number of migrations applied.
    pub fn schema_version(&self) -> u32 {
        self.conn
            .lock()
            .query_row("PRAGMA user_version", [], |r| r.get::<_, u32>(0))
            .unwrap_or(0)
    }

    /// Run blocking database work on the blocking pool.
    pub async fn call<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || f(&mut conn.lock()))
            .await
            .map_err(|e| StoreError::Unavailable(format!("database task failed: {e}")))?
    }
}

fn migrate(c: &mut Connection) -> Result<(), StoreError> {
    let current: usize = c
        .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
        .map_err(map_error)? as usize;
    if current > MIGRATIONS.len() {
        return Err(StoreError::Unavailable(format!(
            "database schema version {current} is newer than this server ({}); upgrade mse",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = c.transaction().map_err(map_error)?;
        tx.execute_batch(sql).map_err(map_error)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))
            .map_err(map_error)?;
        tx.commit().map_err(map_error)?;
    }
    Ok(())
}

fn open_error(path: &Path, e: rusqlite::Error) -> StoreError {
    match map_error(e) {
        StoreError::Unavailable(m) => {
            StoreError::Unavailable(format!("cannot open {}: {m}", path.display()))
        }
        other => other,
    }
}

/// Database failures become `Unavailable` with a message saying what is wrong.
pub fn map_error(e: rusqlite::Error) -> StoreError {
    let msg = match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => {
            format!("database is locked: {e}")
        }
        Some(ErrorCode::ReadOnly) => format!("database is read-only: {e}"),
        Some(ErrorCode::DiskFull) => format!("disk is full: {e}"),
        Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt) => {
            format!("database file is corrupt or not a database: {e}")
        }
        Some(ErrorCode::CannotOpen) => format!("cannot open database file: {e}"),
        _ => format!("database error: {e}"),
    };
    StoreError::Unavailable(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn migrates_once_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mse.db");
        let db = Database::open(&path).unwrap();
        assert_eq!(db.schema_version(), MIGRATIONS.len() as u32);
        let n: i64 = db
            .call(|c| {
                c.query_row("SELECT count(*) FROM issues", [], |r| r.get(0))
                    .map_err(map_error)
            })
            .await
            .unwrap();
        assert_eq!(n, 0);
        drop(db);
        let db = Database::open(&path).unwrap();
        assert_eq!(db.schema_version(), MIGRATIONS.len() as u32);
        assert!(db.size_bytes() > 0);
    }

    #[test]
    fn garbage_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mse.db");
        std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
        let err = Database::open(&path).unwrap_err().to_string();
        assert!(err.contains("corrupt or not a database"), "{err}");
    }
}

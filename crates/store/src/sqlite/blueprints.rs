//! SQLite [`BlueprintStore`].
//!
//! Tables (migration 1 in [`super::db`]):
//!
//! - `blueprint_ids(id, archived, head_seq)`: one row per id; `head_seq` is the `seq`
//!   of the head version.
//! - `blueprint_versions(seq, blueprint_id, version, parent, …, body)`: one row per
//!   written version, oldest first by `seq`; `version`/`parent` are 64 lowercase hex
//!   digits and `body` is the typed Blueprint as compact JSON.
//!
//! Every read is an indexed lookup (`read_head` by primary keys, `read_version` by
//! `(blueprint_id, version, seq)`, `history` by `(blueprint_id, seq)`), so the cost
//! does not grow with the length of a history. `write_new` runs in one
//! `BEGIN IMMEDIATE` transaction: read head, check archived and expected head, skip
//! identical content, insert, move `head_seq`. SQLite allows one such writer at a
//! time per file, across connections and processes, so two writers with the same
//! expected head can never both win. Nothing is cached: every call reads the
//! database, so several processes sharing the file stay consistent.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use mse_blueprint::{Blueprint, BlueprintVersion};
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

use super::db::{map_error, Database};
use crate::blueprints::{
    validate_blueprint_id, BlueprintStore, HistoryEntry, StoreError, StoredBlueprint, VersionMeta,
};

/// Blueprint versions in the SQLite database (see the module docs).
#[derive(Clone, Debug)]
pub struct SqliteBlueprintStore {
    db: Database,
}

impl SqliteBlueprintStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// The underlying database.
    pub fn database(&self) -> &Database {
        &self.db
    }

    async fn set_archived(&self, id: &str, archived: bool) -> Result<(), StoreError> {
        validate_blueprint_id(id)?;
        let id = id.to_owned();
        self.db
            .call(move |conn| {
                let changed = conn
                    .prepare_cached(SET_ARCHIVED_SQL)
                    .map_err(map_error)?
                    .execute(params![archived, id])
                    .map_err(map_error)?;
                if changed == 0 {
                    return Err(StoreError::NotFound(id));
                }
                Ok(())
            })
            .await
    }
}

/// The `blueprint_versions` columns (table alias `v`) of a [`VersionMeta`], in
/// [`meta_from_row`] order.
macro_rules! meta_columns {
    () => {
        "v.version, v.parent, v.epoch_id, v.rationale, v.patch_hash, v.created_at_ms, \
         v.version_label"
    };
}

/// `archived` and the head row of an id (no head row: unknown id).
const READ_HEAD_SQL: &str = concat!(
    "SELECT i.archived, v.body, ",
    meta_columns!(),
    " FROM blueprint_ids i LEFT JOIN blueprint_versions v ON v.seq = i.head_seq \
     WHERE i.id = ?1"
);

/// The newest row of a version (content written again later, A → B → A, has
/// several rows).
const READ_VERSION_SQL: &str = concat!(
    "SELECT v.body, ",
    meta_columns!(),
    " FROM blueprint_versions v WHERE v.blueprint_id = ?1 AND v.version = ?2 \
     ORDER BY v.seq DESC LIMIT 1"
);

/// Metas newest first.
const HISTORY_SQL: &str = concat!(
    "SELECT ",
    meta_columns!(),
    " FROM blueprint_versions v WHERE v.blueprint_id = ?1 ORDER BY v.seq DESC LIMIT ?2"
);

/// `archived` and `head_seq` of an id.
const ID_ROW_SQL: &str = "SELECT archived, head_seq FROM blueprint_ids WHERE id = ?1";

/// The meta of one row by `seq`.
const META_AT_SQL: &str = concat!(
    "SELECT ",
    meta_columns!(),
    " FROM blueprint_versions v WHERE v.seq = ?1"
);

const INSERT_VERSION_SQL: &str = "INSERT INTO blueprint_versions (blueprint_id, version, \
     parent, epoch_id, rationale, patch_hash, created_at_ms, version_label, body) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

const SET_HEAD_SQL: &str = "INSERT INTO blueprint_ids (id, archived, head_seq) VALUES (?1, 0, ?2) \
     ON CONFLICT(id) DO UPDATE SET head_seq = excluded.head_seq";

const SET_ARCHIVED_SQL: &str = "UPDATE blueprint_ids SET archived = ?1 WHERE id = ?2";

/// Every id with its head meta. `ORDER BY` a TEXT primary key with the default
/// BINARY collation is byte order, the same as the memory backend's
/// `BTreeMap<String, _>`.
const LIST_SQL: &str = concat!(
    "SELECT i.id, i.archived, ",
    meta_columns!(),
    " FROM blueprint_ids i JOIN blueprint_versions v ON v.seq = i.head_seq ORDER BY i.id"
);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn render_head(head: Option<BlueprintVersion>) -> String {
    head.map_or_else(|| "none".to_owned(), |v| v.to_hex())
}

fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("corrupt stored blueprint {what}: {detail}"))
}

fn parse_version(text: &str) -> Result<BlueprintVersion, StoreError> {
    text.parse()
        .map_err(|e| corrupt("version", format_args!("{e}")))
}

/// A row's meta as raw columns; parsed after the row is read.
struct RawMeta {
    version: String,
    parent: Option<String>,
    epoch_id: Option<String>,
    rationale: String,
    patch_hash: Option<String>,
    created_at_ms: i64,
    version_label: Option<String>,
}

/// Read [`META_COLUMNS`] starting at column `at`.
fn meta_from_row(row: &Row<'_>, at: usize) -> rusqlite::Result<RawMeta> {
    Ok(RawMeta {
        version: row.get(at)?,
        parent: row.get(at + 1)?,
        epoch_id: row.get(at + 2)?,
        rationale: row.get(at + 3)?,
        patch_hash: row.get(at + 4)?,
        created_at_ms: row.get(at + 5)?,
        version_label: row.get(at + 6)?,
    })
}

impl RawMeta {
    fn parse(self) -> Result<VersionMeta, StoreError> {
        Ok(VersionMeta {
            version: parse_version(&self.version)?,
            parents: self
                .parent
                .as_deref()
                .map(parse_version)
                .transpose()?
                .into_iter()
                .collect(),
            epoch_id: self.epoch_id,
            rationale: self.rationale,
            patch_hash: self.patch_hash,
            created_at_ms: self.created_at_ms,
            version_label: self.version_label,
        })
    }
}

/// A version row with its body, as read inside [`Database::call`]; the body is
/// parsed afterwards, outside the connection lock.
struct RawStored {
    meta: RawMeta,
    body: String,
}

impl RawStored {
    fn parse(self, id: String) -> Result<StoredBlueprint, StoreError> {
        let meta = self.meta.parse()?;
        let blueprint = Blueprint::from_json(self.body.as_bytes())
            .map_err(|e| corrupt("document", format_args!("id={id}: {e}")))?;
        Ok(StoredBlueprint {
            id,
            blueprint: Arc::new(blueprint),
            meta,
        })
    }
}

/// `archived` and `head_seq` of an id, `None` when the id is unknown.
fn id_row(conn: &Connection, id: &str) -> Result<Option<(bool, Option<i64>)>, StoreError> {
    conn.prepare_cached(ID_ROW_SQL)
        .map_err(map_error)?
        .query_row([id], |r| {
            Ok((r.get::<_, bool>(0)?, r.get::<_, Option<i64>>(1)?))
        })
        .optional()
        .map_err(map_error)
}

/// Meta of the version row `seq`.
fn meta_at(conn: &Connection, seq: i64) -> Result<Option<RawMeta>, StoreError> {
    conn.prepare_cached(META_AT_SQL)
        .map_err(map_error)?
        .query_row([seq], |r| meta_from_row(r, 0))
        .optional()
        .map_err(map_error)
}

#[async_trait::async_trait]
impl BlueprintStore for SqliteBlueprintStore {
    async fn read_head(&self, id: &str) -> Result<StoredBlueprint, StoreError> {
        validate_blueprint_id(id)?;
        let owned = id.to_owned();
        let raw = self
            .db
            .call(move |conn| {
                let row = conn
                    .prepare_cached(READ_HEAD_SQL)
                    .map_err(map_error)?
                    .query_row([&owned], |r| {
                        let archived: bool = r.get(0)?;
                        let body: Option<String> = r.get(1)?;
                        let stored = match body {
                            Some(body) => Some(RawStored {
                                meta: meta_from_row(r, 2)?,
                                body,
                            }),
                            None => None,
                        };
                        Ok((archived, stored))
                    })
                    .optional()
                    .map_err(map_error)?;
                match row {
                    None | Some((false, None)) => Err(StoreError::NotFound(owned)),
                    Some((true, _)) => Err(StoreError::Archived(owned)),
                    Some((false, Some(stored))) => Ok(stored),
                }
            })
            .await?;
        raw.parse(id.to_owned())
    }

    async fn read_version(
        &self,
        id: &str,
        version: &BlueprintVersion,
    ) -> Result<StoredBlueprint, StoreError> {
        validate_blueprint_id(id)?;
        let owned = id.to_owned();
        let hex = version.to_hex();
        let raw = self
            .db
            .call(move |conn| {
                let found = conn
                    .prepare_cached(READ_VERSION_SQL)
                    .map_err(map_error)?
                    .query_row(params![owned, hex], |r| {
                        Ok(RawStored {
                            body: r.get(0)?,
                            meta: meta_from_row(r, 1)?,
                        })
                    })
                    .optional()
                    .map_err(map_error)?;
                match found {
                    Some(stored) => Ok(stored),
                    None if id_row(conn, &owned)?.is_none() => Err(StoreError::NotFound(owned)),
                    None => Err(StoreError::VersionNotFound {
                        id: owned,
                        version: hex,
                    }),
                }
            })
            .await?;
        raw.parse(id.to_owned())
    }

    async fn history(&self, id: &str, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        validate_blueprint_id(id)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let owned = id.to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let raw = self
            .db
            .call(move |conn| {
                let mut stmt = conn.prepare_cached(HISTORY_SQL).map_err(map_error)?;
                let rows = stmt
                    .query_map(params![owned, limit], |r| meta_from_row(r, 0))
                    .map_err(map_error)?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(map_error)
            })
            .await?;
        raw.into_iter().map(RawMeta::parse).collect()
    }

    async fn write_new(
        &self,
        bp: Arc<Blueprint>,
        expected_head: Option<Option<BlueprintVersion>>,
        rationale: &str,
        epoch_id: Option<String>,
        patch_hash: Option<String>,
    ) -> Result<(VersionMeta, bool), StoreError> {
        validate_blueprint_id(&bp.id)?;
        let write = VersionWrite::prepare(&bp, rationale.to_owned(), epoch_id, patch_hash)?;
        self.db
            .call(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(map_error)?;
                let written = write_version_in(&tx, write, expected_head)?;
                if written.1 {
                    tx.commit().map_err(map_error)?;
                }
                Ok(written)
            })
            .await
    }

    async fn archive(&self, id: &str) -> Result<(), StoreError> {
        self.set_archived(id, true).await
    }

    async fn unarchive(&self, id: &str) -> Result<(), StoreError> {
        self.set_archived(id, false).await
    }

    async fn list(&self) -> Result<Vec<(String, VersionMeta, bool)>, StoreError> {
        let raw = self
            .db
            .call(|conn| {
                let mut stmt = conn.prepare_cached(LIST_SQL).map_err(map_error)?;
                let rows = stmt
                    .query_map([], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, bool>(1)?,
                            meta_from_row(r, 2)?,
                        ))
                    })
                    .map_err(map_error)?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(map_error)
            })
            .await?;
        raw.into_iter()
            .map(|(id, archived, meta)| Ok((id, meta.parse()?, archived)))
            .collect()
    }
}

/// A Blueprint version ready to write: hashed and serialized outside the database
/// (that work grows with the document).
pub(crate) struct VersionWrite {
    id: String,
    version: BlueprintVersion,
    body: String,
    version_label: Option<String>,
    rationale: String,
    epoch_id: Option<String>,
    patch_hash: Option<String>,
}

impl VersionWrite {
    pub(crate) fn prepare(
        bp: &Blueprint,
        rationale: String,
        epoch_id: Option<String>,
        patch_hash: Option<String>,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            id: bp.id.clone(),
            version: BlueprintVersion::of(bp),
            body: serde_json::to_string(bp)
                .map_err(|e| StoreError::Unavailable(format!("cannot serialize blueprint: {e}")))?,
            version_label: bp.metadata.version_label.clone(),
            rationale,
            epoch_id,
            patch_hash,
        })
    }
}

/// `write_new` inside the caller's transaction (shared with the enhance ledger):
/// archived and expected-head checks, identical content is a no-op (`false`),
/// otherwise the version is appended and becomes the head.
pub(crate) fn write_version_in(
    conn: &Connection,
    write: VersionWrite,
    expected_head: Option<Option<BlueprintVersion>>,
) -> Result<(VersionMeta, bool), StoreError> {
    let VersionWrite {
        id,
        version,
        body,
        version_label,
        rationale,
        epoch_id,
        patch_hash,
    } = write;
    let (archived, head_seq) = id_row(conn, &id)?.unwrap_or((false, None));
    if archived {
        return Err(StoreError::Archived(id));
    }
    let head = match head_seq {
        Some(seq) => Some(
            meta_at(conn, seq)?
                .ok_or_else(|| corrupt("head", format_args!("id={id} seq={seq}")))?
                .parse()?,
        ),
        None => None,
    };
    let head_version = head.as_ref().map(|h| h.version);
    if let Some(expected) = expected_head {
        if expected != head_version {
            return Err(StoreError::HeadMoved {
                id,
                expected: render_head(expected),
                actual: render_head(head_version),
            });
        }
    }
    if let Some(head) = head.as_ref() {
        if head.version == version {
            return Ok((head.clone(), false));
        }
    }
    // Keep `created_at_ms` non-decreasing along the history even if the
    // wall clock steps back.
    let created_at_ms = head
        .as_ref()
        .map_or_else(now_ms, |h| now_ms().max(h.created_at_ms));
    let meta = VersionMeta {
        version,
        parents: head_version.into_iter().collect(),
        epoch_id,
        rationale,
        patch_hash,
        created_at_ms,
        version_label,
    };
    conn.prepare_cached(INSERT_VERSION_SQL)
        .map_err(map_error)?
        .execute(params![
            id,
            meta.version.to_hex(),
            head_version.map(|v| v.to_hex()),
            meta.epoch_id,
            meta.rationale,
            meta.patch_hash,
            meta.created_at_ms,
            meta.version_label,
            body,
        ])
        .map_err(map_error)?;
    let seq = conn.last_insert_rowid();
    conn.prepare_cached(SET_HEAD_SQL)
        .map_err(map_error)?
        .execute(params![id, seq])
        .map_err(map_error)?;
    Ok((meta, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The query plan of `sql`, one detail line per step.
    fn plan(conn: &Connection, sql: &str) -> Vec<String> {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let nulls = vec![rusqlite::types::Null; stmt.parameter_count()];
        let rows = stmt
            .query_map(rusqlite::params_from_iter(nulls), |r| r.get::<_, String>(3))
            .unwrap();
        rows.map(Result::unwrap).collect()
    }

    /// Reads cost the same whatever the length of a history: every lookup is a
    /// search on a key or index, with no scan and no sort.
    #[tokio::test]
    async fn reads_are_indexed() {
        let db = Database::in_memory().unwrap();
        db.call(|conn| {
            for (sql, want) in [
                (
                    READ_HEAD_SQL,
                    vec!["SEARCH i USING INDEX", "SEARCH v USING INTEGER PRIMARY KEY"],
                ),
                (
                    READ_VERSION_SQL,
                    vec!["USING INDEX blueprint_versions_by_version"],
                ),
                (HISTORY_SQL, vec!["USING INDEX blueprint_versions_by_id"]),
                (ID_ROW_SQL, vec!["SEARCH blueprint_ids USING INDEX"]),
                (META_AT_SQL, vec!["SEARCH v USING INTEGER PRIMARY KEY"]),
            ] {
                let plan = plan(conn, sql);
                for step in &plan {
                    assert!(!step.starts_with("SCAN"), "{sql}: {plan:?}");
                    assert!(!step.contains("TEMP B-TREE"), "{sql}: {plan:?}");
                }
                for want in want {
                    assert!(plan.iter().any(|s| s.contains(want)), "{sql}: {plan:?}");
                }
            }
            Ok(())
        })
        .await
        .unwrap();
    }
}

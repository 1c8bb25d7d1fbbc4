//! SQLite [`EnhanceSettingStore`].
//!
//! One row per setting in `enhance_settings(id, body, updated_at_ms)` (migration 1
//! in [`super::db`]); `body` is the setting's JSON (stored form). `list` reads the
//! primary key in order, so ids come out ascending (byte order).

use rusqlite::{params, OptionalExtension};

use super::db::{map_error, Database};
use crate::issues::now_ms;
use crate::settings::{EnhanceSetting, EnhanceSettingStore};
use crate::StoreError;

/// Enhance settings in the SQLite database (see the module docs).
#[derive(Clone, Debug)]
pub struct SqliteEnhanceSettingStore {
    db: Database,
}

impl SqliteEnhanceSettingStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// The underlying database.
    pub fn database(&self) -> &Database {
        &self.db
    }
}

#[async_trait::async_trait]
impl EnhanceSettingStore for SqliteEnhanceSettingStore {
    async fn get(&self, id: &str) -> Result<Option<EnhanceSetting>, StoreError> {
        let owned = id.to_owned();
        let body: Option<String> = self
            .db
            .call(move |conn| {
                conn.prepare_cached("SELECT body FROM enhance_settings WHERE id = ?1")
                    .map_err(map_error)?
                    .query_row([owned], |r| r.get(0))
                    .optional()
                    .map_err(map_error)
            })
            .await?;
        body.map(|b| {
            serde_json::from_str(&b).map_err(|e| {
                StoreError::Unavailable(format!("corrupt stored enhance setting {id}: {e}"))
            })
        })
        .transpose()
    }

    async fn put(&self, setting: EnhanceSetting) -> Result<(), StoreError> {
        let body = serde_json::to_string(&setting).map_err(|e| {
            StoreError::Unavailable(format!("cannot serialize enhance setting: {e}"))
        })?;
        let now = now_ms();
        self.db
            .call(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO enhance_settings (id, body, updated_at_ms) VALUES (?1, ?2, ?3) \
                     ON CONFLICT(id) DO UPDATE SET body = excluded.body, \
                     updated_at_ms = excluded.updated_at_ms",
                )
                .map_err(map_error)?
                .execute(params![setting.id, body, now])
                .map_err(map_error)?;
                Ok(())
            })
            .await
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.db
            .call(move |conn| {
                let n = conn
                    .prepare_cached("DELETE FROM enhance_settings WHERE id = ?1")
                    .map_err(map_error)?
                    .execute([id])
                    .map_err(map_error)?;
                Ok(n > 0)
            })
            .await
    }

    async fn list(&self) -> Result<Vec<String>, StoreError> {
        self.db
            .call(|conn| {
                let mut stmt = conn
                    .prepare_cached("SELECT id FROM enhance_settings ORDER BY id")
                    .map_err(map_error)?;
                let ids = stmt
                    .query_map([], |r| r.get(0))
                    .map_err(map_error)?
                    .collect::<rusqlite::Result<Vec<String>>>();
                ids.map_err(map_error)
            })
            .await
    }
}

//! The Blueprint store contract.

use mse_blueprint::{Blueprint, BlueprintVersion};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Which stored version a request means.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum VersionSelector {
    #[default]
    Latest,
    Fixed {
        value: String,
    },
    SemverReq {
        req: String,
    },
}

/// Lineage of one stored version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionMeta {
    pub version: BlueprintVersion,
    /// The head this version was written on top of (empty for the first).
    pub parents: Vec<BlueprintVersion>,
    /// Enhance epoch or seed that produced it (free-form id).
    pub epoch_id: Option<String>,
    pub rationale: String,
    /// Hash of the patch that produced it, hex; `None` for seeds.
    pub patch_hash: Option<String>,
    pub created_at_ms: i64,
    pub version_label: Option<String>,
}

/// A version with its document.
#[derive(Clone, Debug)]
pub struct StoredBlueprint {
    pub id: String,
    pub blueprint: Arc<Blueprint>,
    pub meta: VersionMeta,
}

pub type HistoryEntry = VersionMeta;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    #[error(
        "invalid blueprint id {0:?}: use 1-128 characters from [A-Za-z0-9._-], not '.' or '..'"
    )]
    InvalidId(String),
    #[error("blueprint not found: id={0}")]
    NotFound(String),
    #[error("blueprint version not found: id={id} version={version}")]
    VersionNotFound { id: String, version: String },
    #[error("blueprint is archived: id={0}")]
    Archived(String),
    #[error("head moved: id={id} expected {expected} but head is {actual}")]
    HeadMoved {
        id: String,
        expected: String,
        actual: String,
    },
    #[error("invalid version {0:?}: expected 64 hex digits")]
    BadVersion(String),
    #[error("invalid semver requirement {req:?}: {detail}")]
    BadSemver { req: String, detail: String },
    #[error("no version of {id} matches semver requirement {req}")]
    NoSemverMatch { id: String, req: String },
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// Accept ids matching `[A-Za-z0-9._-]{1,128}` other than `.` and `..`.
pub fn validate_blueprint_id(id: &str) -> Result<(), StoreError> {
    let ok = (1..=128).contains(&id.len())
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidId(id.to_string()))
    }
}

#[async_trait::async_trait]
pub trait BlueprintStore: Send + Sync + 'static {
    /// Current head of a live id (`NotFound`, `Archived`).
    async fn read_head(&self, id: &str) -> Result<StoredBlueprint, StoreError>;
    /// One stored version, archived or not.
    async fn read_version(
        &self,
        id: &str,
        version: &BlueprintVersion,
    ) -> Result<StoredBlueprint, StoreError>;
    /// Versions newest first, head included, at most `limit`.
    async fn history(&self, id: &str, limit: usize) -> Result<Vec<HistoryEntry>, StoreError>;
    /// Append `bp` as the new head. With `expected_head` set, the write happens only
    /// if the head is still that version (`HeadMoved` otherwise); `None` means "no
    /// check". Writing content equal to the head is a no-op returning `Ok(false)`.
    async fn write_new(
        &self,
        bp: Arc<Blueprint>,
        expected_head: Option<Option<BlueprintVersion>>,
        rationale: &str,
        epoch_id: Option<String>,
        patch_hash: Option<String>,
    ) -> Result<(VersionMeta, bool), StoreError>;
    async fn archive(&self, id: &str) -> Result<(), StoreError>;
    async fn unarchive(&self, id: &str) -> Result<(), StoreError>;
    /// `(id, head, archived)` for every id, sorted by id.
    async fn list(&self) -> Result<Vec<(String, VersionMeta, bool)>, StoreError>;

    /// Resolve a selector (default implementation over the methods above).
    async fn resolve(
        &self,
        id: &str,
        selector: &VersionSelector,
    ) -> Result<StoredBlueprint, StoreError> {
        validate_blueprint_id(id)?;
        match selector {
            VersionSelector::Latest => self.read_head(id).await,
            VersionSelector::Fixed { value } => {
                let v: BlueprintVersion = value
                    .parse()
                    .map_err(|_| StoreError::BadVersion(value.clone()))?;
                self.read_head(id).await?;
                self.read_version(id, &v).await
            }
            VersionSelector::SemverReq { req } => {
                let r = semver::VersionReq::parse(req).map_err(|e| StoreError::BadSemver {
                    req: req.clone(),
                    detail: e.to_string(),
                })?;
                self.read_head(id).await?;
                let best = self
                    .history(id, 1024)
                    .await?
                    .into_iter()
                    .filter_map(|m| {
                        // Unlabelled or non-semver labels are skipped, not fatal.
                        let label = semver::Version::parse(m.version_label.as_deref()?).ok()?;
                        r.matches(&label).then_some((label, m.version))
                    })
                    // History is newest first: keep the first of equal labels.
                    .reduce(|best, x| if x.0 > best.0 { x } else { best });
                match best {
                    Some((_, v)) => self.read_version(id, &v).await,
                    None => Err(StoreError::NoSemverMatch {
                        id: id.to_string(),
                        req: req.clone(),
                    }),
                }
            }
        }
    }
}

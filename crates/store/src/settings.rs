//! The enhance setting store contract (`enhance.md` §4.1, `http-api.md` §11).

use serde::{Deserialize, Serialize};

use crate::{StoreError, VersionSelector};

/// Verifier axes a setting gets when it names none.
pub const DEFAULT_VERIFIER_AXES: [&str; 4] = ["des", "canonical", "noop", "agent-ref"];

fn default_verifier_axes() -> Vec<String> {
    DEFAULT_VERIFIER_AXES
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn default_meta() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

/// How the enhance loop runs: which orchestrator Blueprint (the enhance flow, not
/// the Blueprint being improved) and with which verifier axes. The stored (and
/// response) form of `/v1/enhance-settings`:
///
/// ```json
/// {"id":"default","blueprint_id":"enhance-default","ttl_secs":600,
///  "version":{"kind":"latest"},"verifier_axes":["des","canonical","noop","agent-ref"],"meta":{}}
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnhanceSetting {
    pub id: String,
    /// The orchestrator Blueprint series.
    pub blueprint_id: String,
    /// Operator-session TTL for enhance runs (0 accepted).
    pub ttl_secs: u64,
    /// Which orchestrator version to run (default `latest`).
    #[serde(default)]
    pub version: VersionSelector,
    /// Default [`DEFAULT_VERIFIER_AXES`]; `[]` means "commit any valid patch".
    #[serde(default = "default_verifier_axes")]
    pub verifier_axes: Vec<String>,
    /// No defined members (default `{}`).
    #[serde(default = "default_meta")]
    pub meta: serde_json::Value,
}

impl EnhanceSetting {
    /// A setting with the default version selector, axes and meta.
    pub fn new(id: impl Into<String>, blueprint_id: impl Into<String>, ttl_secs: u64) -> Self {
        EnhanceSetting {
            id: id.into(),
            blueprint_id: blueprint_id.into(),
            ttl_secs,
            version: VersionSelector::default(),
            verifier_axes: default_verifier_axes(),
            meta: default_meta(),
        }
    }
}

#[async_trait::async_trait]
pub trait EnhanceSettingStore: Send + Sync + 'static {
    /// One setting; `None` if unknown.
    async fn get(&self, id: &str) -> Result<Option<EnhanceSetting>, StoreError>;
    /// Create or replace the setting with `setting.id`.
    async fn put(&self, setting: EnhanceSetting) -> Result<(), StoreError>;
    /// Remove a setting; `false` if it did not exist.
    async fn delete(&self, id: &str) -> Result<bool, StoreError>;
    /// Every setting id, ascending.
    async fn list(&self) -> Result<Vec<String>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_and_wire_form() {
        let s: EnhanceSetting = serde_json::from_value(
            json!({"id":"default","blueprint_id":"enhance-default","ttl_secs":600}),
        )
        .unwrap();
        assert_eq!(s, EnhanceSetting::new("default", "enhance-default", 600));
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            json!({"id":"default","blueprint_id":"enhance-default","ttl_secs":600,
                   "version":{"kind":"latest"},
                   "verifier_axes":["des","canonical","noop","agent-ref"],"meta":{}})
        );
        let s: EnhanceSetting = serde_json::from_value(json!({
            "id":"x","blueprint_id":"b","ttl_secs":0,
            "version":{"kind":"semver_req","req":"^1"},"verifier_axes":[],"meta":{"k":1}
        }))
        .unwrap();
        assert!(s.verifier_axes.is_empty());
        assert_eq!(s.version, VersionSelector::SemverReq { req: "^1".into() });
        assert_eq!(s.meta, json!({"k":1}));
        assert!(
            serde_json::from_value::<EnhanceSetting>(json!({"id":"x","blueprint_id":"b"})).is_err()
        );
    }
}

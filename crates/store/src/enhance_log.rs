//! The enhance log contract (`enhance.md` §4.2, `http-api.md` §12): one entry per
//! issue the enhance flow finished, applied or rejected.

use serde::{Deserialize, Serialize};

use crate::StoreError;

/// [`EnhanceLogEntry::status`] of a committed issue.
pub const LOG_STATUS_APPLIED: &str = "applied";
/// [`EnhanceLogEntry::status`] of a rejected issue.
pub const LOG_STATUS_REJECTED: &str = "rejected";

/// One finished enhance run, in the wire form of `GET /v1/enhance/log`:
///
/// ```json
/// {"issue_id":"h-5b0c...","blueprint_id":"main",
///  "prev_hash":"074ed27f...a1df","new_hash":"",
///  "intent":"add a lint step","rationale":"denied by des",
///  "verdicts":[{"axis":"des","status":"deny","detail":"schema drift"}],
///  "status":"rejected","reasons":["des: schema drift"],"ts_ms":1767225600000}
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnhanceLogEntry {
    pub issue_id: String,
    /// The Blueprint series the issue targeted.
    pub blueprint_id: String,
    /// Head version the run started from, 64 lowercase hex.
    pub prev_hash: String,
    /// Version written, 64 lowercase hex; `""` when rejected.
    pub new_hash: String,
    pub intent: String,
    pub rationale: String,
    /// `{axis, status, detail}` per verifier axis, in axis order.
    pub verdicts: Vec<serde_json::Value>,
    /// [`LOG_STATUS_APPLIED`] or [`LOG_STATUS_REJECTED`].
    pub status: String,
    /// Deny reasons (`"<axis>: <reason>"`); empty when applied.
    pub reasons: Vec<String>,
    pub ts_ms: i64,
}

#[async_trait::async_trait]
pub trait EnhanceLogStore: Send + Sync + 'static {
    /// Append an entry. The log is append-only with at most one entry per issue:
    /// if `entry.issue_id` already has one, nothing changes (the original is kept)
    /// and `Ok(false)` is returned; `Ok(true)` means it was appended.
    async fn append(&self, entry: EnhanceLogEntry) -> Result<bool, StoreError>;

    /// The entry of an issue; `None` if there is none.
    async fn get(&self, issue_id: &str) -> Result<Option<EnhanceLogEntry>, StoreError>;

    /// The newest `limit` entries matching the filters (exact `blueprint_id`,
    /// exact `status`), returned oldest first: ascending by `ts_ms`, equal
    /// timestamps in insertion order.
    async fn list(
        &self,
        blueprint_id: Option<&str>,
        status: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EnhanceLogEntry>, StoreError>;
}

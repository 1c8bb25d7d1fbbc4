//! The enhance issue queue contract (`enhance.md` §3, `http-api.md` §10).
//!
//! An issue asks the enhance loop to improve one Blueprint series. Issues are
//! processed in FIFO order of creation: [`IssueStore::pop_pending`] atomically moves
//! the oldest `pending` issue to `in_flight`, so two consumers never take the same
//! issue. At startup [`IssueStore::recover_in_flight`] puts every issue a crash left
//! `in_flight` back in the queue, or rejects it after too many attempts (project
//! decision 15).
//!
//! Queue membership is derived from the status alone (unlike the reference's
//! in-memory backend): an issue is poppable exactly while its status is `pending`,
//! and setting an issue back to `pending` re-queues it at its original (creation)
//! position.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::StoreError;

/// Where an issue is in its lifecycle. Wire names: `pending`, `in_flight`,
/// `applied`, `rejected`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueStatus {
    /// Queued, waiting for a consumer.
    Pending,
    /// Taken by a consumer (popped), not finished.
    InFlight,
    /// The enhance flow committed a new Blueprint version (`new_version`).
    Applied,
    /// The enhance flow (or recovery) gave up on it (`reason`).
    Rejected,
}

impl IssueStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [IssueStatus; 4] = [
        IssueStatus::Pending,
        IssueStatus::InFlight,
        IssueStatus::Applied,
        IssueStatus::Rejected,
    ];

    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            IssueStatus::Pending => "pending",
            IssueStatus::InFlight => "in_flight",
            IssueStatus::Applied => "applied",
            IssueStatus::Rejected => "rejected",
        }
    }

    /// Whether the issue is finished (`applied` or `rejected`).
    pub const fn is_terminal(self) -> bool {
        matches!(self, IssueStatus::Applied | IssueStatus::Rejected)
    }
}

impl fmt::Display for IssueStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown issue status name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid issue status {0:?}: expected pending, in_flight, applied or rejected")]
pub struct IssueStatusParseError(pub String);

impl FromStr for IssueStatus {
    type Err = IssueStatusParseError;

    /// Exactly one of the wire names.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IssueStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| IssueStatusParseError(s.to_owned()))
    }
}

/// One issue. Serialises with the six keys of `GET /v1/issues/{id}` (`issue_id`,
/// `status`, `blueprint_id`, `intent`, `reason`, `new_version`; absent values as
/// `null`) plus `attempts`, `created_at_ms` and `updated_at_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueRecord {
    /// `h-` + UUIDv4 (see [`new_issue_id`]).
    #[serde(rename = "issue_id")]
    pub id: String,
    /// The Blueprint series to improve (not checked to exist).
    pub blueprint_id: String,
    pub intent: String,
    pub status: IssueStatus,
    /// Why it was rejected; `Some` only when `rejected`.
    pub reason: Option<String>,
    /// The committed version, 64 lowercase hex; `Some` only when `applied`.
    pub new_version: Option<String>,
    /// How many times it was popped (taken by a consumer).
    pub attempts: u32,
    pub created_at_ms: i64,
    /// Last status change (creation included).
    pub updated_at_ms: i64,
}

/// A fresh issue id: `h-` + a random (version 4) UUID from the OS RNG, lowercase,
/// e.g. `h-5b0c2a9e-0d1f-4c3b-9a8e-7f6d5c4b3a21`.
pub fn new_issue_id() -> String {
    let mut b = [0u8; 16];
    mse_engine::ids::random_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let h = mse_engine::ids::to_hex(&b);
    format!(
        "h-{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Wall-clock milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The rejection reason [`IssueStore::recover_in_flight`] records.
pub fn interrupted_reason(attempts: u32) -> String {
    format!("interrupted: gave up after {attempts} attempts")
}

/// Normalise the detail fields of a status change: `reason` is kept only for
/// `rejected`, `new_version` only for `applied` (parsed and rendered as lowercase
/// hex; anything else is `BadVersion`).
pub(crate) fn status_details(
    status: IssueStatus,
    reason: Option<String>,
    new_version: Option<String>,
) -> Result<(Option<String>, Option<String>), StoreError> {
    let reason = reason.filter(|_| status == IssueStatus::Rejected);
    let new_version = match new_version {
        Some(v) if status == IssueStatus::Applied => Some(
            v.parse::<mse_blueprint::BlueprintVersion>()
                .map_err(|_| StoreError::BadVersion(v.clone()))?
                .to_hex(),
        ),
        _ => None,
    };
    Ok((reason, new_version))
}

#[async_trait::async_trait]
pub trait IssueStore: Send + Sync + 'static {
    /// Queue a new `pending` issue (fresh [`new_issue_id`], `attempts` 0). Neither
    /// field is validated here (the HTTP route rejects a blank intent).
    async fn create(&self, blueprint_id: &str, intent: &str) -> Result<IssueRecord, StoreError>;

    /// One issue; `None` if unknown.
    async fn get(&self, id: &str) -> Result<Option<IssueRecord>, StoreError>;

    /// Issues newest (most recently created) first, optionally only those with
    /// `status`, at most `limit`.
    async fn list(
        &self,
        status: Option<IssueStatus>,
        limit: usize,
    ) -> Result<Vec<IssueRecord>, StoreError>;

    /// Atomically take the oldest `pending` issue: it becomes `in_flight` with
    /// `attempts + 1` and is returned in that state. `None` when the queue is empty.
    /// Concurrent callers (tasks, or processes on one SQLite file) never receive
    /// the same issue.
    async fn pop_pending(&self) -> Result<Option<IssueRecord>, StoreError>;

    /// Overwrite an issue's status; `false` if the id is unknown. `reason` is kept
    /// only for `rejected` and `new_version` (hex, `BadVersion` otherwise) only for
    /// `applied`; the other is cleared. Setting `pending` re-queues the issue at
    /// its creation position; `attempts` is never changed here.
    async fn set_status(
        &self,
        id: &str,
        status: IssueStatus,
        reason: Option<String>,
        new_version: Option<String>,
    ) -> Result<bool, StoreError>;

    /// Startup recovery (decision 15), one atomic step: every `in_flight` issue
    /// goes back to `pending` if `attempts < max_attempts`, else becomes `rejected`
    /// with reason [`interrupted_reason`]`(attempts)`. Returns the ids
    /// `(requeued, rejected)`, each oldest first. Run it before any consumer starts:
    /// an issue a live consumer holds would be re-queued too.
    async fn recover_in_flight(
        &self,
        max_attempts: u32,
    ) -> Result<(Vec<String>, Vec<String>), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_ids_are_uuid_v4() {
        let a = new_issue_id();
        let b = new_issue_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 2 + 36);
        let u = a.strip_prefix("h-").unwrap();
        let parts: Vec<&str> = u.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(u
            .bytes()
            .all(|c| c == b'-' || c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        assert!(parts[2].starts_with('4'));
        assert!(matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'));
    }

    #[test]
    fn status_wire_names() {
        for st in IssueStatus::ALL {
            assert_eq!(st.as_str().parse::<IssueStatus>().unwrap(), st);
            assert_eq!(
                serde_json::to_value(st).unwrap(),
                serde_json::json!(st.as_str())
            );
        }
        assert_eq!(IssueStatus::InFlight.to_string(), "in_flight");
        assert!("inflight".parse::<IssueStatus>().is_err());
        assert!(IssueStatus::Applied.is_terminal() && !IssueStatus::InFlight.is_terminal());
    }

    #[test]
    fn details_are_normalised() {
        let v = "AB".repeat(32);
        assert_eq!(
            status_details(IssueStatus::Applied, Some("x".into()), Some(v)).unwrap(),
            (None, Some("ab".repeat(32)))
        );
        assert_eq!(
            status_details(IssueStatus::Rejected, Some("x".into()), Some("zz".into())).unwrap(),
            (Some("x".into()), None)
        );
        assert_eq!(
            status_details(IssueStatus::Applied, None, Some("zz".into())).unwrap_err(),
            StoreError::BadVersion("zz".into())
        );
    }
}

//! Stores behind the server, as backend-neutral async traits.
//!
//! - [`BlueprintStore`]: content-addressed Blueprint versions per id, with lineage,
//!   an expected-head check on writes, archive/unarchive and version selectors.
//! - [`OutputStore`]: the data plane (`/v1/data/*`), outputs addressed by id or
//!   by producer name.
//!
//! [`memory`] holds the volatile in-memory backends.

pub mod blueprints;
pub mod memory;
pub mod outputs;
pub mod sqlite;

pub use blueprints::{
    validate_blueprint_id, BlueprintStore, HistoryEntry, StoreError, StoredBlueprint, VersionMeta,
    VersionSelector,
};
pub use outputs::{OutputRecord, OutputStore};
pub mod enhance_log;
pub mod issues;
pub mod ledger;
pub mod settings;
pub use enhance_log::{EnhanceLogEntry, EnhanceLogStore, LOG_STATUS_APPLIED, LOG_STATUS_REJECTED};
pub use issues::{new_issue_id, IssueRecord, IssueStatus, IssueStatusParseError, IssueStore};
pub use ledger::EnhanceLedger;
pub use settings::{EnhanceSetting, EnhanceSettingStore, DEFAULT_VERIFIER_AXES};

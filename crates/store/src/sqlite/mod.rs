//! SQLite backends of the stores, all on one [`Database`].

pub mod db;

pub use db::{map_error, Database};
pub mod blueprints;
pub mod outputs;
pub use blueprints::SqliteBlueprintStore;
pub use outputs::SqliteOutputStore;
pub mod enhance_log;
pub mod issues;
pub mod ledger;
pub mod settings;
pub use enhance_log::SqliteEnhanceLogStore;
pub use issues::SqliteIssueStore;
pub use ledger::SqliteLedger;
pub use settings::SqliteEnhanceSettingStore;

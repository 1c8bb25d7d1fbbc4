//! Volatile in-memory backends.
//!
//! - [`MemoryBlueprintStore`]: every version of every id, with lineage and the
//!   archived flag.
//! - [`MemoryOutputStore`]: data-plane outputs with a retention cap.
//!
//! Both keep their state behind one `parking_lot` lock that is held only for the
//! in-memory update (never across an `.await`, never for work that grows with the
//! stored history): the async trait methods do no I/O.

mod blueprints;
mod outputs;

pub use blueprints::MemoryBlueprintStore;
pub use outputs::{MemoryOutputStore, DEFAULT_MAX_OUTPUT_RECORDS};
mod enhance_log;
mod issues;
mod ledger;
mod settings;
pub use enhance_log::MemoryEnhanceLogStore;
pub use issues::MemoryIssueStore;
pub use ledger::MemoryLedger;
pub use settings::MemoryEnhanceSettingStore;

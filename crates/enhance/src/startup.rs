//! What the enhance consumer does once at startup: seed the bundled orchestrator
//! Blueprint, create the default setting, recover interrupted issues.

use std::fmt;
use std::sync::Arc;

use mse_blueprint::BlueprintVersion;
use mse_store::{
    BlueprintStore, EnhanceLogEntry, EnhanceLogStore, EnhanceSetting, IssueStore, StoreError,
    LOG_STATUS_REJECTED,
};

use crate::consumer::now_ms;

/// `epoch_id` of the versions the consumer seeds from the bundled Blueprint. A head
/// carrying it is ours and may be upgraded to a newer bundled Blueprint; any other
/// head was written by someone else and is left alone.
pub const SEED_EPOCH: &str = "mse-enhance:bundled";

/// TTL (seconds) of the `default` setting created at startup.
pub const DEFAULT_SETTING_TTL_SECS: u64 = 600;

/// What seeding the bundled orchestrator Blueprint did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SeedOutcome {
    /// The series did not exist; the bundled Blueprint is its first version.
    Created { version: String },
    /// The head was an older bundled seed; the current bundled Blueprint replaced it.
    Upgraded { from: String, to: String },
    /// The head already has the bundled content.
    Unchanged,
    /// The series is archived: it counts as present, nothing written.
    Archived,
    /// The head differs and was not seeded by us (an operator edited it): kept.
    Customized { head: String },
}

/// What [`EnhanceConsumer::startup`](crate::consumer::EnhanceConsumer::startup) did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartupReport {
    pub seed: SeedOutcome,
    /// Whether the configured setting was absent and got created.
    pub setting_created: bool,
    /// Interrupted issues put back in the queue, oldest first.
    pub requeued: Vec<String>,
    /// Interrupted issues rejected after too many attempts, oldest first.
    pub rejected: Vec<String>,
}

impl fmt::Display for StartupReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.seed {
            SeedOutcome::Created { version } => write!(f, "seeded orchestrator {version}")?,
            SeedOutcome::Upgraded { from, to } => {
                write!(f, "upgraded bundled orchestrator {from} -> {to}")?
            }
            SeedOutcome::Unchanged => f.write_str("orchestrator up to date")?,
            SeedOutcome::Archived => f.write_str("orchestrator archived (not seeded)")?,
            SeedOutcome::Customized { head } => {
                write!(f, "orchestrator customized (head {head} kept)")?
            }
        }
        if self.setting_created {
            f.write_str(", created default setting")?;
        }
        write!(
            f,
            ", {} interrupted issue(s) re-queued, {} rejected",
            self.requeued.len(),
            self.rejected.len()
        )
    }
}

/// Seed `bundled` unless its series is archived, already has that content, or has
/// a head someone else wrote. Writes use the expected-head check, so a concurrent
/// writer (another process on the same database) is noticed; the decision is then
/// taken once more.
pub(crate) async fn seed(
    store: &dyn BlueprintStore,
    bundled: mse_blueprint::Blueprint,
) -> Result<SeedOutcome, StoreError> {
    let bundled = Arc::new(bundled);
    let version = BlueprintVersion::of(&bundled);
    let mut tries = 0;
    loop {
        tries += 1;
        let head = match store.read_head(&bundled.id).await {
            Ok(head) => Some(head),
            Err(StoreError::NotFound(_)) => None,
            Err(StoreError::Archived(_)) => return Ok(SeedOutcome::Archived),
            Err(e) => return Err(e),
        };
        let outcome = match &head {
            None => SeedOutcome::Created {
                version: version.to_hex(),
            },
            Some(h) if h.meta.version == version => return Ok(SeedOutcome::Unchanged),
            Some(h) if h.meta.epoch_id.as_deref() == Some(SEED_EPOCH) => SeedOutcome::Upgraded {
                from: h.meta.version.to_hex(),
                to: version.to_hex(),
            },
            Some(h) => {
                return Ok(SeedOutcome::Customized {
                    head: h.meta.version.to_hex(),
                })
            }
        };
        let expected = Some(head.map(|h| h.meta.version));
        let written = store
            .write_new(
                Arc::clone(&bundled),
                expected,
                "bundled enhance blueprint",
                Some(SEED_EPOCH.to_owned()),
                None,
            )
            .await;
        match written {
            Ok(_) => return Ok(outcome),
            Err(StoreError::HeadMoved { .. }) if tries < 3 => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Create setting `id` (orchestrator `blueprint_id`, default TTL, latest version,
/// default axes) if absent. `true` if created.
pub(crate) async fn ensure_setting(
    settings: &dyn mse_store::EnhanceSettingStore,
    id: &str,
    blueprint_id: &str,
) -> Result<bool, StoreError> {
    if settings.get(id).await?.is_some() {
        return Ok(false);
    }
    settings
        .put(EnhanceSetting::new(
            id,
            blueprint_id,
            DEFAULT_SETTING_TTL_SECS,
        ))
        .await?;
    Ok(true)
}

/// Give every issue recovery rejected its log entry (best effort: recovery itself
/// is the atomic step; a failure here is logged and skipped).
pub(crate) async fn log_recovery_rejections(
    issues: &dyn IssueStore,
    log: &dyn EnhanceLogStore,
    rejected: &[String],
) {
    for id in rejected {
        let issue = match issues.get(id).await {
            Ok(Some(issue)) => issue,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(issue_id = %id, error = %e, "enhance: could not read a recovered issue");
                continue;
            }
        };
        let reason = issue.reason.clone().unwrap_or_default();
        let entry = EnhanceLogEntry {
            issue_id: issue.id.clone(),
            blueprint_id: issue.blueprint_id.clone(),
            prev_hash: String::new(),
            new_hash: String::new(),
            intent: issue.intent.clone(),
            rationale: String::new(),
            verdicts: Vec::new(),
            status: LOG_STATUS_REJECTED.to_owned(),
            reasons: vec![reason],
            ts_ms: now_ms(),
        };
        if let Err(e) = log.append(entry).await {
            tracing::warn!(issue_id = %id, error = %e, "enhance: could not log a recovered issue");
        }
    }
}

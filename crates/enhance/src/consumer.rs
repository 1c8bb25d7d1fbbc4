//! The enhance consumer loop (enhance.md §5, project decision 15).
//!
//! One consumer takes issues from the queue one at a time (FIFO) and runs the
//! orchestrator Blueprint of its setting for each through the [`Launcher`]. Every
//! popped issue ends `applied` or `rejected` through the [`EnhanceLedger`], with
//! exactly one enhance-log entry, unless the process dies first; then
//! [`EnhanceConsumer::startup`] re-queues it (or rejects it after `max_attempts`).
//!
//! Differences from the reference (its quirks are fixed):
//!
//! - The step input carries the target as canonical JSON in `prev_bp_json`, not as
//!   YAML in `prev_bp_yaml`.
//! - Every failure (missing setting, unresolvable orchestrator or target, compile,
//!   step or TTL failure, malformed commit) rejects the issue with a log entry
//!   (empty verdicts, `reasons = [reason]`), like a verifier denial does.
//! - The commit is validated before anything is written: the new Blueprint must
//!   parse strictly, belong to the issue's series and hash to the committer's
//!   `new_version`. It is then written with an expected-head check, in one atomic
//!   step with the log entry and the issue status; a head that moved since the run
//!   started rejects the issue with `conflict: head moved`.
//! - `patch_hash` is the BLAKE3 of the patch's `ops` (canonical JSON), not of the
//!   rationale ([`crate::decision::patch_hash`]).
//! - The bundled orchestrator and the `default` setting are seeded at startup.
//! - A store that is unavailable while an issue is being prepared re-queues it
//!   (until `max_attempts` pops); the final ledger write is retried a few times.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mse_blueprint::{AgentKind, Blueprint, Launcher, RunRequest};
use mse_store::{
    BlueprintStore, EnhanceLedger, EnhanceLogEntry, EnhanceLogStore, EnhanceSettingStore,
    IssueRecord, IssueStatus, IssueStore, StoreError, StoredBlueprint,
};
use serde_json::{json, Value};

use crate::decision::{self, Decision};
use crate::spawner::spawner_override;
use crate::startup::{self, StartupReport};

/// How often the final ledger write is tried when the store is unavailable.
const COMMIT_TRIES: u32 = 3;

/// The stores the consumer works on. `ledger` must be built over the same state as
/// `blueprints`, `issues` and `log`.
#[derive(Clone)]
pub struct EnhanceStores {
    pub blueprints: Arc<dyn BlueprintStore>,
    pub issues: Arc<dyn IssueStore>,
    pub settings: Arc<dyn EnhanceSettingStore>,
    pub log: Arc<dyn EnhanceLogStore>,
    pub ledger: Arc<dyn EnhanceLedger>,
}

#[derive(Clone, Debug)]
pub struct ConsumerConfig {
    /// The enhance setting to run with (default `default`).
    pub setting_id: String,
    /// `operator_id` of the runs' engine sessions (default `mse-enhance`).
    pub operator_id: String,
    /// Idle poll interval, also the pause after an error (default 100 ms).
    pub interval: Duration,
    /// Pops after which an interrupted issue is rejected instead of re-queued
    /// (default 3).
    pub max_attempts: u32,
    /// Whether a setting's `meta.patch_spawner` may replace the patch spawner with a
    /// subprocess (default false; the server passes `--allow-subprocess`).
    pub allow_subprocess_spawner: bool,
    /// Whether a run waits (within the setting's TTL) for the orchestrator's
    /// operator roles to be registered before it is launched (default false: an
    /// unregistered role rejects the issue at once). The server turns it on: role
    /// claims live in memory, so after a restart no operator can be connected yet
    /// when the re-queued issues are taken.
    pub wait_for_operators: bool,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            setting_id: "default".into(),
            operator_id: "mse-enhance".into(),
            interval: Duration::from_millis(100),
            max_attempts: 3,
            allow_subprocess_spawner: false,
            wait_for_operators: false,
        }
    }
}

/// How one issue ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub issue_id: String,
    /// `Applied` or `Rejected`.
    pub status: IssueStatus,
    /// Why it was rejected.
    pub reason: Option<String>,
    /// The committed version (64 lowercase hex) when applied.
    pub new_version: Option<String>,
}

pub struct EnhanceConsumer {
    stores: EnhanceStores,
    launcher: Launcher,
    cfg: ConsumerConfig,
}

/// Wall-clock milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn is_ledger_conflict(e: &StoreError) -> bool {
    matches!(e, StoreError::Unavailable(m) if m.starts_with("ledger conflict:"))
}

fn is_transient(e: &StoreError) -> bool {
    matches!(e, StoreError::Unavailable(_)) && !is_ledger_conflict(e)
}

/// Why preparing a run failed.
enum Fail {
    /// Reject the issue with this reason.
    Reject(String),
    /// The store is unavailable: re-queue (bounded), reason if rejected.
    Transient(StoreError, String),
}

fn store_fail(prefix: &str, e: StoreError) -> Fail {
    let reason = format!("dispatch failed: {prefix}: {e}");
    if is_transient(&e) {
        Fail::Transient(e, reason)
    } else {
        Fail::Reject(reason)
    }
}

/// Everything needed to launch an issue's run.
struct Prepared {
    orchestrator: Arc<Blueprint>,
    head: StoredBlueprint,
    init_ctx: Value,
    ttl: Duration,
    epoch_id: String,
}

/// The log entry being built for one issue.
struct Record<'a> {
    issue: &'a IssueRecord,
    ts_ms: i64,
    prev_hash: String,
    rationale: String,
    verdicts: Vec<Value>,
    reasons: Vec<String>,
}

impl Record<'_> {
    /// The entry handed to the ledger (which fills `status` and `new_hash`).
    fn entry(&self) -> EnhanceLogEntry {
        EnhanceLogEntry {
            issue_id: self.issue.id.clone(),
            blueprint_id: self.issue.blueprint_id.clone(),
            prev_hash: self.prev_hash.clone(),
            new_hash: String::new(),
            intent: self.issue.intent.clone(),
            rationale: self.rationale.clone(),
            verdicts: self.verdicts.clone(),
            status: String::new(),
            reasons: self.reasons.clone(),
            ts_ms: self.ts_ms,
        }
    }
}

impl EnhanceConsumer {
    pub fn new(stores: EnhanceStores, launcher: Launcher, cfg: ConsumerConfig) -> Self {
        Self {
            stores,
            launcher,
            cfg,
        }
    }

    pub fn config(&self) -> &ConsumerConfig {
        &self.cfg
    }

    /// Seed the bundled orchestrator as [`crate::DEFAULT_BLUEPRINT_ID`] (see
    /// [`startup::SeedOutcome`]: a head someone else wrote is kept), create the
    /// configured setting if absent (orchestrator `enhance-default`, TTL 600 s,
    /// latest version, default axes), and recover interrupted issues
    /// (`recover_in_flight(max_attempts)`; the rejected ones get a log entry). Run it
    /// before [`run`](Self::run), with no other consumer running on the stores.
    pub async fn startup(&self) -> Result<StartupReport, StoreError> {
        let seed =
            startup::seed(self.stores.blueprints.as_ref(), crate::default_blueprint()).await?;
        let setting_created = startup::ensure_setting(
            self.stores.settings.as_ref(),
            &self.cfg.setting_id,
            crate::DEFAULT_BLUEPRINT_ID,
        )
        .await?;
        let (requeued, rejected) = self
            .stores
            .issues
            .recover_in_flight(self.cfg.max_attempts)
            .await?;
        startup::log_recovery_rejections(
            self.stores.issues.as_ref(),
            self.stores.log.as_ref(),
            &rejected,
        )
        .await;
        let report = StartupReport {
            seed,
            setting_created,
            requeued,
            rejected,
        };
        tracing::info!("enhance consumer startup: {report}");
        Ok(report)
    }

    /// Process at most one issue; `Ok(None)` when the queue is empty. An error is a
    /// store failure: popping, or finishing the issue (which then stays `in_flight`
    /// until the next startup recovers it, or was re-queued).
    pub async fn tick(&self) -> Result<Option<Outcome>, StoreError> {
        let Some(issue) = self.stores.issues.pop_pending().await? else {
            return Ok(None);
        };
        let outcome = self.process(&issue).await?;
        match &outcome.status {
            IssueStatus::Applied => tracing::info!(
                issue_id = %outcome.issue_id,
                blueprint_id = %issue.blueprint_id,
                new_version = outcome.new_version.as_deref().unwrap_or(""),
                "enhance issue applied"
            ),
            _ => tracing::info!(
                issue_id = %outcome.issue_id,
                blueprint_id = %issue.blueprint_id,
                reason = outcome.reason.as_deref().unwrap_or(""),
                "enhance issue rejected"
            ),
        }
        Ok(Some(outcome))
    }

    /// Tick until `shutdown` resolves: after a processed issue tick again at once;
    /// on an empty queue sleep `interval`; on an error log it and sleep `interval`.
    /// Shutdown interrupts a run in progress; its issue stays `in_flight` and the
    /// next startup re-queues it.
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()> + Send) {
        tokio::pin!(shutdown);
        loop {
            let idle = tokio::select! {
                biased;
                () = &mut shutdown => break,
                r = self.tick() => match r {
                    Ok(Some(_)) => false,
                    Ok(None) => true,
                    Err(e) => {
                        tracing::warn!(error = %e, "enhance consumer: tick error");
                        true
                    }
                },
            };
            if idle {
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(self.cfg.interval) => {}
                }
            }
        }
        tracing::info!("enhance consumer stopped");
    }

    async fn process(&self, issue: &IssueRecord) -> Result<Outcome, StoreError> {
        let mut rec = Record {
            issue,
            ts_ms: now_ms(),
            prev_hash: String::new(),
            rationale: String::new(),
            verdicts: Vec::new(),
            reasons: Vec::new(),
        };
        let prepared = match self.prepare(issue, &mut rec).await {
            Ok(p) => p,
            Err(Fail::Reject(reason)) => return self.reject(&mut rec, reason).await,
            Err(Fail::Transient(e, reason)) => {
                if issue.attempts >= self.cfg.max_attempts {
                    return self.reject(&mut rec, reason).await;
                }
                // Put it back; the loop pauses on the error before trying again.
                self.stores
                    .issues
                    .set_status(&issue.id, IssueStatus::Pending, None, None)
                    .await?;
                return Err(e);
            }
        };
        let mut ttl = prepared.ttl;
        if self.cfg.wait_for_operators {
            ttl = ttl.saturating_sub(self.wait_for_operators(&prepared.orchestrator, ttl).await);
        }
        let mut req = RunRequest::new(prepared.init_ctx, ttl);
        req.operator_id = self.cfg.operator_id.clone();
        let final_ctx = match self.launcher.run(&prepared.orchestrator, req).await {
            Ok(out) => out.final_ctx,
            Err(e) => {
                return self
                    .reject(&mut rec, format!("dispatch failed: launch: {e}"))
                    .await
            }
        };
        let decision = match decision::parse(&final_ctx, &issue.blueprint_id) {
            Ok(d) => d,
            Err(e) => {
                return self
                    .reject(&mut rec, format!("dispatch failed: commit shape: {e}"))
                    .await
            }
        };
        rec.rationale = decision.rationale().to_owned();
        rec.verdicts = decision.verdicts().iter().map(|v| v.to_log()).collect();
        match decision {
            Decision::Denied { reasons, .. } => {
                let reason = format!("verifier deny: {}", reasons.join("; "));
                rec.reasons = reasons;
                self.reject(&mut rec, reason).await
            }
            Decision::Committed { blueprint, .. } => {
                let patch_hash = decision::patch_hash(&final_ctx);
                self.apply(
                    &mut rec,
                    blueprint,
                    &prepared.head,
                    prepared.epoch_id,
                    patch_hash,
                )
                .await
            }
        }
    }

    /// Wait (polling every `interval`, at most `within`) until every `operator`
    /// agent's `operator_ref` of `bp` has a registered operator backend; returns the
    /// time waited. On timeout the launch reports the missing role.
    async fn wait_for_operators(&self, bp: &Blueprint, within: Duration) -> Duration {
        let refs: Vec<&str> = bp
            .agents
            .iter()
            .filter(|a| a.kind == AgentKind::Operator)
            .filter_map(|a| a.spec.get("operator_ref").and_then(Value::as_str))
            .collect();
        let registries = self.launcher.engine().registries();
        let ready = || {
            refs.iter()
                .all(|r| registries.operator_backend(r).is_some())
        };
        if ready() {
            return Duration::ZERO;
        }
        let started = tokio::time::Instant::now();
        while !ready() {
            let waited = started.elapsed();
            if waited >= within {
                break;
            }
            tokio::time::sleep(self.cfg.interval.min(within - waited)).await;
        }
        started.elapsed()
    }

    /// Step 1–3: setting, orchestrator (with the optional spawner override), target
    /// head and the initial context.
    async fn prepare(&self, issue: &IssueRecord, rec: &mut Record<'_>) -> Result<Prepared, Fail> {
        let id = &self.cfg.setting_id;
        let setting = match self.stores.settings.get(id).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                return Err(Fail::Reject(format!(
                    "dispatch failed: setting store: not found: {id}"
                )))
            }
            Err(e) => return Err(store_fail("setting store", e)),
        };
        let orchestrator = self
            .stores
            .blueprints
            .resolve(&setting.blueprint_id, &setting.version)
            .await
            .map_err(|e| store_fail("blueprint store: orchestrator", e))?
            .blueprint;
        let head = self
            .stores
            .blueprints
            .read_head(&issue.blueprint_id)
            .await
            .map_err(|e| store_fail("blueprint store: target", e))?;
        rec.prev_hash = head.meta.version.to_hex();
        let orchestrator = match spawner_override(
            &orchestrator,
            &setting.meta,
            self.cfg.allow_subprocess_spawner,
        ) {
            Ok(Some(bp)) => Arc::new(bp),
            Ok(None) => orchestrator,
            Err(e) => return Err(Fail::Reject(format!("dispatch failed: {e}"))),
        };
        let epoch = json!({
            "blueprint_id": issue.blueprint_id,
            "start_version": rec.prev_hash,
            "started_at_ms": rec.ts_ms,
        });
        let init_ctx = json!({
            "issue": {"issue_id": issue.id, "blueprint_id": issue.blueprint_id, "intent": issue.intent},
            "prev_bp_json": head.blueprint.to_value(),
            "prev_hash": rec.prev_hash,
            "epoch_id": epoch,
            "verifiers": setting.verifier_axes,
        });
        Ok(Prepared {
            orchestrator,
            epoch_id: format!("{}:{}:{}", issue.blueprint_id, rec.prev_hash, rec.ts_ms),
            head,
            init_ctx,
            ttl: Duration::from_secs(setting.ttl_secs),
        })
    }

    /// Commit the validated Blueprint atomically with the log entry and status.
    async fn apply(
        &self,
        rec: &mut Record<'_>,
        bp: Arc<Blueprint>,
        head: &StoredBlueprint,
        epoch_id: String,
        patch_hash: String,
    ) -> Result<Outcome, StoreError> {
        let entry = rec.entry();
        let mut tries = 0;
        let err = loop {
            tries += 1;
            let committed = self
                .stores
                .ledger
                .commit_applied(
                    &rec.issue.id,
                    Arc::clone(&bp),
                    head.meta.version,
                    Some(epoch_id.clone()),
                    Some(patch_hash.clone()),
                    entry.clone(),
                )
                .await;
            match committed {
                Ok(meta) => {
                    return Ok(Outcome {
                        issue_id: rec.issue.id.clone(),
                        status: IssueStatus::Applied,
                        reason: None,
                        new_version: Some(meta.version.to_hex()),
                    })
                }
                Err(e) if is_transient(&e) && tries < COMMIT_TRIES => {
                    tracing::warn!(issue_id = %rec.issue.id, error = %e, "enhance: commit failed, retrying");
                    tokio::time::sleep(self.cfg.interval).await;
                }
                Err(e) => break e,
            }
        };
        // The log keeps the detail; the issue gets the short reason.
        let (reason, detail) = match &err {
            StoreError::HeadMoved { .. } => (
                "conflict: head moved".to_owned(),
                format!("conflict: {err}"),
            ),
            StoreError::Archived(_) | StoreError::NotFound(_) => {
                (format!("conflict: {err}"), format!("conflict: {err}"))
            }
            // The issue is not ours any more (finished or re-queued elsewhere).
            e if is_ledger_conflict(e) => return Err(err),
            e => (format!("commit failed: {e}"), format!("commit failed: {e}")),
        };
        rec.reasons = vec![detail];
        self.reject(rec, reason).await
    }

    /// Finish the issue `rejected` with one log entry (`reasons = [reason]` unless
    /// the verifiers gave theirs).
    async fn reject(&self, rec: &mut Record<'_>, reason: String) -> Result<Outcome, StoreError> {
        if rec.reasons.is_empty() {
            rec.reasons.push(reason.clone());
        }
        let entry = rec.entry();
        let mut tries = 0;
        loop {
            tries += 1;
            match self
                .stores
                .ledger
                .commit_rejected(&rec.issue.id, &reason, entry.clone())
                .await
            {
                Ok(()) => break,
                Err(e) if is_transient(&e) && tries < COMMIT_TRIES => {
                    tracing::warn!(issue_id = %rec.issue.id, error = %e, "enhance: reject failed, retrying");
                    tokio::time::sleep(self.cfg.interval).await;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Outcome {
            issue_id: rec.issue.id.clone(),
            status: IssueStatus::Rejected,
            reason: Some(reason),
            new_version: None,
        })
    }
}

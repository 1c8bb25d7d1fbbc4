//! Task and session records and their public snapshots.

use crate::gate::Role;
use crate::ids::{SessionId, TaskId};
use crate::registry::OperatorKind;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Pending,
    Running,
    Suspended,
    Pass,
    Blocked,
    Cancelled,
}

impl TaskStatus {
    /// `pass`, `blocked` and `cancelled` are final: no further dispatch or resume.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Pass | Self::Blocked | Self::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Suspended => "suspended",
            Self::Pass => "pass",
            Self::Blocked => "blocked",
            Self::Cancelled => "cancelled",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub agent: String,
    pub initial_directive: String,
}

/// Snapshot of a task (the reference's `TaskState` JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskState {
    pub id: TaskId,
    pub spec: TaskSpec,
    pub status: TaskStatus,
    pub attempt: u32,
    pub suspended_on: Option<String>,
    pub last_result: Option<Value>,
    pub created_at: u64,
    pub updated_at: u64,
    #[serde(default)]
    pub spawn_depth: u32,
}

/// Result of a dispatch that produced a verdict.
#[derive(Clone, Debug, PartialEq)]
pub enum DispatchOutcome {
    Pass(Value),
    Blocked(Value),
}

/// Operator tiers and registry ids a session carries; immutable after attach.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionProfile {
    /// "runtime global" tier of the operator-kind cascade.
    pub operator_kind: Option<OperatorKind>,
    /// "runtime agent" tier: agent name -> kind.
    pub runtime_agent_kinds: HashMap<String, OperatorKind>,
    /// "blueprint agent" tier.
    pub bp_agent_kinds: HashMap<String, OperatorKind>,
    /// "blueprint global" tier.
    pub bp_global_kind: Option<OperatorKind>,
    pub bridge_id: Option<String>,
    pub hook_id: Option<String>,
    pub operator_backend_id: Option<String>,
}

impl SessionProfile {
    /// The first defined tier for `agent`, else `automate`.
    pub fn kind_for(&self, agent: &str) -> OperatorKind {
        self.runtime_agent_kinds
            .get(agent)
            .copied()
            .or(self.operator_kind)
            .or_else(|| self.bp_agent_kinds.get(agent).copied())
            .or(self.bp_global_kind)
            .unwrap_or_default()
    }
}

/// An engine session (the reference's `OperatorSession`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OperatorSession {
    pub id: SessionId,
    pub operator_id: String,
    pub role: Role,
    pub attached_at: u64,
    pub last_seen: u64,
    pub attached: bool,
    pub owned_task_ids: VecDeque<TaskId>,
    pub token_nonce: String,
    #[serde(flatten)]
    pub profile: Arc<SessionProfile>,
}

//! The orchestration engine: identifiers, capability tokens and the role x verb
//! gate, tasks and their lifecycle, dispatch to spawners, output tails, engine
//! sessions, senior suspend/resume, events, and reclamation.
//!
//! See `docs/ARCHITECTURE.md` for how a request flows through it.

mod auth;
mod clock;
pub mod config;
mod dispatch;
mod engine;
pub mod error;
pub mod events;
pub mod gate;
pub mod ids;
pub mod layers;
pub mod output;
pub mod registry;
mod retention;
mod senior;
mod sessions;
pub mod spawn;
pub mod state;
mod tasks;
pub mod token;

pub use auth::{HandleTarget, Verified};
pub use config::EngineConfig;
pub use engine::{now_unix, Engine, EngineStats};
pub use error::EngineError;
pub use events::Event;
pub use gate::{Role, RoleVerbGate, Verb};
pub use ids::{SessionId, TaskId, WorkerHandle};
pub use output::{ContentRef, OutputEvent};
pub use registry::{
    OperatorBackend, OperatorInfo, OperatorKind, Registries, SeniorBridge, SpawnHook,
};
pub use sessions::{AttachRequest, Attached};
pub use spawn::{SpawnCtx, SpawnError, Spawner, SpawnerLayer};
pub use state::{
    DispatchOutcome, OperatorSession, SessionProfile, TaskSpec, TaskState, TaskStatus,
};
pub use tasks::WorkerPayload;
pub use token::{CapToken, TokenDecodeError, TokenSigner};

//! Blueprints: the typed document and its content version, the compiler with its
//! spawner-factory registry, and task launch (compile, link, evaluate).

pub mod compile;
pub mod factories;
pub mod launch;
pub mod schema;
pub mod version;

pub use compile::{compile, AgentTable, CompileError, CompiledBlueprint};
pub use factories::{SpawnerFactories, SpawnerFactory};
pub use launch::{LaunchConfig, LaunchError, Launcher, RunOutcome, RunRequest};
pub use schema::{AgentDef, AgentKind, Blueprint};
pub use version::BlueprintVersion;

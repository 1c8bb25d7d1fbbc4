//! The spawner-factory registry: one factory per agent kind.

use crate::schema::{AgentDef, AgentKind};
use mse_engine::{Engine, Spawner};
use mse_workers::lua::LuaFactory;
use mse_workers::rust_fn::RustFnRegistry;
use mse_workers::subprocess::SubprocessFactory;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// Turns one agent definition into its route. The error is the `InvalidSpec` detail.
pub trait SpawnerFactory: Send + Sync + 'static {
    fn build(&self, agent: &AgentDef, hint: Option<&Value>) -> Result<Arc<dyn Spawner>, String>;
}

/// Factories keyed by agent kind.
#[derive(Clone, Default)]
pub struct SpawnerFactories {
    by_kind: HashMap<AgentKind, Arc<dyn SpawnerFactory>>,
}

impl SpawnerFactories {
    /// An empty registry (every kind unknown).
    pub fn empty() -> Self {
        Self::default()
    }

    pub fn register(&mut self, kind: AgentKind, factory: Arc<dyn SpawnerFactory>) -> &mut Self {
        self.by_kind.insert(kind, factory);
        self
    }

    pub fn get(&self, kind: AgentKind) -> Option<&Arc<dyn SpawnerFactory>> {
        self.by_kind.get(&kind)
    }

    /// The standard set: `rust_fn`, `lua`, `operator`, and `subprocess` when
    /// allowed (otherwise a factory that explains how to enable it).
    pub fn standard(
        engine: &Engine,
        rust_fns: RustFnRegistry,
        lua: LuaFactory,
        subprocess: Option<SubprocessFactory>,
    ) -> Self {
        let mut f = Self::empty();
        f.register(AgentKind::RustFn, Arc::new(RustFnKind(rust_fns)));
        f.register(AgentKind::Lua, Arc::new(LuaKind(lua)));
        f.register(
            AgentKind::Operator,
            Arc::new(OperatorKindFactory(engine.clone())),
        );
        match subprocess {
            Some(s) => f.register(AgentKind::Subprocess, Arc::new(SubprocessKind(s))),
            None => f.register(AgentKind::Subprocess, Arc::new(SubprocessDisabled)),
        };
        f
    }
}

struct RustFnKind(RustFnRegistry);

impl SpawnerFactory for RustFnKind {
    fn build(&self, agent: &AgentDef, _: Option<&Value>) -> Result<Arc<dyn Spawner>, String> {
        self.0.build(&agent.spec)
    }
}

struct LuaKind(LuaFactory);

impl SpawnerFactory for LuaKind {
    fn build(&self, agent: &AgentDef, _: Option<&Value>) -> Result<Arc<dyn Spawner>, String> {
        self.0.build(&agent.name, &agent.spec)
    }
}

struct SubprocessKind(SubprocessFactory);

impl SpawnerFactory for SubprocessKind {
    fn build(&self, agent: &AgentDef, _: Option<&Value>) -> Result<Arc<dyn Spawner>, String> {
        self.0.build(&agent.name, &agent.spec)
    }
}

/// Subprocess agents run arbitrary programs, so they are opt-in.
struct SubprocessDisabled;

pub const SUBPROCESS_DISABLED: &str = "subprocess agents are disabled on this server; \
     start it with --allow-subprocess (or set allow_subprocess = true in the config) to enable them";

impl SpawnerFactory for SubprocessDisabled {
    fn build(&self, _: &AgentDef, _: Option<&Value>) -> Result<Arc<dyn Spawner>, String> {
        Err(SUBPROCESS_DISABLED.into())
    }
}

struct OperatorKindFactory(Engine);

impl SpawnerFactory for OperatorKindFactory {
    fn build(&self, agent: &AgentDef, _: Option<&Value>) -> Result<Arc<dyn Spawner>, String> {
        let template = agent.profile.as_ref().map(|p| p.system_prompt.as_str());
        mse_workers::operator::build(&self.0, &agent.spec, template)
    }
}

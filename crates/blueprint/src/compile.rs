//! Compile a Blueprint into a routing table of spawners (blueprint.md section 7).

use crate::factories::SpawnerFactories;
use crate::schema::{AgentKind, Blueprint};
use mse_engine::{SpawnCtx, SpawnError, Spawner};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Compile errors, in the order they are checked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CompileError {
    #[error("agent '{agent}' operator_ref '{reference}' does not match any OperatorDef.name in Blueprint.operators (defined: {defined:?})")]
    UnresolvedOperatorRef {
        agent: String,
        reference: String,
        defined: Vec<String>,
    },
    #[error("duplicate AgentDef name: {0}")]
    DuplicateAgent(String),
    #[error("unknown agent kind in SpawnerRegistry: {variant}{hint}")]
    UnknownKind { variant: &'static str, hint: String },
    #[error("agent '{agent}' spec invalid: {detail}")]
    InvalidSpec { agent: String, detail: String },
    #[error("flow references agent '{0}' but no AgentDef matches")]
    UnresolvedRef(String),
}

/// Agent name -> route. Dispatches each spawn to the route of `ctx.agent`.
pub struct AgentTable {
    routes: HashMap<String, Arc<dyn Spawner>>,
}

impl AgentTable {
    pub fn contains(&self, name: &str) -> bool {
        self.routes.contains_key(name)
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

#[async_trait::async_trait]
impl Spawner for AgentTable {
    async fn spawn(&self, ctx: &SpawnCtx) -> Result<(), SpawnError> {
        match self.routes.get(&*ctx.agent) {
            Some(route) => route.spawn(ctx).await,
            None => Err(SpawnError::not_registered(&ctx.agent)),
        }
    }
}

/// A compiled Blueprint: its routes plus the document it came from.
pub struct CompiledBlueprint {
    pub blueprint: Arc<Blueprint>,
    pub table: Arc<AgentTable>,
}

/// Compile `bp` with the given factories.
pub fn compile(
    bp: &Arc<Blueprint>,
    factories: &SpawnerFactories,
) -> Result<CompiledBlueprint, CompileError> {
    check_operator_refs(bp)?;
    let mut seen = HashSet::new();
    let mut routes = HashMap::new();
    for agent in &bp.agents {
        if !seen.insert(agent.name.as_str()) {
            return Err(CompileError::DuplicateAgent(agent.name.clone()));
        }
        let Some(factory) = factories.get(agent.kind) else {
            if bp.strategy.strict_kind {
                return Err(CompileError::UnknownKind {
                    variant: agent.kind.variant_name(),
                    hint: unknown_kind_hint(agent.kind),
                });
            }
            continue;
        };
        let hint = bp.hints.per_agent.get(&agent.name);
        let route = factory
            .build(agent, hint)
            .map_err(|detail| CompileError::InvalidSpec {
                agent: agent.name.clone(),
                detail,
            })?;
        routes.insert(agent.name.clone(), route);
    }
    if bp.strategy.strict_refs {
        if let Some(missing) = bp
            .flow
            .step_refs()
            .into_iter()
            .find(|r| !routes.contains_key(*r))
        {
            return Err(CompileError::UnresolvedRef(missing.to_string()));
        }
    }
    Ok(CompiledBlueprint {
        blueprint: bp.clone(),
        table: Arc::new(AgentTable { routes }),
    })
}

fn check_operator_refs(bp: &Blueprint) -> Result<(), CompileError> {
    for agent in bp.agents.iter().filter(|a| a.kind == AgentKind::Operator) {
        let Some(reference) = agent.spec.get("operator_ref").and_then(|v| v.as_str()) else {
            continue;
        };
        if !bp.operators.iter().any(|o| o.name == reference) {
            return Err(CompileError::UnresolvedOperatorRef {
                agent: agent.name.clone(),
                reference: reference.to_string(),
                defined: bp.operators.iter().map(|o| o.name.clone()).collect(),
            });
        }
    }
    Ok(())
}

fn unknown_kind_hint(kind: AgentKind) -> String {
    match kind {
        AgentKind::AgentBlock => {
            " (agent_block workers need an LLM agent runtime, which this server does not configure)"
                .into()
        }
        _ => String::new(),
    }
}

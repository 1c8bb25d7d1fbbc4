//! Layer registry: base layers (always applied) and hint layers selected by a
//! Blueprint's `spawner_hints.layers`.

use crate::spawn::{Spawner, SpawnerLayer};
use dashmap::DashMap;
use parking_lot::RwLock;
use std::sync::Arc;

#[derive(Default)]
pub struct LayerRegistry {
    base: RwLock<Vec<Arc<dyn SpawnerLayer>>>,
    by_key: DashMap<String, Arc<dyn SpawnerLayer>>,
}

impl LayerRegistry {
    /// A layer applied to every linked spawner, innermost first, in registration order.
    pub fn add_base(&self, layer: Arc<dyn SpawnerLayer>) {
        self.base.write().push(layer);
    }

    /// A layer selected by the hint key `key`.
    pub fn register(&self, key: &str, layer: Arc<dyn SpawnerLayer>) {
        self.by_key.insert(key.to_string(), layer);
    }

    pub fn keys(&self) -> Vec<String> {
        let mut k: Vec<String> = self.by_key.iter().map(|e| e.key().clone()).collect();
        k.sort();
        k
    }

    /// Wrap `inner`: base layers, then each known hint key in order (later entries
    /// outermost; unknown keys are skipped; duplicates wrap twice).
    pub fn link(&self, inner: Arc<dyn Spawner>, hints: &[String]) -> Arc<dyn Spawner> {
        let mut s = inner;
        for layer in self.base.read().iter() {
            s = layer.wrap(s);
        }
        for key in hints {
            if let Some(layer) = self.by_key.get(key) {
                s = layer.wrap(s);
            }
        }
        s
    }
}

/// Built-in middleware. Hint keys: `main_ai`, `senior_escalation`,
/// `operator_delegate`; base layer: [`AuditLayer`].
pub mod builtin {
    use crate::events::Event;
    use crate::registry::OperatorKind;
    use crate::spawn::{SpawnCtx, SpawnError, Spawner, SpawnerLayer};
    use serde_json::{json, Value};
    use std::sync::Arc;

    macro_rules! layer {
        ($layer:ident, $spawner:ident) => {
            impl SpawnerLayer for $layer {
                fn wrap(&self, inner: Arc<dyn Spawner>) -> Arc<dyn Spawner> {
                    Arc::new($spawner { inner })
                }
            }
            struct $spawner {
                inner: Arc<dyn Spawner>,
            }
        };
    }

    /// Records `task_attempt_started` before every spawn.
    pub struct AuditLayer;
    layer!(AuditLayer, Audited);

    #[async_trait::async_trait]
    impl Spawner for Audited {
        async fn spawn(&self, ctx: &SpawnCtx) -> Result<(), SpawnError> {
            ctx.engine.events().record(Event::TaskAttemptStarted {
                task_id: ctx.task_id.clone(),
                attempt: ctx.attempt,
            });
            self.inner.spawn(ctx).await
        }
    }

    /// `main_ai`: asks the session's spawn hook before the spawn (it may veto)
    /// and tells it the outcome, for agents whose kind is `main_ai`/`composite`.
    pub struct MainAiLayer;
    layer!(MainAiLayer, MainAi);

    #[async_trait::async_trait]
    impl Spawner for MainAi {
        async fn spawn(&self, ctx: &SpawnCtx) -> Result<(), SpawnError> {
            let gated = matches!(
                ctx.operator.kind,
                OperatorKind::MainAi | OperatorKind::Composite
            );
            let Some(hook) = ctx.operator.hook.clone().filter(|_| gated) else {
                return self.inner.spawn(ctx).await;
            };
            hook.before(ctx).await.map_err(SpawnError::rejected)?;
            let result = self.inner.spawn(ctx).await;
            let seen = match &result {
                Ok(()) => ctx.last_final().map(|(v, _)| v).unwrap_or(Value::Null),
                Err(e) => Value::String(e.0.clone()),
            };
            hook.after(ctx, &seen).await;
            result
        }
    }

    /// `senior_escalation`: a worker that finished with `ok:false` is escalated
    /// to the session's senior bridge; its answer turns the attempt into a pass
    /// with value `{"original": <value>, "senior_answer": <answer>}`.
    pub struct SeniorEscalationLayer;
    layer!(SeniorEscalationLayer, SeniorEscalation);

    #[async_trait::async_trait]
    impl Spawner for SeniorEscalation {
        async fn spawn(&self, ctx: &SpawnCtx) -> Result<(), SpawnError> {
            self.inner.spawn(ctx).await?;
            let Some(bridge) = ctx.operator.bridge.clone() else {
                return Ok(());
            };
            if let Some((value, false)) = ctx.last_final() {
                let question = json!({"reason": "worker reported ok=false", "value": value});
                // A bridge failure leaves the attempt blocked.
                if let Ok(answer) = bridge.ask(&ctx.task_id, question).await {
                    ctx.finish(json!({"original": value, "senior_answer": answer}), true);
                }
            }
            Ok(())
        }
    }

    /// `operator_delegate`: when the session carries an operator backend, the
    /// whole spawn goes to it (no system prompt), whatever the agent's kind.
    pub struct OperatorDelegateLayer;
    layer!(OperatorDelegateLayer, OperatorDelegate);

    #[async_trait::async_trait]
    impl Spawner for OperatorDelegate {
        async fn spawn(&self, ctx: &SpawnCtx) -> Result<(), SpawnError> {
            let Some(backend) = ctx.operator.backend.clone() else {
                return self.inner.spawn(ctx).await;
            };
            let (value, ok) = backend
                .execute(ctx, None, &ctx.prompt)
                .await
                .map_err(SpawnError::other)?;
            if !ctx.has_final() {
                ctx.finish(value, ok);
            }
            Ok(())
        }
    }

    /// Puts `project_name_alias` into `meta.runtime` of every spawn.
    pub struct ProjectAliasLayer(pub String);

    impl SpawnerLayer for ProjectAliasLayer {
        fn wrap(&self, inner: Arc<dyn Spawner>) -> Arc<dyn Spawner> {
            Arc::new(ProjectAlias {
                inner,
                alias: self.0.as_str().into(),
            })
        }
    }

    struct ProjectAlias {
        inner: Arc<dyn Spawner>,
        alias: Arc<str>,
    }

    #[async_trait::async_trait]
    impl Spawner for ProjectAlias {
        async fn spawn(&self, ctx: &SpawnCtx) -> Result<(), SpawnError> {
            let mut ctx = ctx.clone();
            ctx.project_name_alias = Some(self.alias.clone());
            self.inner.spawn(&ctx).await
        }
    }

    /// Register the hint layers under their reference keys.
    pub fn register_defaults(reg: &super::LayerRegistry) {
        reg.register("main_ai", Arc::new(MainAiLayer));
        reg.register("senior_escalation", Arc::new(SeniorEscalationLayer));
        reg.register("operator_delegate", Arc::new(OperatorDelegateLayer));
    }
}

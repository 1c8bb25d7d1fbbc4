//! `operator` agents: the spawn is executed by an operator backend registered
//! under the agent's `spec.operator_ref` (a role alias or a session id).
//!
//! The agent's `profile.system_prompt` is a template rendered per dispatch with
//! strict undefined variables and no auto-escaping; the variables are the
//! directive's top-level keys when it is a JSON object, else `directive`.

use minijinja::{Environment, UndefinedBehavior};
use mse_engine::{Engine, OperatorBackend, SpawnCtx, SpawnError, Spawner};
use serde_json::Value;
use std::sync::Arc;

/// Validate an operator agent's spec and bind its backend (compile time).
pub fn build(
    engine: &Engine,
    spec: &Value,
    system_template: Option<&str>,
) -> Result<Arc<dyn Spawner>, String> {
    let reference = spec
        .get("operator_ref")
        .and_then(Value::as_str)
        .ok_or("operator spec: 'operator_ref' (string) required")?;
    let backend = engine
        .registries()
        .operator_backend(reference)
        .ok_or_else(|| not_registered(engine, reference))?;
    Ok(Arc::new(OperatorSpawner {
        backend,
        system_template: system_template.map(str::to_string),
    }))
}

fn not_registered(engine: &Engine, reference: &str) -> String {
    let ids = engine.registries().operator_backend_ids();
    let list = if ids.is_empty() {
        "<none>".to_string()
    } else {
        ids.join(", ")
    };
    format!(
        "operator_ref '{reference}' not registered in factory. Registered sids: [{list}]. \
         Hint: call mse_operator_join(roles=[...]) to mint the sid first."
    )
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env
}

/// Render a system-prompt template for one directive.
pub fn render_system_prompt(template: &str, directive: &str) -> Result<String, String> {
    let vars = match serde_json::from_str::<Value>(directive) {
        Ok(Value::Object(map)) => Value::Object(map),
        _ => serde_json::json!({ "directive": directive }),
    };
    environment()
        .render_str(template, vars)
        .map_err(|e| format!("template render failed: {e}"))
}

struct OperatorSpawner {
    backend: Arc<dyn OperatorBackend>,
    system_template: Option<String>,
}

#[async_trait::async_trait]
impl Spawner for OperatorSpawner {
    async fn spawn(&self, ctx: &SpawnCtx) -> Result<(), SpawnError> {
        let system = match &self.system_template {
            Some(t) => Some(
                render_system_prompt(t, &ctx.prompt)
                    .map_err(|e| SpawnError::internal(format!("render system_prompt: {e}")))?,
            ),
            None => None,
        };
        ctx.bake_system_prompt(system.clone());
        let (value, ok) = self
            .backend
            .execute(ctx, system.as_deref(), &ctx.prompt)
            .await
            .map_err(SpawnError::other)?;
        // A result the worker already posted over HTTP is authoritative.
        if !ctx.has_final() {
            ctx.finish(value, ok);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_object_keys_or_directive() {
        assert_eq!(
            render_system_prompt("Hi {{ name }}", r#"{"name":"Ann"}"#).unwrap(),
            "Hi Ann"
        );
        assert_eq!(
            render_system_prompt("Do: {{ directive }}", "plain").unwrap(),
            "Do: plain"
        );
        assert_eq!(
            render_system_prompt("<b>{{ directive }}</b>", "<x>").unwrap(),
            "<b><x></b>"
        );
    }

    #[test]
    fn strict_undefined_fails() {
        let e = render_system_prompt("{{ missing }}", "x").unwrap_err();
        assert!(e.starts_with("template render failed"), "{e}");
        assert!(render_system_prompt("{{ unbalanced", "x").is_err());
    }
}

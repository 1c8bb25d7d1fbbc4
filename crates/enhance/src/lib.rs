//! The enhance pipeline's worker steps, as Rust functions that run through the
//! normal engine path (`rust_fn` agents), so an enhance run looks like any other
//! task:
//!
//! - [`patch`]: apply the RFC 6902 patch proposed for an issue, re-hash
//!   system prompts, bump the version label, validate the result as a Blueprint;
//! - [`verify`]: one verifier axis per fanout branch (`des`, `canonical`, `noop`,
//!   `agent-ref`, `compile`);
//! - [`commit`]: fold the verdicts into the commit decision.
//!
//! [`register`] installs them in a [`RustFnRegistry`] under the `fn_id`s the
//! bundled enhance Blueprint uses.
//!
//! [`consumer`] is the enhance loop itself: it takes issues from the queue, runs the
//! orchestrator Blueprint of its setting for each ([`default_blueprint`] unless an
//! operator configured another), validates the commit ([`decision`]) and finishes
//! the issue through the atomic enhance ledger. [`startup`] seeds the bundled
//! orchestrator and the `default` setting and recovers interrupted issues.

pub mod commit;
pub mod consumer;
pub mod decision;
pub mod patch;
pub mod spawner;
pub mod startup;
pub mod verify;

use mse_workers::rust_fn::{Invocation, RustFnRegistry, SyncFn};
use serde_json::Value;
use std::sync::Arc;

pub use verify::CompileCheck;

pub const PATCH_APPLIER: &str = "enhance.patch_applier";
pub const VERIFIER_ROUTER: &str = "enhance.verifier_router";
pub const COMMITTER: &str = "enhance.committer";

/// The bundled enhance Blueprint (patch-spawner → patch-applier → verifier fanout → committer).
pub const DEFAULT_BLUEPRINT: &str = include_str!("../../../assets/enhance-default.json");
pub const DEFAULT_BLUEPRINT_ID: &str = "enhance-default";

fn ctx_of(inv: &Invocation<'_>) -> Result<Value, String> {
    serde_json::from_str(inv.prompt()).map_err(|e| format!("step input is not JSON: {e}"))
}

/// Register the three steps. `compile` backs the `compile` verifier axis.
pub fn register(registry: &RustFnRegistry, compile: Option<CompileCheck>) {
    registry.register(
        PATCH_APPLIER,
        Arc::new(SyncFn(|inv: &Invocation<'_>| {
            patch::apply_step(&ctx_of(inv)?).map(|v| (v, true))
        })),
    );
    registry.register(
        VERIFIER_ROUTER,
        Arc::new(SyncFn(move |inv: &Invocation<'_>| {
            Ok((verify::route(&ctx_of(inv)?, compile.as_ref()), true))
        })),
    );
    registry.register(
        COMMITTER,
        Arc::new(SyncFn(|inv: &Invocation<'_>| {
            commit::decide(&ctx_of(inv)?).map(|v| (v, true))
        })),
    );
}

pub use consumer::{ConsumerConfig, EnhanceConsumer, EnhanceStores, Outcome};
pub use startup::{SeedOutcome, StartupReport};

/// The bundled enhance Blueprint ([`DEFAULT_BLUEPRINT`]), parsed.
pub fn default_blueprint() -> mse_blueprint::Blueprint {
    mse_blueprint::Blueprint::from_json(DEFAULT_BLUEPRINT.as_bytes())
        .expect("the bundled enhance blueprint is valid")
}

//! Worker kinds. Each kind turns an agent's `spec` into a [`mse_engine::Spawner`]:
//!
//! - [`rust_fn`]: functions compiled into the server, registered by `fn_id`;
//! - [`lua`]: sandboxed Lua 5.4 scripts on a pool of reusable VMs;
//! - [`subprocess`]: child processes with a scrubbed environment and limits.

pub mod lua;
pub mod operator;
pub mod rust_fn;
pub mod subprocess;

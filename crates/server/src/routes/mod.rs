//! Handlers, one module per route family of http-api.md §2.

pub mod blueprints;
pub mod data;
pub mod enhance;
pub mod health;
pub mod operators;
pub mod sessions;
pub mod tasks;
pub mod worker;

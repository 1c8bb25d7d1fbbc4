//! SQLite backends of the stores, all on one [`Database`].

pub mod db;

pub use db::{map_error, Database};

//! In-memory backends (to be implemented).

//! Sandboxed Lua workers (in progress).

//! Subprocess workers (in progress).

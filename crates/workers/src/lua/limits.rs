//! Per-dispatch limits: wall time, cancellation, memory.
//!
//! Each pool thread owns exactly one VM, so the state of the running dispatch lives
//! in a thread-local [`Ctl`]. A raw Lua count hook (installed with `lua_sethook`, not
//! mlua's `set_hook`: mlua 0.10 strips its hook from coroutines, which would let
//! `coroutine.wrap(function() while true do end end)()` run forever) polls it every
//! [`HOOK_EVERY`] VM instructions. Coroutines inherit the hook from the thread that
//! creates them (`lua_newthread`), so every Lua frame of a dispatch is covered.
//!
//! Once a dispatch is aborted the abort is sticky: every later hook tick raises the
//! error again, and the sandbox's `pcall`/`xpcall`/`coroutine.resume` wrappers
//! re-raise it (see `sandbox.lua`), so catching the error does not keep a script alive.

use mlua::ffi;
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// VM instructions between two limit checks (~ a few µs of Lua work).
pub(super) const HOOK_EVERY: i32 = 1000;

/// Why a dispatch was stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Abort {
    Time,
    Memory,
    Cancelled,
}

/// `lua time limit exceeded (<limit>)`.
pub(super) fn time_message(limit: Duration) -> String {
    format!("lua time limit exceeded ({limit:?})")
}

/// `lua memory limit exceeded (<limit>)`.
pub(super) fn memory_message(limit: usize) -> String {
    format!("lua memory limit exceeded ({})", human_bytes(limit))
}

pub(super) const CANCELLED_MESSAGE: &str = "lua script cancelled";

/// The message Lua uses for `LUA_ERRMEM` (allocation refused by the memory limit).
pub(super) const LUA_MEMERRMSG: &str = "not enough memory";

fn human_bytes(n: usize) -> String {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * 1024;
    if n >= MIB && n & (MIB - 1) == 0 {
        format!("{} MiB", n / MIB)
    } else if n >= KIB && n & (KIB - 1) == 0 {
        format!("{} KiB", n / KIB)
    } else {
        format!("{n} bytes")
    }
}

/// State of the dispatch running on this thread.
pub(super) struct Ctl {
    deadline: Cell<Option<Instant>>,
    cancel: RefCell<Option<Arc<AtomicBool>>>,
    abort: Cell<Option<Abort>>,
    time_limit: Cell<Duration>,
    memory_limit: Cell<usize>,
}

thread_local! {
    static CTL: Ctl = const {
        Ctl {
            deadline: Cell::new(None),
            cancel: RefCell::new(None),
            abort: Cell::new(None),
            time_limit: Cell::new(Duration::ZERO),
            memory_limit: Cell::new(0),
        }
    };
}

impl Ctl {
    fn message(&self, a: Abort) -> String {
        match a {
            Abort::Time => time_message(self.time_limit.get()),
            Abort::Memory => memory_message(self.memory_limit.get()),
            Abort::Cancelled => CANCELLED_MESSAGE.to_string(),
        }
    }

    /// The abort message if the dispatch must stop now (sticky once set).
    fn poll(&self) -> Option<String> {
        if let Some(a) = self.abort.get() {
            return Some(self.message(a));
        }
        let deadline = self.deadline.get()?;
        let cancelled = self
            .cancel
            .borrow()
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed));
        let a = if cancelled {
            Abort::Cancelled
        } else if Instant::now() >= deadline {
            Abort::Time
        } else {
            return None;
        };
        self.abort.set(Some(a));
        Some(self.message(a))
    }
}

/// Arm the limits for a dispatch starting now.
pub(super) fn begin(
    start: Instant,
    time_limit: Duration,
    memory_limit: usize,
    cancel: Arc<AtomicBool>,
) {
    CTL.with(|c| {
        c.deadline.set(Some(start + time_limit));
        c.time_limit.set(time_limit);
        c.memory_limit.set(memory_limit);
        c.abort.set(None);
        *c.cancel.borrow_mut() = Some(cancel);
    });
}

/// Disarm the limits; returns the abort reason of the finished dispatch, if any.
pub(super) fn end() -> Option<Abort> {
    CTL.with(|c| {
        c.deadline.set(None);
        c.cancel.borrow_mut().take();
        c.abort.take()
    })
}

/// The abort message of the running dispatch, checking the deadline and cancel flag.
pub(super) fn poll() -> Option<String> {
    CTL.with(Ctl::poll)
}

/// Record an abort (e.g. a memory error seen by a `pcall` wrapper) and return its message.
pub(super) fn abort(a: Abort) -> String {
    CTL.with(|c| {
        let a = c.abort.get().unwrap_or(a);
        c.abort.set(Some(a));
        c.message(a)
    })
}

/// The count hook. Raises a plain Lua string error when the dispatch must stop.
///
/// Safety: called by Lua on this thread. `lua_error` long-jumps out of this frame,
/// so every Rust value with a destructor is dropped before it.
pub(super) unsafe extern "C-unwind" fn count_hook(
    l: *mut ffi::lua_State,
    _ar: *mut ffi::lua_Debug,
) {
    let Some(msg) = poll() else { return };
    ffi::lua_pushlstring(l, msg.as_ptr().cast(), msg.len());
    drop(msg);
    ffi::lua_error(l);
}

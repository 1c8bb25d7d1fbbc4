//! The VM pool: N OS threads, each owning one [`Vm`], fed from one job queue.
//!
//! A job carries its reply channel (tokio oneshot) and a shared [`JobState`]: the
//! cancel flag polled by the VM's count hook, the instant the job started running,
//! and its fate if the caller gave up on it. The async side enforces the time limit
//! too: if the thread has not answered `time_limit + grace` after the job started
//! (e.g. stuck inside one long C call such as a pathological `string.find`, where the
//! count hook cannot fire), the caller gets the time-limit error at once, the job is
//! cancelled, and a replacement thread is started so the pool keeps its capacity;
//! the stuck thread exits when its job finally returns. At most `pool_size` such
//! replacement threads exist at a time.

use super::limits;
use super::queue::Queue;
use super::vm::Vm;
use super::{LuaConfig, LuaInputs, ScriptEntry};
use parking_lot::Mutex;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

type Reply = Result<(Value, bool), String>;

struct Job {
    script: Arc<ScriptEntry>,
    inputs: LuaInputs,
    state: Arc<JobState>,
    reply: oneshot::Sender<Reply>,
}

#[derive(Default)]
struct JobState {
    cancel: Arc<AtomicBool>,
    started: OnceLock<Instant>,
    fate: Mutex<Fate>,
}

#[derive(Default)]
struct Fate {
    finished: bool,
    /// The caller gave up and started a replacement thread: exit after this job.
    replaced: bool,
}

/// What the worker threads share. Dropping the [`Pool`] (the last factory handle)
/// closes the queue and the threads exit.
struct Shared {
    queue: Queue<Job>,
    cfg: LuaConfig,
    replacements: AtomicUsize,
    next_thread: AtomicUsize,
}

pub(super) struct Pool {
    shared: Arc<Shared>,
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.queue.close();
    }
}

impl Pool {
    pub(super) fn new(cfg: LuaConfig) -> Self {
        let n = cfg.pool_size.max(1);
        let shared = Arc::new(Shared {
            queue: Queue::new(),
            cfg,
            replacements: AtomicUsize::new(0),
            next_thread: AtomicUsize::new(0),
        });
        for _ in 0..n {
            spawn_thread(&shared);
        }
        Self { shared }
    }

    pub(super) fn config(&self) -> &LuaConfig {
        &self.shared.cfg
    }

    /// Run `script` on the next free VM. Dropping the future cancels the job.
    pub(super) async fn run(&self, script: Arc<ScriptEntry>, inputs: LuaInputs) -> Reply {
        let (reply, mut rx) = oneshot::channel();
        let state = Arc::new(JobState::default());
        let mut guard = CancelOnDrop(Some(state.cancel.clone()));
        let label = script.label.clone();
        self.shared
            .queue
            .push(Job {
                script,
                inputs,
                state: state.clone(),
                reply,
            })
            .map_err(|_| format!("lua eval [{label}]: the Lua pool is shut down"))?;
        // Fast path: small scripts finish within microseconds; poll (yielding to the
        // runtime) before parking on the timer so the reply needs no wake-up.
        let spin_until = Instant::now() + FAST_POLL;
        while Instant::now() < spin_until {
            match rx.try_recv() {
                Ok(r) => {
                    guard.0 = None;
                    return r;
                }
                Err(oneshot::error::TryRecvError::Empty) => tokio::task::yield_now().await,
                Err(oneshot::error::TryRecvError::Closed) => break,
            }
        }
        let limit = self.shared.cfg.time_limit;
        let budget = limit + grace(limit);
        let mut wait = budget;
        loop {
            match tokio::time::timeout(wait, &mut rx).await {
                Ok(Ok(r)) => {
                    guard.0 = None;
                    return r;
                }
                Ok(Err(_)) => {
                    return Err(format!("lua eval [{label}]: the Lua worker thread died"));
                }
                Err(_) => {
                    // Time spent queued does not count against the script.
                    let Some(t0) = state.started.get().copied() else {
                        wait = budget;
                        continue;
                    };
                    let due = t0 + budget;
                    let now = Instant::now();
                    if now < due {
                        wait = due - now;
                        continue;
                    }
                    state.cancel.store(true, Ordering::Relaxed);
                    self.abandon(&state);
                    return Err(format!(
                        "lua eval [{label}]: {}",
                        limits::time_message(limit)
                    ));
                }
            }
        }
    }

    /// The job overran even the async deadline: replace its thread.
    fn abandon(&self, state: &JobState) {
        let mut fate = state.fate.lock();
        if fate.finished {
            return;
        }
        let shared = &self.shared;
        if shared.replacements.fetch_add(1, Ordering::SeqCst) < shared.cfg.pool_size.max(1) {
            fate.replaced = true;
            drop(fate);
            tracing::warn!(target: "mse_workers::lua", "Lua job overran its time limit inside a C call; starting a replacement VM thread");
            spawn_thread(shared);
        } else {
            shared.replacements.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// How long `run` polls for the reply before parking.
const FAST_POLL: Duration = Duration::from_micros(40);

/// Extra time the async side grants the thread to report the hook's abort.
fn grace(limit: Duration) -> Duration {
    Duration::from_millis(100) + limit / 10
}

struct CancelOnDrop(Option<Arc<AtomicBool>>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(flag) = self.0.take() {
            flag.store(true, Ordering::Relaxed);
        }
    }
}

fn spawn_thread(shared: &Arc<Shared>) {
    let shared = shared.clone();
    let i = shared.next_thread.fetch_add(1, Ordering::Relaxed);
    let spawned = std::thread::Builder::new()
        .name(format!("lua-vm-{i}"))
        .spawn(move || worker(shared));
    if let Err(e) = spawned {
        tracing::error!(target: "mse_workers::lua", "cannot start a Lua VM thread: {e}");
    }
}

fn worker(shared: Arc<Shared>) {
    let cfg = &shared.cfg;
    let mut vm = new_vm(cfg);
    loop {
        let Some(job) = shared.queue.pop() else {
            return; // factory dropped
        };
        let Job {
            script,
            inputs,
            state,
            reply,
        } = job;
        if state.cancel.load(Ordering::Relaxed) || reply.is_closed() {
            continue; // abandoned while queued
        }
        let start = Instant::now();
        let _ = state.started.set(start);
        if vm.is_none() {
            vm = new_vm(cfg);
        }
        let outcome = match vm.as_mut() {
            Some(v) => v.dispatch(&script, &inputs, cfg, start, state.cancel.clone()),
            None => super::vm::Outcome {
                result: Err(format!(
                    "lua eval [{}]: cannot create a Lua VM",
                    script.label
                )),
                keep_vm: false,
            },
        };
        let _ = reply.send(outcome.result);
        if !outcome.keep_vm {
            // Fresh VM after any Lua error, built off the caller's critical path.
            drop(vm.take());
            vm = new_vm(cfg);
        }
        let exit = {
            let mut fate = state.fate.lock();
            fate.finished = true;
            fate.replaced
        };
        if exit {
            shared.replacements.fetch_sub(1, Ordering::SeqCst);
            return;
        }
    }
}

fn new_vm(cfg: &LuaConfig) -> Option<Vm> {
    match Vm::new(cfg) {
        Ok(vm) => Some(vm),
        Err(e) => {
            tracing::error!(target: "mse_workers::lua", "cannot create a Lua VM: {e}");
            None
        }
    }
}

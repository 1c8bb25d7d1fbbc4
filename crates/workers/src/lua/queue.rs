//! The pool's job queue: a mutex-protected FIFO with a condition variable, plus a
//! short spin phase so that, under a steady stream of dispatches, an idle VM thread
//! picks the next job without a futex sleep/wake round trip. At most one thread spins
//! at a time, and only for [`SPIN`] after its last job.

use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long an idle thread polls for the next job before sleeping.
const SPIN: Duration = Duration::from_micros(50);

pub(super) struct Queue<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
    /// Mirror of `state.items.len()`, read by the spinning thread without the lock.
    queued: AtomicUsize,
}

struct State<T> {
    items: VecDeque<T>,
    spinning: usize,
    closed: bool,
}

impl<T> Queue<T> {
    pub(super) fn new() -> Self {
        Self {
            state: Mutex::new(State {
                items: VecDeque::new(),
                spinning: 0,
                closed: false,
            }),
            ready: Condvar::new(),
            queued: AtomicUsize::new(0),
        }
    }

    /// Enqueue; `Err(item)` once closed.
    pub(super) fn push(&self, item: T) -> Result<(), T> {
        let mut s = self.state.lock();
        if s.closed {
            return Err(item);
        }
        s.items.push_back(item);
        self.queued.fetch_add(1, Ordering::Release);
        // A spinning thread will see it; otherwise wake a sleeper.
        if s.spinning == 0 {
            self.ready.notify_one();
        }
        Ok(())
    }

    /// Wake every thread; `pop` returns `None` once the queue is drained.
    pub(super) fn close(&self) {
        self.state.lock().closed = true;
        self.ready.notify_all();
    }

    /// Block until an item is available (`None` when closed and drained).
    pub(super) fn pop(&self) -> Option<T> {
        let mut spun = false;
        let mut s = self.state.lock();
        loop {
            if let Some(item) = s.items.pop_front() {
                self.queued.fetch_sub(1, Ordering::Release);
                // Hand over: if more work is waiting and nobody spins, wake a peer.
                if !s.items.is_empty() && s.spinning == 0 {
                    self.ready.notify_one();
                }
                return Some(item);
            }
            if s.closed {
                return None;
            }
            if !spun && s.spinning == 0 {
                spun = true;
                s.spinning += 1;
                drop(s);
                let until = Instant::now() + SPIN;
                while self.queued.load(Ordering::Acquire) == 0 && Instant::now() < until {
                    for _ in 0..64 {
                        std::hint::spin_loop();
                    }
                }
                s = self.state.lock();
                s.spinning -= 1;
                continue;
            }
            self.ready.wait(&mut s);
            spun = false;
        }
    }
}

//! `fanout` (`flow-ir.md` §6.7, §7.2, §7.3, project decision 5).
//!
//! Branch bodies run concurrently inside the evaluating task, driven by
//! [`Join`]: a hand-written join future that polls only the branches that were
//! woken (each branch has its own [`Waker`]), in ascending item order, and applies
//! the join decision right after each branch completes. When the decision is made
//! the remaining branch futures are dropped, which drops (cancels) their
//! in-flight dispatch futures.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use futures::future::BoxFuture;
use futures::task::AtomicWaker;
use serde_json::{json, Value};

use crate::error::FlowError;
use crate::eval::Evaluator;
use crate::expr::eval;
use crate::ir::{Expr, JoinMode, Node};
use crate::path::{is_root_write, write_path, write_target};
use crate::value::debug;

type BranchFuture<'a> = BoxFuture<'a, Result<Value, FlowError>>;

impl Evaluator<'_> {
    /// Run a fanout node; `depth` is the number of enclosing fanouts.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn fanout(
        &self,
        items: &Expr,
        bind: &Expr,
        body: &Node,
        join: JoinMode,
        out: &Expr,
        ctx: &mut Value,
        depth: usize,
    ) -> Result<(), FlowError> {
        if depth >= self.limits.max_fanout_depth {
            return Err(FlowError::Limit(format!(
                "fanout nested {} deep exceeds the configured maximum fanout depth of {}",
                depth + 1,
                self.limits.max_fanout_depth
            )));
        }
        // 1. items must be an array.
        let items = eval(items, ctx)?;
        let Value::Array(list) = items.as_ref() else {
            return Err(FlowError::internal(
                "fanout.items",
                format!("expected array, got {}", debug(&items)),
            ));
        };
        if list.len() > self.limits.max_fanout_width {
            return Err(FlowError::Limit(format!(
                "fanout over {} items exceeds the configured maximum fanout width of {}",
                list.len(),
                self.limits.max_fanout_width
            )));
        }
        // 2. Build every branch-local ctx before any body starts.
        let bind = bind.as_path().ok_or_else(FlowError::non_path_bind)?;
        let item_is_ctx = is_root_write(bind);
        let mut branch_ctxs = Vec::with_capacity(list.len());
        for item in list {
            let mut branch = if item_is_ctx {
                Value::Null
            } else {
                ctx.clone()
            };
            write_path(&mut branch, bind, item.clone())?;
            branch_ctxs.push(branch);
        }
        drop(items);
        // 3. Run the bodies concurrently and join.
        let joined = if branch_ctxs.is_empty() {
            Value::Array(Vec::new())
        } else {
            let branches = branch_ctxs
                .into_iter()
                .map(|mut branch| -> BranchFuture<'_> {
                    Box::pin(async move {
                        self.run(body, &mut branch, depth + 1).await?;
                        Ok(branch)
                    })
                })
                .collect();
            Join::new(join, branches).await?
        };
        // 4. Only now check `out`, then write into the parent ctx.
        write_target(ctx, out, joined)
    }
}

/// State shared between the join future and its per-branch wakers.
struct Shared {
    /// Indices of branches woken since the last round.
    queue: Mutex<Vec<usize>>,
    /// `queued[i]`: branch `i` is already in `queue` (avoids duplicates).
    queued: Box<[AtomicBool]>,
    /// The waker of the task polling the join.
    parent: AtomicWaker,
}

/// The waker handed to one branch: marks it ready and wakes the parent task.
struct BranchWaker {
    index: usize,
    shared: Arc<Shared>,
}

impl Wake for BranchWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.shared.queued[self.index].swap(true, Ordering::AcqRel) {
            lock(&self.shared.queue).push(self.index);
        }
        self.shared.parent.wake();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Join future over the branch futures of one fanout.
///
/// Each round polls the woken branches in ascending item order (initially all of
/// them, so every branch starts on the first poll, lowest index first). After each
/// completion the join decision is applied immediately, so a completion at a lower
/// index in the same round wins, and with dispatches that never suspend the result
/// equals sequential evaluation in item order (§7.2 degenerate case).
struct Join<'a> {
    mode: JoinMode,
    /// `None` once finished (or after the join decided and dropped it).
    branches: Vec<Option<BranchFuture<'a>>>,
    wakers: Vec<Waker>,
    shared: Arc<Shared>,
    /// Per-item results for `all` / `all_settled`.
    results: Vec<Value>,
    /// Branches not finished yet.
    pending: usize,
    /// Reused buffer for the indices polled in one round.
    round: Vec<usize>,
}

impl<'a> Join<'a> {
    fn new(mode: JoinMode, branches: Vec<BranchFuture<'a>>) -> Self {
        let n = branches.len();
        let shared = Arc::new(Shared {
            queue: Mutex::new((0..n).collect()),
            queued: (0..n).map(|_| AtomicBool::new(true)).collect(),
            parent: AtomicWaker::new(),
        });
        let wakers = (0..n)
            .map(|index| {
                Waker::from(Arc::new(BranchWaker {
                    index,
                    shared: Arc::clone(&shared),
                }))
            })
            .collect();
        let keeps_results = matches!(mode, JoinMode::All | JoinMode::AllSettled);
        Join {
            mode,
            branches: branches.into_iter().map(Some).collect(),
            wakers,
            shared,
            results: if keeps_results {
                vec![Value::Null; n]
            } else {
                Vec::new()
            },
            pending: n,
            round: Vec::with_capacity(n),
        }
    }

    /// Record branch `index`'s outcome; `Some` when the join has decided.
    fn settle(
        &mut self,
        index: usize,
        outcome: Result<Value, FlowError>,
    ) -> Option<Result<Value, FlowError>> {
        self.pending -= 1;
        let done = self.pending == 0;
        match self.mode {
            JoinMode::All => match outcome {
                Ok(v) => {
                    self.results[index] = v;
                    done.then(|| Ok(Value::Array(std::mem::take(&mut self.results))))
                }
                Err(e) => Some(Err(e)),
            },
            // The failure that leaves nothing pending is the one that failed last.
            JoinMode::Any => match outcome {
                Ok(v) => Some(Ok(v)),
                Err(e) => done.then_some(Err(e)),
            },
            JoinMode::Race => Some(outcome),
            JoinMode::AllSettled => {
                self.results[index] = match outcome {
                    Ok(v) => json!({"status": "fulfilled", "value": v}),
                    Err(e) => json!({"status": "rejected", "reason": e.to_string()}),
                };
                done.then(|| Ok(Value::Array(std::mem::take(&mut self.results))))
            }
        }
    }
}

impl Future for Join<'_> {
    type Output = Result<Value, FlowError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        // Register before draining the queue so no wake-up is lost.
        this.shared.parent.register(cx.waker());
        debug_assert!(this.round.is_empty());
        std::mem::swap(&mut *lock(&this.shared.queue), &mut this.round);
        this.round.sort_unstable();
        for i in 0..this.round.len() {
            let index = this.round[i];
            // Cleared before polling: a wake during the poll queues it for next round.
            this.shared.queued[index].store(false, Ordering::Release);
            let Some(branch) = this.branches[index].as_mut() else {
                continue; // stale wake of a finished branch
            };
            let mut bcx = Context::from_waker(&this.wakers[index]);
            if let Poll::Ready(outcome) = branch.as_mut().poll(&mut bcx) {
                this.branches[index] = None;
                if let Some(decision) = this.settle(index, outcome) {
                    // Abandon the rest: dropping cancels their in-flight dispatches.
                    this.branches.clear();
                    this.round.clear();
                    return Poll::Ready(decision);
                }
            }
        }
        this.round.clear();
        Poll::Pending
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use futures::channel::oneshot;
    use futures::task::noop_waker;
    use futures::FutureExt;
    use std::sync::atomic::AtomicUsize;

    /// Branches completed by hand through oneshot channels; counts branch polls.
    fn manual(
        n: usize,
        polls: &Arc<AtomicUsize>,
    ) -> (
        Vec<oneshot::Sender<Result<Value, FlowError>>>,
        Vec<BranchFuture<'static>>,
    ) {
        let mut senders = Vec::new();
        let mut branches = Vec::new();
        for _ in 0..n {
            let (tx, mut rx) = oneshot::channel::<Result<Value, FlowError>>();
            let polls = Arc::clone(polls);
            senders.push(tx);
            branches.push(
                futures::future::poll_fn(move |cx| {
                    polls.fetch_add(1, Ordering::SeqCst);
                    rx.poll_unpin(cx).map(|r| r.expect("sender kept"))
                })
                .boxed(),
            );
        }
        (senders, branches)
    }

    fn poll_once(join: &mut Join<'_>) -> Poll<Result<Value, FlowError>> {
        let waker = noop_waker();
        Pin::new(join).poll(&mut Context::from_waker(&waker))
    }

    fn fail(i: u32) -> Result<Value, FlowError> {
        Err(FlowError::Limit(format!("f{i}")))
    }

    #[test]
    fn same_round_completions_lowest_index_wins() {
        let polls = Arc::new(AtomicUsize::new(0));
        let (tx, branches) = manual(4, &polls);
        let mut join = Join::new(JoinMode::Race, branches);
        assert!(poll_once(&mut join).is_pending());
        let mut tx = tx.into_iter().map(Some).collect::<Vec<_>>();
        // Index 3 completes first in wall time, then index 1: same round.
        tx[3].take().unwrap().send(Ok(json!(3))).unwrap();
        tx[1].take().unwrap().send(Ok(json!(1))).unwrap();
        assert_eq!(poll_once(&mut join), Poll::Ready(Ok(json!(1))));
        assert!(join.branches.is_empty(), "losers dropped");
    }

    #[test]
    fn rounds_poll_only_woken_branches() {
        let polls = Arc::new(AtomicUsize::new(0));
        let (tx, branches) = manual(50, &polls);
        let mut join = Join::new(JoinMode::All, branches);
        assert!(poll_once(&mut join).is_pending());
        assert_eq!(
            polls.load(Ordering::SeqCst),
            50,
            "first round starts every branch"
        );
        for (i, t) in tx.into_iter().enumerate() {
            t.send(Ok(json!(i))).unwrap();
            let before = polls.load(Ordering::SeqCst);
            let r = poll_once(&mut join);
            assert_eq!(
                polls.load(Ordering::SeqCst) - before,
                1,
                "only branch {i} polled"
            );
            if i < 49 {
                assert!(r.is_pending());
            } else {
                let Poll::Ready(Ok(Value::Array(v))) = r else {
                    panic!("{r:?}")
                };
                assert_eq!(v, (0..50).map(|i| json!(i)).collect::<Vec<_>>());
            }
        }
        // no wake, no poll
        assert_eq!(polls.load(Ordering::SeqCst), 100);
    }

    #[test]
    fn any_reports_last_failure_and_all_settled_keeps_order() {
        let polls = Arc::new(AtomicUsize::new(0));
        let (tx, branches) = manual(3, &polls);
        let mut join = Join::new(JoinMode::Any, branches);
        assert!(poll_once(&mut join).is_pending());
        let mut tx = tx.into_iter().map(Some).collect::<Vec<_>>();
        for i in [2usize, 0, 1] {
            tx[i].take().unwrap().send(fail(i as u32)).unwrap();
            let r = poll_once(&mut join);
            if i == 1 {
                assert_eq!(r, Poll::Ready(fail(1)));
            } else {
                assert!(r.is_pending());
            }
        }

        let (tx, branches) = manual(2, &polls);
        let mut join = Join::new(JoinMode::AllSettled, branches);
        assert!(poll_once(&mut join).is_pending());
        let mut tx = tx.into_iter().map(Some).collect::<Vec<_>>();
        tx[1].take().unwrap().send(Ok(json!("b"))).unwrap();
        assert!(poll_once(&mut join).is_pending());
        tx[0].take().unwrap().send(fail(0)).unwrap();
        assert_eq!(
            poll_once(&mut join),
            Poll::Ready(Ok(json!([
                {"status": "rejected", "reason": "limit exceeded: f0"},
                {"status": "fulfilled", "value": "b"}
            ])))
        );
    }

    #[test]
    fn self_wake_during_poll_is_repolled_next_round() {
        let mut first = true;
        let branch = futures::future::poll_fn(move |cx| {
            if first {
                first = false;
                cx.waker().wake_by_ref();
                Poll::Pending
            } else {
                Poll::Ready(Ok(json!("done")))
            }
        })
        .boxed();
        let mut join = Join::new(JoinMode::All, vec![branch]);
        assert!(poll_once(&mut join).is_pending());
        assert_eq!(poll_once(&mut join), Poll::Ready(Ok(json!(["done"]))));
    }
}

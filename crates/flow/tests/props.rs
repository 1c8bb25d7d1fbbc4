//! Property tests: path write/read round trip, writes never fail for `$` paths,
//! generated flows round-trip through serde and never make the evaluator panic.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::executor::block_on;
use mse_flow::{evaluate, read_path, write_path, Dispatcher, Expr, JoinMode, Limits, Node};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

// ------------------------------------------------------------------ values

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        "[a-z]{0,4}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-c]{1,2}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn clean_path() -> impl Strategy<Value = String> {
    (
        prop::collection::vec("[a-z0-9_]{1,4}", 0..5),
        prop_oneof![Just("$."), Just("$")],
    )
        .prop_map(|(segs, prefix)| {
            if segs.is_empty() {
                prefix.to_owned()
            } else {
                format!("{prefix}{}", segs.join("."))
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn write_then_read_returns_written_value(ctx in json_value(), path in clean_path(), v in json_value()) {
        let mut ctx = ctx;
        write_path(&mut ctx, &path, v.clone()).unwrap();
        prop_assert_eq!(read_path(&ctx, &path).unwrap(), &v);
    }

    #[test]
    fn write_never_fails_for_dollar_paths(ctx in json_value(), rest in "[a-c.]{0,8}", v in json_value()) {
        let mut ctx = ctx;
        let path = format!("${rest}");
        prop_assert!(write_path(&mut ctx, &path, v).is_ok());
    }

    #[test]
    fn write_leaves_siblings_alone(
        a in json_value(), b in json_value(), path in "[a-z]{1,3}(\\.[a-z]{1,3}){0,2}"
    ) {
        let mut ctx = json!({"sibling": a.clone()});
        write_path(&mut ctx, &format!("$.t.{path}"), b).unwrap();
        prop_assert_eq!(&ctx["sibling"], &a);
    }
}

// ------------------------------------------------------------------ flows

fn any_path() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("$".to_owned()),
        Just("$.a".to_owned()),
        Just("$.b".to_owned()),
        Just("$.a.b".to_owned()),
        Just("$.n".to_owned()),
        Just("$.items".to_owned()),
        Just("$.a..b".to_owned()),
        Just("x".to_owned()),
    ]
}

fn expr() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        any_path().prop_map(|at| Expr::Path { at }),
        json_value().prop_map(|value| Expr::Lit { value }),
        any_path().prop_map(|at| Expr::Exists { at }),
    ];
    leaf.prop_recursive(3, 16, 3, |inner| {
        let b = || inner.clone().prop_map(Box::new);
        prop_oneof![
            (b(), b()).prop_map(|(lhs, rhs)| Expr::Eq { lhs, rhs }),
            (b(), b()).prop_map(|(lhs, rhs)| Expr::Ne { lhs, rhs }),
            (b(), b()).prop_map(|(lhs, rhs)| Expr::Lt { lhs, rhs }),
            (b(), b()).prop_map(|(lhs, rhs)| Expr::Le { lhs, rhs }),
            (b(), b()).prop_map(|(lhs, rhs)| Expr::Gt { lhs, rhs }),
            (b(), b()).prop_map(|(lhs, rhs)| Expr::Ge { lhs, rhs }),
            (b(), b()).prop_map(|(lhs, rhs)| Expr::Add { lhs, rhs }),
            (b(), b()).prop_map(|(lhs, rhs)| Expr::Sub { lhs, rhs }),
            (b(), b()).prop_map(|(lhs, rhs)| Expr::Mul { lhs, rhs }),
            (b(), b()).prop_map(|(lhs, rhs)| Expr::Div { lhs, rhs }),
            (b(), b()).prop_map(|(needle, haystack)| Expr::In { needle, haystack }),
            b().prop_map(|operand| Expr::Not { operand }),
            b().prop_map(|of| Expr::Len { of }),
            prop::collection::vec(inner.clone(), 0..3).prop_map(|operands| Expr::And { operands }),
            prop::collection::vec(inner.clone(), 0..3).prop_map(|operands| Expr::Or { operands }),
        ]
    })
}

/// Mostly valid write targets, sometimes not a path.
fn target() -> impl Strategy<Value = Expr> {
    prop_oneof![
        4 => any_path().prop_map(|at| Expr::Path { at }),
        1 => expr(),
    ]
}

fn join() -> impl Strategy<Value = JoinMode> {
    prop_oneof![
        Just(JoinMode::All),
        Just(JoinMode::Any),
        Just(JoinMode::Race),
        Just(JoinMode::AllSettled),
    ]
}

fn items() -> impl Strategy<Value = Expr> {
    prop_oneof![
        3 => prop::collection::vec(json_value(), 0..4).prop_map(|v| Expr::Lit { value: Value::Array(v) }),
        1 => expr(),
    ]
}

fn node() -> impl Strategy<Value = Node> {
    let leaf = prop_oneof![
        (
            prop_oneof![Just("ok"), Just("fail"), Just("yield")],
            expr(),
            target()
        )
            .prop_map(|(r, input, out)| Node::Step {
                step_ref: r.to_owned(),
                input,
                out
            }),
        (target(), expr()).prop_map(|(at, value)| Node::Assign { at, value }),
        Just(Node::Seq { children: vec![] }),
    ];
    leaf.prop_recursive(3, 24, 3, |inner| {
        let b = || inner.clone().prop_map(Box::new);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|children| Node::Seq { children }),
            (expr(), b(), b()).prop_map(|(cond, then, otherwise)| Node::Branch {
                cond,
                then,
                otherwise
            }),
            (target(), expr(), b(), 0u32..4).prop_map(|(counter, cond, body, max)| Node::Loop {
                counter,
                cond,
                body,
                max
            }),
            (items(), target(), b(), join(), target()).prop_map(
                |(items, bind, body, join, out)| {
                    Node::Fanout {
                        items,
                        bind,
                        body,
                        join,
                        out,
                    }
                }
            ),
            (b(), b(), prop::option::of(target())).prop_map(|(body, catch, err_at)| Node::Try {
                body,
                catch,
                err_at
            }),
        ]
    })
}

/// Returns once after waking itself (a suspension point that is immediately ready).
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

struct Deterministic;

#[async_trait::async_trait]
impl Dispatcher for Deterministic {
    async fn dispatch(&self, step_ref: &str, input: Value) -> Result<Value, String> {
        match step_ref {
            "ok" => Ok(input),
            "yield" => {
                YieldOnce(false).await;
                Ok(json!({"y": input}))
            }
            _ => Err(format!("failed on {input}")),
        }
    }
}

fn small_ctx() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => (json_value(), json_value(), prop::collection::vec(json_value(), 0..3)).prop_map(
            |(a, n, items)| json!({"a": a, "n": n, "items": items})
        ),
        1 => json_value(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn generated_flows_round_trip(n in node()) {
        let v = serde_json::to_value(&n).unwrap();
        let back: Node = serde_json::from_value(v.clone()).unwrap();
        prop_assert_eq!(&back, &n);
        let text = serde_json::to_string(&n).unwrap();
        let back: Node = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(back, n);
    }

    #[test]
    fn evaluation_never_panics(n in node(), ctx in small_ctx()) {
        let limits = Limits { max_fanout_width: 8, max_loop_iterations: 50, max_fanout_depth: 3 };
        let r = block_on(evaluate(&n, ctx, &Deterministic, &limits));
        // Errors are fine; displaying them must work too.
        if let Err(e) = r {
            prop_assert!(!e.to_string().is_empty());
        }
    }
}

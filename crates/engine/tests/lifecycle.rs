//! Task lifecycle, dispatch outcomes, polling, senior escalation, reclamation.

mod common;
use common::*;
use mse_engine::*;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn dispatch_pass_and_blocked() {
    let e = engine();
    let att = operator(&e);
    let t = e.start_task(&att.token, spec("a", "hello")).unwrap();
    assert_eq!(e.task_snapshot(&t).unwrap().status, TaskStatus::Pending);
    let out = e
        .dispatch_attempt(&att.token, &t, &Fixed(json!({"v": 1}), true))
        .await
        .unwrap();
    assert_eq!(out, DispatchOutcome::Pass(json!({"v": 1})));
    let s = e.task_snapshot(&t).unwrap();
    assert_eq!(
        (s.status, s.attempt, s.last_result),
        (TaskStatus::Pass, 1, Some(json!({"v": 1})))
    );

    let t2 = e.start_task(&att.token, spec("a", "x")).unwrap();
    let out = e
        .dispatch_attempt(&att.token, &t2, &Fixed(json!("no"), false))
        .await
        .unwrap();
    assert_eq!(out, DispatchOutcome::Blocked(json!("no")));
    assert_eq!(e.task_snapshot(&t2).unwrap().status, TaskStatus::Blocked);
}

#[tokio::test]
async fn terminal_tasks_cannot_be_dispatched_again() {
    let e = engine();
    let att = operator(&e);
    let t = e.start_task(&att.token, spec("a", "x")).unwrap();
    e.dispatch_attempt(&att.token, &t, &Fixed(json!(1), true))
        .await
        .unwrap();
    let again = e
        .dispatch_attempt(&att.token, &t, &Fixed(json!(2), true))
        .await;
    assert!(matches!(again, Err(EngineError::InvalidTransition(_))));
    assert_eq!(e.task_snapshot(&t).unwrap().last_result, Some(json!(1)));
}

#[tokio::test]
async fn worker_error_blocks_task_and_wakes_pollers() {
    let e = engine();
    let att = operator(&e);
    let t = e.start_task(&att.token, spec("a", "x")).unwrap();
    let e2 = e.clone();
    let tok = att.token.clone();
    let t2 = t.clone();
    let poller =
        tokio::spawn(async move { e2.poll_task(&tok, &t2, Duration::from_secs(10)).await });
    tokio::task::yield_now().await;
    let err = e
        .dispatch_attempt(&att.token, &t, &Failing("boom"))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "dispatch failed: worker fn returned error: boom"
    );
    assert_eq!(e.task_snapshot(&t).unwrap().status, TaskStatus::Blocked);
    // The poller woke (running or blocked), it did not time out.
    let polled = tokio::time::timeout(Duration::from_secs(2), poller)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(
        polled.status,
        TaskStatus::Running | TaskStatus::Blocked
    ));
    // A settled task answers a poll at once.
    let s = e
        .poll_task(&att.token, &t, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(s.status, TaskStatus::Blocked);
}

#[tokio::test]
async fn no_final_is_an_error() {
    struct Silent;
    #[async_trait::async_trait]
    impl Spawner for Silent {
        async fn spawn(&self, _: &SpawnCtx) -> Result<(), SpawnError> {
            Ok(())
        }
    }
    let e = engine();
    let att = operator(&e);
    let t = e.start_task(&att.token, spec("a", "x")).unwrap();
    let err = e
        .dispatch_attempt(&att.token, &t, &Silent)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "dispatch failed: no Final in output_tail");
}

#[tokio::test]
async fn last_final_wins_and_file_refs_map() {
    struct Many;
    #[async_trait::async_trait]
    impl Spawner for Many {
        async fn spawn(&self, ctx: &SpawnCtx) -> Result<(), SpawnError> {
            ctx.emit(OutputEvent::Progress {
                stage: "s".into(),
                note: None,
            });
            ctx.finish(json!(1), false);
            ctx.emit(OutputEvent::Final {
                content: ContentRef::FileRef {
                    path: "/tmp/x".into(),
                    mime: None,
                    size_hint: Some(3),
                },
                ok: true,
            });
            Ok(())
        }
    }
    let e = engine();
    let att = operator(&e);
    let t = e.start_task(&att.token, spec("a", "x")).unwrap();
    let out = e.dispatch_attempt(&att.token, &t, &Many).await.unwrap();
    assert_eq!(
        out,
        DispatchOutcome::Pass(json!({"file_ref": "/tmp/x", "mime": null, "size_hint": 3}))
    );
    assert_eq!(e.output_tail(&t, 1).len(), 3);
}

#[tokio::test]
async fn cancel_stops_a_running_worker() {
    let e = engine();
    let att = operator(&e);
    let t = e.start_task(&att.token, spec("a", "x")).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let parked = Parked {
        ctx_tx: tx,
        release: Arc::new(tokio::sync::Notify::new()),
    };
    let e2 = e.clone();
    let tok = att.token.clone();
    let t2 = t.clone();
    let run = tokio::spawn(async move { e2.dispatch_attempt(&tok, &t2, &parked).await });
    rx.recv().await.unwrap();
    let s = e.cancel_task(&att.token, &t).unwrap();
    assert_eq!(s.status, TaskStatus::Cancelled);
    let r = tokio::time::timeout(Duration::from_secs(2), run)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.unwrap_err().to_string(), "dispatch failed: cancelled");
    assert_eq!(e.task_snapshot(&t).unwrap().status, TaskStatus::Cancelled);
    assert!(matches!(
        e.cancel_task(&att.token, &t),
        Err(EngineError::InvalidTransition(_))
    ));
}

#[tokio::test]
async fn dropping_the_dispatch_cancels_the_task() {
    let e = engine();
    let att = operator(&e);
    let t = e.start_task(&att.token, spec("a", "x")).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let parked = Parked {
        ctx_tx: tx,
        release: Arc::new(tokio::sync::Notify::new()),
    };
    let fut = e.dispatch_attempt(&att.token, &t, &parked);
    tokio::select! {
        _ = fut => panic!("parked spawner finished"),
        c = rx.recv() => { c.unwrap(); }
    }
    assert_eq!(e.task_snapshot(&t).unwrap().status, TaskStatus::Cancelled);
}

#[tokio::test]
async fn spawn_depth_is_limited() {
    let e = Engine::new(EngineConfig {
        max_spawn_depth: 2,
        ..Default::default()
    });
    let att = operator(&e);
    let root = e.start_task(&att.token, spec("root", "x")).unwrap();
    assert_eq!(e.task_snapshot(&root).unwrap().spawn_depth, 0);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let release = Arc::new(tokio::sync::Notify::new());
    let parked = Parked {
        ctx_tx: tx,
        release: release.clone(),
    };
    let e2 = e.clone();
    let tok = att.token.clone();
    let r2 = root.clone();
    let run = tokio::spawn(async move { e2.dispatch_attempt(&tok, &r2, &parked).await });
    let ctx = rx.recv().await.unwrap();
    // The root's worker starts a child at depth 1 and may dispatch it.
    let child = e.start_task(&ctx.worker_token, spec("child", "y")).unwrap();
    assert_eq!(e.task_snapshot(&child).unwrap().spawn_depth, 1);
    let out = e
        .dispatch_attempt(&ctx.worker_token, &child, &Fixed(json!("c"), true))
        .await
        .unwrap();
    assert_eq!(out, DispatchOutcome::Pass(json!("c")));
    release.notify_one();
    run.await.unwrap().unwrap();
    // A child of the child would be at depth 2 == max.
    let t = e.start_task(&att.token, spec("x", "y")).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let parked = Parked {
        ctx_tx: tx,
        release: release.clone(),
    };
    let e2 = e.clone();
    let tok = att.token.clone();
    let run = tokio::spawn(async move { e2.dispatch_attempt(&tok, &t, &parked).await });
    let ctx = rx.recv().await.unwrap();
    let child = e.start_task(&ctx.worker_token, spec("c", "")).unwrap();
    struct StartGrandchild;
    #[async_trait::async_trait]
    impl Spawner for StartGrandchild {
        async fn spawn(&self, ctx: &SpawnCtx) -> Result<(), SpawnError> {
            let r = ctx.engine.start_task(&ctx.worker_token, spec("g", ""));
            ctx.finish(json!(r.err().map(|e| e.to_string())), true);
            Ok(())
        }
    }
    let out = e
        .dispatch_attempt(&ctx.worker_token, &child, &StartGrandchild)
        .await
        .unwrap();
    assert_eq!(
        out,
        DispatchOutcome::Pass(json!("spawn depth exceeded: 2 >= max 2"))
    );
    release.notify_one();
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn senior_query_resume_await() {
    let e = engine();
    let att = operator(&e);
    let t = e.start_task(&att.token, spec("a", "x")).unwrap();
    let key = e.query_senior(&att.token, &t, json!({"q": 1})).unwrap();
    assert_eq!(key, format!("R-senior-{t}"));
    let s = e.task_snapshot(&t).unwrap();
    assert_eq!(
        (s.status, s.suspended_on.clone()),
        (TaskStatus::Suspended, Some(key.clone()))
    );
    assert_eq!(
        e.await_resume(&key, Duration::ZERO).await.err(),
        Some(EngineError::PollTimeout)
    );
    let e2 = e.clone();
    let k2 = key.clone();
    let waiter = tokio::spawn(async move { e2.await_resume(&k2, Duration::from_secs(5)).await });
    tokio::task::yield_now().await;
    // Only a senior token may answer.
    assert!(matches!(
        e.resume(&att.token, &key, json!("x")),
        Err(EngineError::RoleViolation { .. })
    ));
    let senior = e.attach(AttachRequest::new(
        "boss",
        Role::Senior,
        Duration::from_secs(60),
    ));
    e.resume(&senior.token, &key, json!("go")).unwrap();
    assert_eq!(waiter.await.unwrap().unwrap(), json!("go"));
    // Repeatable once answered.
    assert_eq!(
        e.await_resume(&key, Duration::ZERO).await.unwrap(),
        json!("go")
    );
    assert_eq!(e.task_snapshot(&t).unwrap().status, TaskStatus::Running);
    assert_eq!(
        e.resume_trusted("R-nope", json!(1)).err(),
        Some(EngineError::ResumeKeyNotFound)
    );
}

#[tokio::test]
async fn sessions_attach_detach_heartbeat() {
    let e = engine();
    let att = operator(&e);
    let s = e.session(&att.session_id).unwrap();
    assert!(s.attached);
    e.detach(&att.token).unwrap();
    assert!(!e.session(&att.session_id).unwrap().attached);
    e.heartbeat(&att.token).unwrap();
    assert!(e.session(&att.session_id).unwrap().attached);
    let t = e.start_task(&att.token, spec("a", "x")).unwrap();
    assert_eq!(e.session(&att.session_id).unwrap().owned_task_ids, [t]);
    let obs = e.attach(AttachRequest::new(
        "o",
        Role::Observer,
        Duration::from_secs(60),
    ));
    assert!(matches!(
        e.detach(&obs.token),
        Err(EngineError::RoleViolation { .. })
    ));
}

#[tokio::test]
async fn ended_tasks_and_sessions_are_reclaimed() {
    let e = Engine::new(EngineConfig {
        task_retention: Duration::ZERO,
        ..Default::default()
    });
    let att = e.attach(AttachRequest::new(
        "op",
        Role::Operator,
        Duration::from_secs(1),
    ));
    for _ in 0..50 {
        let t = e.start_task(&att.token, spec("a", "x")).unwrap();
        e.dispatch_attempt(&att.token, &t, &Fixed(json!(1), true))
            .await
            .unwrap();
    }
    assert_eq!(e.stats().tasks, 50);
    e.sweep();
    let s = e.stats();
    assert_eq!((s.tasks, s.handles, s.retained_terminal_tasks), (0, 0, 0));
    assert_eq!(s.tokens, 1, "only the session token is left");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    e.sweep();
    assert_eq!(e.stats(), EngineStats::default());
}

#[tokio::test]
async fn retained_task_cap_is_enforced() {
    let e = Engine::new(EngineConfig {
        max_retained_tasks: 10,
        ..Default::default()
    });
    let att = operator(&e);
    for _ in 0..25 {
        let t = e.start_task(&att.token, spec("a", "x")).unwrap();
        e.dispatch_attempt(&att.token, &t, &Fixed(json!(1), true))
            .await
            .unwrap();
    }
    e.sweep();
    assert_eq!(e.stats().tasks, 10);
}

#[tokio::test]
async fn handle_submit_only_for_the_running_attempt() {
    let e = engine();
    let att = operator(&e);
    let t = e.start_task(&att.token, spec("a", "do it")).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let release = Arc::new(tokio::sync::Notify::new());
    let parked = Parked {
        ctx_tx: tx,
        release: release.clone(),
    };
    let e2 = e.clone();
    let tok = att.token.clone();
    let t2 = t.clone();
    let run = tokio::spawn(async move { e2.dispatch_attempt(&tok, &t2, &parked).await });
    let ctx = rx.recv().await.unwrap();
    let target = e.resolve_handle(ctx.worker_handle.as_str()).unwrap();
    let payload = e.fetch_worker_payload_trusted(&target).unwrap();
    assert_eq!(
        (
            payload.prompt.as_str(),
            payload.agent.as_str(),
            payload.attempt
        ),
        ("do it", "a", 1)
    );
    e.submit_result_trusted(&target, json!("via handle"), true)
        .unwrap();
    release.notify_one();
    assert_eq!(
        run.await.unwrap().unwrap(),
        DispatchOutcome::Pass(json!("via handle"))
    );
    assert!(matches!(
        e.submit_result_trusted(&target, json!(1), true),
        Err(EngineError::StaleHandle(_))
    ));
}

#[tokio::test]
async fn events_are_recorded_and_broadcast() {
    let e = engine();
    let mut rx = e.subscribe();
    let att = operator(&e);
    let t = e.start_task(&att.token, spec("a", "x")).unwrap();
    e.dispatch_attempt(&att.token, &t, &Fixed(json!(1), true))
        .await
        .unwrap();
    let kinds: Vec<String> = e
        .event_tail()
        .iter()
        .map(|ev| {
            serde_json::to_value(ev).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "session_attached",
            "task_created",
            "worker_output",
            "task_attempt_completed",
            "task_pass"
        ]
    );
    let mut seen = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        seen.push(
            serde_json::to_value(&ev).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(
        seen,
        ["session_attached", "task_created", "task_attempt_completed"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_dispatches() {
    let e = Engine::new(EngineConfig {
        task_retention: Duration::ZERO,
        ..Default::default()
    });
    let att = operator(&e);
    let mut joins = Vec::new();
    for i in 0..1000 {
        let e = e.clone();
        let tok = att.token.clone();
        joins.push(tokio::spawn(async move {
            let t = e.start_task(&tok, spec("a", &i.to_string())).unwrap();
            e.dispatch_attempt(&tok, &t, &Fixed(json!(i), true))
                .await
                .unwrap()
        }));
    }
    for (i, j) in joins.into_iter().enumerate() {
        assert_eq!(j.await.unwrap(), DispatchOutcome::Pass(json!(i)));
    }
    e.sweep();
    assert_eq!(e.stats().tasks, 0);
}

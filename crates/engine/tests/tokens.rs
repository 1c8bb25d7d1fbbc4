//! Token verification through the engine: each rejection with the right error.

mod common;
use common::*;
use mse_engine::*;
use serde_json::json;
use std::time::Duration;

#[test]
fn forged_signature_is_rejected() {
    let e = engine();
    let att = operator(&e);
    let mut forged = (*att.token).clone();
    forged.sig_hex = "00".repeat(32);
    assert_eq!(
        e.verify(&forged, Verb::StartTask).err(),
        Some(EngineError::BadSignature)
    );
    // A token minted with another secret.
    let other = TokenSigner::new(b"other").mint(
        "x",
        Role::Operator,
        vec!["*".into()],
        60,
        None,
        now_unix(),
    );
    assert_eq!(
        e.verify(&other, Verb::StartTask).err(),
        Some(EngineError::BadSignature)
    );
}

#[test]
fn tampered_field_is_rejected() {
    let e = engine();
    let att = operator(&e);
    let mut t = (*att.token).clone();
    t.role = Role::Senior;
    assert_eq!(
        e.verify(&t, Verb::AnswerQuery).err(),
        Some(EngineError::BadSignature)
    );
    let mut t = (*att.token).clone();
    t.expire_at += 1000;
    assert_eq!(
        e.verify(&t, Verb::StartTask).err(),
        Some(EngineError::BadSignature)
    );
}

#[test]
fn expired_token_is_rejected_at_expire_at() {
    let e = engine();
    let att = e.attach(AttachRequest::new(
        "op",
        Role::Operator,
        Duration::from_secs(0),
    ));
    assert_eq!(
        e.verify(&att.token, Verb::StartTask).err(),
        Some(EngineError::TokenExpired)
    );
}

#[test]
fn wrong_role_is_rejected() {
    let e = engine();
    let obs = e.attach(AttachRequest::new(
        "o",
        Role::Observer,
        Duration::from_secs(60),
    ));
    assert_eq!(
        e.verify(&obs.token, Verb::CancelTask).err(),
        Some(EngineError::RoleViolation {
            role: Role::Observer,
            verb: Verb::CancelTask
        })
    );
    assert_eq!(
        EngineError::RoleViolation {
            role: Role::Observer,
            verb: Verb::CancelTask
        }
        .to_string(),
        "role violation: role=Observer verb=CancelTask"
    );
    // Operators cannot fetch prompts.
    let op = operator(&e);
    assert!(matches!(
        e.verify(&op.token, Verb::FetchPrompt),
        Err(EngineError::RoleViolation { .. })
    ));
}

#[test]
fn signed_but_unrecorded_token_is_not_found() {
    let e = Engine::new(EngineConfig {
        token_secret: Some(b"s3cret".to_vec()),
        ..Default::default()
    });
    let t = TokenSigner::new(b"s3cret").mint(
        "x",
        Role::Operator,
        vec!["*".into()],
        60,
        None,
        now_unix(),
    );
    assert!(matches!(
        e.verify(&t, Verb::StartTask),
        Err(EngineError::TokenNotFound(_))
    ));
}

#[tokio::test]
async fn worker_token_is_bound_to_its_task_and_attempt() {
    let e = engine();
    let att = operator(&e);
    let a = e.start_task(&att.token, spec("a", "x")).unwrap();
    let b = e.start_task(&att.token, spec("b", "y")).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let parked = Parked {
        ctx_tx: tx,
        release: release.clone(),
    };
    let e2 = e.clone();
    let tok = att.token.clone();
    let a2 = a.clone();
    let run = tokio::spawn(async move { e2.dispatch_attempt(&tok, &a2, &parked).await });
    let ctx = rx.recv().await.unwrap();
    let wt = ctx.worker_token.clone();
    // Own task: fine.
    assert_eq!(e.fetch_prompt(&wt, &a).unwrap(), "x");
    // Other task: mismatch.
    assert_eq!(
        e.read_task_state(&wt, &b).err(),
        Some(EngineError::TokenTaskMismatch {
            bound: a.clone(),
            arg: b.clone()
        })
    );
    // A worker may not dispatch a task it did not create.
    assert!(matches!(
        e.dispatch_attempt(&wt, &b, &Fixed(json!(1), true)).await,
        Err(EngineError::TokenTaskMismatch { .. })
    ));
    // An explicit other attempt is refused.
    assert!(matches!(
        e.post_result(&wt, &a, json!(1), true, Some(7)),
        Err(EngineError::StaleHandle(_))
    ));
    // The handle resolves to the task and attempt.
    let target = e.resolve_handle(ctx.worker_handle.as_str()).unwrap();
    assert_eq!((target.task_id.clone(), target.attempt), (a.clone(), 1));
    e.post_result(&wt, &a, json!({"r": 1}), true, None).unwrap();
    release.notify_one();
    let out = run.await.unwrap().unwrap();
    assert_eq!(out, DispatchOutcome::Pass(json!({"r": 1})));
    // After the task ended: token revoked, handle gone.
    assert_eq!(
        e.fetch_prompt(&wt, &a).err(),
        Some(EngineError::TokenRevoked)
    );
    assert!(matches!(
        e.resolve_handle(ctx.worker_handle.as_str()),
        Err(EngineError::TokenNotFound(_))
    ));
}

#[test]
fn limited_uses_are_exhausted() {
    let e = engine();
    let t = e.mint_token("cli", Role::Operator, 60, Some(2));
    e.verify(&t, Verb::StartTask).unwrap();
    e.verify(&t, Verb::ReadTaskState).unwrap();
    assert_eq!(
        e.verify(&t, Verb::StartTask).err(),
        Some(EngineError::TokenUsesExhausted)
    );
    // Session tokens are unlimited.
    let att = operator(&e);
    for _ in 0..100 {
        e.verify(&att.token, Verb::StartTask).unwrap();
    }
}

#[test]
fn end_session_revokes_its_token() {
    let e = engine();
    let att = operator(&e);
    assert!(e.end_session(&att.token.nonce));
    assert!(matches!(
        e.verify(&att.token, Verb::StartTask),
        Err(EngineError::TokenNotFound(_))
    ));
    assert_eq!(e.stats().sessions, 0);
}

#[tokio::test]
async fn tokens_from_an_earlier_process_with_the_same_secret_verify() {
    let secret = b"persisted-secret".to_vec();
    let before = TokenSigner::new(&secret).mint(
        "worker-of-T-00000000000000aa",
        Role::Worker,
        vec!["*".into()],
        600,
        None,
        now_unix() - 5,
    );
    let e = Engine::new(EngineConfig {
        token_secret: Some(secret.clone()),
        ..Default::default()
    });
    let tid = TaskId::from("T-00000000000000aa");
    // Signature, expiry and role pass; the task is gone after the restart.
    assert_eq!(
        e.fetch_prompt(&before, &tid).err(),
        Some(EngineError::TaskNotFound(tid.clone()))
    );
    // Bound to its task: another task is a mismatch.
    let other = TaskId::from("T-00000000000000bb");
    assert!(matches!(
        e.fetch_prompt(&before, &other),
        Err(EngineError::TokenTaskMismatch { .. })
    ));
    // Another secret: forged.
    let e2 = Engine::new(EngineConfig {
        token_secret: Some(b"different".to_vec()),
        ..Default::default()
    });
    assert_eq!(
        e2.fetch_prompt(&before, &tid).err(),
        Some(EngineError::BadSignature)
    );
    // Minted during this process but never recorded: unknown.
    let fresh = TokenSigner::new(&secret).mint(
        "x",
        Role::Operator,
        vec!["*".into()],
        600,
        None,
        now_unix() + 1,
    );
    assert!(matches!(
        e.verify(&fresh, Verb::StartTask),
        Err(EngineError::TokenNotFound(_))
    ));
}

//! Sessions and protocol without HTTP: frames go through `Connection::outgoing`
//! and `OperatorSession::handle_frame`, exactly as the WebSocket route moves them.

use mse_blueprint::{Blueprint, LaunchConfig, LaunchError, Launcher, RunRequest, SpawnerFactories};
use mse_engine::{Engine, EngineConfig};
use mse_operators::*;
use mse_workers::lua::LuaFactory;
use mse_workers::rust_fn::RustFnRegistry;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

fn setup(cfg: OperatorConfig) -> (Launcher, Arc<OperatorHub>) {
    let engine = Engine::new(EngineConfig::default());
    mse_engine::layers::builtin::register_defaults(engine.layers());
    let f = SpawnerFactories::standard(
        &engine,
        RustFnRegistry::default(),
        LuaFactory::default(),
        None,
    );
    let hub = OperatorHub::new(engine.clone(), cfg);
    (Launcher::new(engine, f, LaunchConfig::default()), hub)
}

fn quick() -> OperatorConfig {
    OperatorConfig {
        reply_timeout: Duration::from_secs(5),
        reconnect_grace: Duration::from_millis(400),
        ..Default::default()
    }
}

async fn next_frame(conn: &mut Connection) -> Value {
    match tokio::time::timeout(Duration::from_secs(5), conn.outgoing.recv()).await {
        Ok(Some(Outgoing::Frame(t))) => serde_json::from_str(&t).unwrap(),
        other => panic!("expected a frame, got {other:?}"),
    }
}

fn operator_bp(steps: usize) -> Arc<Blueprint> {
    let step = |i: usize| json!({"kind":"step","ref":"rev","in":{"op":"lit","value":{"n": i}},"out":{"op":"path","at":format!("$.r{i}")}});
    Arc::new(
        Blueprint::from_value(json!({"id":"ops","flow":{"kind":"seq","children":(0..steps).map(step).collect::<Vec<_>>()},
            "operators":[{"name":"main-ai"}],
            "agents":[{"name":"rev","kind":"operator","spec":{"operator_ref":"main-ai"},"profile":{"system_prompt":"Review {{ n }}"}}]}))
        .unwrap(),
    )
}

fn run(
    launcher: &Launcher,
    bp: Arc<Blueprint>,
) -> tokio::task::JoinHandle<Result<Value, LaunchError>> {
    let l = launcher.clone();
    tokio::spawn(async move {
        l.run(&bp, RunRequest::new(json!({}), Duration::from_secs(30)))
            .await
            .map(|o| o.final_ctx)
    })
}

#[test]
fn mint_claims_roles_all_or_nothing() {
    let (_, hub) = setup(quick());
    let a = hub.mint(vec!["r1".into()]).unwrap();
    assert!(a.sid.starts_with("op-") && a.sid.len() == 39);
    assert_eq!(a.token.len(), 32);
    assert_eq!(
        hub.mint(vec!["r2".into(), "r1".into()]),
        Err(MintError::Conflict(vec!["r1".into()]))
    );
    // r2 was not claimed by the failed mint.
    hub.mint(vec!["r2".into()]).unwrap();
    for bad in ["", "op-x", "a b", &"x".repeat(65)] {
        assert!(
            matches!(
                hub.mint(vec![bad.to_string()]),
                Err(MintError::InvalidRole(_))
            ),
            "{bad:?}"
        );
    }
    assert!(hub.delete(&a.sid));
    hub.mint(vec!["r1".into()]).unwrap();
}

#[test]
fn authenticate_checks_in_order() {
    let (_, hub) = setup(quick());
    let m = hub.mint(vec![]).unwrap();
    assert_eq!(
        hub.authenticate("op-nope", None).err(),
        Some(AuthError::Missing)
    );
    assert_eq!(
        hub.authenticate("op-nope", Some(" ")).err(),
        Some(AuthError::Missing)
    );
    assert_eq!(
        hub.authenticate("op-nope", Some(&m.token)).err(),
        Some(AuthError::UnknownSid)
    );
    assert_eq!(
        hub.authenticate(&m.sid, Some("wrong")).err(),
        Some(AuthError::Mismatch)
    );
    assert!(hub.authenticate(&m.sid, Some(&m.token)).is_ok());
}

#[tokio::test]
async fn spawns_reach_the_role_and_acks_complete_steps() {
    let (launcher, hub) = setup(quick());
    let m = hub.mint(vec!["main-ai".into()]).unwrap();
    let session = hub.get(&m.sid).unwrap();
    assert!(!hub.info(&session).connected);
    let mut conn = hub.connect(&session).unwrap();
    assert!(hub.info(&session).connected);
    let run = run(&launcher, operator_bp(2));
    for i in 0..2 {
        let spawn = next_frame(&mut conn).await;
        assert_eq!(spawn["type"], "spawn");
        assert_eq!(spawn["agent"], "rev");
        assert!(spawn["req_id"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}-spawn-", m.sid)));
        assert!(spawn["worker_handle"].as_str().unwrap().starts_with("wh-"));
        let d = spawn["directive"].as_str().unwrap();
        assert!(
            d.starts_with("[agent_primitive dispatch=@rev]") && d.contains("/v1/worker/prompt")
        );
        // The prompt and rendered system prompt are what the worker would fetch.
        let target = launcher
            .engine()
            .resolve_handle(spawn["worker_handle"].as_str().unwrap())
            .unwrap();
        let payload = launcher
            .engine()
            .fetch_worker_payload_trusted(&target)
            .unwrap();
        assert_eq!(
            payload.system.as_deref(),
            Some(format!("Review {i}").as_str())
        );
        let ack = json!({"type":"spawn_ack","req_id":spawn["req_id"],"value":{"done":i}});
        assert_eq!(session.handle_frame(&ack.to_string()), None);
    }
    let out = run.await.unwrap().unwrap();
    assert_eq!(out, json!({"r0":{"done":0},"r1":{"done":1}}));
}

#[tokio::test]
async fn spawn_ack_error_and_malformed_replies_fail_the_step() {
    let (launcher, hub) = setup(quick());
    let m = hub.mint(vec!["main-ai".into()]).unwrap();
    let session = hub.get(&m.sid).unwrap();
    let mut conn = hub.connect(&session).unwrap();
    let r = run(&launcher, operator_bp(1));
    let spawn = next_frame(&mut conn).await;
    session.handle_frame(
        &json!({"type":"spawn_ack","req_id":spawn["req_id"],"error":"model refused"}).to_string(),
    );
    let err = r.await.unwrap().unwrap_err().to_string();
    assert!(
        err.contains("model refused") && err.contains(&m.sid),
        "{err}"
    );

    let r = run(&launcher, operator_bp(1));
    let spawn = next_frame(&mut conn).await;
    // A reply of the wrong kind for a known request fails it instead of hanging.
    let back =
        session.handle_frame(&json!({"type":"hook_ack","req_id":spawn["req_id"]}).to_string());
    assert!(matches!(back, Some(ServerMsg::Error { .. })));
    let err = r.await.unwrap().unwrap_err().to_string();
    assert!(err.contains("malformed client message"), "{err}");
    // Garbage gets an error frame and nothing else happens.
    assert!(matches!(
        session.handle_frame("not json"),
        Some(ServerMsg::Error { req_id: None, .. })
    ));
    assert!(matches!(
        session.handle_frame(r#"{"type":"answer","req_id":"nope","value":1}"#),
        Some(ServerMsg::Error { .. })
    ));
}

#[tokio::test]
async fn reconnect_within_grace_completes_the_pending_spawn() {
    let (launcher, hub) = setup(quick());
    let m = hub.mint(vec!["main-ai".into()]).unwrap();
    let session = hub.get(&m.sid).unwrap();
    let mut conn = hub.connect(&session).unwrap();
    let r = run(&launcher, operator_bp(1));
    let spawn = next_frame(&mut conn).await;
    session.detach(conn.generation);
    assert!(!session.is_connected());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _conn2 = hub.connect(&session).unwrap();
    session.handle_frame(
        &json!({"type":"spawn_ack","req_id":spawn["req_id"],"value":"late but fine"}).to_string(),
    );
    assert_eq!(r.await.unwrap().unwrap(), json!({"r0":"late but fine"}));
}

#[tokio::test]
async fn disconnect_without_return_fails_within_the_grace() {
    let (launcher, hub) = setup(quick());
    let m = hub.mint(vec!["main-ai".into()]).unwrap();
    let session = hub.get(&m.sid).unwrap();
    let mut conn = hub.connect(&session).unwrap();
    let r = run(&launcher, operator_bp(1));
    next_frame(&mut conn).await;
    let t0 = std::time::Instant::now();
    session.detach(conn.generation);
    let err = r.await.unwrap().unwrap_err().to_string();
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert!(
        err.contains("did not reconnect") && err.contains(&m.sid) && err.contains("main-ai"),
        "{err}"
    );
    // New requests while disconnected fail at once.
    let err = run(&launcher, operator_bp(1))
        .await
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(err.contains("disconnected"), "{err}");
}

#[tokio::test]
async fn reply_timeout_bounds_every_wait() {
    let (launcher, hub) = setup(OperatorConfig {
        reply_timeout: Duration::from_millis(300),
        ..quick()
    });
    let m = hub.mint(vec!["main-ai".into()]).unwrap();
    let session = hub.get(&m.sid).unwrap();
    let _conn = hub.connect(&session).unwrap();
    let err = run(&launcher, operator_bp(1))
        .await
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(err.contains("did not answer spawn within 300ms"), "{err}");
    assert_eq!(session.pending_count(), 0);
}

#[tokio::test]
async fn delete_fails_pending_at_once_and_closes_the_socket() {
    let (launcher, hub) = setup(quick());
    let m = hub.mint(vec!["main-ai".into()]).unwrap();
    let session = hub.get(&m.sid).unwrap();
    let mut conn = hub.connect(&session).unwrap();
    let r = run(&launcher, operator_bp(1));
    next_frame(&mut conn).await;
    assert!(hub.delete(&m.sid));
    let err = r.await.unwrap().unwrap_err().to_string();
    assert!(err.contains("session deleted"), "{err}");
    assert_eq!(
        conn.outgoing.recv().await,
        Some(Outgoing::Close {
            code: 1000,
            reason: "session deleted".into()
        })
    );
    assert!(launcher
        .engine()
        .registries()
        .operator_backend("main-ai")
        .is_none());
    // The role is free again.
    hub.mint(vec!["main-ai".into()]).unwrap();
}

#[tokio::test]
async fn a_newer_socket_supersedes_without_breaking() {
    let (launcher, hub) = setup(quick());
    let m = hub.mint(vec!["main-ai".into()]).unwrap();
    let session = hub.get(&m.sid).unwrap();
    let mut old = hub.connect(&session).unwrap();
    let mut new = hub.connect(&session).unwrap();
    assert!(matches!(
        old.outgoing.recv().await,
        Some(Outgoing::Close { code: 4000, .. })
    ));
    // The old socket's late close must not detach the new one.
    session.detach(old.generation);
    assert!(session.is_connected());
    let r = run(&launcher, operator_bp(1));
    let spawn = next_frame(&mut new).await;
    session
        .handle_frame(&json!({"type":"spawn_ack","req_id":spawn["req_id"],"value":1}).to_string());
    assert_eq!(r.await.unwrap().unwrap(), json!({"r0":1}));
}

#[tokio::test]
async fn hooks_and_senior_escalation_over_the_session() {
    let (launcher, hub) = setup(quick());
    let m = hub.mint(vec![]).unwrap();
    let session = hub.get(&m.sid).unwrap();
    let mut conn = hub.connect(&session).unwrap();
    launcher.engine(); // registries were filled on connect
    let bp = Arc::new(
        Blueprint::from_value(json!({"id":"h","flow":{"kind":"step","ref":"w","in":{"op":"lit","value":"x"},"out":{"op":"path","at":"$.out"}},
            "spawner_hints":{"layers":["senior_escalation","main_ai"]},
            "agents":[{"name":"w","kind":"lua","spec":{"source":"return {ok=false, value='unsure'}"}}]}))
        .unwrap(),
    );
    let mut req = RunRequest::new(json!({}), Duration::from_secs(30));
    req.spawn_hook_id = Some(m.sid.clone());
    req.senior_bridge_id = Some(m.sid.clone());
    req.operator_kind = Some(mse_engine::OperatorKind::MainAi);
    let l = launcher.clone();
    let r = tokio::spawn(async move { l.run(&bp, req).await.map(|o| o.final_ctx) });
    let hb = next_frame(&mut conn).await;
    assert_eq!(hb["type"], "hook_before");
    session.handle_frame(&json!({"type":"hook_ack","req_id":hb["req_id"],"ok":true}).to_string());
    let ask = next_frame(&mut conn).await;
    assert_eq!(ask["type"], "ask");
    assert_eq!(
        ask["question"],
        json!({"reason":"worker reported ok=false","value":"unsure"})
    );
    session.handle_frame(
        &json!({"type":"answer","req_id":ask["req_id"],"value":"ship it"}).to_string(),
    );
    let ha = next_frame(&mut conn).await;
    assert_eq!(ha["type"], "hook_after");
    assert_eq!(
        ha["result"],
        json!({"original":"unsure","senior_answer":"ship it"})
    );
    assert_eq!(
        r.await.unwrap().unwrap(),
        json!({"out":{"original":"unsure","senior_answer":"ship it"}})
    );
}

#[tokio::test]
async fn idle_sessions_are_reaped_and_release_roles() {
    let (_, hub) = setup(OperatorConfig {
        idle_ttl: Duration::from_millis(100),
        ..quick()
    });
    let m = hub.mint(vec!["r".into()]).unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(hub.reap_idle(), 1);
    assert!(hub.get(&m.sid).is_none());
    hub.mint(vec!["r".into()]).unwrap();
}

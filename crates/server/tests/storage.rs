//! SQLite storage through the server: `/v1/doctor` reports the database, state
//! survives a restart on the same data dir, and a database that is corrupt,
//! read-only, locked or from a newer server gives a clear error (startup) or a 503
//! (request) instead of a panic.

mod common;

use common::*;
use mse_server::{bind, ServerConfig, ServerError, Storage, DATABASE_FILE};
use mse_store::{EnhanceLogEntry, EnhanceSetting};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A data directory removed on drop.
struct DataDir(PathBuf);

impl DataDir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "mse-storage-{tag}-{}-{}",
            std::process::id(),
            mse_engine::ids::random_hex(4)
        ));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    fn db(&self) -> PathBuf {
        self.0.join(DATABASE_FILE)
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sqlite_at(dir: &Path) -> impl FnOnce(&mut ServerConfig) + '_ {
    move |c| {
        c.data_dir = dir.to_path_buf();
        c.storage = Storage::Sqlite;
    }
}

fn bp(id: &str, label: &str, echo: &str) -> Value {
    json!({
        "id": id,
        "flow": {"kind": "step", "ref": "identity",
                 "in": {"op": "lit", "value": echo},
                 "out": {"op": "path", "at": "$.out"}},
        "agents": [{"name": "identity", "kind": "rust_fn", "spec": {"fn_id": "identity"}}],
        "metadata": {"version_label": label}
    })
}

async fn get_json(s: &TestServer, path: &str) -> Value {
    let r = s.client.get(s.url(path)).send().await.unwrap();
    assert_eq!(r.status(), 200, "GET {path}");
    r.json().await.unwrap()
}

fn log_entry(issue_id: &str) -> EnhanceLogEntry {
    EnhanceLogEntry {
        issue_id: issue_id.into(),
        blueprint_id: "main".into(),
        prev_hash: "ab".repeat(32),
        new_hash: String::new(),
        intent: "add a lint step".into(),
        rationale: "denied".into(),
        verdicts: vec![json!({"axis": "des", "status": "deny", "detail": "drift"})],
        status: "rejected".into(),
        reasons: vec!["des: drift".into()],
        ts_ms: 1,
    }
}

#[tokio::test]
async fn doctor_reports_the_database() {
    let dir = DataDir::new("doctor");
    let s = start_with(sqlite_at(&dir.0)).await;
    let d = get_json(&s, "/v1/doctor").await;
    assert_eq!(d["storage"], "sqlite");
    assert_eq!(d["blueprint_backend"], "sqlite");
    assert_eq!(
        d["stores"],
        json!({"blueprints": "sqlite", "outputs": "sqlite", "issues": "sqlite",
               "enhance_settings": "sqlite", "enhance_log": "sqlite"})
    );
    assert_eq!(d["database"]["path"], dir.db().display().to_string());
    assert!(d["database"]["size_bytes"].as_u64().unwrap() > 0);
    assert!(d["database"]["schema_version"].as_u64().unwrap() >= 1);
    assert_eq!(d["registered_blueprint_ids"], json!(["main"]));

    let m = start().await;
    let d = get_json(&m, "/v1/doctor").await;
    assert_eq!(d["storage"], "memory");
    assert_eq!(d["blueprint_backend"], "in_memory");
    assert_eq!(d["database"], Value::Null);
}

#[tokio::test]
async fn everything_survives_a_restart() {
    let dir = DataDir::new("restart");
    let mut s = start_with(sqlite_at(&dir.0)).await;
    let main_head = get_json(&s, "/v1/blueprints/main/head").await["version"].clone();

    let mut versions = Vec::new();
    for (label, echo) in [("1.0.0", "one"), ("1.1.0", "two"), ("2.0.0", "three")] {
        let r = s
            .post_json("/v1/blueprints/review", &bp("review", label, echo))
            .await;
        assert_eq!(r.status(), 201);
        versions.push(r.json::<Value>().await.unwrap()["version"].clone());
    }
    let r = s
        .post_json("/v1/blueprints/gone", &bp("gone", "0.1.0", "x"))
        .await;
    assert_eq!(r.status(), 201);
    let r = s
        .client
        .delete(s.url("/v1/blueprints/gone"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    // An output, emitted with a worker handle from a live run.
    let mut op = register_operator(&s.state, "ext");
    let run = spawn_run(&s, inline(operator_blueprint("ext")));
    let w = next_spawn(&mut op).await;
    let event = json!({"type": "artifact", "name": "report.md",
                       "content": {"kind": "inline", "value": "# Findings"}});
    let r = s
        .client
        .post(s.url("/v1/data/emit"))
        .bearer_auth(&w.handle)
        .json(
            &json!({"task_id": w.task_id, "attempt": 1, "producer_agent": "summarizer",
                      "event": event}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let out_id = r.json::<Value>().await.unwrap()["out_id"].clone();
    op.release.notify_one();
    assert_eq!(run.await.unwrap().0, 200);

    // Issues, settings and log entries (no routes yet: through the stores).
    let issue = s
        .state
        .issues()
        .create("main", "add a lint step")
        .await
        .unwrap();
    s.state
        .enhance_settings()
        .put(EnhanceSetting::new("default", "enhance-default", 600))
        .await
        .unwrap();
    assert!(s
        .state
        .enhance_log()
        .append(log_entry("h-logged"))
        .await
        .unwrap());

    let history = get_json(&s, "/v1/blueprints/review/history").await;
    s.stop().await.unwrap();
    drop(s);

    let s = start_with(sqlite_at(&dir.0)).await;
    assert_eq!(
        get_json(&s, "/v1/blueprints/main/head").await["version"],
        main_head,
        "the seed is not written again"
    );
    assert_eq!(
        get_json(&s, "/v1/blueprints/main/history").await["count"],
        1
    );
    assert_eq!(get_json(&s, "/v1/blueprints/review/history").await, history);
    let head = get_json(&s, "/v1/blueprints/review/head").await;
    assert_eq!(head["version"], versions[2]);
    assert_eq!(head["parents"], json!([versions[1]]));
    for v in &versions {
        let one = get_json(
            &s,
            &format!("/v1/blueprints/review/versions/{}", v.as_str().unwrap()),
        )
        .await;
        assert_eq!(&one["version"], v);
    }
    let r = s
        .client
        .get(s.url("/v1/blueprints/gone/head"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409, "still archived");
    let r = s
        .run_task(&json!({"blueprint": {"kind": "id", "id": "review",
            "version": {"kind": "semver_req", "req": "^1"}}, "init_ctx": {}}))
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["bound_version"], versions[1]);
    assert_eq!(v["final_ctx"]["out"]["echoed"], "two");

    let rec = get_json(&s, &format!("/v1/data/{}", out_id.as_str().unwrap())).await;
    assert_eq!(rec["event"], event);
    let rec = get_json(&s, "/v1/data/summarizer").await;
    assert_eq!(rec["id"], out_id);

    let got = s.state.issues().get(&issue.id).await.unwrap().unwrap();
    assert_eq!(got.intent, "add a lint step");
    let setting = s.state.enhance_settings().get("default").await.unwrap();
    assert_eq!(setting.unwrap().blueprint_id, "enhance-default");
    let entry = s.state.enhance_log().get("h-logged").await.unwrap();
    assert_eq!(entry, Some(log_entry("h-logged")));
}

async fn start_error(dir: &Path) -> String {
    let mut cfg = ServerConfig::ephemeral(dir.to_path_buf());
    cfg.storage = Storage::Sqlite;
    match bind(cfg).await {
        Ok(_) => panic!("the server started"),
        Err(e @ ServerError::Storage(_)) => {
            let m = e.to_string();
            eprintln!("startup error: {m}");
            assert!(!m.contains('\n'), "one line: {m}");
            m
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[tokio::test]
async fn a_corrupt_database_is_a_clear_startup_error() {
    let dir = DataDir::new("corrupt");
    std::fs::write(dir.db(), vec![0x42u8; 8192]).unwrap();
    let m = start_error(&dir.0).await;
    assert!(m.contains(&dir.db().display().to_string()), "{m}");
    assert!(m.contains("corrupt or not a database"), "{m}");
}

#[tokio::test]
async fn a_database_from_a_newer_server_is_refused() {
    let dir = DataDir::new("newer");
    {
        let s = start_with(sqlite_at(&dir.0)).await;
        drop(s);
    }
    let c = rusqlite::Connection::open(dir.db()).unwrap();
    c.execute_batch("PRAGMA user_version = 999").unwrap();
    drop(c);
    let m = start_error(&dir.0).await;
    assert!(m.contains("newer than this server"), "{m}");
}

/// Makes a file read-only for everyone, root included (`chattr +i` as root,
/// `chmod 0444` otherwise); undone on drop.
struct ReadOnly(PathBuf, bool);

impl ReadOnly {
    fn set(path: &Path) -> Option<Self> {
        let root = unsafe_geteuid_is_root();
        if root {
            let ok = std::process::Command::new("chattr")
                .arg("+i")
                .arg(path)
                .status()
                .is_ok_and(|s| s.success());
            ok.then(|| ReadOnly(path.to_path_buf(), true))
        } else {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444)).ok()?;
            Some(ReadOnly(path.to_path_buf(), false))
        }
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        if self.1 {
            let _ = std::process::Command::new("chattr")
                .arg("-i")
                .arg(&self.0)
                .status();
        } else {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o644));
        }
    }
}

fn unsafe_geteuid_is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[tokio::test]
async fn a_read_only_database_is_a_clear_startup_error() {
    let dir = DataDir::new("readonly");
    {
        let mut s = start_with(sqlite_at(&dir.0)).await;
        s.stop().await.unwrap();
    }
    let Some(_guard) = ReadOnly::set(&dir.db()) else {
        eprintln!("skipped: cannot make the database file read-only here");
        return;
    };
    let m = start_error(&dir.0).await;
    assert!(m.contains(&dir.db().display().to_string()), "{m}");
    assert!(m.contains("read-only"), "{m}");
}

#[tokio::test]
async fn a_locked_database_answers_503_then_recovers() {
    let dir = DataDir::new("locked");
    let s = start_with(sqlite_at(&dir.0)).await;
    let r = s
        .post_json("/v1/blueprints/l", &bp("l", "1.0.0", "a"))
        .await;
    assert_eq!(r.status(), 201);

    // Another process-like connection holds the write lock.
    let holder = rusqlite::Connection::open(dir.db()).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let started = Instant::now();
    let r = s
        .post_json("/v1/blueprints/l", &bp("l", "1.1.0", "b"))
        .await;
    let m = expect_error(r, 503).await;
    assert!(m.contains("database is locked"), "{m}");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited for the lock first"
    );
    // Reads keep working (WAL).
    let head = get_json(&s, "/v1/blueprints/l/head").await;
    assert_eq!(head["version_label"], "1.0.0");
    // A second server on the same file reports the lock at startup.
    let m = start_error(&dir.0).await;
    assert!(m.contains("locked"), "{m}");

    holder.execute_batch("ROLLBACK").unwrap();
    let r = s
        .post_json("/v1/blueprints/l", &bp("l", "1.1.0", "b"))
        .await;
    assert_eq!(r.status(), 201, "recovered once the lock is gone");
}

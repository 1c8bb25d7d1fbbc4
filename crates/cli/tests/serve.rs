//! `mse serve` end to end: precedence, data dir, persisted secret, signals.

mod common;

use common::{client, free_port, mse, Server, TempDir};
use mse_engine::{now_unix, Role, TokenSigner};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn precedence_flag_over_file_over_env() {
    let home = TempDir::new("prec");
    let data = home.path().join("data");
    let cfg = home.path().join("c.toml");
    let (a, b, c) = (free_port(), free_port(), free_port());
    std::fs::write(&cfg, format!("bind = \"127.0.0.1:{a}\"\n")).unwrap();
    let start = |with_file: bool, flag: Option<u16>| {
        let mut cmd = mse(home.path());
        cmd.arg("serve").arg("--data-dir").arg(&data);
        if with_file {
            cmd.arg("--config").arg(&cfg);
        }
        if let Some(p) = flag {
            cmd.arg("--bind").arg(format!("127.0.0.1:{p}"));
        }
        cmd.env("MSE_BIND", format!("127.0.0.1:{b}"));
        Server::spawn(cmd)
    };

    let mut s = start(true, Some(c));
    assert_eq!(s.ready().await.port(), c, "flag wins");
    let doctor: serde_json::Value = client()
        .get(format!("http://127.0.0.1:{c}/v1/doctor"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doctor["bind"], format!("127.0.0.1:{c}"));
    s.stop().await;

    let mut s = start(true, None);
    assert_eq!(s.ready().await.port(), a, "file beats env");
    // SIGINT stops cleanly too.
    s.signal("INT");
    assert_eq!(s.wait_exit().await.code(), Some(0), "{}", s.log());

    let mut s = start(false, None);
    assert_eq!(s.ready().await.port(), b, "env beats default");
    s.stop().await;
}

#[tokio::test]
async fn data_dir_and_secret_are_created_private_and_reused() {
    let home = TempDir::new("datadir");
    let data = home.path().join("nested/state");
    let port = free_port();
    let start = || {
        let mut cmd = mse(home.path());
        cmd.args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(&data);
        Server::spawn(cmd)
    };
    let mut s = start();
    s.ready().await;
    let line = s.wait_for_line("mse serve started").await;
    assert!(line.contains(data.to_str().unwrap()), "{line}");
    assert!(line.contains("generated"), "{line}");
    s.stop().await;
    assert!(data.is_dir());
    assert_eq!(mode(&data), 0o700);
    let secret_file = data.join("token_secret");
    assert_eq!(mode(&secret_file), 0o600);
    let first = std::fs::read_to_string(&secret_file).unwrap();
    assert_eq!(first.trim().len(), 64);
    assert!(hex_ok(first.trim()));
    assert!(!s.log().contains(first.trim()), "secret logged");

    let mut s = start();
    s.ready().await;
    let line = s.wait_for_line("mse serve started").await;
    assert!(line.contains("persisted"), "{line}");
    s.stop().await;
    assert_eq!(std::fs::read_to_string(&secret_file).unwrap(), first);
    // Only the secret, no temporary files.
    assert_eq!(
        std::fs::read_dir(&data)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains("tmp"))
            .count(),
        0
    );
}

fn hex_ok(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[tokio::test]
async fn default_data_dir_is_under_the_platform_data_dir() {
    let home = TempDir::new("defdata");
    let port = free_port();
    let mut cmd = mse(home.path());
    cmd.args(["serve", "--bind", &format!("127.0.0.1:{port}")]);
    let mut s = Server::spawn(cmd);
    s.ready().await;
    s.stop().await;
    // mse() points XDG_DATA_HOME at <home>/xdg-data.
    let dir = home.path().join("xdg-data/mse");
    assert!(dir.join("token_secret").is_file(), "{}", s.log());
}

#[tokio::test]
async fn configured_secret_is_used_and_not_persisted() {
    let home = TempDir::new("cfgsecret");
    let data = home.path().join("d");
    let port = free_port();
    let secret = "5a".repeat(32);
    let mut cmd = mse(home.path());
    cmd.args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(&data)
        .env("MSE_TOKEN_SECRET", &secret);
    let mut s = Server::spawn(cmd);
    let line = {
        s.ready().await;
        s.wait_for_line("mse serve started").await
    };
    assert!(line.contains("configured"), "{line}");
    // A token signed with the configured secret verifies (404: no such task); it
    // was issued "before" this process started, as after a restart.
    let task = "T-00000000000000bb";
    let token = TokenSigner::new(hex_decode(&secret))
        .mint(
            &format!("worker-of-{task}"),
            Role::Worker,
            vec!["*".into()],
            600,
            None,
            now_unix() - 60,
        )
        .encode();
    let url = format!("http://127.0.0.1:{port}/v1/worker/prompt?task_id={task}");
    let r = client().get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404, "{}", r.text().await.unwrap());
    s.stop().await;
    assert!(!data.join("token_secret").exists());
    assert!(!s.log().contains(&secret), "secret logged");
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test]
async fn tokens_survive_a_restart_with_the_persisted_secret() {
    let home = TempDir::new("restart");
    let data = home.path().join("data");
    let port = free_port();
    let start = || {
        let mut cmd = mse(home.path());
        cmd.args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(&data);
        Server::spawn(cmd)
    };
    let mut s = start();
    s.ready().await;
    let secret = hex_decode(
        std::fs::read_to_string(data.join("token_secret"))
            .unwrap()
            .trim(),
    );
    let task = "T-00000000000000aa";
    let agent = format!("worker-of-{task}");
    let good = TokenSigner::new(&secret)
        .mint(
            &agent,
            Role::Worker,
            vec!["*".into()],
            600,
            None,
            now_unix(),
        )
        .encode();
    let forged = TokenSigner::new([7u8; 32])
        .mint(
            &agent,
            Role::Worker,
            vec!["*".into()],
            600,
            None,
            now_unix(),
        )
        .encode();
    s.stop().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let mut s = start();
    s.ready().await;
    let c = client();
    let url = format!("http://127.0.0.1:{port}/v1/worker/prompt?task_id={task}");
    let r = c.get(&url).bearer_auth(&good).send().await.unwrap();
    let status = r.status().as_u16();
    let body = r.text().await.unwrap();
    assert_eq!(status, 404, "signature should verify, task gone: {body}");
    let r = c.get(&url).bearer_auth(&forged).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401, "{}", r.text().await.unwrap());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish() {
    let home = TempDir::new("drain");
    let port = free_port();
    let mut cmd = mse(home.path());
    cmd.args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(home.path().join("data"));
    let mut s = Server::spawn(cmd);
    s.ready().await;
    let body = serde_json::json!({
        "blueprint": {"kind": "inline", "value": {
            "id": "slow",
            "flow": {"kind": "step", "ref": "slow",
                     "in": {"op": "lit", "value": null},
                     "out": {"op": "path", "at": "$.r"}},
            "agents": [{"name": "slow", "kind": "lua", "spec": {
                "source": "local t=os.clock() while os.clock()-t<0.5 do end return 1"}}]
        }},
        "init_ctx": {}
    });
    let url = format!("http://127.0.0.1:{port}/v1/tasks");
    let req = tokio::spawn(async move {
        let r = client().post(url).json(&body).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.text().await.unwrap())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.signal("TERM");
    let (status, text) = tokio::time::timeout(Duration::from_secs(20), req)
        .await
        .expect("request finished")
        .unwrap();
    assert_eq!(status, 200, "{text}\nlog:\n{}", s.log());
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["final_ctx"]["r"], 1, "{text}");
    assert_eq!(s.wait_exit().await.code(), Some(0), "{}", s.log());
    // No longer accepting.
    assert!(client()
        .get(format!("http://127.0.0.1:{port}/v1/healthz"))
        .send()
        .await
        .is_err());
}

#[tokio::test]
async fn bind_failure_exits_1_with_a_clear_message() {
    let home = TempDir::new("bindfail");
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap();
    let mut cmd = mse(home.path());
    cmd.args(["serve", "--bind", &addr.to_string()])
        .arg("--data-dir")
        .arg(home.path().join("data"));
    let mut s = Server::spawn(cmd);
    let status = s.wait_exit().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let log = s.log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains(&addr.to_string()) && log.contains("cannot start"),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    drop(holder);
}

#[tokio::test]
async fn json_logs_and_non_loopback_warning() {
    let home = TempDir::new("json");
    let port = free_port();
    let mut cmd = mse(home.path());
    cmd.args([
        "serve",
        "--bind",
        &format!("0.0.0.0:{port}"),
        "--log-format",
        "json",
    ])
    .arg("--data-dir")
    .arg(home.path().join("data"));
    let mut s = Server::spawn(cmd);
    let line = s.wait_for_line("mse serve started").await;
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["level"], "INFO");
    assert_eq!(v["fields"]["addr"], format!("0.0.0.0:{port}"));
    common::wait_healthy(format!("127.0.0.1:{port}").parse().unwrap()).await;
    let warn = s.wait_for_line("SECURITY").await;
    let w: serde_json::Value = serde_json::from_str(&warn).unwrap();
    assert_eq!(w["level"], "WARN");
    for l in s.log().lines() {
        serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|_| panic!("not JSON: {l}"));
    }
    s.stop().await;
}

#[tokio::test]
async fn admin_token_suppresses_the_warning_and_is_not_logged() {
    let home = TempDir::new("admin");
    let port = free_port();
    let admin = "adm1n-t0ken-xyz";
    let cfg = home.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!("admin_token = \"{admin}\"\nbind = \"0.0.0.0:{port}\"\n"),
    )
    .unwrap();
    let mut cmd = mse(home.path());
    cmd.args(["serve", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(home.path().join("data"));
    let mut s = Server::spawn(cmd);
    s.started().await;
    s.stop().await;
    let log = s.log();
    assert!(!log.contains("SECURITY"), "{log}");
    assert!(!log.contains(admin), "{log}");
}

#[tokio::test]
async fn rust_log_filters_output() {
    let home = TempDir::new("rustlog");
    let port = free_port();
    let mut cmd = mse(home.path());
    cmd.args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(home.path().join("data"))
        .env("RUST_LOG", "warn");
    let mut s = Server::spawn(cmd);
    common::wait_healthy(format!("127.0.0.1:{port}").parse().unwrap()).await;
    s.stop().await;
    let log = s.log();
    assert!(!log.contains("mse serve started"), "{log}");
    assert!(!log.contains(" INFO "), "{log}");
}

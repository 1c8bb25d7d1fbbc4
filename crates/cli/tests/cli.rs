//! Help texts and configuration errors of the real `mse` binary.

mod common;

use common::{mse, run, TempDir};

const FLAGS: &[&str] = &[
    "config",
    "bind",
    "data-dir",
    "token-secret",
    "admin-token",
    "allow-subprocess",
    "seed-blueprint-id",
    "log-format",
    "max-body-bytes",
    "max-json-depth",
    "max-fanout-width",
    "max-fanout-depth",
    "max-loop-iterations",
    "max-concurrent-runs",
    "max-run-ttl-secs",
    "lua-time-limit-ms",
    "lua-memory-limit-bytes",
    "subprocess-time-limit-secs",
    "subprocess-max-output-bytes",
    "operator-reply-timeout-secs",
    "task-retention-secs",
    "max-retained-tasks",
    "shutdown-grace-secs",
    "operator-reconnect-grace-secs",
    "operator-idle-ttl-secs",
    "operator-ping-interval-secs",
    "public-base-url",
    "no-enhance",
    "enhance-interval-ms",
    "header-read-timeout-secs",
];

fn help(args: &[&str]) -> String {
    let home = TempDir::new("help");
    let mut c = mse(home.path());
    c.args(args);
    let (status, out, err) = run(c);
    assert_eq!(status.code(), Some(0), "{err}");
    out
}

#[test]
fn top_level_help_names_serve() {
    let out = help(&["--help"]);
    assert!(out.contains("Usage: mse"), "{out}");
    assert!(out.contains("serve"), "{out}");
    assert!(out.contains("orchestration server"), "{out}");
    assert!(help(&["--version"]).starts_with("mse "));
}

#[test]
fn serve_long_help_documents_every_flag_default_and_env_var() {
    let out = help(&["serve", "--help"]);
    for f in FLAGS {
        assert!(out.contains(&format!("--{f}")), "--{f} missing:\n{out}");
        let env = format!("MSE_{}", f.replace('-', "_").to_uppercase());
        assert!(out.contains(&env), "{env} missing:\n{out}");
    }
    assert!(out.contains(
        "Precedence: command-line flag > config file > environment variable > built-in default"
    ));
    assert!(out.contains("RUST_LOG"));
    assert!(out.contains("[default: 127.0.0.1:7777]"));
    assert!(out.contains("[default: 16777216]"), "max body default");
    assert!(out.matches("[default: ").count() >= FLAGS.len());
}

#[test]
fn serve_short_help_lists_every_flag() {
    let out = help(&["serve", "-h"]);
    for f in FLAGS {
        assert!(out.contains(&format!("--{f}")), "--{f} missing:\n{out}");
    }
    assert!(out.contains("[default: 127.0.0.1:7777]"));
}

/// Run `mse serve` expecting exit code 2 and a single stderr line.
fn expect_config_error(home: &TempDir, args: &[&str], envs: &[(&str, &str)]) -> String {
    let mut c = mse(home.path());
    c.arg("serve").args(args);
    for (k, v) in envs {
        c.env(k, v);
    }
    let (status, _, err) = run(c);
    assert_eq!(status.code(), Some(2), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    err
}

#[test]
fn toml_syntax_error_exits_2_with_one_line() {
    let home = TempDir::new("syntax");
    let cfg = home.path().join("bad.toml");
    std::fs::write(&cfg, "bind = \"127.0.0.1:1\"\nmax_json_depth = = 3\n").unwrap();
    let err = expect_config_error(&home, &["--config", cfg.to_str().unwrap()], &[]);
    assert!(err.contains(cfg.to_str().unwrap()), "{err}");
    assert!(err.contains("line 2"), "{err}");
}

#[test]
fn unknown_key_exits_2() {
    let home = TempDir::new("unknown");
    let cfg = home.path().join("c.toml");
    std::fs::write(&cfg, "bnid = \"127.0.0.1:1\"\n").unwrap();
    let err = expect_config_error(&home, &["--config", cfg.to_str().unwrap()], &[]);
    assert!(err.contains("unknown field `bnid`"), "{err}");
}

#[test]
fn bad_value_in_default_config_file_exits_2() {
    let home = TempDir::new("default-cfg");
    std::fs::create_dir_all(home.path().join(".mse")).unwrap();
    let cfg = home.path().join(".mse/config.toml");
    std::fs::write(&cfg, "max_concurrent_runs = 0\n").unwrap();
    let err = expect_config_error(&home, &[], &[]);
    assert!(
        err.contains(cfg.to_str().unwrap()) && err.contains("max_concurrent_runs"),
        "{err}"
    );
    std::fs::write(&cfg, "bind = \"localhost:80\"\n").unwrap();
    let err = expect_config_error(&home, &[], &[]);
    assert!(err.contains("line 1"), "{err}");
}

#[test]
fn explicit_missing_config_file_exits_2() {
    let home = TempDir::new("missing");
    let cfg = home.path().join("nope.toml");
    let err = expect_config_error(&home, &["--config", cfg.to_str().unwrap()], &[]);
    assert!(
        err.contains("cannot read config file") && err.contains("nope.toml"),
        "{err}"
    );
    let err = expect_config_error(&home, &[], &[("MSE_CONFIG", cfg.to_str().unwrap())]);
    assert!(err.contains("nope.toml"), "{err}");
}

#[test]
fn bad_flag_and_env_values_exit_2() {
    let home = TempDir::new("badvals");
    let secret = "abcd".repeat(4);
    let err = expect_config_error(&home, &["--token-secret", &secret], &[]);
    assert!(
        err.contains("--token-secret") && !err.contains(&secret),
        "{err}"
    );
    let err = expect_config_error(&home, &[], &[("MSE_BIND", "nonsense")]);
    assert!(err.contains("MSE_BIND"), "{err}");
    let err = expect_config_error(&home, &[], &[("MSE_LOG_FORMAT", "xml")]);
    assert!(err.contains("MSE_LOG_FORMAT"), "{err}");
    // Clap's own usage errors: exit 2 as well.
    let mut c = mse(home.path());
    c.args(["serve", "--bind", "not-an-address"]);
    let (status, _, err) = run(c);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

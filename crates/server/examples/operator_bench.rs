//! Operator round-trip latency and the memory of steps suspended on an operator.
//!
//! `cargo run --release -p mse-server --example operator_bench -- [runs] [suspended]`
//! (defaults 2000 and 10000).
//!
//! The server is embedded (`mse_server::bind` on 127.0.0.1:0, mimalloc as in the
//! `mse` binary); operators are tokio-tungstenite clients over loopback in the
//! same process, HTTP goes through reqwest on a kept-alive connection.
//!
//! Latency, three views:
//! 1. `POST /v1/tasks`, one operator step whose operator acks inline at once:
//!    request sent → response read, `runs` sequential runs.
//! 2. The same with a `rust_fn` identity step: the HTTP + run baseline, so
//!    (1) − (2) is what the operator path adds.
//! 3. Operator cycle inside one run: a loop of `runs` operator steps; the client
//!    times `spawn_ack` k written → `spawn` k+1 read. That is one full WebSocket
//!    round trip plus all server work between two operator steps: parse the ack,
//!    wake the step, record the result, evaluate the loop, start the next task
//!    (ids, worker token, handle), build the `spawn` frame and write it. The
//!    client's own turnaround (spawn read → ack written) is reported apart.
//!
//! Memory: `suspended` steps (runs of 100-wide fanouts spread over 10 operator
//! sessions) wait for their `spawn_ack`; RSS (VmRSS of /proc/self/status) is read
//! before starting them and once every spawn has arrived, and the delta is
//! divided by the number of steps. Client-side bookkeeping (the held req_ids)
//! and the open HTTP requests are included, so the figure is an upper bound.

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const FANOUT: usize = 100;
const SESSIONS: usize = 10;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn report(name: &str, mut d: Vec<Duration>) {
    d.sort();
    println!(
        "{name:<48} n={:<6} p50={:>7.1} µs  p90={:>7.1} µs  p99={:>7.1} µs  max={:>8.1} µs",
        d.len(),
        pct(&d, 0.5).as_secs_f64() * 1e6,
        pct(&d, 0.9).as_secs_f64() * 1e6,
        pct(&d, 0.99).as_secs_f64() * 1e6,
        d.last().unwrap().as_secs_f64() * 1e6,
    );
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn mint(&self, role: &str) -> (String, String) {
        let v: Value = self
            .http
            .post(format!("{}/v1/operators", self.base))
            .json(&json!({ "roles": [role] }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (
            v["sid"].as_str().unwrap().into(),
            v["token"].as_str().unwrap().into(),
        )
    }

    async fn connect(&self, role: &str) -> Ws {
        let (sid, token) = self.mint(role).await;
        let url = format!(
            "{}/v1/operators/{sid}/ws",
            self.base.replacen("http", "ws", 1)
        );
        let mut req = url.into_client_request().unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        tokio_tungstenite::connect_async(req).await.unwrap().0
    }

    async fn run(&self, body: &str) -> Value {
        let r = self
            .http
            .post(format!("{}/v1/tasks", self.base))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }
}

fn op_blueprint(role: &str, flow: Value) -> Value {
    json!({"blueprint": {"kind": "inline", "value": {
        "id": "bench", "operators": [{"name": role}],
        "agents": [{"name": "op", "kind": "operator", "spec": {"operator_ref": role}}],
        "flow": flow}}, "init_ctx": {}})
}

fn op_step() -> Value {
    json!({"kind": "step", "ref": "op", "in": {"op": "lit", "value": "x"},
           "out": {"op": "path", "at": "$.out"}})
}

/// Ack every spawn at once; report (spawn read, ack written) instants.
async fn instant_operator(mut ws: Ws, times: mpsc::UnboundedSender<(Instant, Instant)>) {
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(t) = msg else { continue };
        let read = Instant::now();
        let v: Value = serde_json::from_str(t.as_str()).unwrap();
        let ack = format!(
            r#"{{"type":"spawn_ack","req_id":{},"value":"done"}}"#,
            v["req_id"]
        );
        ws.send(Message::text(ack)).await.unwrap();
        let _ = times.send((read, Instant::now()));
    }
}

/// Hold every spawn until `release`, then ack them all.
async fn holding_operator(
    mut ws: Ws,
    arrived: Arc<AtomicUsize>,
    all_in: Arc<Notify>,
    release: Arc<Notify>,
    target: usize,
) {
    let mut held = Vec::new();
    let released = release.notified();
    tokio::pin!(released);
    loop {
        tokio::select! {
            msg = ws.next() => {
                let t = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(_)) => continue,
                    _ => return,
                };
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                held.push(v["req_id"].as_str().unwrap().to_string());
                if arrived.fetch_add(1, Ordering::SeqCst) + 1 == target {
                    all_in.notify_one();
                }
            }
            () = &mut released => break,
        }
    }
    for id in held.drain(..) {
        let ack = format!(r#"{{"type":"spawn_ack","req_id":"{id}","value":1}}"#);
        ws.feed(Message::text(ack)).await.unwrap();
    }
    ws.flush().await.unwrap();
    // Keep reading so the socket stays healthy until the runs finish.
    while let Some(Ok(_)) = ws.next().await {}
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().map_or(2000, |a| a.parse().unwrap());
    let suspended: usize = args.next().map_or(10_000, |a| a.parse().unwrap());
    assert_eq!(
        suspended % (FANOUT * SESSIONS),
        0,
        "suspended must be a multiple of 1000"
    );

    let mut cfg = mse_server::ServerConfig::ephemeral(std::env::temp_dir().join("mse-op-bench"));
    cfg.limits.max_loop_iterations = runs as u64 + 1;
    let bound = mse_server::bind(cfg).await.unwrap();
    let api = Api {
        base: format!("http://{}", bound.local_addr()),
        http: reqwest::Client::new(),
    };
    tokio::spawn(bound.run(std::future::pending()));

    // --- latency ---
    let (tx, mut times) = mpsc::unbounded_channel();
    tokio::spawn(instant_operator(api.connect("bench").await, tx));
    let single = op_blueprint("bench", op_step()).to_string();
    let baseline = json!({"blueprint": {"kind": "inline", "value": {
        "id": "base", "agents": [{"name": "id", "kind": "rust_fn", "spec": {"fn_id": "identity"}}],
        "flow": {"kind": "step", "ref": "id", "in": {"op": "lit", "value": "x"},
                 "out": {"op": "path", "at": "$.out"}}}}, "init_ctx": {}})
    .to_string();
    for _ in 0..200 {
        api.run(&single).await; // warm-up
        api.run(&baseline).await;
    }
    while times.try_recv().is_ok() {}

    let mut e2e = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        api.run(&single).await;
        e2e.push(t.elapsed());
    }
    let mut think = Vec::new();
    while let Ok((read, sent)) = times.try_recv() {
        think.push(sent - read);
    }
    let mut base = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        api.run(&baseline).await;
        base.push(t.elapsed());
    }

    let looped = op_blueprint(
        "bench",
        json!({"kind": "loop", "counter": {"op": "path", "at": "$.n"}, "max": runs,
               "cond": {"op": "lit", "value": true}, "body": op_step()}),
    )
    .to_string();
    let t = Instant::now();
    let v = api.run(&looped).await;
    let loop_total = t.elapsed();
    assert_eq!(v["final_ctx"]["n"], runs);
    let mut stamps = Vec::with_capacity(runs);
    while let Ok(s) = times.try_recv() {
        stamps.push(s);
    }
    assert_eq!(stamps.len(), runs);
    let cycle: Vec<Duration> = stamps.windows(2).map(|w| w[1].0 - w[0].1).collect();

    println!("== operator round trip (loopback, in-process server and clients) ==");
    report("POST /v1/tasks, 1 operator step (e2e)", e2e.clone());
    report("POST /v1/tasks, 1 rust_fn step (baseline)", base.clone());
    report("ack written -> next spawn read (in-run cycle)", cycle);
    report("client turnaround: spawn read -> ack written", think);
    let med = |mut d: Vec<Duration>| {
        d.sort();
        pct(&d, 0.5)
    };
    println!(
        "operator path adds {:.1} µs at p50 over the baseline; {runs}-step operator loop: {:.1} ms ({:.1} µs/step)",
        (med(e2e).as_secs_f64() - med(base).as_secs_f64()) * 1e6,
        loop_total.as_secs_f64() * 1e3,
        loop_total.as_secs_f64() * 1e6 / runs as f64
    );

    // --- memory of suspended steps ---
    let runs_needed = suspended / FANOUT;
    let per_session = suspended / SESSIONS;
    let arrived = Arc::new(AtomicUsize::new(0));
    let all_in = Arc::new(Notify::new());
    let mut releases = Vec::new();
    for k in 0..SESSIONS {
        let ws = api.connect(&format!("w{k}")).await;
        let r = Arc::new(Notify::new());
        releases.push(r.clone());
        tokio::spawn(holding_operator(
            ws,
            arrived.clone(),
            all_in.clone(),
            r,
            suspended,
        ));
    }
    let fanout = |role: &str| {
        op_blueprint(
            role,
            json!({"kind": "fanout", "items": {"op": "lit", "value": (0..FANOUT).collect::<Vec<_>>()},
                   "bind": {"op": "path", "at": "$.i"}, "join": "all",
                   "out": {"op": "path", "at": "$.out"}, "body": op_step()}),
        )
        .to_string()
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib();
    let t = Instant::now();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(runs_needed)
        .build()
        .unwrap();
    let mut pending = Vec::new();
    for r in 0..runs_needed {
        let body = fanout(&format!("w{}", r % SESSIONS));
        let url = format!("{}/v1/tasks", api.base);
        let http = http.clone();
        pending.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap();
        }));
    }
    all_in.notified().await;
    let dispatched_in = t.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let during = rss_kib();
    assert_eq!(arrived.load(Ordering::SeqCst), suspended);
    for r in &releases {
        r.notify_one();
    }
    for p in pending {
        p.await.unwrap();
    }
    let finished_in = t.elapsed();
    let after = rss_kib();
    println!("== steps suspended on a spawn_ack ==");
    println!(
        "{suspended} steps ({runs_needed} runs x {FANOUT}-wide fanout, {SESSIONS} sessions x {per_session} spawns) all dispatched in {:.0} ms, all acked and finished in {:.0} ms",
        dispatched_in.as_secs_f64() * 1e3,
        finished_in.as_secs_f64() * 1e3
    );
    println!(
        "RSS before {before} KiB, while suspended {during} KiB, after {after} KiB; delta {} KiB = {:.2} KiB per suspended step",
        during.saturating_sub(before),
        during.saturating_sub(before) as f64 / suspended as f64
    );
}

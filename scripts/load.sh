#!/usr/bin/env bash
# Load test of `mse serve` (release build) with wrk, on 127.0.0.1 only.
#
#   1. Throughput: a zero-spawn inline Blueprint posted to /v1/tasks, 64 connections
#      for 10 s, against mse and against a bare axum echo server (the baseline).
#   2. Sustained: SUSTAINED_REQUESTS (default 1 000 000) requests against mse; the
#      server's RSS after the first ~10 000 requests and at the end.
#   3. A 1000-step rust_fn flow over HTTP, 8 connections for 10 s: steps/s.
#
# Tunables (environment): SUSTAINED_REQUESTS, DURATION (default 10s), CONNECTIONS (64),
# THREADS (2), FLOW_CONNECTIONS (8), MAX_RETAINED_TASKS, TASK_RETENTION_SECS,
# SUSTAINED_MAX_SECS (upper bound on the sustained phase, default 1200).
# Needs wrk (installed with apt-get when missing and running as root) and curl.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-64}"
THREADS="${THREADS:-2}"
FLOW_CONNECTIONS="${FLOW_CONNECTIONS:-8}"
SUSTAINED_REQUESTS="${SUSTAINED_REQUESTS:-1000000}"
WARMUP_REQUESTS=10000
SUSTAINED_MAX_SECS="${SUSTAINED_MAX_SECS:-1200}"
MAX_RETAINED_TASKS="${MAX_RETAINED_TASKS:-100000}"
TASK_RETENTION_SECS="${TASK_RETENTION_SECS:-300}"

if ! command -v wrk >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "== installing wrk"
        apt-get install -y wrk >/dev/null || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
    else
        echo "wrk is required: sudo apt-get install -y wrk" >&2
        exit 1
    fi
fi
command -v curl >/dev/null 2>&1 || { echo "curl is required" >&2; exit 1; }

echo "== building (release)"
cargo build --release -p mse-cli --bin mse --example echo_baseline
MSE_BIN="$ROOT/target/release/mse"
ECHO_BIN="$ROOT/target/release/examples/echo_baseline"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/mse-load.XXXXXX")"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        # Bounded wait, then force.
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Wait (at most 30 s) until $1 contains a line matching $2; print the address in it.
wait_addr() {
    local log="$1" pattern="$2" pid="$3" line
    for _ in $(seq 300); do
        line="$(grep -m1 "$pattern" "$log" 2>/dev/null || true)"
        if [ -n "$line" ]; then
            grep -o 'http://127\.0\.0\.1:[0-9]*' <<<"$line" | head -n1 | sed 's|http://||'
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || { echo "process exited; log:" >&2; cat "$log" >&2; return 1; }
        sleep 0.1
    done
    echo "timed out waiting for $pattern; log:" >&2
    cat "$log" >&2
    return 1
}

echo "== starting mse serve and the echo baseline"
RUST_LOG="warn,mse=info" \
MSE_MAX_RETAINED_TASKS="$MAX_RETAINED_TASKS" MSE_TASK_RETENTION_SECS="$TASK_RETENTION_SECS" \
    "$MSE_BIN" serve --bind 127.0.0.1:0 --data-dir "$WORK/data" --config /dev/null \
    2>"$WORK/mse.log" &
MSE_PID=$!
PIDS+=("$MSE_PID")
"$ECHO_BIN" 127.0.0.1:0 2>"$WORK/echo.log" &
ECHO_PID=$!
PIDS+=("$ECHO_PID")
MSE_ADDR="$(wait_addr "$WORK/mse.log" "mse serve started" "$MSE_PID")"
ECHO_ADDR="$(wait_addr "$WORK/echo.log" "listening" "$ECHO_PID")"
echo "mse:      http://$MSE_ADDR (pid $MSE_PID)"
echo "baseline: http://$ECHO_ADDR (pid $ECHO_PID)"

BODY='{"blueprint":{"kind":"inline","value":{"id":"load","flow":{"kind":"assign","at":{"op":"path","at":"$.done"},"value":{"op":"lit","value":true}}}},"init_ctx":{"n":1}}'

# The 1000-step rust_fn flow.
STEP='{"kind":"step","ref":"w","in":{"op":"lit","value":1},"out":{"op":"path","at":"$.r"}}'
CHILDREN="$STEP"
for _ in $(seq 999); do CHILDREN="$CHILDREN,$STEP"; done
FLOW_BODY='{"blueprint":{"kind":"inline","value":{"id":"steps","flow":{"kind":"seq","children":['"$CHILDREN"']},"agents":[{"name":"w","kind":"rust_fn","spec":{"fn_id":"identity"}}]}},"init_ctx":{}}'

# wrk scripts: a fixed POST. With WRK_REQUESTS_PER_THREAD set, each thread stops
# after that many responses and interrupts wrk (whose main thread otherwise sleeps
# for the whole -d duration), so a run is a request count, bounded by -d.
write_script() {
    local file="$1" body_file="$2"
    cat >"$file" <<EOF
local f = assert(io.open("$body_file", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
local limit = tonumber(os.getenv("WRK_REQUESTS_PER_THREAD") or "")
if limit then
    local n = 0
    function response(status, headers, body)
        n = n + 1
        if n == limit then
            wrk.thread:stop()
            -- Detached: system() ignores SIGINT in wrk while its child runs.
            os.execute("(sleep 0.05; kill -INT \$PPID) >/dev/null 2>&1 &")
        end
    end
end
EOF
}
printf '%s' "$BODY" >"$WORK/body.json"
printf '%s' "$FLOW_BODY" >"$WORK/flow.json"
write_script "$WORK/post.lua" "$WORK/body.json"
write_script "$WORK/flow.lua" "$WORK/flow.json"

# Sanity check: both bodies succeed on mse before measuring.
for b in body flow; do
    code="$(curl -s -o "$WORK/check.out" -w '%{http_code}' --max-time 60 \
        -H 'Content-Type: application/json' --data-binary "@$WORK/$b.json" "http://$MSE_ADDR/v1/tasks")"
    if [ "$code" != 200 ]; then
        echo "POST /v1/tasks ($b) answered $code: $(head -c 500 "$WORK/check.out")" >&2
        exit 1
    fi
done

rps() { awk '/^Requests\/sec:/ {print $2}' "$1"; }
non2xx() { awk '/Non-2xx or 3xx responses:/ {print $NF; f=1} END {if (!f) print 0}' "$1"; }
sockerr() { grep -m1 'Socket errors' "$1" || echo "Socket errors: none"; }
total() { awk '/requests in/ {print $1}' "$1"; }
rss_kib() { ps -o rss= -p "$1" | tr -d ' '; }

# run_wrk OUT URL SCRIPT CONNECTIONS DURATION [REQUESTS_PER_THREAD]
run_wrk() {
    local out="$1" url="$2" script="$3" conns="$4" dur="$5" limit="${6:-}"
    env ${limit:+WRK_REQUESTS_PER_THREAD=$limit} \
        timeout $((SUSTAINED_MAX_SECS + 60)) \
        wrk -t"$THREADS" -c"$conns" -d"$dur" --latency -s "$script" "$url" >"$out"
}

echo
echo "== phase 1: zero-spawn blueprint, $CONNECTIONS connections, $THREADS threads, $DURATION"
run_wrk "$WORK/base.txt" "http://$ECHO_ADDR/v1/tasks" "$WORK/post.lua" "$CONNECTIONS" "$DURATION"
run_wrk "$WORK/mse.txt" "http://$MSE_ADDR/v1/tasks" "$WORK/post.lua" "$CONNECTIONS" "$DURATION"
for which in base mse; do
    echo "--- $which"
    sed -n '/Latency Distribution/,/requests in/p' "$WORK/$which.txt"
    echo "Requests/sec: $(rps "$WORK/$which.txt")   non-2xx: $(non2xx "$WORK/$which.txt")   $(sockerr "$WORK/$which.txt")"
done
MSE_RPS="$(rps "$WORK/mse.txt")"
BASE_RPS="$(rps "$WORK/base.txt")"
RATIO="$(awk -v a="$MSE_RPS" -v b="$BASE_RPS" 'BEGIN {printf "%.3f", a / b}')"
echo "ratio mse/baseline: $RATIO"

echo
echo "== phase 2: sustained, $SUSTAINED_REQUESTS requests against mse ($CONNECTIONS connections)"
REST=$((SUSTAINED_REQUESTS > WARMUP_REQUESTS ? SUSTAINED_REQUESTS - WARMUP_REQUESTS : 0))
RSS_START_BEFORE="$(rss_kib "$MSE_PID")"
run_wrk "$WORK/warm.txt" "http://$MSE_ADDR/v1/tasks" "$WORK/post.lua" "$CONNECTIONS" \
    "${SUSTAINED_MAX_SECS}s" $(((WARMUP_REQUESTS + THREADS - 1) / THREADS))
RSS_EARLY="$(rss_kib "$MSE_PID")"
echo "after ~$(total "$WORK/warm.txt") requests: RSS ${RSS_EARLY} KiB (before the phase: ${RSS_START_BEFORE} KiB)"
if [ "$REST" -gt 0 ]; then
    run_wrk "$WORK/sustained.txt" "http://$MSE_ADDR/v1/tasks" "$WORK/post.lua" "$CONNECTIONS" \
        "${SUSTAINED_MAX_SECS}s" $(((REST + THREADS - 1) / THREADS))
    RSS_END="$(rss_kib "$MSE_PID")"
    DONE=$(( $(total "$WORK/warm.txt") + $(total "$WORK/sustained.txt") ))
    sed -n '/Latency Distribution/,/requests in/p' "$WORK/sustained.txt"
    echo "Requests/sec: $(rps "$WORK/sustained.txt")   non-2xx: $(non2xx "$WORK/sustained.txt")   $(sockerr "$WORK/sustained.txt")"
    echo "after $DONE requests: RSS ${RSS_END} KiB (after ~$WARMUP_REQUESTS: ${RSS_EARLY} KiB)"
else
    RSS_END="$RSS_EARLY"
fi

echo
echo "== phase 3: 1000-step rust_fn flow, $FLOW_CONNECTIONS connections, $DURATION"
run_wrk "$WORK/flow.txt" "http://$MSE_ADDR/v1/tasks" "$WORK/flow.lua" "$FLOW_CONNECTIONS" "$DURATION"
sed -n '/Latency Distribution/,/requests in/p' "$WORK/flow.txt"
FLOW_RPS="$(rps "$WORK/flow.txt")"
STEPS="$(awk -v r="$FLOW_RPS" 'BEGIN {printf "%.0f", r * 1000}')"
echo "Requests/sec: $FLOW_RPS   non-2xx: $(non2xx "$WORK/flow.txt")   $(sockerr "$WORK/flow.txt")"

echo
echo "== summary ($(nproc) CPUs)"
printf '%-34s %s\n' "baseline echo req/s:" "$BASE_RPS (non-2xx $(non2xx "$WORK/base.txt"))"
printf '%-34s %s\n' "mse zero-spawn req/s:" "$MSE_RPS (non-2xx $(non2xx "$WORK/mse.txt"))"
printf '%-34s %s\n' "ratio mse/baseline:" "$RATIO"
printf '%-34s %s\n' "RSS after ~$WARMUP_REQUESTS requests:" "$RSS_EARLY KiB"
printf '%-34s %s\n' "RSS after $SUSTAINED_REQUESTS requests:" "$RSS_END KiB"
printf '%-34s %s\n' "1000-step flow req/s:" "$FLOW_RPS"
printf '%-34s %s\n' "steps/s:" "$STEPS"
if grep -qiE 'panicked|ERROR' "$WORK/mse.log"; then
    echo "mse logged errors:" >&2
    grep -iE 'panicked|ERROR' "$WORK/mse.log" | head -20 >&2
fi

//! Engine configuration. Every limit has a documented default.

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// HMAC secret for capability tokens; `None` draws 32 random bytes.
    pub token_secret: Option<Vec<u8>>,
    /// A task at depth `d` may start children only while `d + 1 < max_spawn_depth`.
    pub max_spawn_depth: u32,
    /// Lifetime of worker tokens (and their handles); they are also revoked when
    /// the task reaches a terminal state.
    pub worker_token_ttl: Duration,
    /// How long a terminal task (and its tokens, handle, output tail) stays readable.
    pub task_retention: Duration,
    /// Upper bound on retained terminal tasks; the oldest are reclaimed first.
    pub max_retained_tasks: usize,
    /// Events kept in the in-memory tail.
    pub event_tail_max: usize,
    /// Broadcast channel capacity (slow subscribers lose events).
    pub event_channel_capacity: usize,
    /// Output events kept per attempt; later non-final events are dropped
    /// (a `final` always counts).
    pub max_output_events_per_attempt: usize,
    /// Heartbeat interval of the optional detach loop.
    pub heartbeat_interval: Duration,
    /// Missed heartbeats before the detach loop detaches a session.
    pub heartbeat_miss_threshold: u32,
    /// Period of the background reclamation sweep.
    pub sweep_interval: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            token_secret: None,
            max_spawn_depth: 4,
            worker_token_ttl: Duration::from_secs(1800),
            task_retention: Duration::from_secs(300),
            max_retained_tasks: 100_000,
            event_tail_max: 1024,
            event_channel_capacity: 256,
            max_output_events_per_attempt: 10_000,
            heartbeat_interval: Duration::from_secs(300),
            heartbeat_miss_threshold: 3,
            sweep_interval: Duration::from_secs(1),
        }
    }
}

//! One attempt: spawn, feed stdin, read stdout (plain or streaming), drain stderr,
//! await exit, record the verdict. Limits and cancellation drop this future, which
//! kills the process group (see [`super::process::ProcessGroup`]).

use super::framing;
use super::process::{self, AbortOnDrop, CappedReader, ProcessGroup};
use super::{ShellSpec, StreamMode, SubprocessConfig};
use mse_engine::{ContentRef, OutputEvent, SpawnCtx, SpawnError, Spawner};
use serde_json::{json, Value};
use std::io;
use std::process::ExitStatus;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, BufReader};
use tokio::process::ChildStdout;

pub(crate) struct SubprocessSpawner {
    pub agent: Arc<str>,
    pub spec: ShellSpec,
    pub cfg: Arc<SubprocessConfig>,
}

type Stdout = BufReader<CappedReader<ChildStdout>>;

#[async_trait::async_trait]
impl Spawner for SubprocessSpawner {
    async fn spawn(&self, ctx: &SpawnCtx) -> Result<(), SpawnError> {
        let limit = self.cfg.time_limit;
        let result = tokio::select! {
            r = tokio::time::timeout(limit, self.run(ctx)) => r.unwrap_or_else(|_| {
                Err(SpawnError::other(format!("subprocess time limit exceeded ({limit:?})")))
            }),
            _ = ctx.cancel.cancelled() => Err(SpawnError::cancelled()),
        };
        if let Err(e) = &result {
            tracing::debug!(agent = %self.agent, task = %ctx.task_id, error = %e, "subprocess worker failed");
        }
        result
    }
}

impl SubprocessSpawner {
    async fn run(&self, ctx: &SpawnCtx) -> Result<(), SpawnError> {
        let mut cmd = process::command(&self.cfg, &self.spec, ctx);
        let mut group = ProcessGroup::spawn(&mut cmd)
            .map_err(|e| SpawnError::internal(format!("spawn failed: {e}")))?;
        let child = group.child();
        let (stdin, stdout, stderr) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let (Some(stdout), Some(stderr)) = (stdout, stderr) else {
            return Err(SpawnError::internal(
                "spawn failed: missing stdout/stderr pipe",
            ));
        };
        // Declared after `group` so they are dropped (aborted) before it kills the group.
        let stderr_task = AbortOnDrop(tokio::spawn(process::drain_capped(
            stderr,
            self.cfg.max_stderr_bytes,
        )));
        let stdin_task = AbortOnDrop(tokio::spawn(process::feed_stdin(stdin, ctx.prompt.clone())));
        let mut stdout = BufReader::new(CappedReader::new(stdout, self.cfg.max_output_bytes));

        match self.spec.mode {
            StreamMode::Plain => {
                let mut out = Vec::new();
                stdout
                    .read_to_end(&mut out)
                    .await
                    .map_err(|e| self.read_error("stdout read", e))?;
                let status = wait(&mut group, None::<&mut Stdout>, self).await?;
                check_stdin(stdin_task).await?;
                let mut stderr_task = stderr_task;
                let err = (&mut stderr_task.0).await.unwrap_or_default();
                // A child that posted its result over HTTP (with its worker
                // handle) and printed nothing keeps that result, as long as it
                // exited cleanly.
                let posted =
                    out.iter().all(u8::is_ascii_whitespace) && status.success() && ctx.has_final();
                if !posted {
                    let (value, ok) = plain_verdict(&out, &err, status);
                    ctx.finish(value, ok);
                }
            }
            mode => {
                let mut last_final: Option<(ContentRef, bool)> = None;
                let mut on_event = |ev: OutputEvent| {
                    if let OutputEvent::Final { content, ok } = &ev {
                        last_final = Some((content.clone(), *ok));
                    }
                    ctx.emit(ev);
                };
                let (res, what) = match mode {
                    StreamMode::NdjsonLines => (
                        framing::ndjson(&mut stdout, &mut on_event).await,
                        "ndjson read",
                    ),
                    StreamMode::SseEvents => {
                        (framing::sse(&mut stdout, &mut on_event).await, "sse read")
                    }
                    _ => (
                        framing::length_prefixed(&mut stdout, &mut on_event).await,
                        "len read",
                    ),
                };
                res.map_err(|e| self.read_error(what, e))?;
                let status = wait(&mut group, Some(&mut stdout), self).await?;
                check_stdin(stdin_task).await?;
                drop(stderr_task);
                let exit_success = status.success();
                match last_final {
                    Some((content, final_ok)) => {
                        if final_ok && !exit_success {
                            // The engine takes the last final: correct the verdict.
                            ctx.emit(OutputEvent::Final { content, ok: false });
                        }
                    }
                    None => ctx.finish(
                        json!({
                            "raw": "",
                            "note": "streaming mode: no Final event received",
                            "exit_success": exit_success,
                        }),
                        false,
                    ),
                }
            }
        }
        Ok(())
    }

    fn read_error(&self, what: &str, e: io::Error) -> SpawnError {
        if process::is_output_limit(&e) {
            SpawnError::other(format!(
                "subprocess output limit exceeded ({} bytes)",
                self.cfg.max_output_bytes
            ))
        } else {
            SpawnError::other(format!("{what}: {e}"))
        }
    }
}

/// Awaits the child's exit. When `rest` is given (streaming modes stop reading at their
/// framing's end), the remaining stdout is drained meanwhile — still under the output
/// cap — so a child that keeps writing cannot block on a full pipe.
async fn wait<R: AsyncRead + Unpin>(
    group: &mut ProcessGroup,
    mut rest: Option<&mut R>,
    sp: &SubprocessSpawner,
) -> Result<ExitStatus, SpawnError> {
    let wait_err = |e: io::Error| SpawnError::internal(format!("wait: {e}"));
    let mut sink = tokio::io::sink();
    loop {
        let Some(r) = rest.as_deref_mut() else {
            return group.child().wait().await.map_err(wait_err);
        };
        tokio::select! {
            drained = tokio::io::copy(r, &mut sink) => {
                match drained {
                    Err(e) if process::is_output_limit(&e) => return Err(sp.read_error("", e)),
                    _ => rest = None,
                }
            }
            status = group.child().wait() => return status.map_err(wait_err),
        }
    }
}

/// Fails on a stdin write error (EPIPE excluded). A write still pending after the child
/// exited (a descendant holds stdin open without reading) is abandoned.
async fn check_stdin(mut task: AbortOnDrop<io::Result<()>>) -> Result<(), SpawnError> {
    if !task.0.is_finished() {
        return Ok(());
    }
    match (&mut task.0).await {
        Ok(Err(e)) => Err(SpawnError::internal(format!("stdin write: {e}"))),
        _ => Ok(()),
    }
}

/// Plain-mode `(value, ok)` of `blueprint.md` §9.3.
fn plain_verdict(stdout: &[u8], stderr: &[u8], status: ExitStatus) -> (Value, bool) {
    let text = String::from_utf8_lossy(stdout);
    let value = serde_json::from_str::<Value>(text.trim()).unwrap_or_else(|_| {
        json!({
            "raw": text.trim_end(),
            "stderr": String::from_utf8_lossy(stderr),
        })
    });
    (value, status.success())
}

//! Process plumbing: the command line and environment, the process-group guard that
//! kills and reaps on drop, the capped stdout reader, and the stdin/stderr pumps.

use super::{ShellSpec, SubprocessConfig};
use mse_engine::SpawnCtx;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::process::Stdio;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::process::{Child, ChildStdin, Command};
use tokio::task::JoinHandle;

/// The command for one attempt: argv, scrubbed environment, pipes, new process group.
pub(crate) fn command(cfg: &SubprocessConfig, spec: &ShellSpec, ctx: &SpawnCtx) -> Command {
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args);
    if !spec.use_stdin {
        cmd.arg(&*ctx.prompt);
    }
    cmd.env_clear();
    for (name, value) in &cfg.extra_env {
        cmd.env(name, value);
    }
    for name in &cfg.env_passthrough {
        if let Some(v) = std::env::var_os(name) {
            cmd.env(name, v);
        }
    }
    cmd.env("MSE_TOKEN_AGENT_ID", &ctx.worker_token.agent_id)
        .env("MSE_TOKEN_NONCE", &ctx.worker_token.nonce)
        .env("MSE_TASK_ID", ctx.task_id.as_str())
        .env("MSE_ATTEMPT", ctx.attempt.to_string())
        .env("MSE_CTX_AGENT", &*ctx.agent)
        .env("MSE_WORKER_HANDLE", ctx.worker_handle.as_str());
    if let Some(dir) = &cfg.working_dir {
        cmd.current_dir(dir);
    }
    cmd.stdin(if spec.use_stdin {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0)
    .kill_on_drop(true);
    cmd
}

/// A spawned child leading its own process group. Dropping it sends `SIGKILL` to the
/// whole group and reaps the child (in the background when it has not exited yet).
pub(crate) struct ProcessGroup {
    child: Option<Child>,
    pgid: libc::pid_t,
}

impl ProcessGroup {
    pub fn spawn(cmd: &mut Command) -> io::Result<Self> {
        let child = cmd.spawn()?;
        let pgid = child
            .id()
            .and_then(|id| libc::pid_t::try_from(id).ok())
            .ok_or_else(|| io::Error::other("spawned child has no pid"))?;
        Ok(Self {
            child: Some(child),
            pgid,
        })
    }

    pub fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("child present until drop")
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: plain syscall; the group was created for this child (process_group(0)).
        unsafe {
            libc::killpg(self.pgid, libc::SIGKILL);
        }
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    let _ = child.wait().await;
                });
            }
            // Tokio's orphan queue reaps it.
            Err(_) => drop(child),
        }
    }
}

/// Aborts a background task when dropped.
pub(crate) struct AbortOnDrop<T>(pub JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Marker error: stdout went past the configured cap.
#[derive(Debug)]
pub(crate) struct OutputLimitExceeded;

impl fmt::Display for OutputLimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("output limit exceeded")
    }
}

impl std::error::Error for OutputLimitExceeded {}

pub(crate) fn is_output_limit(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.is::<OutputLimitExceeded>())
}

/// Counts the bytes read and fails with [`OutputLimitExceeded`] beyond `max`.
pub(crate) struct CappedReader<R> {
    inner: R,
    read: usize,
    max: usize,
}

impl<R> CappedReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        Self {
            inner,
            read: 0,
            max,
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for CappedReader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.read > self.max {
            return Poll::Ready(Err(io::Error::other(OutputLimitExceeded)));
        }
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.read += buf.filled().len() - before;
                if this.read > this.max {
                    // Readers expect an error not to come with data.
                    buf.set_filled(before);
                    return Poll::Ready(Err(io::Error::other(OutputLimitExceeded)));
                }
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

/// Reads `r` to EOF (or error), keeping the first `cap` bytes and discarding the rest.
pub(crate) async fn drain_capped<R: AsyncRead + Unpin>(mut r: R, cap: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = cap.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    kept
}

/// Writes the directive and closes stdin. A child closing its stdin early (EPIPE) is
/// not an error.
pub(crate) async fn feed_stdin(
    stdin: Option<ChildStdin>,
    data: std::sync::Arc<str>,
) -> io::Result<()> {
    let Some(mut stdin) = stdin else {
        return Ok(());
    };
    match stdin.write_all(data.as_bytes()).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(e),
    }
    // `stdin` is dropped here, closing the pipe.
}

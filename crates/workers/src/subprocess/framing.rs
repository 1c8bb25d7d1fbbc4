//! Stream framings of `blueprint.md` §9.3. Each parser reads frames until its stop
//! condition, hands every parseable event to `on_event`, and skips unparseable frames
//! silently. I/O errors (including invalid UTF-8 in the text framings) are returned.

use mse_engine::OutputEvent;
use std::io;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt};

/// Largest `length_prefixed` frame; a bigger length stops reading.
pub(crate) const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

fn parse_event(text: &str) -> Option<OutputEvent> {
    serde_json::from_str(text).ok()
}

/// Reads one line (without its `\n`); `None` at EOF. Invalid UTF-8 is an error.
async fn next_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> io::Result<Option<String>> {
    buf.clear();
    if r.read_until(b'\n', buf).await? == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
    String::from_utf8(std::mem::take(buf))
        .map(Some)
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "stream did not contain valid UTF-8",
            )
        })
}

/// `ndjson_lines`: one event per line; lines trimmed, blank lines skipped.
pub(crate) async fn ndjson<R: AsyncBufRead + Unpin>(
    r: &mut R,
    on_event: &mut impl FnMut(OutputEvent),
) -> io::Result<()> {
    let mut buf = Vec::new();
    while let Some(line) = next_line(r, &mut buf).await? {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(ev) = parse_event(line) {
            on_event(ev);
        }
    }
    Ok(())
}

/// `sse_events`: `data:` lines accumulate (joined with `\n`), an empty line ends the
/// event, other lines are ignored; a pending event is flushed at EOF.
pub(crate) async fn sse<R: AsyncBufRead + Unpin>(
    r: &mut R,
    on_event: &mut impl FnMut(OutputEvent),
) -> io::Result<()> {
    let mut buf = Vec::new();
    let mut data = String::new();
    let mut flush = |data: &mut String| {
        let text = data.trim();
        if !text.is_empty() {
            if let Some(ev) = parse_event(text) {
                on_event(ev);
            }
        }
        data.clear();
    };
    while let Some(line) = next_line(r, &mut buf).await? {
        if line.is_empty() {
            flush(&mut data);
        } else if let Some(rest) = line.strip_prefix("data:") {
            let rest = rest.strip_prefix(' ').unwrap_or(rest);
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(rest);
        }
    }
    flush(&mut data);
    Ok(())
}

/// `length_prefixed`: 4-byte big-endian length, then that many bytes of JSON. Stops
/// without error at EOF (clean or inside a header), on a length of 0 or above
/// [`MAX_FRAME_BYTES`], or on a truncated payload.
pub(crate) async fn length_prefixed<R: AsyncRead + Unpin>(
    r: &mut R,
    on_event: &mut impl FnMut(OutputEvent),
) -> io::Result<()> {
    loop {
        let mut header = [0u8; 4];
        match r.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let len = u32::from_be_bytes(header) as usize;
        if len == 0 || len > MAX_FRAME_BYTES {
            return Ok(());
        }
        let mut payload = Vec::new();
        (&mut *r).take(len as u64).read_to_end(&mut payload).await?;
        if payload.len() < len {
            return Ok(());
        }
        if let Ok(ev) = serde_json::from_slice(&payload) {
            on_event(ev);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect_sync<F>(f: F) -> Vec<OutputEvent>
    where
        F: FnOnce(&mut dyn FnMut(OutputEvent)),
    {
        let mut out = Vec::new();
        f(&mut |e| out.push(e));
        out
    }

    fn run<Fut: std::future::Future<Output = io::Result<()>>>(fut: Fut) -> io::Result<()> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(fut)
    }

    #[test]
    fn sse_multiline_and_eof_flush() {
        let input: &[u8] = b"event: x\nid: 1\n: comment\ndata: {\"type\":\"progress\",\ndata:\"stage\":\"a\"}\n\ndata: {\"type\":\"progress\",\"stage\":\"b\"}";
        let evs = collect_sync(|push| {
            let mut r = input;
            run(sse(&mut r, &mut |e| push(e))).unwrap();
        });
        let stages: Vec<_> = evs
            .iter()
            .map(|e| match e {
                OutputEvent::Progress { stage, .. } => stage.clone(),
                _ => panic!("unexpected {e:?}"),
            })
            .collect();
        assert_eq!(stages, ["a", "b"]);
    }

    #[test]
    fn length_prefixed_stops_on_oversize_header() {
        let mut input = Vec::new();
        input.extend_from_slice(&(MAX_FRAME_BYTES as u32 + 1).to_be_bytes());
        input.extend_from_slice(b"{}");
        let evs = collect_sync(|push| {
            let mut r = input.as_slice();
            run(length_prefixed(&mut r, &mut |e| push(e))).unwrap();
        });
        assert!(evs.is_empty());
    }
}

//! A client that never finishes its request headers loses its connection after
//! the header read timeout instead of holding it forever.

mod common;
use common::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn stalled_headers_are_cut_off() {
    let server = start_with(|c| c.limits.header_read_timeout = Duration::from_millis(300)).await;
    let addr = server
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // Headers that never end.
    tcp.write_all(b"GET /v1/healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let t0 = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the server kept a stalled connection open");
    assert!(t0.elapsed() < Duration::from_secs(3));
    // Well-behaved clients are unaffected.
    server.healthy().await;
}

//! Run the server without the CLI (ephemeral secret, in-memory stores, no
//! logging), e.g. to replay the conformance cases against it:
//!
//! `cargo run -p mse-server --example serve -- 127.0.0.1:7790`
//!
//! Runs until the process is killed (the `mse` binary handles signals).

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bind = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7790".into());
    let mut cfg = mse_server::ServerConfig::ephemeral(std::env::temp_dir().join("mse-example"));
    cfg.bind = bind.parse()?;
    let bound = mse_server::bind(cfg).await?;
    println!("{}", bound.describe());
    bound.run(std::future::pending()).await?;
    Ok(())
}

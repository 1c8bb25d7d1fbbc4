//! The data-plane output store contract.

use mse_engine::OutputEvent;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputRecord {
    /// `out-` + 10 hex.
    pub id: String,
    pub task_id: String,
    pub attempt: u32,
    pub producer_agent: String,
    pub event: OutputEvent,
    pub parent_refs: Vec<String>,
}

#[async_trait::async_trait]
pub trait OutputStore: Send + Sync + 'static {
    /// Store a record (its `id` is assigned here) and return the id.
    async fn append(&self, record: OutputRecord) -> Result<String, crate::StoreError>;
    /// By id, else the newest record of that producer.
    async fn get(&self, key: &str) -> Result<Option<OutputRecord>, crate::StoreError>;
    async fn count(&self) -> Result<usize, crate::StoreError>;
}

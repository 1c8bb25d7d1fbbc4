//! In-memory [`EnhanceSettingStore`].

use std::collections::BTreeMap;

use parking_lot::RwLock;

use crate::settings::{EnhanceSetting, EnhanceSettingStore};
use crate::StoreError;

/// Enhance settings kept in memory (lost on restart), by id in a `BTreeMap` so
/// `list` is ascending.
#[derive(Default)]
pub struct MemoryEnhanceSettingStore {
    settings: RwLock<BTreeMap<String, EnhanceSetting>>,
}

impl MemoryEnhanceSettingStore {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait::async_trait]
impl EnhanceSettingStore for MemoryEnhanceSettingStore {
    async fn get(&self, id: &str) -> Result<Option<EnhanceSetting>, StoreError> {
        Ok(self.settings.read().get(id).cloned())
    }

    async fn put(&self, setting: EnhanceSetting) -> Result<(), StoreError> {
        self.settings.write().insert(setting.id.clone(), setting);
        Ok(())
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.settings.write().remove(id).is_some())
    }

    async fn list(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.settings.read().keys().cloned().collect())
    }
}

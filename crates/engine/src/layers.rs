//! Layer registry: base layers (always applied) and hint layers selected by a
//! Blueprint's `spawner_hints.layers`.

use crate::spawn::{Spawner, SpawnerLayer};
use dashmap::DashMap;
use parking_lot::RwLock;
use std::sync::Arc;

#[derive(Default)]
pub struct LayerRegistry {
    base: RwLock<Vec<Arc<dyn SpawnerLayer>>>,
    by_key: DashMap<String, Arc<dyn SpawnerLayer>>,
}

impl LayerRegistry {
    /// A layer applied to every linked spawner, innermost first, in registration order.
    pub fn add_base(&self, layer: Arc<dyn SpawnerLayer>) {
        self.base.write().push(layer);
    }

    /// A layer selected by the hint key `key`.
    pub fn register(&self, key: &str, layer: Arc<dyn SpawnerLayer>) {
        self.by_key.insert(key.to_string(), layer);
    }

    pub fn keys(&self) -> Vec<String> {
        let mut k: Vec<String> = self.by_key.iter().map(|e| e.key().clone()).collect();
        k.sort();
        k
    }

    /// Wrap `inner`: base layers, then each known hint key in order (later entries
    /// outermost; unknown keys are skipped; duplicates wrap twice).
    pub fn link(&self, inner: Arc<dyn Spawner>, hints: &[String]) -> Arc<dyn Spawner> {
        let mut s = inner;
        for layer in self.base.read().iter() {
            s = layer.wrap(s);
        }
        for key in hints {
            if let Some(layer) = self.by_key.get(key) {
                s = layer.wrap(s);
            }
        }
        s
    }
}

//! Worker output events (the output tail) and their content references.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Content carried by an output event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ContentRef {
    Inline {
        value: Value,
    },
    FileRef {
        path: String,
        #[serde(default)]
        mime: Option<String>,
        #[serde(default)]
        size_hint: Option<u64>,
    },
}

impl ContentRef {
    /// The value a `final` event contributes as the attempt's result.
    pub fn into_result_value(self) -> Value {
        match self {
            ContentRef::Inline { value } => value,
            ContentRef::FileRef {
                path,
                mime,
                size_hint,
            } => serde_json::json!({"file_ref": path, "mime": mime, "size_hint": size_hint}),
        }
    }
}

/// One event in an attempt's output tail.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputEvent {
    Progress {
        stage: String,
        #[serde(default)]
        note: Option<String>,
    },
    Partial {
        chunk: ContentRef,
    },
    Artifact {
        name: String,
        content: ContentRef,
    },
    Final {
        content: ContentRef,
        ok: bool,
    },
}

impl OutputEvent {
    /// A `final` event with an inline value.
    pub fn final_inline(value: Value, ok: bool) -> Self {
        OutputEvent::Final {
            content: ContentRef::Inline { value },
            ok,
        }
    }

    pub fn is_final(&self) -> bool {
        matches!(self, OutputEvent::Final { .. })
    }
}

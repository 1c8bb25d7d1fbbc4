//! WebSocket messages (text frames holding one JSON object tagged by `type`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Server -> client.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    Ask {
        req_id: String,
        task_id: String,
        question: Value,
    },
    HookBefore {
        req_id: String,
        task_id: String,
        agent: String,
        attempt: u32,
    },
    HookAfter {
        req_id: String,
        task_id: String,
        agent: String,
        attempt: u32,
        result: Value,
    },
    Spawn {
        req_id: String,
        task_id: String,
        agent: String,
        attempt: u32,
        capability_token: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        worker_handle: Option<String>,
        directive: String,
    },
    /// A client frame could not be used; `req_id` names the request it failed, if any.
    Error {
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        req_id: Option<String>,
    },
}

/// Client -> server. Unknown extra fields are ignored.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    Answer {
        req_id: String,
        value: Value,
    },
    HookAck {
        req_id: String,
        ok: bool,
        #[serde(default)]
        reason: Option<String>,
    },
    SpawnAck {
        req_id: String,
        #[serde(default)]
        value: Value,
        #[serde(default = "yes")]
        ok: bool,
        #[serde(default)]
        error: Option<String>,
    },
}

fn yes() -> bool {
    true
}

impl ClientMsg {
    pub fn req_id(&self) -> &str {
        match self {
            ClientMsg::Answer { req_id, .. }
            | ClientMsg::HookAck { req_id, .. }
            | ClientMsg::SpawnAck { req_id, .. } => req_id,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            ClientMsg::Answer { .. } => "answer",
            ClientMsg::HookAck { .. } => "hook_ack",
            ClientMsg::SpawnAck { .. } => "spawn_ack",
        }
    }
}

/// The kind of a pending request; also the `req_id` tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    Ask,
    HookBefore,
    Spawn,
}

impl RequestKind {
    pub fn tag(self) -> &'static str {
        match self {
            RequestKind::Ask => "ask",
            RequestKind::HookBefore => "hb",
            RequestKind::Spawn => "spawn",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RequestKind::Ask => "ask",
            RequestKind::HookBefore => "hook_before",
            RequestKind::Spawn => "spawn",
        }
    }

    /// Whether `reply` is the expected answer to this kind of request.
    pub fn accepts(self, reply: &ClientMsg) -> bool {
        matches!(
            (self, reply),
            (RequestKind::Ask, ClientMsg::Answer { .. })
                | (RequestKind::HookBefore, ClientMsg::HookAck { .. })
                | (RequestKind::Spawn, ClientMsg::SpawnAck { .. })
        )
    }
}

/// A random UUID v4, lowercase and hyphenated, from the OS RNG.
pub fn uuid_v4() -> String {
    let mut b = [0u8; 16];
    mse_engine::ids::random_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = mse_engine::ids::to_hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn client_defaults_and_unknown_fields() {
        let m: ClientMsg =
            serde_json::from_value(json!({"type":"spawn_ack","req_id":"r","extra":1})).unwrap();
        assert_eq!(
            m,
            ClientMsg::SpawnAck {
                req_id: "r".into(),
                value: Value::Null,
                ok: true,
                error: None
            }
        );
        assert!(
            serde_json::from_value::<ClientMsg>(json!({"type":"hook_ack","req_id":"r"})).is_err()
        );
        assert!(
            serde_json::from_value::<ClientMsg>(json!({"type":"answer","req_id":"r"})).is_err()
        );
        assert!(serde_json::from_value::<ClientMsg>(
            json!({"type":"Answer","req_id":"r","value":1})
        )
        .is_err());
    }

    #[test]
    fn server_messages_omit_absent_handle() {
        let m = ServerMsg::Spawn {
            req_id: "r".into(),
            task_id: "T-1".into(),
            agent: "a".into(),
            attempt: 1,
            capability_token: "t".into(),
            worker_handle: None,
            directive: "d".into(),
        };
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["type"], "spawn");
        assert!(v.get("worker_handle").is_none());
        assert!(v.get("parent_req_id").is_none());
    }

    #[test]
    fn uuid_shape() {
        let u = uuid_v4();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"));
    }
}

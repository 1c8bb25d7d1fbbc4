//! Capability tokens: format, signing, wire encoding.
//!
//! The wire form is the reference's (compact JSON of the fields below, base64url
//! without padding). The signing input is NOT the reference's `|`-joined string,
//! which is ambiguous because `agent_id` is caller-chosen: every field is
//! length-prefixed instead, under a domain-separation tag:
//!
//! ```text
//! "mse-captoken-v1" || for each field: u32 big-endian byte length || bytes
//! fields: agent_id, role (wire name), scope count (decimal), each scope,
//!         issued_at (decimal), expire_at (decimal), max_uses ("none" | decimal), nonce
//! ```
//!
//! MAC = HMAC-SHA256(secret, input), rendered as 64 lowercase hex.

use crate::gate::Role;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Upper bound on any token lifetime (ten years), so `issued_at + ttl` never overflows.
pub const MAX_TOKEN_TTL_SECS: u64 = 10 * 365 * 24 * 3600;

/// A signed capability token. Immutable; remaining uses live in the server-side record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapToken {
    pub agent_id: String,
    pub role: Role,
    pub scopes: Vec<String>,
    pub issued_at: u64,
    pub expire_at: u64,
    #[serde(default)]
    pub max_uses: Option<u32>,
    pub nonce: String,
    pub sig_hex: String,
}

/// Why a presented token could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TokenDecodeError {
    #[error("base64 decode failed: {0}")]
    Base64(String),
    #[error("json parse failed: {0}")]
    Json(String),
}

impl CapToken {
    /// Wire form: compact JSON, base64url without padding.
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).expect("token serializes");
        URL_SAFE_NO_PAD.encode(json)
    }

    pub fn decode(s: &str) -> Result<CapToken, TokenDecodeError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(s.trim())
            .map_err(|e| TokenDecodeError::Base64(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| TokenDecodeError::Json(e.to_string()))
    }

    /// True when `now` is at or past `expire_at`.
    pub fn is_expired(&self, now: u64) -> bool {
        now >= self.expire_at
    }

    /// Field-by-field equality with a constant-time, case-insensitive comparison
    /// of the MAC.
    pub fn same_as(&self, other: &CapToken) -> bool {
        let (a, b) = (self.sig_hex.as_bytes(), other.sig_hex.as_bytes());
        let sig_eq = a.len() == b.len() && {
            let mut diff = 0u8;
            for (x, y) in a.iter().zip(b) {
                diff |= x.to_ascii_lowercase() ^ y.to_ascii_lowercase();
            }
            bool::from(diff.ct_eq(&0))
        };
        sig_eq
            && self.agent_id == other.agent_id
            && self.role == other.role
            && self.scopes == other.scopes
            && self.issued_at == other.issued_at
            && self.expire_at == other.expire_at
            && self.max_uses == other.max_uses
            && self.nonce == other.nonce
    }
}

/// The unambiguous signing input (see the module doc).
pub fn signing_input(t: &CapToken) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + t.agent_id.len());
    out.extend_from_slice(b"mse-captoken-v1");
    let mut field = |bytes: &[u8]| {
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(bytes);
    };
    field(t.agent_id.as_bytes());
    field(t.role.as_str().as_bytes());
    field(t.scopes.len().to_string().as_bytes());
    for s in &t.scopes {
        field(s.as_bytes());
    }
    field(t.issued_at.to_string().as_bytes());
    field(t.expire_at.to_string().as_bytes());
    match t.max_uses {
        None => field(b"none"),
        Some(n) => field(n.to_string().as_bytes()),
    }
    field(t.nonce.as_bytes());
    out
}

/// Holds the signing key. The secret is never printed (Debug is redacted).
#[derive(Clone)]
pub struct TokenSigner {
    /// HMAC state with the key already absorbed; cloned per MAC.
    keyed: HmacSha256,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSigner(<redacted>)")
    }
}

impl TokenSigner {
    pub fn new(secret: impl AsRef<[u8]>) -> Self {
        Self {
            keyed: HmacSha256::new_from_slice(secret.as_ref()).expect("HMAC accepts any key size"),
        }
    }

    /// A signer with 32 fresh bytes from the OS RNG.
    pub fn random() -> Self {
        let mut secret = [0u8; 32];
        crate::ids::random_bytes(&mut secret);
        Self::new(secret)
    }

    fn mac(&self, t: &CapToken) -> HmacSha256 {
        let mut mac = self.keyed.clone();
        mac.update(&signing_input(t));
        mac
    }

    /// Mint a token: fresh nonce, `expire_at = now + ttl` (ttl capped), signed.
    pub fn mint(
        &self,
        agent_id: &str,
        role: Role,
        scopes: Vec<String>,
        ttl_secs: u64,
        max_uses: Option<u32>,
        now: u64,
    ) -> CapToken {
        let mut t = CapToken {
            agent_id: agent_id.to_string(),
            role,
            scopes,
            issued_at: now,
            expire_at: now.saturating_add(ttl_secs.min(MAX_TOKEN_TTL_SECS)),
            max_uses,
            nonce: crate::ids::nonce(),
            sig_hex: String::new(),
        };
        t.sig_hex = crate::ids::to_hex(&self.mac(&t).finalize().into_bytes());
        t
    }

    /// Recompute the MAC and compare in constant time (either hex case accepted).
    pub fn verify_mac(&self, t: &CapToken) -> bool {
        let Ok(sig) = hex::decode(&t.sig_hex) else {
            return false;
        };
        self.mac(t).verify_slice(&sig).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> TokenSigner {
        TokenSigner::new(b"example-secret")
    }

    #[test]
    fn mint_verify_roundtrip() {
        let s = signer();
        let t = s.mint(
            "cli-op",
            Role::Operator,
            vec!["*".into()],
            60,
            Some(3),
            1_700_000_000,
        );
        assert!(s.verify_mac(&t));
        let decoded = CapToken::decode(&t.encode()).unwrap();
        assert_eq!(decoded, t);
        assert!(s.verify_mac(&decoded));
        assert_eq!(t.expire_at, 1_700_000_060);
        assert_eq!(t.nonce.len(), 32);
    }

    #[test]
    fn tampered_fields_fail() {
        let s = signer();
        let t = s.mint("a", Role::Worker, vec!["*".into()], 60, None, 100);
        let mut x = t.clone();
        x.expire_at += 1;
        assert!(!s.verify_mac(&x));
        let mut x = t.clone();
        x.role = Role::Senior;
        assert!(!s.verify_mac(&x));
        let mut x = t.clone();
        x.max_uses = Some(1);
        assert!(!s.verify_mac(&x));
        // Other secret.
        assert!(!TokenSigner::new(b"other").verify_mac(&t));
        // Upper-case hex is still valid.
        let mut x = t.clone();
        x.sig_hex = x.sig_hex.to_uppercase();
        assert!(s.verify_mac(&x));
        // Garbage hex is invalid, not a panic.
        let mut x = t;
        x.sig_hex = "zz".into();
        assert!(!s.verify_mac(&x));
    }

    #[test]
    fn signing_input_is_unambiguous() {
        // With a '|' join these two would sign the same bytes.
        let base = CapToken {
            agent_id: "a|Worker".into(),
            role: Role::Worker,
            scopes: vec!["x".into(), "y".into()],
            issued_at: 1,
            expire_at: 2,
            max_uses: None,
            nonce: "n".into(),
            sig_hex: String::new(),
        };
        let mut other = base.clone();
        other.agent_id = "a".into();
        other.scopes = vec!["x,y".into()];
        assert_ne!(signing_input(&base), signing_input(&other));
    }

    #[test]
    fn decode_errors() {
        let s = signer();
        let t = s.mint("a", Role::Worker, vec!["*".into()], 60, None, 100);
        let padded = format!("{}=", t.encode());
        assert!(matches!(
            CapToken::decode(&padded),
            Err(TokenDecodeError::Base64(_))
        ));
        let not_json = URL_SAFE_NO_PAD.encode(b"{nope");
        assert!(matches!(
            CapToken::decode(&not_json),
            Err(TokenDecodeError::Json(_))
        ));
        // Unknown extra fields are ignored.
        let mut v = serde_json::to_value(&t).unwrap();
        v["extra"] = serde_json::json!(1);
        let enc = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap());
        assert_eq!(CapToken::decode(&enc).unwrap(), t);
    }

    #[test]
    fn huge_ttl_saturates() {
        let t = signer().mint("a", Role::Operator, vec![], u64::MAX, None, u64::MAX - 5);
        assert_eq!(t.expire_at, u64::MAX);
    }

    #[test]
    fn debug_redacts_secret() {
        assert!(!format!("{:?}", signer()).contains("example"));
    }
}

//! Identifiers and secret material.
//!
//! Every id and secret is drawn from the OS RNG (identifiers are not meant to be
//! guessable either). To keep the per-step cost low the bytes are fetched from the
//! OS in blocks and handed out once each from a thread-local buffer.

use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::fmt;

const POOL_BYTES: usize = 4096;

thread_local! {
    static POOL: RefCell<(Vec<u8>, usize)> = const { RefCell::new((Vec::new(), 0)) };
}

/// Fill `out` with bytes from the OS RNG (buffered per thread, each byte used once).
pub fn random_bytes(out: &mut [u8]) {
    if out.len() > POOL_BYTES / 4 {
        getrandom::fill(out).expect("OS random number generator unavailable");
        return;
    }
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let (buf, pos) = &mut *pool;
        if buf.is_empty() || *pos + out.len() > buf.len() {
            buf.resize(POOL_BYTES, 0);
            getrandom::fill(buf).expect("OS random number generator unavailable");
            *pos = 0;
        }
        out.copy_from_slice(&buf[*pos..*pos + out.len()]);
        // Zero what was handed out so a later memory disclosure cannot replay it.
        buf[*pos..*pos + out.len()].fill(0);
        *pos += out.len();
    });
}

/// `n` random bytes as `2n` lowercase hex characters.
pub fn random_hex(n: usize) -> String {
    let mut bytes = [0u8; 32];
    assert!(n <= bytes.len());
    random_bytes(&mut bytes[..n]);
    to_hex(&bytes[..n])
}

/// Lowercase hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.extend_from_slice(&[DIGITS[(b >> 4) as usize], DIGITS[(b & 0xf) as usize]]);
    }
    String::from_utf8(out).expect("hex digits are ASCII")
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $bytes:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(std::sync::Arc<str>);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A fresh random id.
            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, random_hex($bytes)).into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.into())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s.into())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// Engine task id: `T-` + 16 hex.
    TaskId, "T-", 8
);
string_id!(
    /// Engine session id: `S-` + 16 hex.
    SessionId, "S-", 8
);
string_id!(
    /// Worker handle: `wh-` + 32 hex (128 bits), a short bearer for one attempt.
    WorkerHandle, "wh-", 16
);

/// Resume key of a senior query: `R-senior-<task id>`.
pub fn senior_resume_key(task: &TaskId) -> String {
    format!("R-senior-{task}")
}

/// A 128-bit nonce as 32 lowercase hex characters (token ids).
pub fn nonce() -> String {
    random_hex(16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let t = TaskId::generate();
        assert_eq!(t.as_str().len(), 18);
        assert!(t.as_str().starts_with("T-"));
        let h = WorkerHandle::generate();
        assert_eq!(h.as_str().len(), 3 + 32);
        assert_eq!(nonce().len(), 32);
        assert_ne!(nonce(), nonce());
    }

    #[test]
    fn unique_across_threads() {
        let handles: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..2000).map(|_| nonce()).collect::<Vec<_>>()))
            .collect();
        let mut all = std::collections::HashSet::new();
        for h in handles {
            for n in h.join().unwrap() {
                assert!(all.insert(n));
            }
        }
    }
}

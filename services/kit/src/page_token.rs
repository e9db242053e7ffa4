//! Opaque page tokens: the cursor of a list call, encrypted and
//! authenticated (AES-256-GCM) with a key kept in the service's store.
//!
//! A plain cursor would tell a caller where the previous page stopped, which
//! may be a record it is not allowed to see. Sealed tokens reveal nothing,
//! cannot be forged, and are bound to a context (the caller and the filter),
//! so a token is useless to anyone else or with another filter. The key
//! survives restarts, so tokens do too.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::KitError;
use crate::store::Store;

const KEY_NAME: &[u8] = b"page-token-key";

/// Seals and opens page tokens for one service.
pub struct PageTokens {
    key: LessSafeKey,
}

impl std::fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageTokens").finish_non_exhaustive()
    }
}

/// The context a token is bound to: its parts joined by NUL bytes
/// (typically the method, the caller and the encoded query).
pub fn context(parts: &[&[u8]]) -> Vec<u8> {
    parts.join(&0u8)
}

impl PageTokens {
    /// Loads the service's token key from its store, creating it once.
    pub fn open_or_create(store: &Store) -> Result<Self, KitError> {
        let meta = store.tree("meta")?;
        let mut fresh = [0u8; 32];
        aws_lc_rs::rand::fill(&mut fresh)
            .map_err(|_| KitError::Config("no randomness for the page-token key".into()))?;
        // Only the first writer's key is kept, so concurrent starts agree.
        let _ = meta.compare_and_swap(KEY_NAME, None as Option<&[u8]>, Some(&fresh[..]))?;
        let stored = meta
            .get(KEY_NAME)?
            .ok_or_else(|| KitError::Corrupt("page-token key vanished".into()))?;
        let unbound = UnboundKey::new(&AES_256_GCM, &stored)
            .map_err(|_| KitError::Corrupt("page-token key has the wrong length".into()))?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
        })
    }

    /// Seals `cursor` for use with `context` only.
    pub fn seal(&self, context: &[u8], cursor: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        // The nonce is random per token; a failure here means the OS has no
        // randomness, and an empty token (no further pages) is the safe answer.
        if aws_lc_rs::rand::fill(&mut nonce).is_err() {
            return String::new();
        }
        let mut buf = cursor.to_vec();
        if self
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context),
                &mut buf,
            )
            .is_err()
        {
            return String::new();
        }
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// Opens a token sealed for `context`; `None` if it is malformed, forged,
    /// or was issued for another caller or filter.
    pub fn open(&self, context: &[u8], token: &str) -> Option<Vec<u8>> {
        let raw = URL_SAFE_NO_PAD.decode(token).ok()?;
        if raw.len() < NONCE_LEN {
            return None;
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context), &mut buf)
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tokens_open_only_in_their_context_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let token = {
            let store = Store::open(dir.path(), &crate::store::StoreConfig::default()).unwrap();
            let tokens = PageTokens::open_or_create(&store).unwrap();
            let t = tokens.seal(b"alice|filter", b"cursor-1");
            assert_eq!(tokens.open(b"alice|filter", &t).unwrap(), b"cursor-1");
            assert!(tokens.open(b"bob|filter", &t).is_none());
            assert!(tokens.open(b"alice|filter", "garbage").is_none());
            t
        };
        let store = Store::open(dir.path(), &crate::store::StoreConfig::default()).unwrap();
        let tokens = PageTokens::open_or_create(&store).unwrap();
        assert_eq!(tokens.open(b"alice|filter", &token).unwrap(), b"cursor-1");
    }
}

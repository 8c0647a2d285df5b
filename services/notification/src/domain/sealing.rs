//! Webhook signing secrets at rest: sealed with AES-256-GCM (ring) under a
//! key the operator names (`NOTIFICATION_SECRET_KEYS`), never stored in the
//! clear. A signing secret cannot be hashed (it must sign), so it is
//! encrypted; a database dump or a replica read yields ciphertext only.
//!
//! A sealed value is `key id length (1 byte) | key id | nonce (12) |
//! ciphertext and tag`: the key id travels with each secret, so keys rotate
//! without downtime (add the new key first in the list, restart; rows
//! sealed under the old key still open while it stays in the list, and are
//! re-sealed under the new one the next time the service starts). The
//! additional data binds a secret to its endpoint, so a sealed secret copied
//! onto another endpoint's row does not open.

use base64::Engine as _;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// Why sealing or opening failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The key list is malformed.
    #[error("{0}")]
    Config(String),
    /// Sealed under a key id that is not in the list.
    #[error("sealed under key {0}, which is not in NOTIFICATION_SECRET_KEYS")]
    UnknownKey(String),
    /// Tampered, truncated, or bound to another endpoint.
    #[error("a sealed secret does not open (tampered, or not this endpoint's)")]
    Corrupt,
}

/// The operator's keys, the first one current.
pub struct Keyring {
    keys: Vec<(String, LessSafeKey)>,
    rng: SystemRandom,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("Keyring").field("key_ids", &ids).finish()
    }
}

impl Keyring {
    /// Parses `id:base64key,id:base64key` (each key 32 bytes, standard or
    /// URL-safe base64; ids 1-32 of `[A-Za-z0-9._-]`).
    pub fn parse(spec: &str) -> Result<Self, SealError> {
        let mut keys = Vec::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (id, b64) = entry
                .split_once(':')
                .ok_or_else(|| SealError::Config("each key is <id>:<base64 of 32 bytes>".into()))?;
            if id.is_empty()
                || id.len() > 32
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            {
                return Err(SealError::Config(format!(
                    "key id {id:?}: 1-32 of letters, digits, '.', '_', '-'"
                )));
            }
            if keys.iter().any(|(k, _)| k == id) {
                return Err(SealError::Config(format!("key id {id} appears twice")));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(b64))
                .map_err(|_| SealError::Config(format!("key {id}: not base64")))?;
            let unbound = UnboundKey::new(&AES_256_GCM, &bytes)
                .map_err(|_| SealError::Config(format!("key {id}: must be 32 bytes")))?;
            keys.push((id.to_owned(), LessSafeKey::new(unbound)));
        }
        if keys.is_empty() {
            return Err(SealError::Config("at least one key".into()));
        }
        Ok(Self {
            keys,
            rng: SystemRandom::new(),
        })
    }

    /// The id new secrets are sealed under.
    pub fn current_id(&self) -> &str {
        &self.keys[0].0
    }

    /// Seals `secret` for endpoint `bound_to` under the current key.
    pub fn seal(&self, bound_to: &str, secret: &str) -> Vec<u8> {
        let (id, key) = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .expect("the system random source works");
        let mut data = secret.as_bytes().to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(bound_to.as_bytes()),
            &mut data,
        )
        .expect("AES-GCM seals any message of this size");
        let mut out = Vec::with_capacity(1 + id.len() + NONCE_LEN + data.len());
        out.push(id.len() as u8);
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&data);
        out
    }

    /// The key id a sealed value names.
    pub fn key_id(sealed: &[u8]) -> Option<&str> {
        let n = usize::from(*sealed.first()?);
        std::str::from_utf8(sealed.get(1..1 + n)?).ok()
    }

    /// Opens a value sealed for `bound_to`.
    pub fn open(&self, bound_to: &str, sealed: &[u8]) -> Result<String, SealError> {
        let id = Self::key_id(sealed).ok_or(SealError::Corrupt)?;
        let (_, key) = self
            .keys
            .iter()
            .find(|(k, _)| k == id)
            .ok_or_else(|| SealError::UnknownKey(id.to_owned()))?;
        let rest = &sealed[1 + id.len()..];
        if rest.len() < NONCE_LEN {
            return Err(SealError::Corrupt);
        }
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Corrupt)?;
        let mut data = ct.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(bound_to.as_bytes()), &mut data)
            .map_err(|_| SealError::Corrupt)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SealError::Corrupt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K2: &str = "k2:Hx4dHBsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=";

    #[test]
    fn a_sealed_secret_opens_only_for_its_endpoint() {
        let ring = Keyring::parse(K1).unwrap();
        let sealed = ring.seal("endpoint-a", "whsec_abc");
        assert!(
            !sealed.windows(9).any(|w| w == b"whsec_abc"),
            "no clear text"
        );
        assert_eq!(ring.open("endpoint-a", &sealed).unwrap(), "whsec_abc");
        assert_eq!(ring.open("endpoint-b", &sealed), Err(SealError::Corrupt));
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(ring.open("endpoint-a", &tampered), Err(SealError::Corrupt));
        assert_ne!(ring.seal("endpoint-a", "whsec_abc"), sealed, "fresh nonce");
    }

    #[test]
    fn keys_rotate_by_putting_the_new_one_first() {
        let old = Keyring::parse(K1).unwrap();
        let sealed_old = old.seal("e", "s1");
        let both = Keyring::parse(&format!("{K2},{K1}")).unwrap();
        assert_eq!(both.current_id(), "k2");
        assert_eq!(both.open("e", &sealed_old).unwrap(), "s1");
        let sealed_new = both.seal("e", "s2");
        assert_eq!(Keyring::key_id(&sealed_new), Some("k2"));
        assert_eq!(
            old.open("e", &sealed_new),
            Err(SealError::UnknownKey("k2".into()))
        );
    }

    #[test]
    fn malformed_key_lists_are_refused() {
        for spec in [
            "",
            "k1",
            "k1:notbase64!",
            "k1:AAEC",
            &format!("{K1},{K1}"),
            "bad id:AAEC",
        ] {
            assert!(Keyring::parse(spec).is_err(), "{spec}");
        }
    }
}

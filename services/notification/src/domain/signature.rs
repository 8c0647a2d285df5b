//! Webhook signatures.
//!
//! `Wardline-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`
//! with one `v1=` per valid secret, newest first. Rotation without
//! downtime: after `RotateWebhookSecret` both the new and the previous
//! secret sign every request until the overlap ends, so a receiver can
//! switch to the new secret at any moment in between. Receivers should
//! reject timestamps older than five minutes (replay protection) and
//! compare in constant time ([`verify`] does both).

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header carrying the signature.
pub const HEADER: &str = "Wardline-Signature";
/// How old a timestamp a receiver should accept.
pub const TOLERANCE_SECS: i64 = 300;

type HmacSha256 = Hmac<Sha256>;

/// A new signing secret: 32 random bytes, base64url without padding.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Hex HMAC-SHA256 of `"<t>.<body>"` under `secret`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The header value for `body` at `timestamp`, signed with every secret in
/// `secrets` (newest first).
pub fn header(secrets: &[&str], timestamp: i64, body: &[u8]) -> String {
    let mut out = format!("t={timestamp}");
    for s in secrets {
        out.push_str(",v1=");
        out.push_str(&sign(s, timestamp, body));
    }
    out
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The header is not `t=...,v1=...`.
    #[error("malformed signature header")]
    Malformed,
    /// The timestamp is outside the tolerance.
    #[error("timestamp outside the tolerance")]
    Stale,
    /// No `v1` matches.
    #[error("no matching signature")]
    Mismatch,
}

/// What a receiver does: checks `header` for `body` with `secret` at `now`.
pub fn verify(secret: &str, header: &str, body: &[u8], now: i64) -> Result<(), VerifyError> {
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => timestamp = v.parse::<i64>().ok(),
            Some(("v1", v)) => candidates.push(v.to_owned()),
            _ => {}
        }
    }
    let t = timestamp.ok_or(VerifyError::Malformed)?;
    if candidates.is_empty() {
        return Err(VerifyError::Malformed);
    }
    if (now - t).abs() > TOLERANCE_SECS {
        return Err(VerifyError::Stale);
    }
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    for c in candidates {
        let Ok(bytes) = hex::decode(c) else { continue };
        // verify_slice compares in constant time.
        if mac.clone().verify_slice(&bytes).is_ok() {
            return Ok(());
        }
    }
    Err(VerifyError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector() {
        // HMAC-SHA256(key="key", "1700000000.{}"), computed with Python's hmac module.
        let sig = sign("key", 1_700_000_000, b"{}");
        assert_eq!(
            sig,
            "9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
        );
        assert_ne!(sig, sign("key", 1_700_000_001, b"{}"));
        assert_ne!(sig, sign("other", 1_700_000_000, b"{}"));
    }

    #[test]
    fn both_secrets_verify_during_rotation() {
        let (old, new) = (new_secret(), new_secret());
        assert_eq!(new.len(), 43);
        let body = br#"{"event":"ticket_received"}"#;
        let h = header(&[&new, &old], 1_000, body);
        assert!(h.starts_with("t=1000,v1="));
        assert_eq!(h.matches("v1=").count(), 2);
        assert_eq!(verify(&new, &h, body, 1_010), Ok(()));
        assert_eq!(verify(&old, &h, body, 1_010), Ok(()));
        assert_eq!(
            verify(&new_secret(), &h, body, 1_010),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(&new, &h, b"tampered", 1_010),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(verify(&new, &h, body, 1_000 + 301), Err(VerifyError::Stale));
        assert_eq!(
            verify(&new, "v1=ab", body, 1_000),
            Err(VerifyError::Malformed)
        );
    }
}

//! Password hashing with argon2id and secrets for tokens.

use crate::StoreError;
use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Hashes a password with argon2id (the crate's defaults: 19 MiB, 2 passes), PHC string format.
pub(crate) fn hash_password(password: &str) -> Result<String, StoreError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| StoreError::Hash(e.to_string()))
}

/// Checks a password against a stored PHC hash. A corrupt hash never matches.
pub(crate) fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// A hash of a password nobody has, checked when the login does not exist so
/// that a wrong login and a wrong password take the same time.
pub(crate) fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("flvpc-dummy-password").unwrap_or_default())
}

/// A new random secret with a recognisable prefix (so leaked tokens can be found by scanners).
pub(crate) fn new_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// How a secret is stored: SHA-256, hex. Secrets are 256 random bits, so a fast hash is enough.
pub(crate) fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify() {
        let hash = hash_password("correct horse").expect("hash");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong horse", &hash));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn secrets_are_unique() {
        let a = new_secret("flvpc_");
        assert_eq!(a.len(), 6 + 64);
        assert_ne!(a, new_secret("flvpc_"));
        assert_eq!(secret_hash(&a).len(), 64);
    }
}

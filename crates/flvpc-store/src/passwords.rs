//! Password hashing with argon2id and secrets for tokens.
//!
//! Each argon2id run takes 19 MiB and tens of milliseconds of CPU, so the number running at
//! once is bounded (`Hashing`): a flood of sign-ins waits a little for a permit and then gets
//! `StoreError::Busy` (429), instead of growing the server's memory by 19 MiB per request.

use crate::{Store, StoreError};
use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// The bound on concurrent argon2 work.
#[derive(Debug)]
pub(crate) struct Hashing {
    permits: Arc<Semaphore>,
    /// How long a request waits for a permit before it is told to come back.
    wait: Duration,
}

impl Default for Hashing {
    fn default() -> Self {
        // One run per CPU keeps every CPU busy; 2..=4 keeps memory small on big hosts too.
        let cpus = std::thread::available_parallelism().map(usize::from).unwrap_or(2);
        Self { permits: Arc::new(Semaphore::new(cpus.clamp(2, 4))), wait: Duration::from_secs(3) }
    }
}

impl Store {
    /// Runs argon2 work with a permit, off the async workers. The permit moves into the
    /// blocking task, so a request dropped meanwhile cannot start more work than the bound.
    async fn with_hashing<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, StoreError> {
        let busy = || StoreError::Busy(Duration::from_secs(1));
        let permit = tokio::time::timeout(self.hashing.wait, self.hashing.permits.clone().acquire_owned())
            .await
            .map_err(|_| busy())?
            .map_err(|_| busy())?;
        tokio::task::spawn_blocking(move || {
            let out = work();
            drop(permit);
            out
        })
        .await
        .map_err(|e| StoreError::Hash(e.to_string()))
    }

    /// Hashes a new password (bounded, off the async workers).
    pub(crate) async fn hash(&self, password: &str) -> Result<String, StoreError> {
        let password = password.to_owned();
        self.with_hashing(move || hash_password(&password)).await?
    }

    /// Checks a password against a stored hash (bounded, off the async workers).
    pub(crate) async fn verify(&self, password: &str, hash: String) -> Result<bool, StoreError> {
        let password = password.to_owned();
        self.with_hashing(move || verify_password(&password, &hash)).await
    }
}

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

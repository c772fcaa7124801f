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

/// A piece of argon2 work for the hashing threads.
type Job = Box<dyn FnOnce() + Send>;

/// The bound on concurrent argon2 work: a few dedicated threads, and a semaphore in front of
/// them so that a request waits only briefly for its turn.
///
/// Dedicated threads, not tokio's blocking pool: the allocator keeps a freed 19 MiB block in
/// the arena of the thread that used it, so argon2 spread over the pool's many threads leaves
/// hundreds of MB resident after a flood even when only a few ran at once.
#[derive(Debug)]
pub(crate) struct Hashing {
    permits: Arc<Semaphore>,
    jobs: std::sync::mpsc::Sender<Job>,
    /// How long a request waits for a permit before it is told to come back.
    wait: Duration,
}

impl Default for Hashing {
    fn default() -> Self {
        // One run per CPU keeps every CPU busy; 2..=4 keeps memory small on big hosts too.
        let threads = std::thread::available_parallelism().map(usize::from).unwrap_or(2).clamp(2, 4);
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let queue = Arc::new(std::sync::Mutex::new(queue));
        for n in 0..threads {
            let queue = queue.clone();
            // The threads end when the store (the sender) is dropped.
            let spawned = std::thread::Builder::new().name(format!("flvpc-argon2-{n}")).spawn(move || loop {
                let job = match queue.lock() {
                    Ok(rx) => rx.recv(),
                    Err(poisoned) => poisoned.into_inner().recv(),
                };
                match job {
                    Ok(job) => job(),
                    Err(_) => return,
                }
            });
            if let Err(err) = spawned {
                tracing::error!("cannot start a password hashing thread: {err}");
            }
        }
        Self { permits: Arc::new(Semaphore::new(threads)), jobs, wait: Duration::from_secs(3) }
    }
}

impl Store {
    /// Runs argon2 work with a permit on a hashing thread. The permit moves into the job, so a
    /// request dropped meanwhile cannot start more work than the bound.
    async fn with_hashing<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, StoreError> {
        let busy = || StoreError::Busy(Duration::from_secs(1));
        let permit = tokio::time::timeout(self.hashing.wait, self.hashing.permits.clone().acquire_owned())
            .await
            .map_err(|_| busy())?
            .map_err(|_| busy())?;
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(work());
            drop(permit);
        });
        self.hashing.jobs.send(job).map_err(|_| StoreError::Hash("the password hashing threads are gone".into()))?;
        result.await.map_err(|_| StoreError::Hash("a password hashing thread failed".into()))
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

//! The gateway's persistent host key: made once, kept in the data dir, so that
//! users' known_hosts stay valid across restarts.

use flvpc_model::sshkey;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::LineEnding;
use russh::keys::PrivateKey;
use std::path::Path;

/// The host key and how it is shown to people.
#[derive(Clone)]
pub struct HostKey {
    /// The private key.
    pub private: PrivateKey,
    /// `SHA256:…`, as `ssh-keygen -lf` prints it.
    pub fingerprint: String,
    /// `ssh-ed25519 AAAA…`, for a known_hosts line.
    pub public: String,
}

impl std::fmt::Debug for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostKey").field("fingerprint", &self.fingerprint).finish_non_exhaustive()
    }
}

/// Reads `<data_dir>/ssh_host_ed25519_key`, or makes it (mode 0600) on first start.
pub fn load_or_create_host_key(data_dir: &Path) -> Result<HostKey, String> {
    let path = data_dir.join("ssh_host_ed25519_key");
    let private = if path.exists() {
        PrivateKey::read_openssh_file(&path)
            .map_err(|e| format!("cannot read the SSH host key {}: {e}", path.display()))?
    } else {
        // A seed from the OS generator (rand's), made into an Ed25519 key.
        let seed: [u8; 32] = rand::random();
        let key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
        key.write_openssh_file(&path, LineEnding::LF)
            .map_err(|e| format!("cannot write the SSH host key {}: {e}", path.display()))?;
        tracing::info!("made a new SSH host key {}", path.display());
        key
    };
    let public = private.public_key().to_openssh().map_err(|e| format!("cannot encode the host key: {e}"))?;
    let fingerprint = sshkey::fingerprint(private.public_key());
    Ok(HostKey { private, fingerprint, public })
}

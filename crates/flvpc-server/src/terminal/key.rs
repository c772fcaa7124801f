//! The server's own SSH client key for browser terminals: made once, kept in the data dir (0600,
//! like the gateway's host key), so that machines keep accepting it across restarts.

use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::LineEnding;
use russh::keys::PrivateKey;
use std::path::Path;
use std::sync::Arc;

/// The key's file in the data dir.
pub const KEY_FILE: &str = "terminal_ed25519_key";
/// The comment of its authorized_keys line, so that a person reading the file on a machine
/// knows whose key it is.
pub const KEY_COMMENT: &str = "flvpc-panel-terminal";

/// The terminal key: the private half signs in to machines, the public line goes to every
/// machine's authorized_keys.
#[derive(Clone)]
pub struct TerminalKey {
    /// The private key.
    pub private: Arc<PrivateKey>,
    /// `ssh-ed25519 AAAA… flvpc-panel-terminal`.
    line: String,
}

impl std::fmt::Debug for TerminalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TerminalKey").field("public", &self.line).finish_non_exhaustive()
    }
}

impl TerminalKey {
    /// Reads `<data_dir>/terminal_ed25519_key`, or makes it (mode 0600) on first start.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, String> {
        let path = data_dir.join(KEY_FILE);
        let private = if path.exists() {
            PrivateKey::read_openssh_file(&path).map_err(|e| {
                format!("cannot read the terminal key {}: {e}; remove it to have a new one made", path.display())
            })?
        } else {
            // A seed from the OS generator (rand's), made into an Ed25519 key.
            let seed: [u8; 32] = rand::random();
            let key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
            key.write_openssh_file(&path, LineEnding::LF)
                .map_err(|e| format!("cannot write the terminal key {}: {e}", path.display()))?;
            tracing::info!("made a new browser-terminal key {}", path.display());
            key
        };
        let public = private.public_key().to_openssh().map_err(|e| format!("cannot encode the terminal key: {e}"))?;
        Ok(Self { private: Arc::new(private), line: format!("{public} {KEY_COMMENT}") })
    }

    /// The line for a machine's authorized_keys.
    pub fn authorized_keys_line(&self) -> &str {
        &self.line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_private_to_the_owner_and_read_back_the_same() {
        let dir = tempfile::tempdir().expect("temp dir");
        let made = TerminalKey::load_or_create(dir.path()).expect("make");
        assert!(made.authorized_keys_line().starts_with("ssh-ed25519 "));
        assert!(made.authorized_keys_line().ends_with(" flvpc-panel-terminal"));
        // Parses as the model's keys do, so the machine's sshd takes it.
        let parsed = flvpc_model::sshkey::PublicKey::parse(made.authorized_keys_line()).expect("a valid key line");
        assert_eq!(parsed.comment(), KEY_COMMENT);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE)).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = TerminalKey::load_or_create(dir.path()).expect("read");
        assert_eq!(again.authorized_keys_line(), made.authorized_keys_line());
    }

    #[test]
    fn a_damaged_key_is_an_error_that_says_what_to_do() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(KEY_FILE), "not a key").expect("write");
        let err = TerminalKey::load_or_create(dir.path()).expect_err("refused");
        assert!(err.contains("remove it"), "{err}");
    }
}

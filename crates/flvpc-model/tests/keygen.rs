//! Keys made by the real `ssh-keygen`: the model accepts them and fingerprints them exactly as
//! `ssh-keygen -lf` does (the fingerprint is how the gateway finds a stored key).

use flvpc_model::PublicKey;
use std::process::Command;

/// Makes a key with ssh-keygen; returns its public line and `ssh-keygen -lf`'s fingerprint.
fn keygen(kind: &str, bits: u32) -> (String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("key");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-b", &bits.to_string(), "-N", "", "-C", "alice@laptop", "-f"])
        .arg(&path)
        .status()
        .expect("run ssh-keygen (install openssh-client)");
    assert!(status.success(), "ssh-keygen -t {kind} -b {bits} failed");
    let public = dir.path().join("key.pub");
    let line = std::fs::read_to_string(&public).expect("public key").trim().to_owned();
    let out = Command::new("ssh-keygen").args(["-E", "sha256", "-lf"]).arg(&public).output().expect("ssh-keygen -lf");
    assert!(out.status.success(), "ssh-keygen -lf: {}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).expect("utf-8");
    let fields: Vec<&str> = printed.split_whitespace().collect();
    assert_eq!(fields.first(), Some(&bits.to_string().as_str()), "ssh-keygen -lf prints the size first: {printed}");
    (line, fields.get(1).expect("fingerprint field").to_string())
}

#[test]
fn fingerprints_equal_ssh_keygen() {
    let cases = [
        ("ed25519", 256, "ssh-ed25519"),
        ("ecdsa", 256, "ecdsa-sha2-nistp256"),
        ("ecdsa", 384, "ecdsa-sha2-nistp384"),
        ("ecdsa", 521, "ecdsa-sha2-nistp521"),
        ("rsa", 2048, "ssh-rsa"),
        ("rsa", 3072, "ssh-rsa"),
    ];
    for (kind, bits, algorithm) in cases {
        let (line, expected) = keygen(kind, bits);
        let key = PublicKey::parse(&line).unwrap_or_else(|e| panic!("{kind} {bits}: {e}"));
        assert_eq!(key.fingerprint(), expected, "{kind} {bits}");
        assert!(expected.starts_with("SHA256:"), "{expected}");
        assert_eq!(key.algorithm(), algorithm);
        assert_eq!(key.bits(), bits as usize, "{kind} {bits}");
        assert_eq!(key.comment(), "alice@laptop");
        // The stored form is the line ssh-keygen wrote, byte for byte.
        assert_eq!(key.to_openssh(), line, "{kind} {bits}");
        // The gateway fingerprints the offered key through the same function.
        assert_eq!(flvpc_model::sshkey::fingerprint(key.key()), expected);
    }
}

#[test]
fn small_rsa_from_ssh_keygen_is_refused_with_its_size() {
    let (line, _) = keygen("rsa", 1024);
    let err = PublicKey::parse(&line).expect_err("1024-bit RSA");
    assert!(err.message.contains("1024") && err.message.contains("2048"), "{}", err.message);
}

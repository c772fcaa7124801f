//! OpenSSH public keys as people paste them (`ssh-ed25519 AAAA… comment`).
//!
//! The key data is decoded by the `ssh-key` crate (the one russh uses), then held to
//! flvpc's rules: accepted types and sizes only, never a line that could smuggle
//! authorized_keys options or a second line into a machine. The fingerprint is the
//! crate's, and the SSH gateway fingerprints the key it is offered with the same
//! [`fingerprint`] function, so a stored key and an offered key always compare alike.

use crate::Invalid;
use ssh_key::public::KeyData;
use ssh_key::HashAlg;

/// Longest accepted key line, in bytes. An RSA 16384-bit key is about 2.8 KB.
pub const MAX_LINE: usize = 16 * 1024;
/// Longest accepted comment, in characters.
pub const MAX_COMMENT: usize = 1024;
/// Smallest accepted RSA modulus, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest accepted RSA modulus, in bits.
pub const MAX_RSA_BITS: usize = 16384;

const FIELD: &str = "public_key";

/// A validated OpenSSH public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    algorithm: String,
    key: ssh_key::PublicKey,
    comment: String,
    bits: usize,
    /// The canonical line, encoded once at parse time so that writing it out cannot fail later.
    line: String,
}

/// The OpenSSH SHA256 fingerprint of `key`, as `ssh-keygen -lf` prints it: `SHA256:…`.
///
/// Both doors use this one function: the model when a key is stored, the SSH gateway
/// for the key a client offers.
pub fn fingerprint(key: &ssh_key::PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

impl PublicKey {
    /// Parses one authorized_keys-style line without options: `TYPE BASE64 [COMMENT]`.
    pub fn parse(line: &str) -> Result<Self, Invalid> {
        let line = line.trim();
        if line.is_empty() {
            return Err(Invalid::new(FIELD, "is empty; paste the contents of your id_ed25519.pub (or id_rsa.pub)"));
        }
        if line.len() > MAX_LINE {
            return Err(Invalid::new(FIELD, format!("is longer than {MAX_LINE} bytes")));
        }
        if line.contains(['\n', '\r']) {
            return Err(Invalid::new(FIELD, "must be a single line with one key"));
        }
        if line.chars().any(|c| c.is_control() && c != '\t') {
            return Err(Invalid::new(FIELD, "must not contain control characters"));
        }
        let mut parts = line.split_whitespace();
        let algorithm = parts.next().unwrap_or_default();
        let Some(data) = parts.next() else {
            return Err(Invalid::new(
                FIELD,
                "must be \"TYPE BASE64 [COMMENT]\", e.g. the contents of ~/.ssh/id_ed25519.pub",
            ));
        };
        // The comment is flvpc's to normalise (single spaces), the crate only sees type and data.
        let comment = parts.collect::<Vec<_>>().join(" ");
        if !is_supported(algorithm) {
            if algorithm.contains('=') || algorithm.contains('"') {
                return Err(Invalid::new(FIELD, "must not carry authorized_keys options; paste only the public key"));
            }
            return Err(Invalid::new(
                FIELD,
                "has an unsupported type; use ssh-ed25519, ecdsa-sha2-nistp256/384/521 or ssh-rsa (2048 bits or more)",
            ));
        }
        if comment.split_whitespace().any(is_supported) {
            return Err(Invalid::new(FIELD, "holds more than one key: add each key on its own, with its own name"));
        }
        if comment.chars().count() > MAX_COMMENT {
            return Err(Invalid::new(FIELD, format!("comment is longer than {MAX_COMMENT} characters")));
        }
        let mut key = ssh_key::PublicKey::from_openssh(&format!("{algorithm} {}", padded(data)))
            .map_err(|e| decode_error(algorithm, &e))?;
        let bits = check_key(key.key_data())?;
        key.set_comment(comment.as_str());
        let line = key.to_openssh().map_err(|e| decode_error(algorithm, &e))?;
        Ok(Self { algorithm: algorithm.to_owned(), key, comment, bits, line })
    }

    /// The key type, e.g. `ssh-ed25519`.
    pub fn algorithm(&self) -> &str {
        &self.algorithm
    }

    /// The comment after the key data, possibly empty.
    pub fn comment(&self) -> &str {
        &self.comment
    }

    /// Key size in bits (256 for ed25519, the curve size for ECDSA, the modulus for RSA).
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// The decoded key, as the `ssh-key` crate (and so russh) knows it.
    pub fn key(&self) -> &ssh_key::PublicKey {
        &self.key
    }

    /// The OpenSSH SHA256 fingerprint, as `ssh-keygen -lf` prints it: `SHA256:…`.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.key)
    }

    /// The canonical one-line form `TYPE BASE64 [COMMENT]`, fit for authorized_keys.
    pub fn to_openssh(&self) -> String {
        self.line.clone()
    }
}

fn is_supported(algorithm: &str) -> bool {
    matches!(
        algorithm,
        "ssh-ed25519" | "ssh-rsa" | "ecdsa-sha2-nistp256" | "ecdsa-sha2-nistp384" | "ecdsa-sha2-nistp521"
    )
}

/// Key data without its trailing `=` padding has always been accepted; the crate wants it padded.
fn padded(data: &str) -> String {
    let missing = (4 - data.len() % 4) % 4;
    format!("{data}{}", "=".repeat(missing))
}

/// Says, in the user's terms, why the crate could not decode the key data.
fn decode_error(algorithm: &str, error: &ssh_key::Error) -> Invalid {
    use ssh_key::encoding::Error as Encoding;
    match error {
        ssh_key::Error::Encoding(Encoding::Base64(_)) => Invalid::new(FIELD, "key data is not valid base64"),
        ssh_key::Error::AlgorithmUnknown => {
            Invalid::new(FIELD, "key data does not match the key type written before it")
        }
        ssh_key::Error::TrailingData { .. } | ssh_key::Error::Encoding(Encoding::TrailingData { .. }) => {
            Invalid::new(FIELD, "key data has trailing bytes")
        }
        _ => Invalid::new(
            FIELD,
            format!("key data is truncated or malformed for {algorithm}; paste the whole line of your .pub file"),
        ),
    }
}

/// Holds the decoded key to flvpc's rules; returns the key size in bits.
fn check_key(data: &KeyData) -> Result<usize, Invalid> {
    match data {
        KeyData::Ed25519(_) => Ok(256),
        KeyData::Rsa(rsa) => {
            let exponent = rsa.e().as_positive_bytes().unwrap_or_default();
            let modulus = rsa.n().as_positive_bytes().unwrap_or_default();
            if exponent.is_empty() || exponent.len() > 8 || exponent.last().is_some_and(|b| b & 1 == 0) {
                return Err(Invalid::new(FIELD, "RSA public exponent is invalid"));
            }
            // The crate counts whole bytes; the rule counts bits, as ssh-keygen does.
            let bits = bit_length(modulus);
            if bits < MIN_RSA_BITS {
                return Err(Invalid::new(
                    FIELD,
                    format!("RSA key has {bits} bits; at least {MIN_RSA_BITS} are required"),
                ));
            }
            if bits > MAX_RSA_BITS {
                return Err(Invalid::new(
                    FIELD,
                    format!("RSA key has {bits} bits; at most {MAX_RSA_BITS} are accepted"),
                ));
            }
            Ok(bits)
        }
        KeyData::Ecdsa(ecdsa) => {
            // OpenSSH writes uncompressed points only; anything else did not come from ssh-keygen.
            if ecdsa.as_sec1_bytes().first() != Some(&4) {
                return Err(Invalid::new(FIELD, "ECDSA public point is malformed"));
            }
            Ok(match ecdsa.curve() {
                ssh_key::EcdsaCurve::NistP256 => 256,
                ssh_key::EcdsaCurve::NistP384 => 384,
                ssh_key::EcdsaCurve::NistP521 => 521,
            })
        }
        _ => Err(Invalid::new(
            FIELD,
            "has an unsupported type; use ssh-ed25519, ecdsa-sha2-nistp256/384/521 or ssh-rsa (2048 bits or more)",
        )),
    }
}

fn bit_length(big_endian: &[u8]) -> usize {
    match big_endian.first() {
        None => 0,
        Some(first) => (big_endian.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;

    // Generated with ssh-keygen for these tests only; the private halves were discarded.
    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIK4G3dtg+Ix9csb939MZltbY2WUPzj+ng3mpQxk8oXy alice@laptop";

    fn wire(fields: &[&[u8]]) -> String {
        let mut blob = Vec::new();
        for f in fields {
            blob.extend_from_slice(&(f.len() as u32).to_be_bytes());
            blob.extend_from_slice(f);
        }
        STANDARD.encode(blob)
    }

    fn rsa_line(bits: usize) -> String {
        let mut modulus = vec![0u8; bits / 8 + 1];
        modulus[1] = 0x80; // leading zero byte as mpint, then the top bit set
        format!("ssh-rsa {}", wire(&[b"ssh-rsa", &[1, 0, 1], &modulus]))
    }

    #[test]
    fn ed25519_parses_with_fingerprint() {
        let key = PublicKey::parse(ED25519).expect("valid");
        assert_eq!(key.algorithm(), "ssh-ed25519");
        assert_eq!(key.comment(), "alice@laptop");
        // As printed by `ssh-keygen -lf` for the same key.
        assert_eq!(key.fingerprint(), "SHA256:nJk6dq8l5lHZhF4hJ/nY9YhlWWOHNz41PZsJq8dN4qo");
        assert_eq!(key.to_openssh(), ED25519);
    }

    #[test]
    fn rsa_size_rules() {
        assert_eq!(PublicKey::parse(&rsa_line(2048)).expect("2048").bits(), 2048);
        assert_eq!(PublicKey::parse(&rsa_line(4096)).expect("4096").bits(), 4096);
        let err = PublicKey::parse(&rsa_line(1024)).expect_err("1024");
        assert!(err.message.contains("1024 bits"), "{}", err.message);
        assert!(PublicKey::parse(&rsa_line(16384 + 8)).is_err());
    }

    #[test]
    fn long_keys_are_kept_whole() {
        let line = format!("{} {}", rsa_line(16384), "c".repeat(900));
        let key = PublicKey::parse(&line).expect("long key");
        assert_eq!(key.to_openssh(), line);
    }

    #[test]
    fn ecdsa() {
        let mut point = vec![4u8; 65];
        point[1] = 9;
        let line = format!("ecdsa-sha2-nistp256 {}", wire(&[b"ecdsa-sha2-nistp256", b"nistp256", &point]));
        assert_eq!(PublicKey::parse(&line).expect("p256").bits(), 256);
        let bad = format!("ecdsa-sha2-nistp256 {}", wire(&[b"ecdsa-sha2-nistp256", b"nistp384", &point]));
        assert!(PublicKey::parse(&bad).is_err());
    }

    #[test]
    fn hostile_lines_are_refused() {
        let cases = [
            "",
            "ssh-ed25519",
            "ssh-dss AAAAB3NzaC1kc3MAAACBAP",
            "command=\"rm -rf /\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C7okWi0dh2l9GKJl",
            "ssh-ed25519 !!!notbase64!!!",
            "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C7okWi0dh2l9GKJl",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C7okWi0dh2l9GK",
        ];
        for case in cases {
            assert!(PublicKey::parse(case).is_err(), "{case:?}");
        }
        let two_on_one_line = format!("{ED25519} {ED25519}");
        assert!(PublicKey::parse(&two_on_one_line).is_err());
        let two_lines = format!("{ED25519}\n{ED25519}");
        assert!(PublicKey::parse(&two_lines).is_err());
        let nul = format!("{ED25519}\0x");
        assert!(PublicKey::parse(&nul).is_err());
        let trailing = format!("ssh-ed25519 {}", wire(&[b"ssh-ed25519", &[7u8; 32], b"extra"]));
        assert!(PublicKey::parse(&trailing).is_err());
        let huge_len = format!("ssh-ed25519 {}", STANDARD.encode([0xff, 0xff, 0xff, 0xff, 1, 2]));
        assert!(PublicKey::parse(&huge_len).is_err());
    }
}

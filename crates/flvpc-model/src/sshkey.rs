//! OpenSSH public keys as people paste them (`ssh-ed25519 AAAA… comment`).
//!
//! The key blob is decoded and checked field by field, so that what is stored is
//! a real key of an accepted type and size, never a line that could smuggle
//! authorized_keys options or a second line into a machine.

use crate::Invalid;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use sha2::{Digest, Sha256};

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
    blob: Vec<u8>,
    comment: String,
    bits: usize,
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
        let blob = STANDARD
            .decode(data)
            .or_else(|_| STANDARD_NO_PAD.decode(data))
            .map_err(|_| Invalid::new(FIELD, "key data is not valid base64"))?;
        let bits = check_blob(algorithm, &blob)?;
        Ok(Self { algorithm: algorithm.to_owned(), blob, comment, bits })
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

    /// The wire-format key blob.
    pub fn blob(&self) -> &[u8] {
        &self.blob
    }

    /// The OpenSSH SHA256 fingerprint, as `ssh-keygen -lf` prints it: `SHA256:…`.
    pub fn fingerprint(&self) -> String {
        format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(&self.blob)))
    }

    /// The canonical one-line form `TYPE BASE64 [COMMENT]`, fit for authorized_keys.
    pub fn to_openssh(&self) -> String {
        let data = STANDARD.encode(&self.blob);
        if self.comment.is_empty() {
            format!("{} {data}", self.algorithm)
        } else {
            format!("{} {data} {}", self.algorithm, self.comment)
        }
    }
}

fn is_supported(algorithm: &str) -> bool {
    matches!(
        algorithm,
        "ssh-ed25519" | "ssh-rsa" | "ecdsa-sha2-nistp256" | "ecdsa-sha2-nistp384" | "ecdsa-sha2-nistp521"
    )
}

/// Reads the SSH wire-format fields of a key blob.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn string(&mut self) -> Result<&'a [u8], Invalid> {
        let malformed = || Invalid::new(FIELD, "key data is truncated or malformed");
        let len_bytes: [u8; 4] = self.0.get(..4).ok_or_else(malformed)?.try_into().map_err(|_| malformed())?;
        let len = u32::from_be_bytes(len_bytes) as usize;
        let rest = &self.0[4..];
        let value = rest.get(..len).ok_or_else(malformed)?;
        self.0 = &rest[len..];
        Ok(value)
    }

    fn finish(self) -> Result<(), Invalid> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Invalid::new(FIELD, "key data has trailing bytes"))
        }
    }
}

/// Checks the blob matches the declared type; returns the key size in bits.
fn check_blob(algorithm: &str, blob: &[u8]) -> Result<usize, Invalid> {
    let mut reader = Reader(blob);
    if reader.string()? != algorithm.as_bytes() {
        return Err(Invalid::new(FIELD, "key data does not match the key type written before it"));
    }
    let bits = match algorithm {
        "ssh-ed25519" => {
            if reader.string()?.len() != 32 {
                return Err(Invalid::new(FIELD, "ed25519 key must be 32 bytes"));
            }
            256
        }
        "ssh-rsa" => {
            let exponent = strip_zeros(reader.string()?);
            let modulus = strip_zeros(reader.string()?);
            if exponent.is_empty() || exponent.len() > 8 || exponent.last().is_some_and(|b| b & 1 == 0) {
                return Err(Invalid::new(FIELD, "RSA public exponent is invalid"));
            }
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
            bits
        }
        _ => {
            let (curve, point_len, bits) = match algorithm {
                "ecdsa-sha2-nistp256" => ("nistp256", 65, 256),
                "ecdsa-sha2-nistp384" => ("nistp384", 97, 384),
                _ => ("nistp521", 133, 521),
            };
            if reader.string()? != curve.as_bytes() {
                return Err(Invalid::new(FIELD, "ECDSA curve does not match the key type"));
            }
            let point = reader.string()?;
            if point.len() != point_len || point.first() != Some(&4) {
                return Err(Invalid::new(FIELD, "ECDSA public point is malformed"));
            }
            bits
        }
    };
    reader.finish()?;
    Ok(bits)
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
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

//! Sizes such as `1GB`, `512MB` or `2GiB`, read the way ignite reads `--memory` and `--size`
//! (its `datasize` parser): a whole number, optional spaces, an optional unit; case-insensitive;
//! every unit is binary (`1GB` = `1GiB` = 1024 MiB, as in ignite and in Docker's `--memory 1g`);
//! a number without a unit counts bytes (as in ignite and Docker).

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;
const TIB: u64 = 1024 * GIB;

/// Hint appended to messages about unreadable sizes.
const EXAMPLE: &str = "write a whole number with a unit, such as 512MB or 2GB";

/// Reads `text` as a number of bytes. The error is a sentence without the field name.
pub(crate) fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("is empty; {EXAMPLE}"));
    }
    if text.starts_with('-') {
        return Err("must not be negative".to_owned());
    }
    let digits_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, rest) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err(format!("is not a size; {EXAMPLE}"));
    }
    if rest.starts_with(['.', ',']) {
        // ignite refuses fractions too; say how to write the same amount.
        return Err("must be a whole number (write 1536MB rather than 1.5GB)".to_owned());
    }
    // Only ASCII digits remain, so the only way to fail is to be out of range.
    let number: u64 = digits.parse().map_err(|_| "is too large".to_owned())?;
    let multiplier = match rest.trim().to_ascii_lowercase().as_str() {
        "" | "b" | "byte" | "bytes" => 1,
        "k" | "kb" | "kib" => KIB,
        "m" | "mb" | "mib" => MIB,
        "g" | "gb" | "gib" => GIB,
        "t" | "tb" | "tib" => TIB,
        _ => return Err(format!("has an unknown unit; {EXAMPLE} (units: B, K/KB/KiB, M/MB/MiB, G/GB/GiB, T/TB/TiB)")),
    };
    number.checked_mul(multiplier).ok_or_else(|| "is too large".to_owned())
}

/// The number in `text` when it is bare (no unit): such a number counts bytes, which is rarely
/// what a person meant when the result is refused, so the message says so.
fn bare_number(text: &str) -> Option<&str> {
    let text = text.trim();
    (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())).then_some(text)
}

/// Reads a memory size and checks it is a whole number of MiB within `min_mb..=max_mb`.
pub(crate) fn parse_memory_mb(text: &str, min_mb: u64, max_mb: u64) -> Result<u64, String> {
    let bytes = parse_bytes(text)?;
    let mb = bytes / MIB;
    let problem = if bytes % MIB != 0 {
        Some(format!("must be a whole number of megabytes (it is {bytes} bytes)"))
    } else if mb < min_mb {
        Some(format!("must be at least {min_mb}MB (it is {mb}MB)"))
    } else if mb > max_mb {
        Some(format!("must be at most {}GB (it is {mb}MB)", max_mb / 1024))
    } else {
        None
    };
    match (problem, bare_number(text)) {
        (None, _) => Ok(mb),
        (Some(_), Some(n)) => Err(format!(
            "has no unit, so it counts bytes (as in ignite and Docker); write {n}MB if megabytes are meant"
        )),
        (Some(problem), None) => Err(problem),
    }
}

/// Reads a disk size and checks it is a whole number of GiB within `1..=max_gb`.
pub(crate) fn parse_disk_gb(text: &str, max_gb: u64) -> Result<u64, String> {
    let bytes = parse_bytes(text)?;
    let gb = bytes / GIB;
    let problem = if bytes == 0 {
        Some("must be at least 1GB".to_owned())
    } else if bytes % GIB != 0 {
        Some(format!("must be a whole number of gigabytes (it is {} MB)", bytes.div_ceil(MIB)))
    } else if gb > max_gb {
        Some(format!("must be at most {max_gb}GB (it is {gb}GB)"))
    } else {
        None
    };
    match (problem, bare_number(text)) {
        (None, _) => Ok(gb),
        (Some(_), Some(n)) => {
            Err(format!("has no unit, so it counts bytes (as in ignite); write {n}GB if gigabytes are meant"))
        }
        (Some(problem), None) => Err(problem),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_binary_and_case_insensitive() {
        assert_eq!(parse_bytes("1GB"), Ok(GIB));
        assert_eq!(parse_bytes("1G"), Ok(GIB));
        assert_eq!(parse_bytes("2GiB"), Ok(2 * GIB));
        assert_eq!(parse_bytes("2gib"), Ok(2 * GIB));
        assert_eq!(parse_bytes("512MB"), Ok(512 * MIB));
        assert_eq!(parse_bytes("1024M"), Ok(GIB));
        assert_eq!(parse_bytes("1024m"), Ok(GIB));
        assert_eq!(parse_bytes("64 mb"), Ok(64 * MIB));
        assert_eq!(parse_bytes(" 1tb "), Ok(TIB));
        assert_eq!(parse_bytes("4096k"), Ok(4 * MIB));
        assert_eq!(parse_bytes("1073741824"), Ok(GIB));
        assert_eq!(parse_bytes("10B"), Ok(10));
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        assert_eq!(parse_bytes("-1GB"), Err("must not be negative".to_owned()));
        assert!(parse_bytes("1.5GB").expect_err("fraction").contains("whole number"));
        assert!(parse_bytes("1,5GB").expect_err("fraction").contains("whole number"));
        assert!(parse_bytes("GB").expect_err("no digits").contains("is not a size"));
        assert!(parse_bytes("").expect_err("empty").contains("is empty"));
        assert!(parse_bytes("1 parsec").expect_err("unit").contains("unknown unit"));
        assert!(parse_bytes("1GBB").expect_err("unit").contains("unknown unit"));
        assert!(parse_bytes("0x10MB").expect_err("hex").contains("unknown unit"));
        assert_eq!(parse_bytes("99999999999999999999999"), Err("is too large".to_owned()));
        assert_eq!(parse_bytes("17179869184GB"), Err("is too large".to_owned()));
    }

    #[test]
    fn memory_bounds_and_granularity() {
        assert_eq!(parse_memory_mb("1GB", 64, 1 << 20), Ok(1024));
        assert_eq!(parse_memory_mb("64MB", 64, 1 << 20), Ok(64));
        assert_eq!(parse_memory_mb("1TiB", 64, 1 << 20), Ok(1 << 20));
        assert!(parse_memory_mb("63MB", 64, 1 << 20).expect_err("small").contains("at least 64MB"));
        assert!(parse_memory_mb("0MB", 64, 1 << 20).expect_err("zero").contains("at least 64MB"));
        assert!(parse_memory_mb("2TB", 64, 1 << 20).expect_err("big").contains("at most 1024GB"));
        assert_eq!(
            parse_memory_mb("2048", 64, 1 << 20),
            Err("has no unit, so it counts bytes (as in ignite and Docker); write 2048MB if megabytes are meant".into())
        );
        assert_eq!(parse_memory_mb("1073741824", 64, 1 << 20), Ok(1024));
        assert!(parse_memory_mb("1500K", 64, 1 << 20).expect_err("kib").contains("whole number of megabytes"));
    }

    #[test]
    fn disk_bounds_and_granularity() {
        assert_eq!(parse_disk_gb("4GB", 16384), Ok(4));
        assert_eq!(parse_disk_gb("2048MB", 16384), Ok(2));
        assert_eq!(parse_disk_gb("16TB", 16384), Ok(16384));
        assert!(parse_disk_gb("0GB", 16384).expect_err("zero").contains("at least 1GB"));
        assert!(parse_disk_gb("4", 16384).expect_err("bare").contains("write 4GB if gigabytes are meant"));
        assert!(parse_disk_gb("500MB", 16384).expect_err("part").contains("whole number of gigabytes"));
        assert!(parse_disk_gb("17TB", 16384).expect_err("big").contains("at most 16384GB"));
    }
}

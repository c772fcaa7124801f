//! Docker image references, checked against the strict grammar of Docker's `reference` package:
//! `[host[:port]/]component(/component)*[:tag][@sha256:<64 hex>]`.
//!
//! Checking here, not only in Docker, is what keeps a hostile image string (a leading `-` read as
//! a flag, spaces, control characters) from ever reaching a command line or a log line.

/// Longest reference accepted, as Docker's `NameTotalLengthMax`.
const MAX_LEN: usize = 255;
/// Longest tag accepted (Docker: `[\w][\w.-]{0,127}`).
const MAX_TAG_LEN: usize = 128;

/// Checks `reference`; the error is a sentence without the field name.
pub(crate) fn check_reference(reference: &str) -> Result<(), String> {
    if reference.is_empty() {
        return Err("is empty".to_owned());
    }
    if reference.len() > MAX_LEN {
        return Err(format!("is longer than {MAX_LEN} characters"));
    }
    if reference.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters".to_owned());
    }
    let (name_and_tag, digest) = match reference.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (reference, None),
    };
    if let Some(digest) = digest {
        check_digest(digest)?;
    }
    // The tag is a ':' after the last '/', so that `localhost:5000/app` is not read as a tag.
    let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_and_tag[last_slash..].find(':') {
        Some(colon) => {
            let colon = last_slash + colon;
            (&name_and_tag[..colon], Some(&name_and_tag[colon + 1..]))
        }
        None => (name_and_tag, None),
    };
    if let Some(tag) = tag {
        check_tag(tag)?;
    }
    let mut components: Vec<&str> = name.split('/').collect();
    // Docker's rule: the first component is a registry host when it looks like one.
    if components.len() > 1 {
        let first = components[0];
        if first.contains(['.', ':']) || first == "localhost" {
            check_host(first)?;
            components.remove(0);
        }
    }
    for component in components {
        check_component(component)?;
    }
    Ok(())
}

fn check_digest(digest: &str) -> Result<(), String> {
    let hex = digest.strip_prefix("sha256:").unwrap_or("");
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        Ok(())
    } else {
        Err("has a bad digest: write @sha256: followed by 64 lowercase hex digits".to_owned())
    }
}

fn check_tag(tag: &str) -> Result<(), String> {
    let mut chars = tag.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !first_ok || !rest_ok || tag.len() > MAX_TAG_LEN {
        return Err(format!(
            "has a bad tag {}: a tag is 1 to {MAX_TAG_LEN} of A-Z a-z 0-9 _ . - and does not start with . or -",
            super::error::shown(tag)
        ));
    }
    Ok(())
}

fn check_host(host: &str) -> Result<(), String> {
    let (name, port) = match host.split_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    if name.split('.').all(label_ok) && port_ok {
        Ok(())
    } else {
        Err(format!("has a bad registry host {}", super::error::shown(host)))
    }
}

/// One path component: `[a-z0-9]+` runs joined by `.`, `_`, `__` or one or more `-`.
fn check_component(component: &str) -> Result<(), String> {
    let shown = super::error::shown(component);
    if component.is_empty() {
        return Err("has an empty path component (two '/' in a row, or a '/' at an end)".to_owned());
    }
    if component.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!("must be lowercase (except the tag): {shown}"));
    }
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    loop {
        // A run of letters and digits is required here: at the start and after every separator.
        let run_start = i;
        while i < bytes.len() && alnum(bytes[i]) {
            i += 1;
        }
        if i == run_start {
            return Err(format!(
                "has a bad path component {shown}: components start and end with a-z or 0-9 and use only . _ __ - between"
            ));
        }
        if i == bytes.len() {
            return Ok(());
        }
        let sep_start = i;
        match bytes[i] {
            b'.' => i += 1,
            b'_' => i += if bytes.get(i + 1) == Some(&b'_') { 2 } else { 1 },
            b'-' => {
                while i < bytes.len() && bytes[i] == b'-' {
                    i += 1;
                }
            }
            _ => i = sep_start,
        }
        if i == sep_start {
            return Err(format!("has a bad path component {shown}: only a-z 0-9 . _ __ - are allowed"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_reference;

    #[test]
    fn accepts_real_references() {
        for ok in [
            "flvpc/debian:12",
            "debian",
            "quay.io/footloose/centos7",
            "quay.io/footloose/centos7:0.6.4",
            "weaveworks/ignite-ubuntu",
            "weaveworks/ignite-kernel:4.19.47",
            "localhost:5000/team/app:v1.2_3-rc",
            "localhost/app",
            "registry.example.com:443/a/b/c",
            "my_org/my__app/x.y/z--w",
            "ubuntu@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "ubuntu:22.04@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "Example.COM/app:Latest",
        ] {
            assert_eq!(check_reference(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refuses_bad_references() {
        let cases = [
            ("", "is empty"),
            ("-rm", "bad path component"),
            ("--privileged", "bad path component"),
            ("debian 12", "spaces"),
            ("debian\t12", "spaces"),
            ("deb\0ian", "control"),
            ("Debian", "lowercase"),
            ("flvpc/Debian:12", "lowercase"),
            ("debian:", "bad tag"),
            ("debian:.12", "bad tag"),
            ("debian:-12", "bad tag"),
            ("debian:1$2", "bad tag"),
            ("debian::12", "bad tag"),
            ("a//b", "empty path component"),
            ("a/", "empty path component"),
            ("/a", "empty path component"),
            ("a..b", "bad path component"),
            ("a___b", "bad path component"),
            ("a-", "bad path component"),
            ("a_", "bad path component"),
            ("_a", "bad path component"),
            ("a$b", "only a-z"),
            ("ubuntu@sha256:abc", "bad digest"),
            ("ubuntu@md5:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "bad digest"),
            ("ubuntu@sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef", "bad digest"),
            ("a@b@c", "bad digest"),
            ("-bad.host:5000/app", "bad registry host"),
            ("host:port/app", "bad registry host"),
            ("host:123456/app", "bad registry host"),
        ];
        for (bad, why) in cases {
            let err = check_reference(bad).expect_err(bad);
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        let long = format!("a/{}", "b".repeat(254));
        assert!(check_reference(&long).expect_err("long").contains("longer than 255"));
        let long_tag = format!("a:{}", "t".repeat(129));
        assert!(check_reference(&long_tag).expect_err("tag").contains("bad tag"));
    }
}

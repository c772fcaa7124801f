//! Which Debian mirror to build from: read from the host's own apt configuration at run
//! time, so that no mirror name is ever written in this repository.

use std::ffi::OsStr;
use std::fs;
use std::path::Path;

pub(super) fn usable_mirror(uri: &str) -> bool {
    (uri.starts_with("http://") || uri.starts_with("https://") || uri.starts_with("file:/"))
        && !uri.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Finds the mirror of `suite` in deb822 text (`*.sources`): the first `URIs:` entry of an
/// enabled `Types: deb` stanza whose `Suites:` lists exactly `suite` (so `bookworm-security`
/// and `bookworm-updates` do not count on their own).
pub fn mirror_from_deb822(text: &str, suite: &str) -> Option<String> {
    let mut stanzas: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            if stanzas.last().is_some_and(|s| !s.is_empty()) {
                stanzas.push(Vec::new());
            }
            continue;
        }
        let Some(stanza) = stanzas.last_mut() else { continue };
        if line.starts_with([' ', '\t']) {
            // A continuation line belongs to the previous field.
            if let Some((_, value)) = stanza.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((key, value)) = line.split_once(':') {
            stanza.push((key.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    for stanza in stanzas {
        let field = |name: &str| stanza.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        if field("enabled").is_some_and(|v| v.eq_ignore_ascii_case("no")) {
            continue;
        }
        let is_deb = field("types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"));
        let has_suite = field("suites").is_some_and(|s| s.split_whitespace().any(|s| s == suite));
        if !(is_deb && has_suite) {
            continue;
        }
        if let Some(uri) = field("uris").and_then(|u| u.split_whitespace().find(|u| usable_mirror(u))) {
            return Some(uri.to_owned());
        }
    }
    None
}

/// Finds the mirror of `suite` in one-line apt text (`sources.list`): the URI of the first
/// `deb [options] URI suite components…` line with exactly that suite.
pub fn mirror_from_one_line(text: &str, suite: &str) -> Option<String> {
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut tokens = line.split_whitespace();
        if tokens.next() != Some("deb") {
            continue;
        }
        let mut uri = tokens.next();
        // Skip the `[arch=amd64 signed-by=…]` option block, which may contain spaces.
        if uri.is_some_and(|t| t.starts_with('[')) {
            let mut token = uri;
            while let Some(t) = token {
                if t.ends_with(']') {
                    break;
                }
                token = tokens.next();
            }
            uri = tokens.next();
        }
        let (Some(uri), Some(found)) = (uri, tokens.next()) else { continue };
        if found == suite && usable_mirror(uri) {
            return Some(uri.to_owned());
        }
    }
    None
}

/// Reads the mirror of `suite` from the apt configuration under `etc_apt` (normally
/// `/etc/apt`): `sources.list.d/*.sources`, then `sources.list`, then `sources.list.d/*.list`.
pub fn find_apt_mirror_in(etc_apt: &Path, suite: &str) -> Option<String> {
    let mut sources = Vec::new();
    let mut lists = Vec::new();
    if let Ok(dir) = fs::read_dir(etc_apt.join("sources.list.d")) {
        for entry in dir.flatten() {
            let path = entry.path();
            match path.extension().and_then(OsStr::to_str) {
                Some("sources") => sources.push(path),
                Some("list") => lists.push(path),
                _ => {}
            }
        }
    }
    sources.sort();
    lists.sort();
    let read = |p: &Path| fs::read_to_string(p).ok();
    sources
        .iter()
        .filter_map(|p| read(p))
        .find_map(|t| mirror_from_deb822(&t, suite))
        .or_else(|| read(&etc_apt.join("sources.list")).and_then(|t| mirror_from_one_line(&t, suite)))
        .or_else(|| lists.iter().filter_map(|p| read(p)).find_map(|t| mirror_from_one_line(&t, suite)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCES: &str = "\
Types: deb
# http://snapshot.invalid/archive/debian/20250520T000000Z
URIs: http://mirror.invalid/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.invalid/debian-security
Suites: bookworm-security
Components: main
";

    #[test]
    fn deb822_picks_the_main_suite_not_security() {
        assert_eq!(mirror_from_deb822(SOURCES, "bookworm").as_deref(), Some("http://mirror.invalid/debian"));
        assert_eq!(
            mirror_from_deb822(SOURCES, "bookworm-security").as_deref(),
            Some("http://mirror.invalid/debian-security")
        );
        assert_eq!(mirror_from_deb822(SOURCES, "trixie"), None);
    }

    #[test]
    fn deb822_skips_disabled_source_only_and_reads_continuations() {
        let text = "\
Types: deb-src
URIs: http://src.invalid/debian
Suites: bookworm

Enabled: no
Types: deb
URIs: http://off.invalid/debian
Suites: bookworm

Types: deb deb-src
URIs:
 cdrom:/media/
 https://second.invalid/debian
Suites: bookworm
";
        assert_eq!(mirror_from_deb822(text, "bookworm").as_deref(), Some("https://second.invalid/debian"));
    }

    #[test]
    fn security_only_file_has_no_main_mirror() {
        let text = "Types: deb\nURIs: http://mirror.invalid/debian-security\nSuites: bookworm-security\n";
        assert_eq!(mirror_from_deb822(text, "bookworm"), None);
    }

    #[test]
    fn one_line_format() {
        let text = "\
# deb http://commented.invalid/debian bookworm main
deb-src http://src.invalid/debian bookworm main
deb http://mirror.invalid/debian-security bookworm-security main
deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] http://mirror.invalid/debian bookworm main contrib
deb http://later.invalid/debian bookworm main
";
        assert_eq!(mirror_from_one_line(text, "bookworm").as_deref(), Some("http://mirror.invalid/debian"));
        let spaced = "deb [ arch=amd64 ] http://spaced.invalid/debian bookworm main\n";
        assert_eq!(mirror_from_one_line(spaced, "bookworm").as_deref(), Some("http://spaced.invalid/debian"));
        assert_eq!(mirror_from_one_line("deb cdrom:/x/ bookworm main\n", "bookworm"), None);
    }

    #[test]
    fn apt_dir_prefers_deb822_then_sources_list() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(dir.path().join("sources.list.d")).expect("mkdir");
        fs::write(dir.path().join("sources.list"), "deb http://list.invalid/debian bookworm main\n").expect("write");
        assert_eq!(find_apt_mirror_in(dir.path(), "bookworm").as_deref(), Some("http://list.invalid/debian"));
        fs::write(dir.path().join("sources.list.d/debian.sources"), SOURCES).expect("write");
        assert_eq!(find_apt_mirror_in(dir.path(), "bookworm").as_deref(), Some("http://mirror.invalid/debian"));
        assert_eq!(find_apt_mirror_in(&dir.path().join("missing"), "bookworm"), None);
    }
}

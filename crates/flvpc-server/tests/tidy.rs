//! Tidy rules checked on the server crate's own sources.

use std::path::{Path, PathBuf};

/// Where flvpc's background work lives: the only places that may mint the system grant.
const SYSTEM_GRANT_ALLOWED: &[&str] = &["src/reconcile/", "src/usage.rs", "src/state.rs", "src/hosts.rs"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a line, without a trailing `//` comment (a doc comment may name `system()`).
fn code_of(line: &str) -> &str {
    line.find("//").map_or(line, |at| &line[..at])
}

/// Request handlers never mint the system grant: a request's rights come from its caller's
/// principal (issue 8). Only the reconciler, the usage sampler and state construction may.
#[test]
fn system_grant_is_minted_only_by_background_work() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    assert!(files.len() > 10, "the scan found too few sources under {}", root.display());
    let mut offenders = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(root).expect("under the crate").to_string_lossy().replace('\\', "/");
        if SYSTEM_GRANT_ALLOWED.iter().any(|allowed| relative.starts_with(allowed)) {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("read source");
        for (number, line) in text.lines().enumerate() {
            let code = code_of(line);
            // A call, or an import under any name (`use …::policy::system as s` or `{system, …}`).
            let minted = code.contains("system()")
                || code.contains("policy::system")
                || (code.trim_start().starts_with("use ") && code.contains("policy::{") && code.contains("system"));
            if minted {
                offenders.push(format!("{relative}:{}: {}", number + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "the system grant is minted outside flvpc's background work ({SYSTEM_GRANT_ALLOWED:?}); use a grant from \
         the caller's Principal instead:\n{}",
        offenders.join("\n")
    );
}

/// The scan itself finds what it must: the reconciler does mint the grant.
#[test]
fn the_scan_sees_the_reconciler() {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/reconcile/mod.rs"))
        .expect("read the reconciler");
    assert!(text.lines().any(|l| code_of(l).contains("system()")));
}

/// The three doors (REST API, panel, SSH gateway) do not import each other (issue 9): what they
/// share lives outside them (`core`, `access`, `auth`, ...). No exception.
const DOORS: &[&str] = &["api", "panel", "gateway"];

#[test]
fn no_door_imports_another() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut offenders = Vec::new();
    let mut scanned = 0;
    for door in DOORS {
        let mut files = Vec::new();
        rust_files(&root.join("src").join(door), &mut files);
        scanned += files.len();
        for file in &files {
            let relative = file.strip_prefix(root).expect("under the crate").to_string_lossy().replace('\\', "/");
            let text = std::fs::read_to_string(file).expect("read source");
            for (number, line) in text.lines().enumerate() {
                let code = code_of(line);
                for other in DOORS.iter().filter(|o| *o != door) {
                    let path = format!("crate::{other}");
                    let grouped = code.contains("crate::{") && code.contains(&format!("{other}::"));
                    if code.contains(&path) || grouped {
                        offenders.push(format!("{relative}:{}: {}", number + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(scanned > 15, "the scan found too few door sources");
    assert!(
        offenders.is_empty(),
        "a door imports another door; move what they share out of both:\n{}",
        offenders.join("\n")
    );
}

/// What the control core must not name: the crates and types of the doors' transports (HTTP,
/// HTML, SSH, the OpenAPI description) and the API's error type. The core speaks in actions,
/// outcomes and `CoreError`s; each door translates (issue 9).
const TRANSPORT_NAMES: &[&str] = &["axum::", "http::", "maud", "russh", "utoipa", "StatusCode", "ApiError"];

/// The names of `TRANSPORT_NAMES` that `code` (a line without its comment) uses.
fn transport_names_in(code: &str) -> Vec<&'static str> {
    TRANSPORT_NAMES.iter().copied().filter(|name| code.contains(name)).collect()
}

#[test]
fn the_core_knows_no_transport() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src/core"), &mut files);
    assert!(files.len() >= 5, "the scan found too few core sources");
    let mut offenders = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(root).expect("under the crate").to_string_lossy().replace('\\', "/");
        let text = std::fs::read_to_string(file).expect("read source");
        for (number, line) in text.lines().enumerate() {
            let names = transport_names_in(code_of(line));
            if !names.is_empty() {
                offenders.push(format!("{relative}:{}: {} ({names:?})", number + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "the core names a transport's crate or type; keep HTTP, HTML and SSH in the doors:\n{}",
        offenders.join("\n")
    );
}

/// The scan catches each name, in an import or in a path, and a comment may still name them.
#[test]
fn the_transport_scan_sees_what_it_must() {
    assert_eq!(transport_names_in("use axum::http::StatusCode;"), ["axum::", "http::", "StatusCode"]);
    assert_eq!(transport_names_in("fn page() -> maud::Markup {"), ["maud"]);
    assert_eq!(transport_names_in("    Err(ApiError::from(e))"), ["ApiError"]);
    assert_eq!(transport_names_in("use russh::server::Handle;"), ["russh"]);
    assert_eq!(transport_names_in("#[derive(utoipa::ToSchema)]"), ["utoipa"]);
    assert!(transport_names_in(code_of("let x = 1; // no axum:: here")).is_empty());
}

/// The names of the `async fn`s in `code` from the line that starts with `start` to the next
/// line that is a lone `}` (a trait or impl block at the top level).
fn methods_in_block(code: &str, start: &str) -> Vec<String> {
    let mut lines = code.lines().skip_while(|l| !l.starts_with(start));
    assert!(lines.next().is_some(), "no block starting with {start:?}");
    lines
        .take_while(|l| *l != "}")
        .filter_map(|l| l.trim_start().strip_prefix("async fn "))
        .filter_map(|rest| rest.split(['(', '<']).next().map(str::to_owned))
        .collect()
}

/// An engine that wraps or is Docker forwards every method of the trait: a default body left in
/// place does the work the slow way (the server's engine once looked every machine up again
/// before writing its keys, so an optimisation of the Docker engine never ran).
#[test]
fn docker_engines_forward_every_engine_method() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let read = |path: &str| {
        std::fs::read_to_string(workspace.join(path)).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
    };
    let trait_methods = methods_in_block(&read("flvpc-host/src/engine.rs"), "pub trait Engine");
    assert!(trait_methods.len() > 10, "the trait's methods were not found: {trait_methods:?}");
    for (path, block) in [
        ("flvpc-server/src/reconcile/engine.rs", "impl Engine for ReconnectingDocker"),
        ("flvpc-host/src/docker.rs", "impl Engine for DockerEngine"),
    ] {
        let implemented = methods_in_block(&read(path), block);
        let missing: Vec<&String> = trait_methods.iter().filter(|m| !implemented.contains(m)).collect();
        assert!(missing.is_empty(), "{path}: `{block}` leaves {missing:?} to the trait's default bodies");
    }
}

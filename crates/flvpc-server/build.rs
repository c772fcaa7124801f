//! Checks that the browser terminal's front-end packages (xterm.js, from the npm registry) are
//! installed where `src/panel/assets.rs` embeds them from; the setup script installs them with
//! `npm ci` from the committed lock file, so no copy of their code is committed here.

use std::path::Path;

/// What the panel embeds, relative to `assets/`.
const FILES: &[&str] = &[
    "node_modules/@xterm/xterm/lib/xterm.js",
    "node_modules/@xterm/xterm/css/xterm.css",
    "node_modules/@xterm/addon-fit/lib/addon-fit.js",
];

fn main() {
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
    println!("cargo:rerun-if-changed={}", assets.join("package-lock.json").display());
    let mut missing = Vec::new();
    for file in FILES {
        let path = assets.join(file);
        println!("cargo:rerun-if-changed={}", path.display());
        if !path.is_file() {
            missing.push(path.display().to_string());
        }
    }
    if !missing.is_empty() {
        eprintln!(
            "error: the panel's browser terminal needs xterm.js, which is not installed:\n  {}\n\
             Run `bash scripts/dev.sh setup` (it runs `npm ci` in crates/flvpc-server/assets), then build again.",
            missing.join("\n  ")
        );
        std::process::exit(1);
    }
}

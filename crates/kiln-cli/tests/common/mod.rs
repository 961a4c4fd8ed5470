//! Helpers shared by the CLI integration tests: run the real `kiln` binary in a folder.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// Runs `kiln args...` in `dir`.
pub fn kiln(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the kiln binary runs")
}

/// Runs a command that must succeed; returns its output.
pub fn run_ok(dir: &Path, args: &[&str]) -> Output {
    let out = kiln(dir, args);
    assert!(
        out.status.success(),
        "kiln {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command that must succeed and print exactly one JSON document.
pub fn json(dir: &Path, args: &[&str]) -> Value {
    let text = String::from_utf8(run_ok(dir, args).stdout).expect("utf-8 stdout");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not one JSON object ({e}):\n{text}"))
}

/// Runs a command that must fail with a message and no panic; returns its stderr.
pub fn fails(dir: &Path, args: &[&str]) -> String {
    let out = kiln(dir, args);
    assert!(!out.status.success(), "kiln {args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "kiln {args:?} panicked:\n{err}");
    assert!(!err.trim().is_empty(), "kiln {args:?} failed silently");
    err
}

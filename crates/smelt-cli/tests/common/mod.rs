//! Helpers shared by the CLI integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `smelt` binary under test, with records sent to a throwaway directory.
pub fn smelt(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_smelt"));
    c.env("SMELT_HOME", home)
        .env("SMELT_RUNS", home.join("runs"))
        .env_remove("SMELT_PYTHON");
    c
}

/// The shared asset cache (the user's `$SMELT_HOME` or `~/.cache/smelt`), so online tests
/// download each package once per machine rather than once per test run.
pub fn shared_home() -> PathBuf {
    smelt_data::fetch::default_home()
}

/// Runs a command and returns its output, printing it for failing-test diagnostics.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("smelt binary runs");
    eprintln!("--- stdout\n{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("--- stderr\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// stdout + stderr as one string.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Names in a directory (empty if it does not exist).
pub fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A Python interpreter with the test oracles (gguf-py, numpy): `$SMELT_TEST_PYTHON`, else the
/// repository's `.venv` that `scripts/test` creates, else `python3`.
pub fn oracle_python() -> PathBuf {
    if let Some(p) = std::env::var_os("SMELT_TEST_PYTHON") {
        return p.into();
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    if venv.exists() {
        return venv;
    }
    "python3".into()
}

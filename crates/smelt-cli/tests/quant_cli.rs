//! The quantization exercises and the benchmark, end to end through the binary: tables print,
//! charts and run records are written, and the measured numbers have the expected ordering.

mod common;

use common::{run, smelt, text};
use serde_json::Value;

fn only_record(dir: &std::path::Path) -> Value {
    let names: Vec<String> = common::entries(dir)
        .into_iter()
        .filter(|n| n.ends_with(".json"))
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    serde_json::from_slice(&std::fs::read(dir.join(&names[0])).unwrap()).unwrap()
}

fn is_png(path: &std::path::Path) -> bool {
    std::fs::read(path).is_ok_and(|b| b.starts_with(b"\x89PNG\r\n\x1a\n") && b.len() > 5_000)
}

#[test]
fn schemes_exercise_writes_table_chart_and_record() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(smelt(dir.path()).args(["quant", "schemes", "--samples", "20000"]));
    assert!(out.status.success(), "{}", text(&out));
    assert!(is_png(&dir.path().join("runs/quant-schemes.png")));
    let rec = only_record(&dir.path().join("runs"));
    let rows = rec["metrics"]["results"].as_array().unwrap();
    assert_eq!(rows.len(), 12, "4 distributions x 3 schemes");
    let sqnr = |dist: &str, scheme: &str| {
        rows.iter()
            .find(|r| r["distribution"] == dist && r["scheme"] == scheme)
            .unwrap()["sqnr_db"]
            .as_f64()
            .unwrap()
    };
    // One-sided data: an asymmetric grid has twice the codes on the data, about +6 dB.
    let gain = sqnr("ReLU(N(0,1))", "asymmetric") - sqnr("ReLU(N(0,1))", "symmetric (restricted)");
    assert!(gain > 4.0 && gain < 8.0, "ReLU asymmetric gain {gain} dB");
    // Asymmetric INT8 on ReLU data keeps exact zeros: its zero-point is the lowest code.
    let relu_asym = rows
        .iter()
        .find(|r| r["distribution"] == "ReLU(N(0,1))" && r["scheme"] == "asymmetric")
        .unwrap();
    assert_eq!(relu_asym["zero_point"], -128);
}

#[test]
fn granularity_exercise_orders_the_schemes() {
    let dir = tempfile::tempdir().unwrap();
    let out =
        run(smelt(dir.path()).args(["quant", "granularity", "--rows", "128", "--cols", "512"]));
    assert!(out.status.success(), "{}", text(&out));
    assert!(is_png(&dir.path().join("runs/quant-granularity.png")));
    let rec = only_record(&dir.path().join("runs"));
    let rows = rec["metrics"]["results"].as_array().unwrap();
    assert_eq!(rows.len(), 10, "5 granularities x 2 formats");
    let mse = |g: &str, f: &str| {
        rows.iter()
            .find(|r| r["granularity"] == g && r["format"] == f)
            .unwrap()["mse"]
            .as_f64()
            .unwrap()
    };
    for f in ["int8", "int4"] {
        assert!(mse("group 32 (axis 1)", f) < mse("group 128 (axis 1)", f));
        assert!(mse("group 128 (axis 1)", f) < mse("per-tensor", f));
    }
    assert!(text(&out).contains("Where the error comes from"));
}

#[test]
fn quant_bench_runs_and_reports_against_bandwidth() {
    let dir = tempfile::tempdir().unwrap();
    let out =
        run(smelt(dir.path()).args(["bench", "quant", "--elements", "1048576", "--repeat", "1"]));
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("memory read bandwidth"));
    for m in ["int8 per-channel", "int4 group-128", "nf4 block-64"] {
        assert!(t.contains(m), "{m} missing");
    }
    let rec = only_record(&dir.path().join("runs"));
    assert!(rec["metrics"]["memory_read_gbps"].as_f64().unwrap() > 0.0);
    assert_eq!(rec["metrics"]["results"].as_array().unwrap().len(), 3);
    let bad = run(smelt(dir.path()).args(["bench", "quant", "--elements", "1000"]));
    assert!(!bad.status.success());
}

#[test]
fn nf4_double_quant_prints_the_formula_bits() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(smelt(dir.path()).args(["quant", "nf4-dq", "--elements", "1048576"]));
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    let bits = |prefix: &str| -> f64 {
        let line = all
            .lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .expect(prefix);
        line.split("bits/param")
            .next()
            .unwrap()
            .split_whitespace()
            .last()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(bits("NF4 + double quant:"), 4.1270);
    assert_eq!(bits("NF4, f32 absmax:"), 4.5);
    assert!(all.contains("= 4.1270 bits/param"), "{all}");
    let rec = only_record(&dir.path().join("runs"));
    let stored = rec["metrics"]["bits_per_param"].as_f64().unwrap();
    let formula = rec["metrics"]["bits_per_param_formula"].as_f64().unwrap();
    assert!(
        (stored - formula - 32.0 / 1048576.0).abs() < 1e-12,
        "{stored} vs {formula}"
    );
}

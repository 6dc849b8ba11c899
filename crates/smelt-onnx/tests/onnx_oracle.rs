//! ONNX files written by smelt-onnx against the real tooling (`tests/onnx_oracle.py`):
//! `onnx.checker.check_model(full_check=True)`, byte-identical re-serialization by the `onnx`
//! package, and onnxruntime inference on a batch of 3 (the batch axis is the symbolic "N")
//! compared with a plain Rust forward pass of the same network.
//!
//! Two models of one tiny CNN, opset 13:
//! - float: Conv(1→2, 3x3, pads 1) → Relu → MaxPool 2x2 → Flatten → Gemm(18→3);
//! - QDQ: the same with uint8 activations (QuantizeLinear/DequantizeLinear pairs), int8
//!   per-channel (axis 0) weights and int32 biases dequantized with scale x_scale·w_scale[c].
//!
//! The Python interpreter comes from `$SMELT_TEST_PYTHON` (`scripts/test` sets it and installs
//! onnx and onnxruntime from requirements-test.txt); without it the test is skipped.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use smelt_onnx::{DataType, Dim, GraphBuilder, ModelProto, write_model};

const BATCH: usize = 3;
const HW: usize = 6; // input is (N, 1, 6, 6)
const C_OUT: usize = 2; // conv channels
const POOLED: usize = C_OUT * (HW / 2) * (HW / 2); // 18 features after MaxPool 2x2
const CLASSES: usize = 3;

/// Deterministic values in [-1, 1) (splitmix64), so a failure reproduces exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * scale).collect()
    }
}

/// The float weights both models share.
struct Weights {
    conv_w: Vec<f32>, // (C_OUT, 1, 3, 3)
    conv_b: Vec<f32>, // (C_OUT)
    fc_w: Vec<f32>,   // (CLASSES, POOLED), used with transB = 1
    fc_b: Vec<f32>,   // (CLASSES)
}

impl Weights {
    fn new(rng: &mut Rng) -> Self {
        Self {
            conv_w: rng.vec(C_OUT * 9, 0.8),
            conv_b: rng.vec(C_OUT, 0.2),
            fc_w: rng.vec(CLASSES * POOLED, 0.5),
            fc_b: rng.vec(CLASSES, 0.3),
        }
    }
}

// ---- plain reference ops (NCHW, row-major) ----

/// 3x3 convolution, one input channel, stride 1, zero padding 1: (n, 1, HW, HW) → (n, C_OUT, HW, HW).
fn conv3x3(x: &[f32], w: &[f32], b: &[f32], n: usize) -> Vec<f32> {
    let mut y = vec![0f32; n * C_OUT * HW * HW];
    for i in 0..n {
        for oc in 0..C_OUT {
            for oy in 0..HW {
                for ox in 0..HW {
                    let mut acc = b[oc];
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let (iy, ix) = ((oy + ky) as isize - 1, (ox + kx) as isize - 1);
                            if (0..HW as isize).contains(&iy) && (0..HW as isize).contains(&ix) {
                                let xv = x[(i * HW + iy as usize) * HW + ix as usize];
                                acc += xv * w[oc * 9 + ky * 3 + kx];
                            }
                        }
                    }
                    y[((i * C_OUT + oc) * HW + oy) * HW + ox] = acc;
                }
            }
        }
    }
    y
}

fn relu(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| v.max(0.0)).collect()
}

/// MaxPool 2x2 stride 2: (n, C_OUT, HW, HW) → (n, C_OUT, HW/2, HW/2), i.e. (n, POOLED) flat.
fn maxpool2x2(x: &[f32], n: usize) -> Vec<f32> {
    let h = HW / 2;
    let mut y = vec![f32::NEG_INFINITY; n * C_OUT * h * h];
    for (idx, &v) in x.iter().enumerate() {
        let (ox, oy, plane) = ((idx % HW) / 2, ((idx / HW) % HW) / 2, idx / (HW * HW));
        let o = &mut y[(plane * h + oy) * h + ox];
        *o = o.max(v);
    }
    y
}

/// Gemm with transB = 1: (n, POOLED) x (CLASSES, POOLED)^T + (CLASSES) → (n, CLASSES).
fn gemm_tb(a: &[f32], w: &[f32], b: &[f32], n: usize) -> Vec<f32> {
    let mut y = vec![0f32; n * CLASSES];
    for i in 0..n {
        for j in 0..CLASSES {
            let dot: f32 = (0..POOLED)
                .map(|k| a[i * POOLED + k] * w[j * POOLED + k])
                .sum();
            y[i * CLASSES + j] = dot + b[j];
        }
    }
    y
}

/// ONNX QuantizeLinear then DequantizeLinear: round half to even, saturate to [lo, hi].
fn fake_quant(x: &[f32], scale: f32, zp: i32, lo: i32, hi: i32) -> Vec<f32> {
    x.iter()
        .map(|&v| {
            let q = ((v / scale).round_ties_even() as i32 + zp).clamp(lo, hi);
            (q - zp) as f32 * scale
        })
        .collect()
}

// ---- the models ----

fn float_model(w: &Weights) -> ModelProto {
    let mut g = GraphBuilder::new("tiny_cnn");
    g.input_f32("x", &["N".into(), 1.into(), 6.into(), 6.into()])
        .output_f32("y", &["N".into(), Dim::Fixed(CLASSES as i64)])
        .initializer_f32("conv.w", &[2, 1, 3, 3], &w.conv_w)
        .initializer_f32("conv.b", &[2], &w.conv_b)
        .initializer_f32("fc.w", &[3, 18], &w.fc_w)
        .initializer_f32("fc.b", &[3], &w.fc_b);
    g.node("Conv", &["x", "conv.w", "conv.b"], &["c"])
        .name("conv")
        .attr_ints("kernel_shape", &[3, 3])
        .attr_ints("pads", &[1, 1, 1, 1])
        .attr_ints("strides", &[1, 1]);
    g.node("Relu", &["c"], &["r"]);
    g.node("MaxPool", &["r"], &["p"])
        .attr_ints("kernel_shape", &[2, 2])
        .attr_ints("strides", &[2, 2]);
    g.node("Flatten", &["p"], &["f"]).attr_int("axis", 1);
    g.node("Gemm", &["f", "fc.w", "fc.b"], &["y"])
        .name("fc")
        .attr_float("alpha", 1.0)
        .attr_float("beta", 1.0)
        .attr_int("transB", 1);
    g.finish(13, "smelt-onnx-test")
}

fn float_forward(w: &Weights, x: &[f32]) -> Vec<f32> {
    let c = conv3x3(x, &w.conv_w, &w.conv_b, BATCH);
    let p = maxpool2x2(&relu(&c), BATCH);
    gemm_tb(&p, &w.fc_w, &w.fc_b, BATCH)
}

/// Symmetric INT8 per output channel (rows of `w`): codes and scales max|w|/127.
fn quantize_rows(w: &[f32], rows: usize) -> (Vec<i8>, Vec<f32>) {
    let cols = w.len() / rows;
    let mut codes = Vec::with_capacity(w.len());
    let mut scales = Vec::with_capacity(rows);
    for row in w.chunks(cols) {
        let s = row.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
        scales.push(s);
        codes.extend(
            row.iter()
                .map(|v| (v / s).round_ties_even().clamp(-127.0, 127.0) as i8),
        );
    }
    (codes, scales)
}

/// Quantization parameters of the QDQ model and the dequantized weights they imply.
struct Qdq {
    x_scale: f32, // input: uint8, zero point 128
    r_scale: f32, // after Relu: uint8, zero point 0
    conv_wq: Vec<i8>,
    conv_ws: Vec<f32>,
    conv_bq: Vec<i32>,
    conv_bs: Vec<f32>, // x_scale * conv_ws[c]
    fc_wq: Vec<i8>,
    fc_ws: Vec<f32>,
    fc_bq: Vec<i32>,
    fc_bs: Vec<f32>, // r_scale * fc_ws[j]
}

const X_ZP: u8 = 128;

impl Qdq {
    fn new(w: &Weights, x: &[f32]) -> Self {
        let x_scale = 2.0 / 255.0;
        // Calibrate the Relu output range on the float network.
        let r = relu(&conv3x3(x, &w.conv_w, &w.conv_b, BATCH));
        let r_scale = r.iter().fold(0f32, |m, &v| m.max(v)) / 255.0;
        let (conv_wq, conv_ws) = quantize_rows(&w.conv_w, C_OUT);
        let (fc_wq, fc_ws) = quantize_rows(&w.fc_w, CLASSES);
        let conv_bs: Vec<f32> = conv_ws.iter().map(|s| x_scale * s).collect();
        let fc_bs: Vec<f32> = fc_ws.iter().map(|s| r_scale * s).collect();
        let qb = |b: &[f32], s: &[f32]| -> Vec<i32> {
            b.iter()
                .zip(s)
                .map(|(b, s)| (b / s).round_ties_even() as i32)
                .collect()
        };
        Self {
            x_scale,
            r_scale,
            conv_bq: qb(&w.conv_b, &conv_bs),
            fc_bq: qb(&w.fc_b, &fc_bs),
            conv_wq,
            conv_ws,
            conv_bs,
            fc_wq,
            fc_ws,
            fc_bs,
        }
    }
}

/// Codes times per-row scales (DequantizeLinear with axis 0 and zero point 0).
fn dq_rows<T: Copy + Into<i64>>(codes: &[T], scales: &[f32]) -> Vec<f32> {
    let cols = codes.len() / scales.len();
    codes
        .iter()
        .enumerate()
        .map(|(i, &q)| q.into() as f32 * scales[i / cols])
        .collect()
}

fn qdq_model(q: &Qdq) -> ModelProto {
    let mut g = GraphBuilder::new("tiny_cnn_qdq");
    g.input_f32("x", &["N".into(), 1.into(), 6.into(), 6.into()])
        .output_f32("y", &["N".into(), Dim::Fixed(CLASSES as i64)])
        .value_info(
            "x.q",
            DataType::Uint8,
            &["N".into(), 1.into(), 6.into(), 6.into()],
        )
        .scalar_f32("x.scale", q.x_scale)
        .scalar_u8("x.zp", X_ZP)
        .scalar_f32("r.scale", q.r_scale)
        .scalar_u8("r.zp", 0)
        .initializer_i8("conv.wq", &[2, 1, 3, 3], &q.conv_wq)
        .initializer_f32("conv.ws", &[2], &q.conv_ws)
        .initializer_i8("conv.wzp", &[2], &[0; C_OUT])
        .initializer_i32("conv.bq", &[2], &q.conv_bq)
        .initializer_f32("conv.bs", &[2], &q.conv_bs)
        .initializer_i8("fc.wq", &[3, 18], &q.fc_wq)
        .initializer_f32("fc.ws", &[3], &q.fc_ws)
        .initializer_i32("fc.bq", &[3], &q.fc_bq)
        .initializer_f32("fc.bs", &[3], &q.fc_bs)
        .initializer_i64("flat.shape", &[2], &[-1, POOLED as i64]);
    // The zero point is optional for DequantizeLinear (its input carries the type): the conv
    // weights give one per channel, the fc weights and the biases leave it out (0).
    g.node("QuantizeLinear", &["x", "x.scale", "x.zp"], &["x.q"]);
    g.node("DequantizeLinear", &["x.q", "x.scale", "x.zp"], &["x.dq"]);
    g.node(
        "DequantizeLinear",
        &["conv.wq", "conv.ws", "conv.wzp"],
        &["conv.w"],
    )
    .attr_int("axis", 0);
    g.node("DequantizeLinear", &["conv.bq", "conv.bs"], &["conv.b"])
        .attr_int("axis", 0);
    g.node("Conv", &["x.dq", "conv.w", "conv.b"], &["c"])
        .attr_ints("kernel_shape", &[3, 3])
        .attr_ints("pads", &[1, 1, 1, 1]);
    g.node("Relu", &["c"], &["r"]);
    g.node("QuantizeLinear", &["r", "r.scale", "r.zp"], &["r.q"]);
    g.node("DequantizeLinear", &["r.q", "r.scale", "r.zp"], &["r.dq"]);
    g.node("MaxPool", &["r.dq"], &["p"])
        .attr_ints("kernel_shape", &[2, 2])
        .attr_ints("strides", &[2, 2]);
    g.node("QuantizeLinear", &["p", "r.scale", "r.zp"], &["p.q"]);
    g.node("DequantizeLinear", &["p.q", "r.scale", "r.zp"], &["p.dq"]);
    g.node("Reshape", &["p.dq", "flat.shape"], &["f"]);
    g.node("QuantizeLinear", &["f", "r.scale", "r.zp"], &["f.q"]);
    g.node("DequantizeLinear", &["f.q", "r.scale", "r.zp"], &["f.dq"]);
    g.node("DequantizeLinear", &["fc.wq", "fc.ws"], &["fc.w"])
        .attr_int("axis", 0);
    g.node("DequantizeLinear", &["fc.bq", "fc.bs"], &["fc.b"])
        .attr_int("axis", 0);
    g.node("Gemm", &["f.dq", "fc.w", "fc.b"], &["y"])
        .attr_int("transB", 1);
    g.finish(13, "smelt-onnx-test")
}

/// The QDQ network in floats, each Q/DQ pair as a fake quantization. MaxPool and Reshape keep
/// values on the grid, so their Q/DQ pairs are identities and left out.
fn qdq_forward(q: &Qdq, x: &[f32]) -> Vec<f32> {
    let x = fake_quant(x, q.x_scale, X_ZP as i32, 0, 255);
    let conv_w = dq_rows(&q.conv_wq, &q.conv_ws);
    let conv_b = dq_rows(&q.conv_bq, &q.conv_bs);
    let r = relu(&conv3x3(&x, &conv_w, &conv_b, BATCH));
    let r = fake_quant(&r, q.r_scale, 0, 0, 255);
    let p = maxpool2x2(&r, BATCH);
    let fc_w = dq_rows(&q.fc_wq, &q.fc_ws);
    let fc_b = dq_rows(&q.fc_bq, &q.fc_bs);
    gemm_tb(&p, &fc_w, &fc_b, BATCH)
}

// ---- the oracle ----

fn oracle_python() -> Option<PathBuf> {
    std::env::var_os("SMELT_TEST_PYTHON").map(PathBuf::from)
}

/// Writes `model` and `x` into `dir`, runs the Python oracle on them, checks what does not depend
/// on the network (checker, re-serialization, signature) and returns its JSON.
fn run_oracle(py: &Path, dir: &Path, name: &str, model: &ModelProto, x: &[f32]) -> Value {
    let model_path = dir.join(format!("{name}.onnx"));
    write_model(&model_path, model).unwrap();
    let input_path = dir.join(format!("{name}.input.json"));
    let input = serde_json::json!({ "shape": [BATCH, 1, HW, HW], "data": x });
    std::fs::write(&input_path, input.to_string()).unwrap();

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/onnx_oracle.py");
    let out = Command::new(py)
        .arg(script)
        .arg(&model_path)
        .arg(&input_path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", py.display()));
    assert!(
        out.status.success(),
        "{name}: the ONNX oracle failed (run scripts/test, which installs onnx and onnxruntime):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!(
        "{name}: onnx {} / onnxruntime {}, checker {}; optimized graph {}",
        v["onnx"], v["onnxruntime"], v["checker"], v["optimized_ops"]
    );
    assert_eq!(v["checker"], "ok");
    assert_eq!(
        v["reserialized_identical"], true,
        "{name}: the onnx package serializes our model to different bytes"
    );
    assert_eq!(v["ir_version"], 8);
    assert_eq!(v["opsets"][""], 13);
    assert_eq!(v["inputs"][0]["name"], "x");
    assert_eq!(v["inputs"][0]["shape"], serde_json::json!(["N", 1, 6, 6]));
    assert_eq!(v["inputs"][0]["type"], "tensor(float)");
    assert_eq!(v["outputs"][0]["shape"], serde_json::json!(["N", 3]));
    v
}

/// Output `y` of one onnxruntime run ("disabled" or "all" graph optimizations).
fn ort_output(v: &Value, run: &str) -> Vec<f32> {
    let y = &v["runs"][run]["y"];
    assert_eq!(y["shape"], serde_json::json!([BATCH, CLASSES]), "{run}");
    y["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

#[test]
fn onnxruntime_agrees_with_rust_on_float_and_qdq_models() {
    let Some(py) = oracle_python() else {
        eprintln!("skipped: SMELT_TEST_PYTHON not set");
        return;
    };
    let mut rng = Rng(20261127);
    let w = Weights::new(&mut rng);
    let x = rng.vec(BATCH * HW * HW, 1.0); // (BATCH, 1, HW, HW)
    let dir = tempfile::tempdir().unwrap();

    let want = float_forward(&w, &x);
    let v = run_oracle(&py, dir.path(), "float", &float_model(&w), &x);
    for run in ["disabled", "all"] {
        let d = max_abs_diff(&ort_output(&v, run), &want);
        eprintln!("float, ORT optimizations {run}: max |diff| {d:.2e}");
        assert!(d <= 1e-4, "float model, {run}: max |diff| {d}");
    }

    let q = Qdq::new(&w, &x);
    let want_q = qdq_forward(&q, &x);
    // The quantized model must still be close to the float one (it is the same network).
    let drift = max_abs_diff(&want_q, &want);
    assert!(drift < 0.1, "QDQ reference drifts {drift} from float");
    let v = run_oracle(&py, dir.path(), "qdq", &qdq_model(&q), &x);
    // Unoptimized, onnxruntime runs each Q/DQ node in floats as the reference does.
    let d = max_abs_diff(&ort_output(&v, "disabled"), &want_q);
    eprintln!("qdq, ORT optimizations disabled: max |diff| {d:.2e}");
    assert!(d <= 1e-4, "QDQ model, unoptimized: max |diff| {d}");
    // Optimized, onnxruntime must recognise the Q/DQ pattern and fuse it (1.32.0 turns
    // DQ→Conv→Relu→Q into QLinearConv and runs MaxPool on uint8; the Gemm stays in floats).
    let ops = v["optimized_ops"].as_array().unwrap();
    assert!(
        ops.iter().any(|o| o == "QLinearConv"),
        "onnxruntime did not fuse the QDQ conv: {ops:?}"
    );
    // Optimized, the QDQ groups become integer kernels whose requantization may round a value
    // to the neighbouring uint8 step; allow one step of every Gemm input.
    let d = max_abs_diff(&ort_output(&v, "all"), &want_q);
    let step = q.r_scale * q.fc_ws.iter().fold(0f32, |m, &s| m.max(s)) * 127.0;
    eprintln!(
        "qdq, ORT optimizations all: max |diff| {d:.2e} (allowed {:.2e})",
        step * POOLED as f32
    );
    assert!(
        d <= step * POOLED as f32 + 1e-4,
        "QDQ model, optimized: max |diff| {d}"
    );
}

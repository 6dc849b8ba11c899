//! smelt's GGUF reader against gguf-py (llama.cpp's own Python package) on the real SmolLM2
//! file: every metadata key, type and value, every tensor's name, dims, type, offset and size,
//! and the block-size table of every ggml type.

mod common;

use std::process::Command;

use serde_json::Value;
use smelt_gguf::{GgmlType, GgufFile, MetaValue};

fn to_json(v: &MetaValue) -> Value {
    match v {
        MetaValue::U8(x) => Value::from(*x),
        MetaValue::I8(x) => Value::from(*x),
        MetaValue::U16(x) => Value::from(*x),
        MetaValue::I16(x) => Value::from(*x),
        MetaValue::U32(x) => Value::from(*x),
        MetaValue::I32(x) => Value::from(*x),
        MetaValue::U64(x) => Value::from(*x),
        MetaValue::I64(x) => Value::from(*x),
        MetaValue::F32(x) => Value::from(*x as f64),
        MetaValue::F64(x) => Value::from(*x),
        MetaValue::Bool(b) => Value::from(*b),
        MetaValue::String(s) => Value::from(s.as_str()),
        MetaValue::Array(..) => unreachable!("arrays are compared by length and ends"),
    }
}

fn same_number(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-6 * x.abs().max(1.0),
        _ => a == b,
    }
}

#[test]
fn reader_agrees_with_gguf_py_on_smollm2() {
    let home = common::shared_home();
    let out = common::run(common::smelt(&home).args(["fetch", "smollm2-135m"]));
    assert!(out.status.success());
    let dir = home.join("assets/smollm2-135m");
    let path = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "gguf"))
        .unwrap();

    let oracle = compare_with_gguf_py(&path);

    // Block geometry of every type gguf-py knows, with ggml's Q8_1 size (see types.rs).
    let sizes = oracle["quant_sizes"].as_object().unwrap();
    for (id, pair) in sizes {
        let id: u32 = id.parse().unwrap();
        let t = GgmlType::from_id(id)
            .unwrap_or_else(|| panic!("gguf-py knows type {id}, smelt does not"));
        let (block, bytes) = t.block();
        let want = (pair[0].as_u64().unwrap(), pair[1].as_u64().unwrap());
        if t == GgmlType::Q8_1 {
            assert_eq!(want, (32, 40), "gguf-py fixed Q8_1; drop this exception");
            assert_eq!((block, bytes), (32, 36));
        } else {
            assert_eq!((block, bytes), want, "{t:?}");
        }
    }
    assert_eq!(
        sizes.len(),
        smelt_gguf::ALL_TYPES.len(),
        "type tables differ in length"
    );
}

/// Dumps `path` with gguf-py and checks that smelt's reader sees the same metadata (keys, types,
/// values; arrays by length, head and tail) and tensors (name, dims, type, offset, size).
fn compare_with_gguf_py(path: &std::path::Path) -> Value {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/oracle/gguf_dump.py"
    );
    let py = common::oracle_python();
    let dump = Command::new(&py)
        .arg(script)
        .arg(path)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e}; run scripts/test, which installs the Python oracles",
                py.display()
            )
        });
    assert!(
        dump.status.success(),
        "gguf-py failed (run scripts/test to install it): {}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let oracle: Value = serde_json::from_slice(&dump.stdout).unwrap();

    let file = GgufFile::open(path).unwrap();
    let h = &file.header;

    let meta = oracle["metadata"].as_array().unwrap();
    assert_eq!(meta.len(), h.metadata.len());
    for (m, (key, value)) in meta.iter().zip(&h.metadata) {
        assert_eq!(m["key"], key.as_str());
        assert_eq!(m["type"], value.meta_type().name(), "{key}");
        match value {
            MetaValue::Array(elem, items) => {
                let o = &m["value"];
                assert_eq!(o["array_of"], elem.name(), "{key}");
                assert_eq!(o["len"], items.len(), "{key}");
                let head: Vec<Value> = items.iter().take(3).map(to_json).collect();
                let tail: Vec<Value> = items[items.len().saturating_sub(2)..]
                    .iter()
                    .map(to_json)
                    .collect();
                for (a, b) in o["head"].as_array().unwrap().iter().zip(&head) {
                    assert!(same_number(a, b), "{key}: {a} vs {b}");
                }
                for (a, b) in o["tail"].as_array().unwrap().iter().zip(&tail) {
                    assert!(same_number(a, b), "{key}: {a} vs {b}");
                }
            }
            v => assert!(
                same_number(&m["value"], &to_json(v)),
                "{key}: {} vs {:?}",
                m["value"],
                v
            ),
        }
    }

    let tensors = oracle["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), h.tensors.len());
    for (o, t) in tensors.iter().zip(&h.tensors) {
        assert_eq!(o["name"], t.name.as_str());
        assert_eq!(o["dims"], serde_json::json!(t.dims), "{}", t.name);
        assert_eq!(o["type"], t.ggml_type as u32, "{}", t.name);
        assert_eq!(o["data_offset"], h.data_offset + t.offset, "{}", t.name);
        assert_eq!(o["n_bytes"], t.size, "{}", t.name);
        let sha = smelt_files::sha256_bytes(file.tensor_data(t));
        assert_eq!(o["sha256"], sha.as_str(), "{}: tensor bytes differ", t.name);
    }

    oracle
}

/// Runs tests/oracle/gguf_quant.py with the oracle Python.
fn gguf_py(args: &[&std::ffi::OsStr]) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/oracle/gguf_quant.py"
    );
    let py = common::oracle_python();
    let out = Command::new(&py)
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e}; run scripts/test, which installs the Python oracles",
                py.display()
            )
        });
    assert!(
        out.status.success(),
        "gguf-py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Seeded test rows that exercise the corners of block quantizers: Gaussian blocks of several
/// scales, an all-zero block, a constant block, a block whose extreme value is negative and one
/// with values on Q8_0 rounding boundaries.
fn test_values(seed: u64) -> Vec<f32> {
    let mut r = smelt_quant::rng::Rng::new(seed);
    let mut x = Vec::new();
    for b in 0..64 {
        let scale = 10f32.powi(b % 5 - 2);
        x.extend((0..32).map(|_| scale * r.normal() as f32));
    }
    x.extend([0.0f32; 32]);
    x.extend([0.75f32; 32]);
    x.extend((0..32).map(|i| if i == 5 { -9.0 } else { i as f32 * 0.1 }));
    x.extend((0..32).map(|i| (i as f32 - 16.0) * 127.0 / 254.0));
    x
}

fn f32_bits_of(path: &std::path::Path) -> Vec<u32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn block_types_match_gguf_py_bit_for_bit() {
    use smelt_gguf::blocks;
    let dir = tempfile::tempdir().unwrap();
    // The types gguf-py can quantize in numpy.
    let numpy_types = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
    ];
    for (i, &ty) in numpy_types.iter().enumerate() {
        let x = test_values(100 + i as u64);
        let input = dir.path().join("x.f32");
        let raw: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&input, raw).unwrap();
        let theirs_q = dir.path().join("q.bin");
        let name = ty.name();
        gguf_py(&[
            "quantize".as_ref(),
            name.as_ref(),
            input.as_os_str(),
            theirs_q.as_os_str(),
        ]);
        let ours = blocks::quantize(ty, &x).unwrap();
        let theirs = std::fs::read(&theirs_q).unwrap();
        assert_eq!(ours.len(), theirs.len(), "{ty:?} size");
        if let Some(i) = ours.iter().zip(&theirs).position(|(a, b)| a != b) {
            let block = i as u64 / ty.block().1;
            panic!(
                "{ty:?}: byte {i} (block {block}) differs: ours {} theirs {}",
                ours[i], theirs[i]
            );
        }
        // Dequantization of the same bytes on both sides, bit for bit.
        let qfile = dir.path().join("ours.bin");
        std::fs::write(&qfile, &ours).unwrap();
        let theirs_y = dir.path().join("y.f32");
        let n = x.len().to_string();
        gguf_py(&[
            "dequantize".as_ref(),
            name.as_ref(),
            qfile.as_os_str(),
            n.as_ref(),
            theirs_y.as_os_str(),
        ]);
        let ours_y: Vec<u32> = blocks::dequantize(ty, &ours, x.len())
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect();
        assert_eq!(ours_y, f32_bits_of(&theirs_y), "{ty:?} dequantize");
    }
}

#[test]
fn k_quant_dequantization_matches_gguf_py() {
    // gguf-py dequantizes (but cannot quantize) the k-quants; our quantizers are checked
    // against ggml's C reference in smelt-gguf's kquants_golden test.
    use smelt_gguf::blocks;
    let dir = tempfile::tempdir().unwrap();
    let x = &test_values(9)[..2048];
    for ty in [
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::IQ4_NL,
        GgmlType::IQ4_XS,
    ] {
        let ours = blocks::quantize(ty, x).unwrap();
        let qfile = dir.path().join("k.bin");
        std::fs::write(&qfile, &ours).unwrap();
        let theirs = dir.path().join("k.f32");
        let (name, n) = (ty.name(), x.len().to_string());
        gguf_py(&[
            "dequantize".as_ref(),
            name.as_ref(),
            qfile.as_os_str(),
            n.as_ref(),
            theirs.as_os_str(),
        ]);
        let theirs: Vec<f32> = f32_bits_of(&theirs)
            .into_iter()
            .map(f32::from_bits)
            .collect();
        let ours_y = blocks::dequantize(ty, &ours, x.len()).unwrap();
        for (i, (a, b)) in ours_y.iter().zip(&theirs).enumerate() {
            // numpy may order the scale products differently: allow one rounding of the product.
            assert!(
                (a - b).abs() <= 2.0 * f32::EPSILON * a.abs().max(b.abs()),
                "{ty:?} [{i}]: {a} vs {b}"
            );
        }
    }
}

#[test]
fn files_we_write_read_the_same_in_gguf_py() {
    use smelt_gguf::{GgufWriter, MetaType, blocks};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ours.gguf");
    let mut w = GgufWriter::new();
    w.meta("general.architecture", MetaValue::String("llama".into()))
        .unwrap();
    let strings = vec![
        MetaValue::String("a".into()),
        MetaValue::String(String::new()),
    ];
    for (k, v) in [
        ("t.u8", MetaValue::U8(200)),
        ("t.i8", MetaValue::I8(-100)),
        ("t.u16", MetaValue::U16(60000)),
        ("t.i16", MetaValue::I16(-30000)),
        ("t.u32", MetaValue::U32(4_000_000_000)),
        ("t.i32", MetaValue::I32(-2_000_000_000)),
        ("t.f32", MetaValue::F32(1.5)),
        ("t.bool", MetaValue::Bool(true)),
        ("t.string", MetaValue::String("héllo".into())),
        ("t.u64", MetaValue::U64(1 << 50)),
        ("t.i64", MetaValue::I64(-(1 << 50))),
        ("t.f64", MetaValue::F64(-0.125)),
        ("t.array", MetaValue::Array(MetaType::String, strings)),
    ] {
        w.meta(k, v).unwrap();
    }
    w.alignment(64).unwrap();
    let x = test_values(7);
    for (name, ty) in [
        ("w.q4_0", GgmlType::Q4_0),
        ("w.q5_1", GgmlType::Q5_1),
        ("w.bf16", GgmlType::BF16),
        ("w.f32", GgmlType::F32),
    ] {
        let data = blocks::quantize(ty, &x).unwrap();
        w.tensor(name, &[32, (x.len() / 32) as u64], ty, data)
            .unwrap();
    }
    w.write(&path).unwrap();
    compare_with_gguf_py(&path);
}

#[test]
fn files_gguf_py_writes_read_the_same_in_ours() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("theirs.gguf");
    gguf_py(&["write".as_ref(), path.as_os_str()]);
    compare_with_gguf_py(&path);
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(
        f.header.get("general.name").and_then(|v| v.as_str()),
        Some("oracle")
    );
    let q8 = f.header.tensors.iter().find(|t| t.name == "q8").unwrap();
    assert_eq!(
        (q8.ggml_type, &q8.dims[..]),
        (GgmlType::Q8_0, &[64u64, 4][..])
    );
}

#[test]
fn validate_and_json_inspect_through_the_binary() {
    let home = common::shared_home();
    let ok = common::run(common::smelt(&home).args(["gguf", "validate", "smollm2-135m"]));
    assert!(ok.status.success());
    assert!(common::text(&ok).contains("values of 272 tensors decoded and finite"));
    let human = common::run(common::smelt(&home).args(["gguf", "inspect", "smollm2-135m"]));
    assert!(common::text(&human).contains(
        "tokenizer: gpt2 (pre-tokenizer smollm), 49152 tokens, 48900 merges, bos 1 \"<|im_start|>\""
    ));
    let js = common::run(common::smelt(&home).args(["gguf", "inspect", "smollm2-135m", "--json"]));
    let v: Value = serde_json::from_slice(&js.stdout).unwrap();
    assert_eq!(v["totals"]["parameters"], 134_515_008u64);
    assert_eq!(v["tensors"].as_array().unwrap().len(), 272);

    // A structurally valid file whose f32 tensor holds a NaN is rejected with its name.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nan.gguf");
    let mut w = smelt_gguf::GgufWriter::new();
    let mut data = vec![0u8; 16];
    data[8..12].copy_from_slice(&f32::NAN.to_le_bytes());
    w.tensor("bad.weight", &[4], GgmlType::F32, data).unwrap();
    w.write(&path).unwrap();
    let bad = common::run(
        common::smelt(dir.path())
            .args(["gguf", "validate"])
            .arg(&path),
    );
    assert!(!bad.status.success());
    assert!(common::text(&bad).contains("bad.weight"));
}

#[test]
fn tokenize_prints_ids_and_pieces() {
    let home = common::shared_home();
    let out = common::run(common::smelt(&home).args([
        "tokenize",
        "smollm2-135m",
        "<|im_start|>Hello world",
    ]));
    assert!(out.status.success());
    let t = common::text(&out);
    assert!(t.contains("      1  \"<|im_start|>\""), "{t}");
    assert!(t.contains("  19556  \"Hello\""), "{t}");
    assert!(t.contains("3 tokens"), "{t}");
}

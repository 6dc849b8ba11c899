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

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/oracle/gguf_dump.py"
    );
    let py = common::oracle_python();
    let dump = Command::new(&py)
        .arg(script)
        .arg(&path)
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

    let file = GgufFile::open(&path).unwrap();
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
    }

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

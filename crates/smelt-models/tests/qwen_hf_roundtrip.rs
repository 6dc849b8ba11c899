//! Qwen 2 and Qwen 3 through the Hugging Face format: `gguf export-hf` and `gguf convert` on
//! the models `llamacpp_golden.rs` holds to llama.cpp's logits (SmolLM2's weights with Qwen 2's
//! biases or Qwen 3's q/k norms, and a small Qwen 3 with heads wider than width / heads).
//! The Hugging Face tensor names are checked against gguf-py's own map for each architecture
//! (`gguf.get_tensor_name_map`, llama.cpp's converter's table), and the trip back keeps every
//! value and metadata entry.

mod made_models;
mod oracle;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use oracle::oracle_python;
use smelt_gguf::hf::{ExportDtype, OutType, convert, export, names};
use smelt_gguf::{GgufFile, MetaValue, blocks};
use smelt_models::llama::{Arch, Llama, Logits};

/// The tensor names in a safetensors file's header.
fn safetensors_names(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| *k != "__metadata__")
        .cloned()
        .collect()
}

/// gguf-py's GGUF name for each Hugging Face name of architecture `arch` (null where its map
/// has none).
fn gguf_py_names(arch: &str, n_layer: usize, hf: &[String]) -> BTreeMap<String, Option<String>> {
    let script = r#"
import json, sys
import gguf
arch, n_layer, names = sys.argv[1], int(sys.argv[2]), json.loads(sys.stdin.read())
m = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], n_layer)
print(json.dumps({n: m.get_name(n, try_suffixes=(".weight", ".bias")) for n in names}))
"#;
    let mut child = Command::new(oracle_python())
        .args(["-c", script, arch, &n_layer.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python with gguf (requirements-test.txt)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(hf).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "gguf-py failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Exports `file` (architecture `arch`), checks config.json and the names, converts it back,
/// and compares.
fn round_trip(file: &Arc<GgufFile>, arch: Arch, dir: &Path) {
    let name = arch.name();
    let hf = dir.join(name);
    export(file, &hf, ExportDtype::F32).unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(hf.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["model_type"], name);
    let class = match arch {
        Arch::Llama => "LlamaForCausalLM",
        Arch::Qwen2 => "Qwen2ForCausalLM",
        Arch::Qwen3 => "Qwen3ForCausalLM",
        Arch::Qwen3Moe | Arch::Qwen2Moe | Arch::Phi3 | Arch::Gemma2 | Arch::Gemma3 => {
            unreachable!("export-hf refuses these")
        }
    };
    assert_eq!(config["architectures"][0], class);
    let model = Llama::load(file).unwrap();
    let c = &model.config;
    if c.head_dim() * c.n_head != c.n_embd {
        assert_eq!(config["head_dim"], c.head_dim());
    }

    // Every Hugging Face name is the one llama.cpp's converter maps to our GGUF name.
    let hf_names = safetensors_names(&hf.join("model.safetensors"));
    assert_eq!(hf_names.len(), file.header.tensors.len());
    for (hf_name, theirs) in gguf_py_names(name, c.n_layer, &hf_names) {
        let ours = names::hf_to_gguf(&hf_name);
        assert_eq!(ours, theirs, "{name}: {hf_name}");
    }

    // Back to GGUF (F32): the same values (the export was exact) and metadata.
    let back = convert(&hf, OutType::F32).unwrap();
    let path = dir.join(format!("{name}.gguf"));
    back.write(&path).unwrap();
    let back = Arc::new(GgufFile::open(&path).unwrap());
    assert_eq!(back.header.tensors.len(), file.header.tensors.len());
    for ta in &file.header.tensors {
        let tb = back.header.tensors.iter().find(|t| t.name == ta.name);
        let tb = tb.unwrap_or_else(|| panic!("{name}: {} missing", ta.name));
        assert_eq!(ta.dims, tb.dims, "{}", ta.name);
        let n = ta.elements() as usize;
        let xa = blocks::dequantize(ta.ggml_type, file.tensor_data(ta), n).unwrap();
        let xb = blocks::dequantize(tb.ggml_type, back.tensor_data(tb), n).unwrap();
        let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert!(bits(&xa) == bits(&xb), "{name}: {} differs", ta.name);
    }
    let meta = |f: &GgufFile| -> BTreeMap<String, MetaValue> {
        f.header
            .metadata
            .iter()
            .filter(|(k, _)| k != "general.file_type")
            .cloned()
            .collect()
    };
    let (a, b) = (meta(file), meta(&back));
    for (k, v) in &a {
        assert_eq!(b.get(k), Some(v), "{name}: {k}");
    }
    // All the trip adds is what llama.cpp's converter writes and the source left out.
    for k in b.keys().filter(|k| !a.contains_key(*k)) {
        assert_eq!(k, &format!("{name}.vocab_size"), "{name}: {k} added");
    }
    // And it runs, as that architecture.
    let again = Llama::load(&back).unwrap();
    assert_eq!(again.config, model.config);
    let mut cache = again.new_cache(4);
    let logits = again
        .forward_batch(&[1, 2], &mut cache, Logits::Last)
        .unwrap();
    assert!(logits.iter().all(|v| v.is_finite()));
}

#[test]
fn qwen_models_round_trip_through_hugging_face_format() {
    let dir = tempfile::tempdir().unwrap();
    round_trip(&made_models::qwen2(), Arch::Qwen2, dir.path());
    round_trip(&made_models::qwen3(), Arch::Qwen3, dir.path());
    let wide = dir.path().join("wide");
    std::fs::create_dir(&wide).unwrap();
    round_trip(&made_models::wide_qwen3(), Arch::Qwen3, &wide);
}

/// Phi-3's stacked matrices are not written as Hugging Face tensors yet: refused, not written
/// under llama names.
#[test]
fn phi3_export_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let Err(e) = export(&made_models::phi3(), dir.path(), ExportDtype::F32) else {
        panic!("phi3 exported");
    };
    assert!(e.to_string().contains("\"phi3\""), "{e}");
}

/// Qwen 3's q/k norms are refused under another architecture (which would not use them),
/// on the way out and on the way in.
#[test]
fn qk_norms_outside_qwen3_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let hf = dir.path().join("hf");
    export(&made_models::qwen3(), &hf, ExportDtype::F32).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(hf.join("config.json")).unwrap()).unwrap();
    config["model_type"] = "qwen2".into();
    std::fs::write(hf.join("config.json"), config.to_string()).unwrap();
    let Err(e) = convert(&hf, OutType::F32) else {
        panic!("a qwen2 checkpoint with q/k norms converted");
    };
    let e = e.to_string();
    assert!(
        e.contains("_norm.weight is not part of a qwen2 model"),
        "{e}"
    );
}

/// A tensor the graph would not read (Qwen 3's q norm in a llama file, an output bias) is
/// refused at load, as llama.cpp refuses files with tensors it did not load.
#[test]
fn tensors_the_graph_does_not_read_are_refused() {
    for (arch, name) in [
        ("llama", "attn_q_norm.weight"),
        ("qwen2", "attn_output.bias"),
    ] {
        let file = made_models::as_arch(arch, |w, l, hd, _, _| {
            if l == 1 {
                let bytes = vec![0u8; 4 * hd];
                let dims = [hd as u64];
                w.tensor(
                    &format!("blk.1.{name}"),
                    &dims,
                    smelt_gguf::GgmlType::F32,
                    bytes,
                )
                .unwrap();
            }
        });
        let Err(e) = Llama::load(&file) else {
            panic!("{arch} with blk.1.{name} loaded");
        };
        assert!(
            e.to_string()
                .contains(&format!("tensor blk.1.{name} is not part")),
            "{e}"
        );
    }
}

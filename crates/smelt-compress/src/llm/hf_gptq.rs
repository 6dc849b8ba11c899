//! A Hugging Face GPTQ directory: the layout AutoGPTQ writes (`checkpoint_format: "gptq"`,
//! version 1) and transformers/optimum load. Per quantized linear `…_proj`:
//! - `qweight` int32 `(cols·bits/32, rows)`: `32/bits` codes per word along the input axis,
//!   lowest bits first;
//! - `qzeros` int32 `(groups, rows·bits/32)`: zero points **minus one** (the v1 convention),
//!   packed the same way along the output axis. A group whose zero point is 0 cannot be stored
//!   that way; then the whole file uses GPTQModel's `gptq_v2` convention (zero points as they
//!   are) and says so in `checkpoint_format`;
//! - `scales` f16 `(groups, rows)`; `g_idx` int32 `(cols,)`, the group of each input column.
//!
//! Everything else (embeddings, norms) is written as f16 by the plain Hugging Face export, and
//! `quantize_config.json` (also under `quantization_config` in `config.json`) records the grid.
//! q/k rows are put back into Hugging Face's order (GGUF interleaves them for RoPE).
//! Widths 2, 4 and 8 pack into whole words; 3 does not and is refused here.

use std::path::Path;

use half::f16;
use serde_json::json;
use smelt_gguf::GgufFile;
use smelt_gguf::hf::export::{ExportDtype, HfTensor, export_with};
use smelt_gguf::hf::names::permute_qk;

use smelt_models::llama::Llama;

use super::grid::QuantizedLinear;
use super::{PtqConfig, QuantizedModel};

/// The four GPTQ tensors of `q` (rows in the order given by `order`, old row per new row)
/// under `prefix` (e.g. `model.layers.0.self_attn.q_proj`); `v1` stores zero points minus one.
pub fn pack_linear(
    q: &QuantizedLinear,
    order: &[usize],
    prefix: &str,
    v1: bool,
) -> Result<Vec<HfTensor>, String> {
    let bits = q.grid.bits as usize;
    if !32usize.is_multiple_of(bits) {
        return Err(format!(
            "{bits}-bit codes do not pack into 32-bit words (use 2, 4 or 8 bits)"
        ));
    }
    let per = 32 / bits;
    let (rows, cols, ng) = (q.rows, q.cols, q.n_groups());
    if !cols.is_multiple_of(per) || !rows.is_multiple_of(per) {
        return Err(format!(
            "{rows}x{cols} is not a multiple of {per} codes per word"
        ));
    }
    let maxq = q.grid.maxq();
    // (cols / per, rows)
    let mut qweight = vec![0u32; cols / per * rows];
    // (ng, rows / per)
    let mut qzeros = vec![0u32; ng * rows / per];
    // (ng, rows)
    let mut scales = vec![0u16; ng * rows];
    for (new_r, &r) in order.iter().enumerate() {
        for c in 0..cols {
            let code = q.codes[r * cols + c] as u32;
            qweight[(c / per) * rows + new_r] |= code << ((c % per) * bits);
        }
        for g in 0..ng {
            let p = q.params[r * ng + g];
            scales[g * rows + new_r] = f16::from_f32(p.scale).to_bits();
            let z = if v1 {
                p.zero.wrapping_sub(1) & maxq
            } else {
                p.zero
            };
            qzeros[g * (rows / per) + new_r / per] |= z << ((new_r % per) * bits);
        }
    }
    let le32 = |v: &[u32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    use safetensors::Dtype;
    Ok(vec![
        (
            format!("{prefix}.qweight"),
            Dtype::I32,
            vec![cols / per, rows],
            le32(&qweight),
        ),
        (
            format!("{prefix}.qzeros"),
            Dtype::I32,
            vec![ng, rows / per],
            le32(&qzeros),
        ),
        (
            format!("{prefix}.scales"),
            Dtype::F16,
            vec![ng, rows],
            scales.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ),
        (
            format!("{prefix}.g_idx"),
            Dtype::I32,
            vec![cols],
            q.g_idx
                .iter()
                .flat_map(|&g| (g as i32).to_le_bytes())
                .collect(),
        ),
    ])
}

/// AutoGPTQ's `quantize_config.json` for `c` (`v1`: zero points stored minus one).
pub fn quantize_config(c: &PtqConfig, v1: bool) -> serde_json::Value {
    json!({
        "bits": c.grid.bits,
        "group_size": c.grid.group.map_or(-1, |g| g as i64),
        "damp_percent": c.damp,
        "desc_act": c.act_order,
        "static_groups": c.act_order,
        "sym": c.grid.sym,
        "true_sequential": false,
        "quant_method": "gptq",
        "checkpoint_format": if v1 { "gptq" } else { "gptq_v2" },
        "model_file_base_name": "model",
        "smelt_method": c.method.name(),
    })
}

/// Writes `q` (quantized from `src`'s layers; `model` holds its norms) as a Hugging Face GPTQ
/// directory in `dir`.
pub fn export_hf_gptq(
    src: &GgufFile,
    model: &Llama,
    q: &QuantizedModel,
    dir: &Path,
) -> Result<(), String> {
    // Fail before writing anything if a matrix cannot pack.
    for layer in &q.layers {
        for lin in layer.values() {
            pack_linear(lin, &[], "check", true)?;
        }
    }
    let v1 = q
        .layers
        .iter()
        .flat_map(|m| m.values())
        .all(|lin| lin.params.iter().all(|p| p.zero > 0));
    let failed = std::cell::RefCell::new(None);
    let replace = |gguf_name: &str, qk_heads: Option<usize>| -> Option<Vec<HfTensor>> {
        if let Some(norm) = super::pack::layer_vector(model, gguf_name) {
            let hf = smelt_gguf::hf::names::gguf_to_hf(gguf_name)?;
            let bytes = norm
                .iter()
                .flat_map(|&v| f16::from_f32(v).to_le_bytes())
                .collect();
            return Some(vec![(hf, safetensors::Dtype::F16, vec![norm.len()], bytes)]);
        }
        let rest = gguf_name.strip_prefix("blk.")?;
        let (l, name) = rest.split_once('.')?;
        let lin = q
            .layers
            .get(l.parse::<usize>().ok()?)?
            .iter()
            .find(|(k, _)| k.gguf_name() == name)?
            .1;
        let hf = smelt_gguf::hf::names::gguf_to_hf(gguf_name)?;
        let prefix = hf.strip_suffix(".weight")?;
        let order: Vec<usize> = match qk_heads {
            Some(heads) if !smelt_gguf::hf::names::permutable(lin.rows, heads) => {
                *failed.borrow_mut() = Some(format!(
                    "{gguf_name}: {} rows do not split into {heads} heads of even width",
                    lin.rows
                ));
                return None;
            }
            Some(heads) => {
                let idx: Vec<f32> = (0..lin.rows).map(|r| r as f32).collect();
                permute_qk(&idx, lin.rows, 1, heads, true)
                    .iter()
                    .map(|&v| v as usize)
                    .collect()
            }
            None => (0..lin.rows).collect(),
        };
        match pack_linear(lin, &order, prefix, v1) {
            Ok(t) => Some(t),
            Err(e) => {
                *failed.borrow_mut() = Some(e);
                None
            }
        }
    };
    let qc = quantize_config(&q.config, v1);
    export_with(src, dir, ExportDtype::F16, &replace, Some(qc.clone()))
        .map_err(|e| e.to_string())?;
    if let Some(e) = failed.into_inner() {
        return Err(e);
    }
    let path = dir.join("quantize_config.json");
    smelt_files::write_atomic(&path, &serde_json::to_vec_pretty(&qc).expect("JSON"))
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::grid::{WeightGrid, rtn};

    #[test]
    fn packed_words_unpack_to_the_codes_zeros_and_scales() {
        let mut rng = smelt_quant::rng::Rng::new(5);
        let (rows, cols) = (16, 96);
        let w = rng.normals(rows * cols);
        for bits in [2u8, 4, 8] {
            let q = rtn(
                &w,
                rows,
                cols,
                &WeightGrid {
                    bits,
                    sym: false,
                    group: Some(32),
                },
            );
            let order: Vec<usize> = (0..rows).rev().collect();
            let t = pack_linear(&q, &order, "p", true).unwrap();
            let t2 = pack_linear(&q, &order, "p", false).unwrap();
            let words = |t: &[HfTensor], i: usize| -> Vec<u32> {
                t[i].3
                    .chunks_exact(4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect()
            };
            let (qw, qz, qz2) = (words(&t, 0), words(&t, 1), words(&t2, 1));
            let per = 32 / bits as usize;
            let mask = q.grid.maxq();
            let ng = q.n_groups();
            for (new_r, &r) in order.iter().enumerate() {
                for c in 0..cols {
                    let code = (qw[(c / per) * rows + new_r] >> ((c % per) * bits as usize)) & mask;
                    assert_eq!(code, q.codes[r * cols + c] as u32, "{bits}b r{r} c{c}");
                }
                for g in 0..ng {
                    let at = |qz: &[u32]| {
                        (qz[g * (rows / per) + new_r / per] >> ((new_r % per) * bits as usize))
                            & mask
                    };
                    let zero = q.params[r * ng + g].zero;
                    // v1 stores zero − 1 (only meaningful for zero > 0); v2 the zero itself.
                    if zero > 0 {
                        assert_eq!(at(&qz) + 1, zero, "{bits}b v1 zero r{r} g{g}");
                    }
                    assert_eq!(at(&qz2), zero, "{bits}b v2 zero r{r} g{g}");
                    let s = u16::from_le_bytes([
                        t[2].3[2 * (g * rows + new_r)],
                        t[2].3[2 * (g * rows + new_r) + 1],
                    ]);
                    assert_eq!(f16::from_bits(s).to_f32(), q.params[r * ng + g].scale);
                }
            }
            assert_eq!(t[0].2, vec![cols / per, rows]);
        }
        let q3 = rtn(
            &w,
            rows,
            cols,
            &WeightGrid {
                bits: 3,
                sym: false,
                group: Some(32),
            },
        );
        assert!(pack_linear(&q3, &[], "p", true).is_err());
    }
}

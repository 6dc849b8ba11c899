//! Writing quantized LLM weights where other tools can read them.
//!
//! GGUF: a 4-bit grid whose groups cover whole 32-blocks maps exactly onto ggml blocks —
//! symmetric (zero point 8) onto Q4_0 (`d · (q − 8)`, the same value bit for bit), asymmetric
//! onto Q4_1 (`d · q + m` with `m = −d · zero` rounded to f16, within f16 rounding of the
//! offset). The group's scale repeats in each of its 32-blocks. Other grids are stored as F32 of
//! the values, so the file still runs and evaluates the same; the grid is in the metadata.

use half::f16;
use smelt_gguf::{GgmlType, GgufFile, GgufWriter, MetaValue};
use smelt_models::llama::{Arch, Linear, Llama};

use super::QuantizedModel;
use super::grid::QuantizedLinear;

/// The ggml block type `q` packs into exactly, if any.
pub fn ggml_type_for(q: &QuantizedLinear) -> Option<GgmlType> {
    let gc = q.grid.group_cols(q.cols);
    let aligned = gc.is_multiple_of(32) || gc == q.cols;
    (q.grid.bits == 4 && aligned && q.cols.is_multiple_of(32)).then_some(if q.grid.sym {
        GgmlType::Q4_0
    } else {
        GgmlType::Q4_1
    })
}

/// `q` as ggml blocks of `ty` (from [`ggml_type_for`]); rows of 32-blocks, nibbles as ggml
/// stores them (element j low, j + 16 high).
pub fn to_ggml_blocks(q: &QuantizedLinear, ty: GgmlType) -> Vec<u8> {
    let ng = q.n_groups();
    let per_block = if ty == GgmlType::Q4_0 { 18 } else { 20 };
    let mut out = Vec::with_capacity(q.rows * q.cols / 32 * per_block);
    for r in 0..q.rows {
        for b in (0..q.cols).step_by(32) {
            let p = q.params[r * ng + q.g_idx[b] as usize];
            out.extend(f16::from_f32(p.scale).to_le_bytes());
            if ty == GgmlType::Q4_1 {
                out.extend(f16::from_f32(-p.scale * p.zero as f32).to_le_bytes());
            }
            let codes = &q.codes[r * q.cols + b..r * q.cols + b + 32];
            out.extend((0..16).map(|j| codes[j] | (codes[j + 16] << 4)));
        }
    }
    out
}

/// A layer's norm (`attn_norm.weight`, `ffn_norm.weight`) or q/k/v bias (`attn_v.bias`, ...)
/// as `model` holds it (AWQ and SmoothQuant fold scales into norms, AWQ into v's bias), for
/// GGUF tensor `gguf_name`.
pub fn layer_vector<'m>(model: &'m Llama, gguf_name: &str) -> Option<&'m [f32]> {
    let (l, name) = gguf_name.strip_prefix("blk.")?.split_once('.')?;
    let l: usize = l.parse().ok()?;
    if l >= model.config.n_layer {
        return None;
    }
    match name {
        "attn_norm.weight" => Some(model.norm(l, true)),
        "ffn_norm.weight" => Some(model.norm(l, false)),
        "attn_q.bias" => model.bias(l, Linear::Q),
        "attn_k.bias" => model.bias(l, Linear::K),
        "attn_v.bias" => model.bias(l, Linear::V),
        _ => None,
    }
}

/// A GGUF like `src` with every layer matrix replaced by `q`'s (packed where the grid fits,
/// F32 values otherwise), the layer norms taken from `model` (the quantized model, whose
/// norms may carry folded scales), and the quantization settings in `smelt.ptq.*` metadata.
pub fn gguf_with(src: &GgufFile, model: &Llama, q: &QuantizedModel) -> Result<GgufWriter, String> {
    let h = &src.header;
    if model.config.arch == Arch::Phi3 {
        // Its q/k/v and gate/up are stored stacked: the per-matrix results would need
        // stacking back, which is not written yet (the quantized model runs in memory).
        return Err(
            "writing a quantized phi3 model is not supported yet (fused q/k/v and \
                    gate/up matrices)"
                .into(),
        );
    }
    let mut w = GgufWriter::new();
    let e = |x: smelt_gguf::WriteError| x.to_string();
    if h.alignment != smelt_gguf::DEFAULT_ALIGNMENT {
        w.alignment(h.alignment as u32).map_err(e)?;
    }
    // llama.cpp's file type: "mostly Q4_0/Q4_1" when every matrix packed the same way.
    let types: Vec<Option<GgmlType>> = q
        .layers
        .iter()
        .flat_map(|m| m.values())
        .map(ggml_type_for)
        .collect();
    let file_type = match types.first() {
        Some(Some(t)) if types.iter().all(|x| *x == Some(*t)) => match t {
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            _ => 0,
        },
        _ => 0,
    };
    for (k, v) in &h.metadata {
        if k != "general.alignment" && k != "general.file_type" {
            w.meta(k, v.clone()).map_err(e)?;
        }
    }
    let c = &q.config;
    w.meta("general.file_type", MetaValue::U32(file_type))
        .map_err(e)?;
    w.meta(
        "smelt.ptq.method",
        MetaValue::String(c.method.name().into()),
    )
    .map_err(e)?;
    w.meta("smelt.ptq.bits", MetaValue::U32(c.grid.bits as u32))
        .map_err(e)?;
    w.meta(
        "smelt.ptq.group",
        MetaValue::I32(c.grid.group.map_or(-1, |g| g as i32)),
    )
    .map_err(e)?;
    w.meta("smelt.ptq.sym", MetaValue::Bool(c.grid.sym))
        .map_err(e)?;
    for t in &h.tensors {
        let layer_matrix = t.name.strip_prefix("blk.").and_then(|rest| {
            let (l, name) = rest.split_once('.')?;
            let l: usize = l.parse().ok()?;
            let lin = q
                .layers
                .get(l)?
                .iter()
                .find(|(k, _)| k.gguf_name() == name)?
                .1;
            Some(lin)
        });
        if let Some(norm) = layer_vector(model, &t.name) {
            let bytes = norm.iter().flat_map(|v| v.to_le_bytes()).collect();
            w.tensor(&t.name, &t.dims, GgmlType::F32, bytes)
                .map_err(e)?;
            continue;
        }
        match layer_matrix {
            Some(lin) => {
                let (ty, data) = match ggml_type_for(lin) {
                    Some(ty) => (ty, to_ggml_blocks(lin, ty)),
                    None => (
                        GgmlType::F32,
                        lin.dequantize()
                            .iter()
                            .flat_map(|v| v.to_le_bytes())
                            .collect(),
                    ),
                };
                w.tensor(&t.name, &t.dims, ty, data).map_err(e)?;
            }
            None => {
                w.tensor(&t.name, &t.dims, t.ggml_type, src.tensor_data(t).to_vec())
                    .map_err(e)?;
            }
        }
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::grid::{WeightGrid, rtn};

    #[test]
    fn q4_0_blocks_hold_the_same_values_and_q4_1_within_f16_of_the_offset() {
        let mut rng = smelt_quant::rng::Rng::new(3);
        let (rows, cols) = (6, 192);
        let w = rng.normals(rows * cols);
        for (sym, group) in [
            (true, Some(64)),
            (false, Some(128)),
            (false, None),
            (true, Some(32)),
        ] {
            let q = rtn(
                &w,
                rows,
                cols,
                &WeightGrid {
                    bits: 4,
                    sym,
                    group,
                },
            );
            let ty = ggml_type_for(&q).expect("4-bit, 32-aligned");
            let back =
                smelt_gguf::blocks::dequantize(ty, &to_ggml_blocks(&q, ty), rows * cols).unwrap();
            let want = q.dequantize();
            let ng = q.n_groups();
            for (i, (a, b)) in back.iter().zip(&want).enumerate() {
                let p = q.params[(i / cols) * ng + q.g_idx[i % cols] as usize];
                let tol = if sym {
                    0.0
                } else {
                    (p.scale * p.zero as f32).abs() * 1e-3 + 1e-7
                };
                assert!((a - b).abs() <= tol, "{ty:?} {i}: {a} vs {b}");
            }
        }
        let q3 = rtn(
            &w,
            rows,
            cols,
            &WeightGrid {
                bits: 3,
                sym: false,
                group: Some(64),
            },
        );
        assert_eq!(ggml_type_for(&q3), None);
        let q_odd = rtn(
            &w,
            rows,
            cols,
            &WeightGrid {
                bits: 4,
                sym: false,
                group: Some(48),
            },
        );
        assert_eq!(ggml_type_for(&q_odd), None);
    }
}

//! The GPTQ int4 layout the CUDA kernels read (`smelt_kernels::gpu::reference::GptqInt4`) is
//! the one smelt's Hugging Face GPTQ export writes: a layer quantized here, packed by
//! `hf_gptq::pack_linear`, and unpacked by the GPU reference gives back the layer's weights
//! (up to the f16 rounding of the scales). Runs without a GPU.

use smelt_compress::llm::grid::{WeightGrid, rtn};
use smelt_compress::llm::hf_gptq::pack_linear;
use smelt_kernels::gpu::reference::{GptqInt4, dequant_gptq_int4};
use smelt_quant::rng::Rng;

fn words<T>(bytes: &[u8], f: impl Fn([u8; 4]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(4)
        .map(|c| f(c.try_into().unwrap()))
        .collect()
}

#[test]
fn hf_gptq_export_unpacks_to_the_quantized_weights() {
    let (rows, cols) = (48, 384);
    let w = Rng::new(5).normals(rows * cols);
    let grid = WeightGrid {
        bits: 4,
        sym: true,
        group: Some(128),
    };
    let q = rtn(&w, rows, cols, &grid);
    assert!(
        q.params.iter().all(|p| p.zero >= 1),
        "v1 needs zero points >= 1"
    );
    let order: Vec<usize> = (0..rows).collect();
    let tensors = pack_linear(&q, &order, "layer", true).unwrap();
    let get = |suffix: &str| {
        tensors
            .iter()
            .find(|t| t.0.ends_with(suffix))
            .unwrap_or_else(|| panic!("no {suffix}"))
            .3
            .clone()
    };
    let packed = GptqInt4 {
        k: cols,
        n: rows,
        qweight: words(&get(".qweight"), u32::from_le_bytes),
        qzeros: words(&get(".qzeros"), u32::from_le_bytes),
        scales: get(".scales")
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect(),
        g_idx: words(&get(".g_idx"), i32::from_le_bytes),
    };
    packed.validate().unwrap();
    let got = dequant_gptq_int4(&packed); // (k, n)
    let want = q.dequantize(); // (rows = n, cols = k)
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    for r in 0..rows {
        for c in 0..cols {
            let (g, e) = (got[c * rows + r], want[r * cols + c]);
            // Scales are stored as f16: relative error ≤ 2^-11 on each weight.
            assert!(
                (g - e).abs() <= 1e-3 * scale,
                "row {r} col {c}: unpacked {g}, quantized {e}"
            );
        }
    }
}

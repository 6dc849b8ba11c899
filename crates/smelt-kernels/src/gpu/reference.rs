//! CPU references that define the exact result of every CUDA kernel in [`super`]. They always
//! compile (no `cuda` feature needed), so CI checks them against smelt's format code; the GPU
//! tests compare each kernel to these on fresh random inputs.
//!
//! Element-wise kernels (int8 add, dequantize) round every product and sum separately, in the
//! same order as the CUDA source (`__fmul_rn`/`__fadd_rn`, no FMA contraction), so GPU and CPU
//! agree bit for bit. Reductions (GEMV) run in a different order on the GPU and are compared
//! with a tolerance against an f64 sum; the INT8 GEMM's int32 sums are exact.

use half::f16;
use smelt_gguf::GgmlType;
use smelt_quant::nf4::{self, Nf4};

/// `saturate(round_half_even((a·sa + b·sb) · inv_so))`: two int8 tensors with their own scales
/// added and requantized to the output scale `so = 1 / inv_so`. The capstone kernel's contract.
pub fn int8_add(a: &[i8], b: &[i8], sa: f32, sb: f32, inv_so: f32) -> Vec<i8> {
    assert_eq!(a.len(), b.len(), "int8_add needs inputs of one length");
    a.iter()
        .zip(b)
        .map(|(&x, &y)| requant_add(x, y, sa, sb, inv_so))
        .collect()
}

/// One element of [`int8_add`]. `as i32` saturates and maps NaN to 0, as PTX `cvt.rni.s32.f32`.
#[inline]
pub fn requant_add(a: i8, b: i8, sa: f32, sb: f32, inv_so: f32) -> i8 {
    let v = a as f32 * sa + b as f32 * sb;
    ((v * inv_so).round_ties_even() as i32).clamp(-128, 127) as i8
}

/// Dequantizes ggml Q8_0 or Q4_K bytes (`n` values) with smelt-gguf's block code.
pub fn dequant_ggml(ty: GgmlType, bytes: &[u8], n: usize) -> Result<Vec<f32>, String> {
    smelt_gguf::blocks::dequantize(ty, bytes, n).map_err(|e| e.to_string())
}

/// Dequantizes smelt's NF4 layout (codes two per byte, low nibble first; f32 absmax per block).
pub fn dequant_nf4(q: &Nf4) -> Vec<f32> {
    nf4::dequantize(q)
}

/// A linear layer in AutoGPTQ's int4 layout (checkpoint format `gptq`, v1 zero points), the
/// layout smelt's Hugging Face GPTQ export writes.
#[derive(Debug, Clone, PartialEq)]
pub struct GptqInt4 {
    /// Input features.
    pub k: usize,
    /// Output features.
    pub n: usize,
    /// `(k / 8, n)`: 8 codes per word along the input axis, lowest bits first.
    pub qweight: Vec<u32>,
    /// `(groups, n / 8)`: zero points minus one, 8 per word along the output axis.
    pub qzeros: Vec<u32>,
    /// `(groups, n)` f16 bits.
    pub scales: Vec<u16>,
    /// `(k,)`: the group of each input feature (act-order permutes it).
    pub g_idx: Vec<i32>,
}

impl GptqInt4 {
    /// Number of groups.
    pub fn groups(&self) -> usize {
        self.scales.len() / self.n.max(1)
    }

    /// Checks every length and index, so a kernel can trust the layout.
    pub fn validate(&self) -> Result<(), String> {
        let (k, n) = (self.k, self.n);
        if k == 0 || n == 0 || !k.is_multiple_of(8) || !n.is_multiple_of(8) {
            return Err(format!(
                "GPTQ int4 needs k and n to be positive multiples of 8, got {k} x {n}"
            ));
        }
        let g = self.groups();
        if self.scales.len() != g * n || g == 0 {
            return Err(format!(
                "scales hold {} values, not groups x {n}",
                self.scales.len()
            ));
        }
        if self.qweight.len() != k / 8 * n {
            return Err(format!(
                "qweight holds {} words, want {}",
                self.qweight.len(),
                k / 8 * n
            ));
        }
        if self.qzeros.len() != g * n / 8 {
            return Err(format!(
                "qzeros holds {} words, want {}",
                self.qzeros.len(),
                g * n / 8
            ));
        }
        if self.g_idx.len() != k || self.g_idx.iter().any(|&x| x < 0 || x as usize >= g) {
            return Err(format!("g_idx must hold {k} group indices below {g}"));
        }
        Ok(())
    }

    /// Code (0..15) of input `i`, output `j`.
    pub fn code(&self, i: usize, j: usize) -> i32 {
        ((self.qweight[(i / 8) * self.n + j] >> (4 * (i % 8))) & 15) as i32
    }

    /// Zero point (stored value plus one) of group `g`, output `j`.
    pub fn zero(&self, g: usize, j: usize) -> i32 {
        ((self.qzeros[g * (self.n / 8) + j / 8] >> (4 * (j % 8))) & 15) as i32 + 1
    }
}

/// `W` as `(k, n)` row-major: `scale[g][j] · (q − z)` with `g = g_idx[i]`.
pub fn dequant_gptq_int4(q: &GptqInt4) -> Vec<f32> {
    let mut out = vec![0f32; q.k * q.n];
    for i in 0..q.k {
        let g = q.g_idx[i] as usize;
        for j in 0..q.n {
            let s = f16::from_bits(q.scales[g * q.n + j]).to_f32();
            out[i * q.n + j] = s * (q.code(i, j) - q.zero(g, j)) as f32;
        }
    }
    out
}

/// A random GPTQ int4 layer: codes uniform, zero points 1..=15 (v1-storable), scales around
/// `scale`, groups of `group` inputs, with `g_idx` shuffled when `act_order`.
pub fn random_gptq_int4(
    rng: &mut smelt_quant::rng::Rng,
    k: usize,
    n: usize,
    group: usize,
    act_order: bool,
) -> GptqInt4 {
    let groups = k.div_ceil(group);
    let mut qweight = vec![0u32; k / 8 * n];
    for w in qweight.iter_mut() {
        *w = rng.next_u64() as u32;
    }
    let mut qzeros = vec![0u32; groups * n / 8];
    for w in qzeros.iter_mut() {
        for s in 0..8 {
            *w |= (rng.below(15) as u32) << (4 * s);
        }
    }
    let scales = (0..groups * n)
        .map(|_| f16::from_f32((0.002 + 0.01 * rng.uniform()) as f32).to_bits())
        .collect();
    let mut g_idx: Vec<i32> = (0..k).map(|i| (i / group) as i32).collect();
    if act_order {
        for i in (1..k).rev() {
            g_idx.swap(i, rng.below(i + 1));
        }
    }
    GptqInt4 {
        k,
        n,
        qweight,
        qzeros,
        scales,
        g_idx,
    }
}

/// `y = W·x` in f64 for `W` given row by row (`rows × k`, f32): the GEMV reference.
pub fn gemv_f64(w: &[f32], x: &[f32], rows: usize) -> Vec<f64> {
    let k = x.len();
    assert_eq!(w.len(), rows * k, "gemv_f64 needs rows x k weights");
    w.chunks_exact(k)
        .map(|r| r.iter().zip(x).map(|(&a, &b)| a as f64 * b as f64).sum())
        .collect()
}

/// `y[j] = Σ_i W(i, j)·x[i]` in f64 for `W` stored `(k, n)` (GPTQ's orientation).
pub fn gemv_kn_f64(w: &[f32], x: &[f32], n: usize) -> Vec<f64> {
    let mut y = vec![0f64; n];
    for (row, &xi) in w.chunks_exact(n).zip(x) {
        for (acc, &wv) in y.iter_mut().zip(row) {
            *acc += wv as f64 * xi as f64;
        }
    }
    y
}

/// Largest `|got − want|` divided by the largest `|want|` (ggml's normalised error, as the CPU
/// kernel harness reports it).
pub fn normalised_error(got: &[f32], want: &[f64]) -> f64 {
    let scale = want.iter().fold(0f64, |m, &v| m.max(v.abs())).max(1e-30);
    let err = got
        .iter()
        .zip(want)
        .fold(0f64, |m, (&g, &w)| m.max((g as f64 - w).abs()));
    if got.iter().any(|v| !v.is_finite()) {
        f64::INFINITY
    } else {
        err / scale
    }
}

/// `acc[m][n] = Σ_k a[m][k]·b[n][k]` (int32, exact): the INT8 GEMM reference.
pub fn gemm_int8(a: &[i8], b: &[i8], m: usize, n: usize, k: usize) -> Vec<i32> {
    assert_eq!(a.len(), m * k, "gemm_int8: a is m x k");
    assert_eq!(b.len(), n * k, "gemm_int8: b is n x k");
    let mut c = vec![0i32; m * n];
    for (i, ar) in a.chunks_exact(k).enumerate() {
        for (j, br) in b.chunks_exact(k).enumerate() {
            c[i * n + j] = ar.iter().zip(br).map(|(&x, &y)| x as i32 * y as i32).sum();
        }
    }
    c
}

/// The W8A8 epilogue: `(acc as f32 · sa[m]) · sb[n]`, rounded in that order.
pub fn w8a8_scale(acc: &[i32], sa: &[f32], sb: &[f32]) -> Vec<f32> {
    let n = sb.len();
    acc.iter()
        .enumerate()
        .map(|(i, &v)| v as f32 * sa[i / n] * sb[i % n])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use smelt_quant::rng::Rng;

    #[test]
    fn int8_add_rounds_half_even_and_saturates() {
        // 0.5 and 1.5 and 2.5 tie: half-even gives 0, 2, 2.
        assert_eq!(requant_add(1, 0, 0.5, 1.0, 1.0), 0);
        assert_eq!(requant_add(3, 0, 0.5, 1.0, 1.0), 2);
        assert_eq!(requant_add(5, 0, 0.5, 1.0, 1.0), 2);
        assert_eq!(requant_add(-5, 0, 0.5, 1.0, 1.0), -2);
        assert_eq!(requant_add(127, 127, 1.0, 1.0, 1.0), 127);
        assert_eq!(requant_add(-128, -128, 1.0, 1.0, 1.0), -128);
        // Scales: 100·0.02 + 50·0.04 = 4, at output scale 0.5 → 8.
        assert_eq!(requant_add(100, 50, 0.02, 0.04, 2.0), 8);
    }

    #[test]
    fn gptq_reference_matches_a_hand_packed_layer() {
        // k = 8, n = 8, one group: code of (i, j) = (i + j) % 16, zero point 3 (stored 2),
        // scale 0.5 for every output.
        let mut qweight = vec![0u32; 8];
        for (j, w) in qweight.iter_mut().enumerate() {
            for i in 0..8 {
                *w |= (((i + j) % 16) as u32) << (4 * i);
            }
        }
        let qzeros = vec![0x2222_2222u32];
        let q = GptqInt4 {
            k: 8,
            n: 8,
            qweight,
            qzeros,
            scales: vec![f16::from_f32(0.5).to_bits(); 8],
            g_idx: vec![0; 8],
        };
        q.validate().unwrap();
        let w = dequant_gptq_int4(&q);
        for i in 0..8 {
            for j in 0..8 {
                assert_eq!(w[i * 8 + j], 0.5 * ((i + j) % 16) as f32 - 1.5);
            }
        }
    }

    #[test]
    fn gptq_validate_rejects_bad_layouts() {
        let mut rng = Rng::new(1);
        let good = random_gptq_int4(&mut rng, 64, 16, 32, true);
        good.validate().unwrap();
        let mut bad = good.clone();
        bad.g_idx[3] = 2;
        assert!(bad.validate().is_err());
        let mut bad = good.clone();
        bad.qweight.pop();
        assert!(bad.validate().is_err());
        let mut bad = good;
        bad.k = 60;
        assert!(bad.validate().is_err());
    }

    #[test]
    fn gemm_and_epilogue_references() {
        let a = [1i8, -2, 3, 4, 5, -6, 7, 8];
        let b = [1i8, 1, 1, 1, -1, 0, 2, 0, 127, -128, 0, 1];
        let c = gemm_int8(&a, &b, 2, 3, 4);
        assert_eq!(c, vec![6, 5, 387, 14, 9, 1411]);
        let d = w8a8_scale(&c, &[0.5, 2.0], &[1.0, 0.25, 0.125]);
        assert_eq!(d, vec![3.0, 0.625, 24.1875, 28.0, 4.5, 352.75]);
    }
}

//! W8A8 linear layers, SmoothQuant's inference scheme (Xiao et al., "SmoothQuant: Accurate and
//! Efficient Post-Training Quantization for Large Language Models", arXiv:2211.10438): weights
//! int8 with one scale per output channel, activations int8 with one scale per token computed
//! on the fly (dynamic), products summed in i32 and scaled once per output element:
//!
//! `y[t, o] = s_x[t] · s_w[o] · Σ_k qx[t, k] · qw[o, k]`.
//!
//! The integer products run on the u8 × i8 GEMM of [`crate::int8`] (VNNI `vpdpbusd` or its exact
//! AVX2 emulation): activation codes are stored offset by 128 as bytes, and the offset comes back
//! out through each weight row's sum, `Σ (qx + 128) · qw = Σ qx · qw + 128 · Σ qw`. The sums are
//! exact in every variant, and the float scaling is one shared code path, so every variant gives
//! bit-identical outputs to [`matmul_reference`].

use crate::Variant;
use crate::int8::{PackedI8, gemm_u8i8_blocks, k_padded};

/// Largest code magnitude on both sides (symmetric, −127..=127: no −128, so negation is exact).
const QMAX: f32 = 127.0;

/// Offset that turns a signed activation code into the unsigned byte the GEMM reads.
const OFFSET: i32 = 128;

/// A (rows, cols) weight matrix as int8 codes with one f32 scale per row (output channel).
#[derive(Debug, Clone)]
pub struct RowInt8 {
    /// Output channels.
    pub rows: usize,
    /// Input channels.
    pub cols: usize,
    packed: PackedI8,
    /// (rows,) `max|w[o, :]| / 127`.
    scales: Vec<f32>,
}

impl RowInt8 {
    /// Rounds (rows, cols) row-major `w` to the nearest code of its row's symmetric grid.
    pub fn quantize(w: &[f32], rows: usize, cols: usize) -> Result<Self, String> {
        if w.len() != rows * cols {
            return Err(format!("{} values for a {rows}x{cols} matrix", w.len()));
        }
        if let Some(i) = w.iter().position(|v| !v.is_finite()) {
            return Err(format!("weight {i} is {}, not a finite number", w[i]));
        }
        // (rows, cols) codes.
        let mut codes = vec![0i8; rows * cols];
        let mut scales = vec![0f32; rows];
        for ((row, out), s) in w
            .chunks_exact(cols.max(1))
            .zip(codes.chunks_exact_mut(cols.max(1)))
            .zip(&mut scales)
        {
            *s = quantize_row(row, out);
        }
        Ok(Self {
            rows,
            cols,
            packed: PackedI8::new(&codes, rows, cols),
            scales,
        })
    }

    /// (rows, cols) row-major values the codes stand for.
    pub fn to_f32(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.rows * self.cols);
        for (o, &s) in self.scales.iter().enumerate() {
            out.extend((0..self.cols).map(|k| self.packed.at(o, k) as f32 * s));
        }
        out
    }

    /// Bytes of codes and scales.
    pub fn nbytes(&self) -> usize {
        self.rows * self.cols + 4 * self.rows
    }

    /// (rows,) per-row scales.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }
}

/// Symmetric codes of `x` into `out`; returns the scale (0 for an all-zero row).
fn quantize_row(x: &[f32], out: &mut [i8]) -> f32 {
    let max = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    if max == 0.0 {
        out.fill(0);
        return 0.0;
    }
    let scale = max / QMAX;
    let inv = QMAX / max;
    for (q, v) in out.iter_mut().zip(x) {
        *q = (v * inv).round().clamp(-QMAX, QMAX) as i8;
    }
    scale
}

/// A batch of activation rows quantized per token, in the GEMM's byte form.
#[derive(Debug, Clone, Default)]
pub struct TokenInt8 {
    /// Rows (tokens).
    pub n: usize,
    /// Row length in `codes` (cols rounded up to 4, zero-padded).
    pub k_pad: usize,
    /// (n, k_pad) codes + 128; the padding holds 128 (code 0).
    pub codes: Vec<u8>,
    /// (n,) `max|x[t, :]| / 127`.
    pub scales: Vec<f32>,
}

impl TokenInt8 {
    /// Quantizes (n, cols) `x`, one scale per row; reuses the buffers.
    pub fn set(&mut self, x: &[f32], n: usize, cols: usize) {
        use rayon::prelude::*;
        assert_eq!(x.len(), n * cols, "activations are (n, cols)");
        let k_pad = k_padded(cols);
        self.n = n;
        self.k_pad = k_pad;
        self.codes.clear();
        self.codes.resize(n * k_pad, OFFSET as u8);
        self.scales.clear();
        self.scales.resize(n, 0.0);
        let one = |(row, (out, s)): (&[f32], (&mut [u8], &mut f32))| {
            let mut q = vec![0i8; cols];
            *s = quantize_row(row, &mut q);
            for (b, c) in out.iter_mut().zip(&q) {
                *b = (*c as i32 + OFFSET) as u8;
            }
        };
        if n == 0 || cols == 0 {
            return;
        }
        let rows = x.chunks_exact(cols);
        let outs = self.codes.chunks_exact_mut(k_pad).zip(&mut self.scales);
        if n == 1 {
            rows.zip(outs).for_each(one);
        } else {
            x.par_chunks_exact(cols)
                .zip(self.codes.par_chunks_exact_mut(k_pad).zip(&mut self.scales))
                .for_each(one);
        }
    }
}

/// Tokens per GEMM call: their codes (≤ 64 × k bytes) stay in L2 while a block of weights
/// streams past.
pub const TOKEN_TILE: usize = 64;

/// `out (n, r1 − r0) = y[t, o]` for rows (output channels) `r0..r1` of `w` (both multiples of
/// 8, or `r1 = w.rows`) and every token of `a`.
pub fn matmul_rows(
    w: &RowInt8,
    a: &TokenInt8,
    r0: usize,
    r1: usize,
    out: &mut [f32],
    variant: Variant,
) {
    assert!(
        r0.is_multiple_of(8) && r0 <= r1 && r1 <= w.rows,
        "row range"
    );
    assert_eq!(a.k_pad, w.packed.k_pad(), "activation width");
    let width = r1 - r0;
    assert_eq!(out.len(), a.n * width, "output is (n, r1 - r0)");
    let blocks = r0 / 8..r1.div_ceil(8);
    let bw = blocks.len() * 8;
    // (TOKEN_TILE, bw) integer sums of one token tile.
    let mut acc = vec![0i32; TOKEN_TILE.min(a.n) * bw];
    let sums = w.packed.row_sums();
    for t0 in (0..a.n).step_by(TOKEN_TILE) {
        let nt = (a.n - t0).min(TOKEN_TILE);
        let acc = &mut acc[..nt * bw];
        let codes = &a.codes[t0 * a.k_pad..(t0 + nt) * a.k_pad];
        gemm_u8i8_blocks(codes, &w.packed, blocks.clone(), acc, variant);
        for i in 0..nt {
            let st = a.scales[t0 + i];
            let dst = &mut out[(t0 + i) * width..(t0 + i + 1) * width];
            for (j, y) in dst.iter_mut().enumerate() {
                let o = r0 + j;
                let dot = acc[i * bw + j] - OFFSET * sums[o];
                *y = dot as f32 * (st * w.scales[o]);
            }
        }
    }
}

/// The plain definition: `out (n, rows)`, sums in i64 straight from the signed codes.
pub fn matmul_reference(w: &RowInt8, a: &TokenInt8, out: &mut [f32]) {
    assert_eq!(out.len(), a.n * w.rows, "output is (n, rows)");
    for t in 0..a.n {
        let row = &a.codes[t * a.k_pad..(t + 1) * a.k_pad];
        for o in 0..w.rows {
            let dot: i64 = (0..w.cols)
                .map(|k| (row[k] as i64 - OFFSET as i64) * w.packed.at(o, k) as i64)
                .sum();
            out[t * w.rows + o] = dot as i32 as f32 * (a.scales[t] * w.scales[o]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_within_half_a_step() {
        let w: Vec<f32> = (0..3 * 40)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.01)
            .collect();
        let m = RowInt8::quantize(&w, 3, 40).unwrap();
        let back = m.to_f32();
        for (o, s) in m.scales().iter().enumerate() {
            for k in 0..40 {
                let (a, b) = (w[o * 40 + k], back[o * 40 + k]);
                assert!((a - b).abs() <= 0.5 * s * 1.0001, "{a} vs {b}");
            }
        }
        assert_eq!(m.nbytes(), 3 * 40 + 12);
    }

    #[test]
    fn zero_rows_and_bad_weights() {
        let m = RowInt8::quantize(&[0.0; 8], 1, 8).unwrap();
        assert_eq!(m.scales(), &[0.0]);
        assert!(RowInt8::quantize(&[f32::NAN; 8], 1, 8).is_err());
        assert!(RowInt8::quantize(&[0.0; 7], 1, 8).is_err());
        let mut a = TokenInt8::default();
        a.set(&[0.0; 6], 1, 6);
        assert_eq!((a.scales[0], a.k_pad, a.codes.len()), (0.0, 8, 8));
        assert!(a.codes.iter().all(|&c| c == 128));
    }
}

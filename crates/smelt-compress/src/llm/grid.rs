//! The weight grid shared by RTN, GPTQ and AWQ: `bits`-bit unsigned codes with a zero point per
//! (row, group), as AutoGPTQ and the Hugging Face GPTQ format store them:
//! `w ≈ scale · (q − zero)`, `q ∈ [0, 2^bits − 1]`. Symmetric grids fix `zero = 2^(bits−1)`.
//! Scales are rounded to f16 when made, so the values computed here are exactly the values a
//! packed file (Q4_0, HF GPTQ) holds.

use half::f16;
use serde::{Deserialize, Serialize};

/// How a weight matrix is quantized: width, symmetry and group size along the input axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightGrid {
    /// Bits per weight, 2..=8.
    pub bits: u8,
    /// Zero point fixed at the middle code (`true`) or fitted per group.
    pub sym: bool,
    /// Input columns per group; `None` is one group per output row (per-channel).
    pub group: Option<usize>,
}

impl WeightGrid {
    /// Largest code.
    pub fn maxq(&self) -> u32 {
        (1u32 << self.bits) - 1
    }

    /// Columns per group for a matrix of `cols` inputs.
    pub fn group_cols(&self, cols: usize) -> usize {
        self.group.unwrap_or(cols).clamp(1, cols.max(1))
    }

    /// `4b g128 asym`, `3b per-channel sym`, ...
    pub fn name(&self) -> String {
        let g = self
            .group
            .map_or("per-channel".to_string(), |g| format!("g{g}"));
        format!(
            "{}b {g} {}",
            self.bits,
            if self.sym { "sym" } else { "asym" }
        )
    }

    /// Checks the width and group size.
    pub fn validate(&self) -> Result<(), String> {
        if !(2..=8).contains(&self.bits) {
            return Err(format!("{} bits is not supported (2..=8)", self.bits));
        }
        if self.group == Some(0) {
            return Err("group size 0; use a positive size or per-channel".into());
        }
        Ok(())
    }

    /// Storage bits per weight: the codes plus an f16 scale (and a `bits`-bit zero point when
    /// asymmetric) per group, for a matrix of `cols` inputs.
    pub fn bits_per_weight(&self, cols: usize) -> f64 {
        let g = self.group_cols(cols) as f64;
        let per_group = 16.0 + if self.sym { 0.0 } else { self.bits as f64 };
        self.bits as f64 + per_group / g
    }
}

/// Scale and zero point of one (row, group).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupParams {
    /// Step, an f16 value.
    pub scale: f32,
    /// Code that stands for 0.0.
    pub zero: u32,
    /// Largest code.
    pub maxq: u32,
}

impl GroupParams {
    /// Min/max parameters for `x` (the range always includes 0, as in GPTQ's quantizer).
    pub fn fit(x: &[f32], grid: &WeightGrid) -> Self {
        let (lo, hi) = Self::range(x, grid);
        Self::from_range(lo, hi, grid.sym, grid.maxq())
    }

    /// `x`'s range widened to include 0 (and made symmetric for symmetric grids).
    pub(crate) fn range(x: &[f32], grid: &WeightGrid) -> (f32, f32) {
        let (lo, hi) = x
            .iter()
            .fold((0f32, 0f32), |(l, h), &v| (l.min(v), h.max(v)));
        if grid.sym {
            let a = lo.abs().max(hi);
            (-a, a)
        } else {
            (lo, hi)
        }
    }

    /// The min/max range shrunk by the factor (1, 0.99, ... 0.2) that minimizes
    /// Σ |round(x) − x|^2.4 over `x`: AutoGPTQ's `mse` option (grid 100, max shrink 0.8).
    pub fn fit_mse(x: &[f32], grid: &WeightGrid) -> Self {
        let maxq = grid.maxq();
        let (lo, hi) = Self::range(x, grid);
        let mut best = Self::from_range(lo, hi, grid.sym, maxq);
        let mut best_err = f32::INFINITY;
        for i in 0..80 {
            let p = 1.0 - i as f32 / 100.0;
            let cand = Self::from_range(lo * p, hi * p, grid.sym, maxq);
            let err: f32 = x.iter().map(|&v| (cand.round(v) - v).abs().powf(2.4)).sum();
            if err < best_err {
                (best, best_err) = (cand, err);
            }
        }
        best
    }

    /// Parameters for the range `[lo, hi]` (lo ≤ 0 ≤ hi).
    pub fn from_range(lo: f32, hi: f32, sym: bool, maxq: u32) -> Self {
        let (lo, hi) = if lo == 0.0 && hi == 0.0 {
            (-1.0, 1.0)
        } else {
            (lo, hi)
        };
        let raw = (hi - lo) / maxq as f32;
        // Round up to an f16 (so the range stays covered); never to zero or infinity.
        let mut h = f16::from_f32(raw);
        if h.to_f32() < raw {
            h = f16::from_bits(h.to_bits() + 1);
        }
        let scale = h.to_f32().clamp(f32::from(f16::MIN_POSITIVE), 65504.0);
        let zero = if sym {
            maxq.div_ceil(2)
        } else {
            (-lo / scale).round_ties_even().clamp(0.0, maxq as f32) as u32
        };
        Self { scale, zero, maxq }
    }

    /// The code of `x`.
    #[inline]
    pub fn code(&self, x: f32) -> u32 {
        ((x / self.scale).round_ties_even() + self.zero as f32).clamp(0.0, self.maxq as f32) as u32
    }

    /// The value of code `q`.
    #[inline]
    pub fn value(&self, q: u32) -> f32 {
        self.scale * (q as f32 - self.zero as f32)
    }

    /// `x` rounded to the grid.
    #[inline]
    pub fn round(&self, x: f32) -> f32 {
        self.value(self.code(x))
    }
}

/// A quantized `(rows, cols)` matrix: codes and per-(row, group) parameters.
#[derive(Debug, Clone)]
pub struct QuantizedLinear {
    /// The grid used.
    pub grid: WeightGrid,
    /// Output features.
    pub rows: usize,
    /// Input features.
    pub cols: usize,
    /// (rows, cols) codes in original column order.
    pub codes: Vec<u8>,
    /// (rows, n_groups) parameters; group of column c is `g_idx[c]`.
    pub params: Vec<GroupParams>,
    /// (cols,) group of every input column (`c / group` unless act-order permuted them).
    pub g_idx: Vec<u32>,
}

impl QuantizedLinear {
    /// Groups per row.
    pub fn n_groups(&self) -> usize {
        self.params.len() / self.rows.max(1)
    }

    /// The (rows, cols) f32 values the codes stand for.
    pub fn dequantize(&self) -> Vec<f32> {
        let ng = self.n_groups();
        let mut out = vec![0f32; self.rows * self.cols];
        for r in 0..self.rows {
            let p = &self.params[r * ng..(r + 1) * ng];
            for c in 0..self.cols {
                out[r * self.cols + c] =
                    p[self.g_idx[c] as usize].value(self.codes[r * self.cols + c] as u32);
            }
        }
        out
    }
}

/// Round-to-nearest: every weight to the nearest grid point of its group's min/max grid.
/// `w` is (rows, cols) row-major.
pub fn rtn(w: &[f32], rows: usize, cols: usize, grid: &WeightGrid) -> QuantizedLinear {
    assert_eq!(w.len(), rows * cols, "w is (rows, cols)");
    let gc = grid.group_cols(cols);
    let ng = cols.div_ceil(gc);
    let mut codes = vec![0u8; rows * cols];
    let mut params = Vec::with_capacity(rows * ng);
    for r in 0..rows {
        for g in 0..ng {
            let span = r * cols + g * gc..r * cols + ((g + 1) * gc).min(cols);
            let p = GroupParams::fit(&w[span.clone()], grid);
            for i in span {
                codes[i] = p.code(w[i]) as u8;
            }
            params.push(p);
        }
    }
    QuantizedLinear {
        grid: *grid,
        rows,
        cols,
        codes,
        params,
        g_idx: (0..cols).map(|c| (c / gc) as u32).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_4bit_grid_is_q4_0_shaped() {
        let grid = WeightGrid {
            bits: 4,
            sym: true,
            group: Some(4),
        };
        let p = GroupParams::fit(&[-1.0, 0.5, 0.25, 0.9], &grid);
        assert_eq!(p.zero, 8);
        // 2·1/15 per step, rounded up to an f16.
        assert!(p.scale >= 2.0 / 15.0 && p.scale - 2.0 / 15.0 < 1e-4);
        for x in [-1.0, 0.5, 0.25, 0.9] {
            assert!((p.round(x) - x).abs() <= p.scale / 2.0, "{x}");
        }
    }

    #[test]
    fn rtn_error_is_at_most_half_a_step() {
        let mut rng = smelt_quant::rng::Rng::new(7);
        let (rows, cols) = (5, 200);
        let w: Vec<f32> = (0..rows * cols)
            .map(|_| rng.uniform() as f32 * 2.0 - 1.0)
            .collect();
        for grid in [
            WeightGrid {
                bits: 4,
                sym: false,
                group: Some(64),
            },
            WeightGrid {
                bits: 3,
                sym: true,
                group: None,
            },
            WeightGrid {
                bits: 8,
                sym: false,
                group: Some(128),
            },
        ] {
            let q = rtn(&w, rows, cols, &grid);
            let d = q.dequantize();
            let ng = q.n_groups();
            for r in 0..rows {
                for c in 0..cols {
                    let p = q.params[r * ng + q.g_idx[c] as usize];
                    let e = (d[r * cols + c] - w[r * cols + c]).abs();
                    assert!(
                        e <= p.scale * 0.5 + 1e-6,
                        "{} r{r} c{c}: {e} > {}",
                        grid.name(),
                        p.scale / 2.0
                    );
                }
            }
        }
    }
}

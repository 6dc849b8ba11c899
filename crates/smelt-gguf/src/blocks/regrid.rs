//! The grid one quantized block defines, for calibrated quantization (GPTQ inside ggml
//! formats): the format's own quantizer fits a block's scales, a caller then chooses every
//! code itself (e.g. with error feedback across columns), and the block is written back with
//! those codes and the fitted scales.
//!
//! A block of these formats stores, per weight, a code `q ∈ [0, maxq]` whose value is affine in
//! `q` with coefficients fixed by the block's scales: `value = step[i] · q + offset[i]`. The
//! coefficients are read off the format's own dequantizer (codes all 0, then all `maxq`), so
//! they need no second copy of each format's scale decoding. Only the code bit layouts live
//! here, one `get`/`set` pair per format, checked by the tests against the quantizers.

use super::BlockError;
use crate::GgmlType;

/// Formats [`BlockGrid`] handles.
pub const REGRID_TYPES: [GgmlType; 8] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

/// One block's scales and the affine code→value map they define.
#[derive(Debug, Clone)]
pub struct BlockGrid {
    ty: GgmlType,
    /// The block's bytes as the format's quantizer wrote them (codes replaced on encode).
    bytes: Vec<u8>,
    /// (block,) value of code 1 minus value of code 0, per position.
    step: Vec<f32>,
    /// (block,) value of code 0, per position.
    offset: Vec<f32>,
    maxq: u32,
}

/// Largest code of `ty` (codes run 0..=maxq).
fn maxq(ty: GgmlType) -> Option<u32> {
    Some(match ty {
        GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q4_K => 15,
        GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q5_K => 31,
        GgmlType::Q6_K => 63,
        GgmlType::Q8_0 => 255,
        _ => return None,
    })
}

/// Code `i` of one block.
fn get(ty: GgmlType, b: &[u8], i: usize) -> u32 {
    let nib = |byte: u8, high: bool| if high { byte >> 4 } else { byte & 0x0f } as u32;
    match ty {
        // d (2) [m (2)] qs[16]: element j < 16 low nibble of qs[j], j ≥ 16 high nibble of qs[j − 16].
        GgmlType::Q4_0 | GgmlType::Q4_1 => {
            let base = if ty == GgmlType::Q4_0 { 2 } else { 4 };
            nib(b[base + i % 16], i >= 16)
        }
        // d (2) [m (2)] qh (u32 LE) qs[16]: nibbles as Q4_0, fifth bit of element j is qh bit j.
        GgmlType::Q5_0 | GgmlType::Q5_1 => {
            let base = if ty == GgmlType::Q5_0 { 2 } else { 4 };
            let qh = u32::from_le_bytes(b[base..base + 4].try_into().expect("4 bytes"));
            nib(b[base + 4 + i % 16], i >= 16) | ((qh >> i) & 1) << 4
        }
        // d (2) qs[32] as i8; code = q + 128.
        GgmlType::Q8_0 => (b[2 + i] as i8 as i32 + 128) as u32,
        // d dmin scales[12] [qh[32]] qs[128]: element 64k + l low nibble of qs[32k + l],
        // 64k + 32 + l high nibble; Q5_K's fifth bit in qh[l] bit 2k (+1 for the high half).
        GgmlType::Q4_K | GgmlType::Q5_K => {
            let (k, r) = (i / 64, i % 64);
            let (l, high) = (r % 32, r >= 32);
            let qs = if ty == GgmlType::Q4_K { 16 } else { 48 };
            let low = nib(b[qs + 32 * k + l], high);
            if ty == GgmlType::Q4_K {
                low
            } else {
                let bit = 2 * k + high as usize;
                low | (((b[16 + l] >> bit) & 1) as u32) << 4
            }
        }
        // ql[128] qh[64] scales[16] d: element 128h + 32o + l (o = 0..4, l = 0..32) keeps its
        // low 4 bits in ql[64h + l + 32(o & 1)] (high nibble for o ≥ 2) and its top 2 bits in
        // qh[32h + l] at bit 2o.
        GgmlType::Q6_K => {
            let (h, r) = (i / 128, i % 128);
            let (o, l) = (r / 32, r % 32);
            let low = nib(b[64 * h + l + 32 * (o & 1)], o >= 2);
            let top = ((b[128 + 32 * h + l] >> (2 * o)) & 3) as u32;
            low | top << 4
        }
        _ => unreachable!("checked by BlockGrid::fit"),
    }
}

/// Sets code `i` of one block to `q` (≤ maxq).
fn set(ty: GgmlType, b: &mut [u8], i: usize, q: u32) {
    let put = |byte: &mut u8, high: bool, v: u32| {
        let v = (v & 0x0f) as u8;
        *byte = if high {
            (*byte & 0x0f) | v << 4
        } else {
            (*byte & 0xf0) | v
        };
    };
    match ty {
        GgmlType::Q4_0 | GgmlType::Q4_1 => {
            let base = if ty == GgmlType::Q4_0 { 2 } else { 4 };
            put(&mut b[base + i % 16], i >= 16, q);
        }
        GgmlType::Q5_0 | GgmlType::Q5_1 => {
            let base = if ty == GgmlType::Q5_0 { 2 } else { 4 };
            put(&mut b[base + 4 + i % 16], i >= 16, q);
            let mut qh = u32::from_le_bytes(b[base..base + 4].try_into().expect("4 bytes"));
            qh = (qh & !(1 << i)) | ((q >> 4) & 1) << i;
            b[base..base + 4].copy_from_slice(&qh.to_le_bytes());
        }
        GgmlType::Q8_0 => b[2 + i] = (q as i32 - 128) as i8 as u8,
        GgmlType::Q4_K | GgmlType::Q5_K => {
            let (k, r) = (i / 64, i % 64);
            let (l, high) = (r % 32, r >= 32);
            let qs = if ty == GgmlType::Q4_K { 16 } else { 48 };
            put(&mut b[qs + 32 * k + l], high, q);
            if ty == GgmlType::Q5_K {
                let bit = 2 * k + high as usize;
                b[16 + l] = (b[16 + l] & !(1 << bit)) | (((q >> 4) & 1) as u8) << bit;
            }
        }
        GgmlType::Q6_K => {
            let (h, r) = (i / 128, i % 128);
            let (o, l) = (r / 32, r % 32);
            put(&mut b[64 * h + l + 32 * (o & 1)], o >= 2, q);
            let t = &mut b[128 + 32 * h + l];
            *t = (*t & !(3 << (2 * o))) | (((q >> 4) & 3) as u8) << (2 * o);
        }
        _ => unreachable!("checked by BlockGrid::fit"),
    }
}

impl BlockGrid {
    /// Fits one block of `ty` to `x` (exactly one block of values) with the format's own
    /// quantizer, and reads off its grid.
    pub fn fit(ty: GgmlType, x: &[f32]) -> Result<Self, BlockError> {
        let maxq = maxq(ty).ok_or_else(|| BlockError::Unsupported {
            op: "calibrated quantization",
            ty: ty.name(),
            supported: super::names(&REGRID_TYPES),
        })?;
        let n = ty.block().0 as usize;
        if x.len() != n {
            return Err(BlockError::Length(format!(
                "one {} block holds {n} values, got {}",
                ty.name(),
                x.len()
            )));
        }
        Self::from_bytes(ty, super::quantize(ty, x)?, n, maxq)
    }

    /// [`BlockGrid::fit`], then a search over the block's f16 super-scale `d` (shrunk by up to
    /// `max_shrink` in `steps` steps, every sub-block scale and min kept) for the grid whose
    /// nearest codes minimize `Σ importance[i] · (x[i] − value[i])²` — the MSE range search of
    /// GPTQ implementations, with an importance per position such as the Hessian's diagonal.
    pub fn fit_mse(
        ty: GgmlType,
        x: &[f32],
        importance: &[f32],
        max_shrink: f32,
        steps: usize,
    ) -> Result<Self, BlockError> {
        let mut best = Self::fit(ty, x)?;
        if importance.len() != x.len() {
            return Err(BlockError::Length(format!(
                "{} importances for {} values",
                importance.len(),
                x.len()
            )));
        }
        let err = |g: &Self| -> f64 {
            (0..x.len())
                .map(|i| {
                    let v = g.value(i, g.nearest(i, x[i]));
                    importance[i] as f64 * ((x[i] - v) as f64).powi(2)
                })
                .sum()
        };
        let at = match ty {
            GgmlType::Q6_K => 208,
            _ => 0,
        };
        let d = super::f16_value([best.bytes[at], best.bytes[at + 1]]);
        if d == 0.0 || !d.is_finite() {
            return Ok(best);
        }
        let mut best_err = err(&best);
        let n = x.len();
        for k in 1..=steps {
            let f = 1.0 - max_shrink * k as f32 / steps as f32;
            let mut bytes = best.bytes.clone();
            bytes[at..at + 2].copy_from_slice(&super::f16_bits(d * f));
            let Ok(g) = Self::from_bytes(ty, bytes, n, best.maxq) else {
                continue;
            };
            let e = err(&g);
            if e < best_err {
                best_err = e;
                best = g;
            }
        }
        Ok(best)
    }

    /// The grid of a block whose scales are in `bytes` (codes ignored).
    fn from_bytes(ty: GgmlType, bytes: Vec<u8>, n: usize, maxq: u32) -> Result<Self, BlockError> {
        let mut b = bytes.clone();
        for i in 0..n {
            set(ty, &mut b, i, 0);
        }
        let offset = super::dequantize(ty, &b, n)?;
        for i in 0..n {
            set(ty, &mut b, i, maxq);
        }
        let top = super::dequantize(ty, &b, n)?;
        let step = top
            .iter()
            .zip(&offset)
            .map(|(t, o)| (t - o) / maxq as f32)
            .collect();
        Ok(Self {
            ty,
            bytes,
            step,
            offset,
            maxq,
        })
    }

    /// Values per block.
    pub fn len(&self) -> usize {
        self.step.len()
    }

    /// Never: a block holds at least one value.
    pub fn is_empty(&self) -> bool {
        self.step.is_empty()
    }

    /// The code the format's quantizer chose at position `i`.
    pub fn fitted_code(&self, i: usize) -> u32 {
        get(self.ty, &self.bytes, i)
    }

    /// The code whose value is nearest `x` at position `i`.
    pub fn nearest(&self, i: usize, x: f32) -> u32 {
        let s = self.step[i];
        if s == 0.0 || !s.is_finite() {
            return self.fitted_code(i);
        }
        ((x - self.offset[i]) / s)
            .round()
            .clamp(0.0, self.maxq as f32) as u32
    }

    /// The value of code `q` at position `i` (to float rounding of the format's own formula).
    pub fn value(&self, i: usize, q: u32) -> f32 {
        self.step[i] * q as f32 + self.offset[i]
    }

    /// The block's bytes with `codes` (one per position, each ≤ maxq) and the fitted scales.
    pub fn encode(&self, codes: &[u32]) -> Vec<u8> {
        assert_eq!(codes.len(), self.len(), "one code per position");
        let mut b = self.bytes.clone();
        for (i, &q) in codes.iter().enumerate() {
            set(self.ty, &mut b, i, q.min(self.maxq));
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(seed: u64, n: usize) -> Vec<f32> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 3.0
            })
            .collect()
    }

    /// Reading the quantizer's own codes and writing them back gives its bytes; the affine grid
    /// reproduces the dequantizer; arbitrary codes land where the grid says.
    #[test]
    fn codes_and_grid_agree_with_each_format() {
        for ty in REGRID_TYPES {
            let n = ty.block().0 as usize;
            for seed in 1..6u64 {
                let x = values(seed * 7919 + ty.name().len() as u64, n);
                let g = BlockGrid::fit(ty, &x).unwrap();
                let fitted: Vec<u32> = (0..n).map(|i| g.fitted_code(i)).collect();
                assert_eq!(g.encode(&fitted), g.bytes, "{} round trip", ty.name());
                let deq = super::super::dequantize(ty, &g.bytes, n).unwrap();
                for i in 0..n {
                    let v = g.value(i, fitted[i]);
                    assert!(
                        (v - deq[i]).abs() <= 1e-5 * (1.0 + deq[i].abs()),
                        "{} at {i}: {v} vs {}",
                        ty.name(),
                        deq[i]
                    );
                }
                let codes: Vec<u32> = values(seed, n)
                    .iter()
                    .map(|v| ((v.abs() * 1e4) as u32) % (g.maxq + 1))
                    .collect();
                let back = super::super::dequantize(ty, &g.encode(&codes), n).unwrap();
                for i in 0..n {
                    let v = g.value(i, codes[i]);
                    assert!(
                        (v - back[i]).abs() <= 1e-5 * (1.0 + back[i].abs()),
                        "{} code {} at {i}: {v} vs {}",
                        ty.name(),
                        codes[i],
                        back[i]
                    );
                    // Nearest of an exact grid value is that code (unless two codes tie).
                    if g.step[i] != 0.0 {
                        assert_eq!(g.nearest(i, back[i]), codes[i], "{}", ty.name());
                    }
                }
            }
        }
        assert!(BlockGrid::fit(GgmlType::Q2_K, &[0.0; 256]).is_err());
    }

    /// The searched grid is never worse than the format's own under the same importance.
    #[test]
    fn mse_search_never_loses() {
        for ty in REGRID_TYPES {
            let n = ty.block().0 as usize;
            let x = values(99 + ty.name().len() as u64, n);
            let imp: Vec<f32> = values(5, n).iter().map(|v| v.abs() + 0.1).collect();
            let err = |g: &BlockGrid| -> f64 {
                (0..n)
                    .map(|i| {
                        imp[i] as f64 * ((x[i] - g.value(i, g.nearest(i, x[i]))) as f64).powi(2)
                    })
                    .sum()
            };
            let plain = BlockGrid::fit(ty, &x).unwrap();
            let searched = BlockGrid::fit_mse(ty, &x, &imp, 0.3, 15).unwrap();
            assert!(err(&searched) <= err(&plain), "{}", ty.name());
        }
        assert!(BlockGrid::fit_mse(GgmlType::Q4_0, &[0.0; 32], &[1.0; 31], 0.2, 4).is_err());
        assert!(BlockGrid::fit(GgmlType::Q4_K, &[0.0; 32]).is_err());
    }
}

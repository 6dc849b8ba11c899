//! IQ4_NL: 32 weights, one f16 scale, 4-bit indices into a fixed non-linear table of 16 int8
//! levels (denser near zero): `x ≈ d · K[q]`. Nibbles as Q4_0.

use super::kquant::GROUP_MAX_EPS;
use super::{f16_bits, f16_value};

/// Weights per block.
pub const QK: usize = 32;

/// ggml's `kvalues_iq4nl`.
pub const KVALUES: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// [`KVALUES`] + 128 as unsigned bytes, the form integer kernels that take unsigned codes want.
pub const KVALUES_U8: [u8; 16] = {
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        out[i] = (KVALUES[i] as i16 + 128) as u8;
        i += 1;
    }
    out
};

/// One block, as ggml's `block_iq4_nl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockIq4Nl {
    /// Scale, f16 bits.
    pub d: [u8; 2],
    /// (16,) packed indices.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockIq4Nl>() == 18);

/// Index of the table level nearest to `x` (ggml's `best_index_int8`; ties go up).
pub(super) fn best_index(x: f32) -> usize {
    let v = |i: usize| KVALUES[i] as f32;
    if x <= v(0) {
        return 0;
    }
    if x >= v(15) {
        return 15;
    }
    let (mut ml, mut mu) = (0, 15);
    while mu - ml > 1 {
        let mav = (ml + mu) / 2;
        if x < v(mav) {
            mu = mav;
        } else {
            ml = mav;
        }
    }
    if x - v(mu - 1) < v(mu) - x {
        mu - 1
    } else {
        mu
    }
}

impl BlockIq4Nl {
    /// Quantizes 32 weights (ggml's `quantize_row_iq4_nl_ref`: one least-squares scale refit,
    /// no search). `l` carries the indices between blocks because ggml reuses its buffer: an
    /// all-zero block (scale 0) repeats the previous block's indices, which decode to 0 anyway.
    pub fn quantize(x: &[f32; QK], l: &mut [u8; QK]) -> Self {
        let max = super::signed_absmax(x);
        let amax = max.abs();
        let mut d = 0f32;
        if amax >= GROUP_MAX_EPS {
            let id = 1.0 / (max / KVALUES[0] as f32);
            let (mut sumqx, mut sumq2) = (0f32, 0f32);
            for (li, &v) in l.iter_mut().zip(x) {
                let i = best_index(id * v);
                *li = i as u8;
                let (q, w) = (KVALUES[i] as f32, v * v);
                sumqx += w * q * v;
                sumq2 += w * q * q;
            }
            d = if sumq2 > 0.0 { sumqx / sumq2 } else { 0.0 };
        }
        let qs = std::array::from_fn(|j| l[j] | (l[j + QK / 2] << 4));
        Self { d: f16_bits(d), qs }
    }

    /// Quantizes 32 weights the way llama-quantize does (`quantize_iq4_nl` without importance
    /// weights, `ntry = 7`): the scale is refined over 15 candidate inverse scales, then every
    /// index is recomputed from the chosen scale. Differs from the `_ref` quantizer above.
    pub fn quantize_searched(x: &[f32; QK]) -> Self {
        let max = super::signed_absmax(x);
        let amax = max.abs();
        let mut d = 0f32;
        if amax >= GROUP_MAX_EPS {
            let v0 = KVALUES[0] as f32;
            let sums = |id: f32| {
                let (mut sumqx, mut sumq2) = (0f32, 0f32);
                for &v in x {
                    let (q, w) = (KVALUES[best_index(id * v)] as f32, v * v);
                    sumqx += w * q * v;
                    sumq2 += w * q * q;
                }
                (sumqx, sumq2)
            };
            let (sumqx, sumq2) = sums(1.0 / (-max / v0));
            d = if sumq2 > 0.0 { sumqx / sumq2 } else { 0.0 };
            let mut best = d * sumqx;
            for itry in -7..=7 {
                let (sumqx, sumq2) = sums((itry as f32 + v0) / max);
                if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
                    d = sumqx / sumq2;
                    best = d * sumqx;
                }
            }
        }
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let l: [u8; QK] = std::array::from_fn(|j| best_index(id * x[j]) as u8);
        let qs = std::array::from_fn(|j| l[j] | (l[j + QK / 2] << 4));
        Self { d: f16_bits(d), qs }
    }

    /// The 32 weights.
    pub fn dequantize(&self, out: &mut [f32]) {
        let d = f16_value(self.d);
        for j in 0..QK / 2 {
            out[j] = d * KVALUES[(self.qs[j] & 0x0f) as usize] as f32;
            out[j + QK / 2] = d * KVALUES[(self.qs[j] >> 4) as usize] as f32;
        }
    }

    fn read(b: &[u8]) -> Self {
        Self {
            d: [b[0], b[1]],
            qs: b[2..18].try_into().expect("18-byte block"),
        }
    }

    fn write(&self, out: &mut [u8]) {
        out[..2].copy_from_slice(&self.d);
        out[2..18].copy_from_slice(&self.qs);
    }
}

pub(super) fn quantize_row(x: &[f32], out: &mut [u8]) {
    let mut l = [0u8; QK];
    for (xb, ob) in x.chunks_exact(QK).zip(out.chunks_exact_mut(18)) {
        BlockIq4Nl::quantize(xb.try_into().expect("block of 32"), &mut l).write(ob);
    }
}

pub(super) fn quantize_row_searched(x: &[f32], out: &mut [u8]) {
    for (xb, ob) in x.chunks_exact(QK).zip(out.chunks_exact_mut(18)) {
        BlockIq4Nl::quantize_searched(xb.try_into().expect("block of 32")).write(ob);
    }
}

pub(super) fn dequantize_row(b: &[u8], out: &mut [f32]) {
    for (bb, ob) in b.chunks_exact(18).zip(out.chunks_exact_mut(QK)) {
        BlockIq4Nl::read(bb).dequantize(ob);
    }
}

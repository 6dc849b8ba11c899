//! ggml block types: quantize and dequantize rows, bit-exact with ggml's reference quantizers
//! (`quantize_row_*_ref` in ggml/src/ggml-quants.c, mirrored by gguf-py's numpy code).
//!
//! One file per type, each with a `#[repr(C)]` block struct and a compile-time size check: the
//! layout is the spec. Values are little-endian; `f16` fields are IEEE half bits.

mod float;
pub mod iq4_nl;
mod iq4_xs;
pub mod kquant;
mod q2_k;
mod q3_k;
mod q4_0;
mod q4_1;
mod q4_k;
mod q5_0;
mod q5_1;
mod q5_k;
mod q6_k;
mod q8_0;
mod q8_k;
pub mod regrid;

pub use float::{bf16_to_f32, f32_to_bf16};
pub use iq4_xs::scale as iq4_xs_scale;
pub use q3_k::scale6 as q3_k_scale6;

use crate::GgmlType;

/// Why a row could not be converted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BlockError {
    /// smelt does not implement this direction for this type yet.
    #[error("{op} is not implemented for {ty} yet (supported: {supported})")]
    Unsupported {
        /// `quantize` or `dequantize`.
        op: &'static str,
        /// Type name.
        ty: String,
        /// What is supported.
        supported: String,
    },
    /// The value count is not a whole number of blocks, or the byte count does not match.
    #[error("{0}")]
    Length(String),
}

/// Types [`quantize`] accepts.
pub const QUANTIZE_TYPES: &[GgmlType] = &[
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::Q8_K,
    GgmlType::IQ4_NL,
    GgmlType::IQ4_XS,
];

/// Types [`dequantize`] accepts.
pub const DEQUANTIZE_TYPES: &[GgmlType] = QUANTIZE_TYPES;

fn names(types: &[GgmlType]) -> String {
    types
        .iter()
        .map(|t| t.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Quantizes `x` (a whole number of blocks) to `ty`'s bytes.
pub fn quantize(ty: GgmlType, x: &[f32]) -> Result<Vec<u8>, BlockError> {
    let bytes = ty.bytes_for(x.len() as u64).ok_or_else(|| {
        BlockError::Length(format!(
            "{} values are not a whole number of {} blocks of {}",
            x.len(),
            ty.name(),
            ty.block().0
        ))
    })?;
    let mut out = vec![0u8; bytes as usize];
    match ty {
        GgmlType::F32 => float::f32_row(x, &mut out),
        GgmlType::F16 => float::f16_row(x, &mut out),
        GgmlType::BF16 => float::bf16_row(x, &mut out),
        GgmlType::Q4_0 => q4_0::quantize_row(x, &mut out),
        GgmlType::Q4_1 => q4_1::quantize_row(x, &mut out),
        GgmlType::Q5_0 => q5_0::quantize_row(x, &mut out),
        GgmlType::Q5_1 => q5_1::quantize_row(x, &mut out),
        GgmlType::Q8_0 => q8_0::quantize_row(x, &mut out),
        GgmlType::Q2_K => q2_k::quantize_row(x, &mut out),
        GgmlType::Q3_K => q3_k::quantize_row(x, &mut out),
        GgmlType::Q4_K => q4_k::quantize_row(x, &mut out),
        GgmlType::Q5_K => q5_k::quantize_row(x, &mut out),
        GgmlType::Q6_K => q6_k::quantize_row(x, &mut out),
        GgmlType::Q8_K => q8_k::quantize_row(x, &mut out),
        GgmlType::IQ4_NL => iq4_nl::quantize_row(x, &mut out),
        GgmlType::IQ4_XS => iq4_xs::quantize_row(x, &mut out),
        other => {
            return Err(BlockError::Unsupported {
                op: "quantize",
                ty: other.name(),
                supported: names(QUANTIZE_TYPES),
            });
        }
    }
    Ok(out)
}

/// Quantizes as llama-quantize does when converting a model without an importance matrix:
/// identical to [`quantize`] except IQ4_NL, where llama-quantize searches the scale (its
/// `quantize_iq4_nl`) instead of using the reference quantizer.
pub fn quantize_for_model(ty: GgmlType, x: &[f32]) -> Result<Vec<u8>, BlockError> {
    if ty != GgmlType::IQ4_NL {
        return quantize(ty, x);
    }
    let bytes = ty.bytes_for(x.len() as u64).ok_or_else(|| {
        BlockError::Length(format!(
            "{} values are not a whole number of iq4_nl blocks",
            x.len()
        ))
    })?;
    let mut out = vec![0u8; bytes as usize];
    iq4_nl::quantize_row_searched(x, &mut out);
    Ok(out)
}

/// Dequantizes `n` values of `ty` from `bytes`.
pub fn dequantize(ty: GgmlType, bytes: &[u8], n: usize) -> Result<Vec<f32>, BlockError> {
    let need = ty.bytes_for(n as u64).ok_or_else(|| {
        BlockError::Length(format!(
            "{n} values are not a whole number of {} blocks",
            ty.name()
        ))
    })?;
    if need != bytes.len() as u64 {
        return Err(BlockError::Length(format!(
            "{n} {} values need {need} bytes, got {}",
            ty.name(),
            bytes.len()
        )));
    }
    let mut out = vec![0f32; n];
    match ty {
        GgmlType::F32 => float::from_f32_row(bytes, &mut out),
        GgmlType::F16 => float::from_f16_row(bytes, &mut out),
        GgmlType::BF16 => float::from_bf16_row(bytes, &mut out),
        GgmlType::Q4_0 => q4_0::dequantize_row(bytes, &mut out),
        GgmlType::Q4_1 => q4_1::dequantize_row(bytes, &mut out),
        GgmlType::Q5_0 => q5_0::dequantize_row(bytes, &mut out),
        GgmlType::Q5_1 => q5_1::dequantize_row(bytes, &mut out),
        GgmlType::Q8_0 => q8_0::dequantize_row(bytes, &mut out),
        GgmlType::Q2_K => q2_k::dequantize_row(bytes, &mut out),
        GgmlType::Q3_K => q3_k::dequantize_row(bytes, &mut out),
        GgmlType::Q4_K => q4_k::dequantize_row(bytes, &mut out),
        GgmlType::Q5_K => q5_k::dequantize_row(bytes, &mut out),
        GgmlType::Q6_K => q6_k::dequantize_row(bytes, &mut out),
        GgmlType::Q8_K => q8_k::dequantize_row(bytes, &mut out),
        GgmlType::IQ4_NL => iq4_nl::dequantize_row(bytes, &mut out),
        GgmlType::IQ4_XS => iq4_xs::dequantize_row(bytes, &mut out),
        other => {
            return Err(BlockError::Unsupported {
                op: "dequantize",
                ty: other.name(),
                supported: names(DEQUANTIZE_TYPES),
            });
        }
    }
    Ok(out)
}

/// The first element with the largest magnitude, sign kept (ggml keeps the first on ties:
/// `if (amax < fabsf(v))`).
pub(crate) fn signed_absmax(x: &[f32]) -> f32 {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

/// `(min, max)` as ggml computes them: starting from ±FLT_MAX.
fn min_max(x: &[f32]) -> (f32, f32) {
    x.iter().fold((f32::MAX, -f32::MAX), |(lo, hi), &v| {
        (if v < lo { v } else { lo }, if v > hi { v } else { hi })
    })
}

/// `1/d`, or 0 when `d` is 0 (ggml: `id = d ? 1.0f/d : 0.0f`).
fn inverse(d: f32) -> f32 {
    if d != 0.0 { 1.0 / d } else { 0.0 }
}

fn f16_bits(v: f32) -> [u8; 2] {
    half::f16::from_f32(v).to_bits().to_le_bytes()
}

fn f16_value(b: [u8; 2]) -> f32 {
    half::f16::from_bits(u16::from_le_bytes(b)).to_f32()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Per-block round trip against each type's grid: asymmetric types (Q4_1, Q5_1) and Q8_0 are
    /// within half a step; Q4_0/Q5_0 put the signed extreme on code 0 (`d = max / -8`), so values
    /// of the opposite sign near the extreme can be clipped by up to one full step. Plus the f16
    /// rounding of the scale times the largest code.
    #[test]
    fn round_trip_error_is_bounded_by_the_grid() {
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        };
        for ty in [
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q5_0,
            GgmlType::Q5_1,
            GgmlType::Q8_0,
        ] {
            for block in 0..200 {
                let scale = 10f32.powi(block % 7 - 3);
                let x: Vec<f32> = (0..32).map(|_| scale * next()).collect();
                let y = dequantize(ty, &quantize(ty, &x).unwrap(), 32).unwrap();
                let (lo, hi) = min_max(&x);
                let amax = lo.abs().max(hi.abs());
                let (step, steps_allowed, codes) = match ty {
                    GgmlType::Q4_0 => (amax / 8.0, 1.0, 8.0),
                    GgmlType::Q5_0 => (amax / 16.0, 1.0, 16.0),
                    GgmlType::Q4_1 => ((hi - lo) / 15.0, 0.5, 15.0),
                    GgmlType::Q5_1 => ((hi - lo) / 31.0, 0.5, 31.0),
                    _ => (amax / 127.0, 0.5, 127.0),
                };
                // f16 keeps the scale to 2^-11 relative, or 2^-25 absolute once it is subnormal.
                let bound = step * steps_allowed + codes * (step * 2f32.powi(-10) + 2f32.powi(-24));
                for (a, b) in x.iter().zip(&y) {
                    assert!(
                        (a - b).abs() <= bound,
                        "{ty:?} block {block}: {a} -> {b} (step {step})"
                    );
                }
            }
        }
    }

    #[test]
    fn wrong_lengths_and_unsupported_types_are_errors() {
        assert!(quantize(GgmlType::Q4_0, &[0.0; 31]).is_err());
        assert!(dequantize(GgmlType::Q8_0, &[0; 33], 32).is_err());
        assert!(matches!(
            quantize(GgmlType::IQ2_XXS, &[0.0; 256]),
            Err(BlockError::Unsupported { .. })
        ));
    }
}

//! FP8 formats of the OCP 8-bit floating point specification (also NVIDIA Hopper's and
//! `ml_dtypes`' `float8_e4m3fn` / `float8_e5m2`).
//!
//! | format | exponent / mantissa | bias | max | specials |
//! |---|---|---|---|---|
//! | E4M3FN | 4 / 3 | 7 | 448 | no infinities; `S.1111.111` is NaN |
//! | E5M2 | 5 / 2 | 15 | 57344 | IEEE-like: ±inf, NaNs |
//!
//! E4M3 suits weights and activations (more precision), E5M2 gradients (more range).

use crate::minifloat::{MiniFloat, Overflow, Specials};

/// FP8 E4M3, finite + NaN ("FN") variant.
pub const E4M3FN: MiniFloat = MiniFloat {
    name: "e4m3fn",
    exp_bits: 4,
    man_bits: 3,
    bias: 7,
    specials: Specials::FiniteWithNan,
};

/// FP8 E5M2, IEEE-like.
pub const E5M2: MiniFloat = MiniFloat {
    name: "e5m2",
    exp_bits: 5,
    man_bits: 2,
    bias: 15,
    specials: Specials::Ieee,
};

/// Encodes a slice, one code per value.
pub fn encode_slice(format: &MiniFloat, xs: &[f32], overflow: Overflow) -> Vec<u8> {
    xs.iter().map(|&x| format.encode(x, overflow)).collect()
}

/// Decodes a slice through the format's 256-entry table.
pub fn decode_slice(format: &MiniFloat, codes: &[u8]) -> Vec<f32> {
    let table = format.table();
    codes.iter().map(|&c| table[c as usize]).collect()
}

/// Scaled FP8 quantization of a tensor: `scale = amax / max_finite`, codes = encode(x / scale).
/// This is how FP8 weights and activations are stored in practice (one f32 scale per tensor or
/// channel), so the format's range is used fully whatever the tensor's magnitude.
pub fn quantize_scaled(format: &MiniFloat, xs: &[f32]) -> (Vec<u8>, f32) {
    // Over finite values: one ±inf would make the scale infinite and every code decode to
    // NaN (0 · inf); it saturates to ±max_finite instead.
    let amax = xs
        .iter()
        .filter(|x| x.is_finite())
        .fold(0f32, |m, x| m.max(x.abs()));
    let scale = if amax > 0.0 {
        amax / format.max_finite()
    } else {
        1.0
    };
    let codes = xs
        .iter()
        .map(|&x| format.encode(x / scale, Overflow::Saturating))
        .collect();
    (codes, scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_infinity_saturates_instead_of_turning_the_tensor_into_nan() {
        for format in [&E4M3FN, &E5M2] {
            let (codes, scale) = quantize_scaled(format, &[1.0, f32::INFINITY, -2.0]);
            assert_eq!(scale, 2.0 / format.max_finite());
            let y: Vec<f32> = decode_slice(format, &codes)
                .iter()
                .map(|v| v * scale)
                .collect();
            assert_eq!(y, [1.0, 2.0, -2.0]);
        }
    }
}

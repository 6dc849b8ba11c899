//! Uniform integer quantization: formats (INT8/UINT8/INT4/UINT4/any width to 8), the symmetric and
//! asymmetric schemes, and 4-bit packing.
//!
//! ## Formulas
//!
//! For a format with integer range `[qmin, qmax]` and a real range `[lo, hi]` from an observer:
//!
//! - **Symmetric** (signed formats, zero-point 0), `amax = max(|lo|, |hi|)`:
//!   - restricted range: `q ∈ [-(2^(b-1) - 1), 2^(b-1) - 1]`, `scale = amax / (2^(b-1) - 1)`
//!     (INT8: `[-127, 127]`, `scale = amax / 127`; the grid is symmetric around 0);
//!   - full range: `q ∈ [-2^(b-1), 2^(b-1) - 1]`, `scale = 2·amax / (2^b - 1)`
//!     (INT8: `scale = amax / 127.5`, PyTorch's convention; uses the extra code).
//! - **Asymmetric** (any format): widen the range to include 0 (`lo' = min(lo, 0)`,
//!   `hi' = max(hi, 0)`), `scale = (hi' - lo') / (qmax - qmin)`,
//!   `zero_point = clamp(round(qmin - lo' / scale), qmin, qmax)` — an integer, so the real 0.0 maps
//!   to the code `zero_point` and back to exactly 0.0 (padding and ReLU zeros stay exact).
//!
//! Then `q = clamp(round_half_even(x · (1/scale)) + zero_point, qmin, qmax)` and
//! `x̂ = (q - zero_point) · scale`. For `x` inside the range, `|x - x̂| ≤ scale / 2`.
//!
//! A range of zero width (an all-zero tensor) gets `scale = 1`, so everything maps to the
//! zero-point and back to 0 exactly, with no division by zero.

use serde::{Deserialize, Serialize};

/// An integer format: bit width and signedness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntFormat {
    /// Bits per value, 2..=8.
    pub bits: u8,
    /// Two's complement (`true`) or unsigned.
    pub signed: bool,
}

/// Signed 8-bit.
pub const INT8: IntFormat = IntFormat {
    bits: 8,
    signed: true,
};
/// Unsigned 8-bit.
pub const UINT8: IntFormat = IntFormat {
    bits: 8,
    signed: false,
};
/// Signed 4-bit.
pub const INT4: IntFormat = IntFormat {
    bits: 4,
    signed: true,
};
/// Unsigned 4-bit.
pub const UINT4: IntFormat = IntFormat {
    bits: 4,
    signed: false,
};

impl IntFormat {
    /// Smallest code.
    pub fn qmin(&self) -> i32 {
        if self.signed {
            -(1 << (self.bits - 1))
        } else {
            0
        }
    }

    /// Largest code.
    pub fn qmax(&self) -> i32 {
        if self.signed {
            (1 << (self.bits - 1)) - 1
        } else {
            (1 << self.bits) - 1
        }
    }

    /// `int8`, `uint4`, ...
    pub fn name(&self) -> String {
        format!("{}int{}", if self.signed { "" } else { "u" }, self.bits)
    }
}

/// How the real range maps onto the integer range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scheme {
    /// Zero-point 0; `restricted` drops the most negative code so the grid is symmetric.
    Symmetric {
        /// Use `[-(2^(b-1)-1), 2^(b-1)-1]` instead of the full signed range.
        restricted: bool,
    },
    /// Scale and integer zero-point; 0.0 is exactly representable.
    Asymmetric,
}

impl Scheme {
    /// Short name for tables.
    pub fn name(&self) -> &'static str {
        match self {
            Scheme::Symmetric { restricted: true } => "symmetric (restricted)",
            Scheme::Symmetric { restricted: false } => "symmetric (full)",
            Scheme::Asymmetric => "asymmetric",
        }
    }
}

/// Why quantization parameters could not be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParamError {
    /// Symmetric schemes need a signed format.
    #[error("symmetric quantization needs a signed format, got {0}")]
    SymmetricUnsigned(String),
    /// The range contains NaN or infinity.
    #[error("range [{0}, {1}] is not finite")]
    NonFinite(f32, f32),
    /// Width outside 2..=8.
    #[error("{0} bits is not supported (2..=8)")]
    Bits(u8),
}

/// Scale and zero-point of one quantization group, plus the integer range in use.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QParams {
    /// Real value of one integer step.
    pub scale: f32,
    /// Integer that represents real 0.0.
    pub zero_point: i32,
    /// Smallest code used.
    pub qmin: i32,
    /// Largest code used.
    pub qmax: i32,
}

/// `scale`, raised to the smallest normal f32 if it is below: `1 / scale` must stay finite, or
/// every code (zero included) would come from `x · inf`.
fn usable(scale: f32) -> f32 {
    scale.max(f32::MIN_POSITIVE)
}

impl QParams {
    /// Parameters for the real range `[lo, hi]` (see the module docs for the formulas).
    pub fn from_range(
        lo: f32,
        hi: f32,
        format: IntFormat,
        scheme: Scheme,
    ) -> Result<Self, ParamError> {
        if !(2..=8).contains(&format.bits) {
            return Err(ParamError::Bits(format.bits));
        }
        if !lo.is_finite() || !hi.is_finite() {
            return Err(ParamError::NonFinite(lo, hi));
        }
        let (lo, hi) = (lo.min(hi), lo.max(hi));
        match scheme {
            Scheme::Symmetric { restricted } => {
                if !format.signed {
                    return Err(ParamError::SymmetricUnsigned(format.name()));
                }
                let amax = lo.abs().max(hi.abs());
                let (qmin, qmax) = if restricted {
                    (format.qmin() + 1, format.qmax())
                } else {
                    (format.qmin(), format.qmax())
                };
                let denom = if restricted {
                    qmax as f32
                } else {
                    (qmax - qmin) as f32 / 2.0
                };
                let scale = if amax > 0.0 { amax / denom } else { 1.0 };
                Ok(Self {
                    scale: usable(scale),
                    zero_point: 0,
                    qmin,
                    qmax,
                })
            }
            Scheme::Asymmetric => {
                let (qmin, qmax) = (format.qmin(), format.qmax());
                let (lo, hi) = (lo.min(0.0), hi.max(0.0));
                let steps = (qmax - qmin) as f32;
                let scale = if hi <= lo {
                    1.0
                } else if (hi - lo).is_finite() {
                    (hi - lo) / steps
                } else {
                    // A range wider than f32::MAX (an infinite scale would decode every code
                    // to NaN).
                    hi / steps - lo / steps
                };
                let scale = usable(scale);
                let zp = (qmin as f32 - lo / scale).round_ties_even() as i32;
                Ok(Self {
                    scale,
                    zero_point: zp.clamp(qmin, qmax),
                    qmin,
                    qmax,
                })
            }
        }
    }

    /// The integer code of `x`.
    #[inline]
    pub fn quantize(&self, x: f32) -> i32 {
        let q = (x * self.inv_scale()).round_ties_even() + self.zero_point as f32;
        // Clamped in float (`max` ignores NaN, so NaN maps to qmin), exactly as the slice
        // kernels in `simd` do.
        q.max(self.qmin as f32).min(self.qmax as f32) as i32
    }

    /// `1 / scale`, the factor codes are computed with (a multiply, as in PyTorch's
    /// fake-quantize and ggml's quantizers, instead of a division per value).
    #[inline]
    pub fn inv_scale(&self) -> f32 {
        1.0 / self.scale
    }

    /// The real value of code `q`.
    #[inline]
    pub fn dequantize(&self, q: i32) -> f32 {
        (q - self.zero_point) as f32 * self.scale
    }

    /// Quantize then dequantize ("fake quantization").
    #[inline]
    pub fn fake_quant(&self, x: f32) -> f32 {
        self.dequantize(self.quantize(x))
    }

    /// The real interval that quantizes without clipping.
    pub fn representable(&self) -> (f32, f32) {
        (self.dequantize(self.qmin), self.dequantize(self.qmax))
    }
}

/// Packs 4-bit codes two per byte. **Nibble order: element `2i` goes in the low nibble of byte
/// `i`, element `2i+1` in the high nibble** (the order of PyTorch's `quint4x2` and of NumPy-style
/// little-endian bit streams). Codes are taken modulo 16, so signed INT4 values are stored as
/// their two's complement nibble. An odd count leaves the last high nibble 0.
pub fn pack_nibbles(codes: &[i8]) -> Vec<u8> {
    codes
        .chunks(2)
        .map(|p| {
            let lo = (p[0] as u8) & 0x0f;
            let hi = p.get(1).map_or(0, |&h| (h as u8) & 0x0f);
            lo | (hi << 4)
        })
        .collect()
}

/// Inverse of [`pack_nibbles`]: `count` codes, sign-extended when `signed`.
pub fn unpack_nibbles(packed: &[u8], count: usize, signed: bool) -> Vec<i8> {
    let ext = |n: u8| -> i8 {
        if signed {
            ((n << 4) as i8) >> 4
        } else {
            n as i8
        }
    };
    let mut out = Vec::with_capacity(count);
    for &b in packed {
        out.push(ext(b & 0x0f));
        out.push(ext(b >> 4));
    }
    out.truncate(count);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_symmetric_restricted_matches_the_formula() {
        let p =
            QParams::from_range(-2.0, 1.0, INT8, Scheme::Symmetric { restricted: true }).unwrap();
        assert_eq!(
            (p.scale, p.zero_point, p.qmin, p.qmax),
            (2.0 / 127.0, 0, -127, 127)
        );
        assert_eq!(p.quantize(2.0), 127);
        assert_eq!(p.quantize(-5.0), -127);
    }

    #[test]
    fn full_range_symmetric_uses_minus_128() {
        let p =
            QParams::from_range(-1.0, 1.0, INT8, Scheme::Symmetric { restricted: false }).unwrap();
        assert_eq!(p.scale, 1.0 / 127.5);
        // -amax sits exactly on the -127.5 rounding boundary; just past it uses the extra code.
        assert_eq!(p.quantize(-1.004), -128);
        assert_eq!(p.quantize(1.004), 127);
    }

    #[test]
    fn asymmetric_uint8_relu_range() {
        let p = QParams::from_range(0.0, 6.0, UINT8, Scheme::Asymmetric).unwrap();
        assert_eq!(p.zero_point, 0);
        assert_eq!(p.scale, 6.0 / 255.0);
        let q = QParams::from_range(-1.0, 3.0, UINT8, Scheme::Asymmetric).unwrap();
        assert_eq!(q.zero_point, 64);
        assert_eq!(q.fake_quant(0.0), 0.0);
    }

    #[test]
    fn bad_requests_are_errors() {
        assert!(
            QParams::from_range(0.0, 1.0, UINT8, Scheme::Symmetric { restricted: true }).is_err()
        );
        assert!(QParams::from_range(f32::NAN, 1.0, INT8, Scheme::Asymmetric).is_err());
        let one_bit = IntFormat {
            bits: 1,
            signed: true,
        };
        assert!(QParams::from_range(0.0, 1.0, one_bit, Scheme::Asymmetric).is_err());
    }

    #[test]
    fn ranges_at_the_ends_of_f32_give_finite_codes() {
        // Wider than f32::MAX: the scale stays finite and the ends come back.
        let p = QParams::from_range(-3e38, 3e38, INT8, Scheme::Asymmetric).unwrap();
        assert!(p.scale.is_finite());
        assert_eq!((p.quantize(-3e38), p.quantize(3e38)), (-128, 127));
        assert!((p.fake_quant(3e38) / 3e38 - 1.0).abs() < 0.01);
        // Subnormal: 1 / scale stays finite, so zero is still exactly zero.
        let sym = Scheme::Symmetric { restricted: false };
        for scheme in [sym, Scheme::Asymmetric] {
            let p = QParams::from_range(-1e-44, 1e-44, INT8, scheme).unwrap();
            assert!(p.inv_scale().is_finite());
            assert_eq!(p.fake_quant(0.0), 0.0);
        }
    }

    #[test]
    fn zero_range_maps_to_exact_zero() {
        for scheme in [Scheme::Asymmetric, Scheme::Symmetric { restricted: true }] {
            let p = QParams::from_range(0.0, 0.0, INT8, scheme).unwrap();
            assert_eq!(p.fake_quant(0.0), 0.0);
        }
    }

    #[test]
    fn nibble_order_is_low_first() {
        assert_eq!(pack_nibbles(&[1, 2, 3]), vec![0x21, 0x03]);
        assert_eq!(pack_nibbles(&[-1, -8]), vec![0x8f]);
        assert_eq!(unpack_nibbles(&[0x8f], 2, true), vec![-1, -8]);
        assert_eq!(unpack_nibbles(&[0x8f], 2, false), vec![15, 8]);
    }
}

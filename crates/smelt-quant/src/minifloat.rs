//! Small floating-point formats (FP8 E4M3FN / E5M2, FP4 E2M1) from one description: exponent
//! bits, mantissa bits, bias, and how the top exponent is used.
//!
//! Encoding rounds to nearest, ties to even, in a single step from f32 (no double rounding):
//! the value is scaled by the quantization step of its binade (a power of two, so exact in f64),
//! rounded to an integer, and re-assembled. A result beyond the largest finite value overflows:
//! to infinity where the format has one (E5M2), to NaN where it does not (E4M3FN, non-saturating),
//! or to ±max when saturating — the `satfinite` behaviour of NVIDIA's conversions.

/// How the all-ones exponent field is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Specials {
    /// IEEE 754 style: all-ones exponent means ±inf (mantissa 0) or NaN (otherwise).
    Ieee,
    /// OCP "FN" (finite, NaN): no infinities; only all-ones exponent *and* mantissa is NaN.
    FiniteWithNan,
    /// No infinities and no NaN (E2M1): every code is a finite number.
    FiniteOnly,
}

/// What to do with values beyond the largest finite value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Round as usual; out-of-range results become inf (if the format has it) or NaN.
    /// This is what `ml_dtypes` and a plain C cast do.
    NonSaturating,
    /// Clamp to ±max finite value (and ±inf to ±max); NaN stays NaN.
    Saturating,
}

/// A minifloat format of at most 8 bits: sign, `exp_bits` exponent, `man_bits` mantissa.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MiniFloat {
    /// Name for messages (`e4m3fn`).
    pub name: &'static str,
    /// Exponent field width.
    pub exp_bits: u32,
    /// Mantissa field width.
    pub man_bits: u32,
    /// Exponent bias.
    pub bias: i32,
    /// Use of the top exponent.
    pub specials: Specials,
}

impl MiniFloat {
    /// Total bits, sign included.
    pub const fn bits(&self) -> u32 {
        1 + self.exp_bits + self.man_bits
    }

    const fn sign_bit(&self) -> u8 {
        1 << (self.exp_bits + self.man_bits)
    }

    const fn exp_max_field(&self) -> u32 {
        (1 << self.exp_bits) - 1
    }

    /// The largest finite value.
    pub fn max_finite(&self) -> f32 {
        self.decode(self.max_code())
    }

    /// Code of the largest positive finite value.
    pub fn max_code(&self) -> u8 {
        let man_all = (1u32 << self.man_bits) - 1;
        let (e, m) = match self.specials {
            Specials::Ieee => (self.exp_max_field() - 1, man_all),
            Specials::FiniteWithNan => (self.exp_max_field(), man_all - 1),
            Specials::FiniteOnly => (self.exp_max_field(), man_all),
        };
        ((e << self.man_bits) | m) as u8
    }

    /// The canonical NaN code for a sign (`None` when the format has no NaN).
    pub fn nan_code(&self, negative: bool) -> Option<u8> {
        let s = if negative { self.sign_bit() } else { 0 };
        match self.specials {
            // Quiet NaN: top mantissa bit set (ml_dtypes' choice, 0x7E for E5M2).
            Specials::Ieee => Some(
                s | ((self.exp_max_field() << self.man_bits) as u8) | (1 << (self.man_bits - 1)),
            ),
            Specials::FiniteWithNan => Some(
                s | ((self.exp_max_field() << self.man_bits) | ((1 << self.man_bits) - 1)) as u8,
            ),
            Specials::FiniteOnly => None,
        }
    }

    fn inf_code(&self, negative: bool) -> Option<u8> {
        let s = if negative { self.sign_bit() } else { 0 };
        (self.specials == Specials::Ieee).then(|| s | (self.exp_max_field() << self.man_bits) as u8)
    }

    /// Decodes a code (only the low `bits()` bits are used).
    pub fn decode(&self, code: u8) -> f32 {
        let code = code & (((1u32 << self.bits()) - 1) as u8);
        let negative = code & self.sign_bit() != 0;
        let e = ((code as u32) >> self.man_bits) & self.exp_max_field();
        let m = (code as u32) & ((1 << self.man_bits) - 1);
        let sign = if negative { -1.0 } else { 1.0 };
        if e == self.exp_max_field() {
            match self.specials {
                Specials::Ieee => {
                    return if m == 0 {
                        sign * f32::INFINITY
                    } else {
                        f32::NAN
                    };
                }
                Specials::FiniteWithNan if m == (1 << self.man_bits) - 1 => return f32::NAN,
                _ => {}
            }
        }
        let frac = m as f64 / (1u64 << self.man_bits) as f64;
        let v = if e == 0 {
            frac * 2f64.powi(1 - self.bias)
        } else {
            (1.0 + frac) * 2f64.powi(e as i32 - self.bias)
        };
        (sign as f64 * v) as f32
    }

    /// Encodes an f32 with round-to-nearest-even and the given overflow rule.
    pub fn encode(&self, x: f32, overflow: Overflow) -> u8 {
        let negative = x.is_sign_negative();
        let s = if negative { self.sign_bit() } else { 0 };
        if x.is_nan() {
            // A format without NaN has nothing better than zero to offer.
            return self.nan_code(negative).unwrap_or(0);
        }
        let a = x.abs() as f64;
        let emin = 1 - self.bias; // exponent of the smallest normal
        let too_big = |me: &Self| -> u8 {
            match (overflow, me.specials) {
                (Overflow::Saturating, _) | (_, Specials::FiniteOnly) => s | me.max_code(),
                (Overflow::NonSaturating, Specials::Ieee) => me.inf_code(negative).expect("ieee"),
                (Overflow::NonSaturating, Specials::FiniteWithNan) => {
                    me.nan_code(negative).expect("fn has nan")
                }
            }
        };
        if a.is_infinite() {
            return too_big(self);
        }
        if a == 0.0 {
            return s;
        }
        // Binade of `a` (f64 holds every f32 exactly, including f32 subnormals, as normals).
        let e = ((a.to_bits() >> 52) as i32) - 1023;
        let step_exp = e.max(emin) - self.man_bits as i32;
        let scaled = a * 2f64.powi(-step_exp); // exact: power-of-two scaling in range
        let n = scaled.round_ties_even();
        if n == 0.0 {
            return s;
        }
        let v = n * 2f64.powi(step_exp);
        if v > self.max_finite() as f64 {
            return too_big(self);
        }
        // Re-assemble the exactly representable `v`.
        let ve = ((v.to_bits() >> 52) as i32) - 1023;
        let code = if ve < emin {
            (v * 2f64.powi(-(emin - self.man_bits as i32))) as u32
        } else {
            let m = (v * 2f64.powi(-(ve - self.man_bits as i32))) as u32 - (1 << self.man_bits);
            (((ve + self.bias) as u32) << self.man_bits) | m
        };
        s | code as u8
    }

    /// All `2^bits` decoded values, index = code.
    pub fn table(&self) -> Vec<f32> {
        (0..(1u32 << self.bits()))
            .map(|c| self.decode(c as u8))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fp8::{E4M3FN, E5M2};

    #[test]
    fn known_limits() {
        assert_eq!(E4M3FN.max_finite(), 448.0);
        assert_eq!(E5M2.max_finite(), 57344.0);
        assert_eq!(E4M3FN.decode(1), 2f32.powi(-9));
        assert_eq!(E5M2.decode(1), 2f32.powi(-16));
        assert!(E4M3FN.decode(0x7f).is_nan() && E4M3FN.decode(0xff).is_nan());
        assert_eq!(E5M2.decode(0x7c), f32::INFINITY);
    }

    #[test]
    fn every_finite_code_round_trips() {
        for f in [E4M3FN, E5M2, crate::fp4::E2M1] {
            for c in 0..(1u32 << f.bits()) {
                let v = f.decode(c as u8);
                if v.is_finite() {
                    let back = f.encode(v, Overflow::NonSaturating);
                    assert_eq!(f.decode(back).to_bits(), v.to_bits(), "{} code {c}", f.name);
                }
            }
        }
    }

    #[test]
    fn saturating_clamps() {
        assert_eq!(E4M3FN.encode(1e6, Overflow::Saturating), 0x7e);
        assert_eq!(E4M3FN.encode(-f32::INFINITY, Overflow::Saturating), 0xfe);
        assert_eq!(E5M2.encode(f32::INFINITY, Overflow::Saturating), 0x7b);
        assert!(
            E5M2.decode(E5M2.encode(f32::NAN, Overflow::Saturating))
                .is_nan()
        );
        assert_eq!(E4M3FN.encode(1e6, Overflow::NonSaturating), 0x7f);
    }
}

//! FP4 E2M1 (OCP Microscaling "MXFP4" element type): 1 sign, 2 exponent, 1 mantissa bit, bias 1.
//! The 16 codes are ±{0, 0.5, 1, 1.5, 2, 3, 4, 6}; there is no infinity or NaN, so overflow
//! saturates to ±6 and NaN encodes as +0.

use crate::minifloat::{MiniFloat, Specials};

/// FP4 E2M1.
pub const E2M1: MiniFloat = MiniFloat {
    name: "e2m1fn",
    exp_bits: 2,
    man_bits: 1,
    bias: 1,
    specials: Specials::FiniteOnly,
};

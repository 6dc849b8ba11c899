//! GeGLU's elementwise step (Gemma's feed-forward), `gate ← GELU(gate) · up`, with GELU's
//! tanh approximation, `GELU(x) = ½x(1 + tanh(√(2/π)·x·(1 + 0.044715x²)))` (Hendrycks and
//! Gimpel, arXiv:1606.08415).
//!
//! llama.cpp's CPU build (`ggml_vec_geglu_f32` with `GGML_GELU_FP16`) does not evaluate the
//! formula per value: it rounds x to f16 and looks GELU up in a 65,536-entry table of f16
//! results (`ggml_table_gelu_f16`, filled at start-up from the f32 formula), with x ≤ −10
//! giving 0 and x ≥ 10 giving x. smelt follows it so that its activations are the same floats:
//! [`gelu_f16`] is the definition, [`gelu_mul`] reads a table built from it once, and the
//! harness checks that every f16 input gives the same result both ways.

use std::sync::OnceLock;

use half::f16;

/// √(2/π) as ggml writes it (`SQRT_2_OVER_PI`, rounded to f32).
const SQRT_2_OVER_PI: f32 = 0.797_884_6;
/// The cubic term's coefficient (`GELU_COEF_A`).
const COEF_A: f32 = 0.044715;

/// GELU of an f32 as ggml's `ggml_gelu_f32` evaluates it in llama.cpp's x86-64 build (GCC
/// contracts `1 + a·x·x` into one fused multiply-add there; `tanhf` is the C library's, which
/// Rust's `f32::tanh` calls on the same systems).
pub fn gelu_f32(x: f32) -> f32 {
    let inner = (COEF_A * x).mul_add(x, 1.0);
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * inner).tanh())
}

/// Reference: GELU as llama.cpp's CPU build computes it for one value — 0 at or below −10, x
/// at or above 10, else x rounded to f16, [`gelu_f32`] of that, rounded to f16.
pub fn gelu_f16(x: f32) -> f32 {
    if x <= -10.0 {
        0.0
    } else if x >= 10.0 {
        x
    } else {
        f16::from_f32(gelu_f32(f16::from_f32(x).to_f32())).to_f32()
    }
}

/// (65536,) [`gelu_f16`] of every f16 bit pattern, as f32.
fn table() -> &'static [f32] {
    static TABLE: OnceLock<Vec<f32>> = OnceLock::new();
    TABLE.get_or_init(|| {
        (0..=u16::MAX)
            .map(|bits| {
                let x = f16::from_bits(bits).to_f32();
                f16::from_f32(gelu_f32(x)).to_f32()
            })
            .collect()
    })
}

/// Reference: `gate[i] = gelu_f16(gate[i]) · up[i]`, except that at or below −10 the result
/// is +0 whatever `up` is (ggml stores 0 there without the product).
pub fn gelu_mul_reference(gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len(), "gate and up differ in length");
    for (g, u) in gate.iter_mut().zip(up) {
        *g = if *g <= -10.0 { 0.0 } else { gelu_f16(*g) * u };
    }
}

/// [`gelu_mul_reference`] through the table (llama.cpp's way; a lookup instead of a `tanhf`).
pub fn gelu_mul(gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len(), "gate and up differ in length");
    let t = table();
    for (g, u) in gate.iter_mut().zip(up) {
        let x = *g;
        *g = if x <= -10.0 {
            0.0
        } else if x >= 10.0 {
            x * u
        } else {
            t[f16::from_f32(x).to_bits() as usize] * u
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the formula in f64: the f16 rounding on each side bounds the difference.
    #[test]
    fn gelu_is_the_tanh_approximation_within_f16_rounding() {
        for i in -2000..=2000 {
            let x = i as f32 / 200.0;
            let xd = x as f64;
            let exact = 0.5
                * xd
                * (1.0
                    + ((2.0 / std::f64::consts::PI).sqrt() * xd * (1.0 + 0.044715 * xd * xd))
                        .tanh());
            let got = gelu_f16(x) as f64;
            // f16 keeps 11 significant bits; x's rounding moves GELU by at most its slope (≤
            // 1.13) times half an ulp of x.
            let tol = 2e-3 * exact.abs().max(xd.abs()) + 1e-4;
            assert!((got - exact).abs() <= tol, "x {x}: {got} vs {exact}");
        }
        assert_eq!(gelu_f16(-10.0), 0.0);
        assert_eq!(gelu_f16(12.5), 12.5);
    }

    /// ggml's own results (`tests/data/ggml_geglu.txt`, printed by `benches/ggml_gelu.c`),
    /// including the one f16 input, −1.9990234, whose table entry depends on the fused
    /// multiply-add: both the definition and the table must give them bit for bit.
    #[test]
    fn gelu_equals_ggml_on_its_golden_values() {
        let data = include_str!("../tests/data/ggml_geglu.txt");
        let mut n = 0;
        for line in data.lines().filter(|l| !l.starts_with('#')) {
            let bits: Vec<u32> = line
                .split_whitespace()
                .map(|h| u32::from_str_radix(h.trim_start_matches("0x"), 16).unwrap())
                .collect();
            let (x, want) = (f32::from_bits(bits[0]), f32::from_bits(bits[1]));
            assert_eq!(gelu_f16(x).to_bits(), want.to_bits(), "x {x}");
            let mut g = [x];
            gelu_mul(&mut g, &[1.0]);
            assert_eq!(g[0].to_bits(), want.to_bits(), "table, x {x}");
            n += 1;
        }
        assert_eq!(n, 66);
        // Without the fused multiply-add, −1.9990234 would give −0.04547119.
        let plain = |x: f32| 0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + COEF_A * x * x)).tanh());
        let x = -1.999_023_4f32;
        assert_ne!(
            f16::from_f32(plain(x)).to_bits(),
            f16::from_f32(gelu_f32(x)).to_bits()
        );
    }
}

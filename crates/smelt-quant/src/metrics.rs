//! Error metrics between a tensor and its quantized reconstruction.

use serde::{Deserialize, Serialize};

/// How far a reconstruction is from the original.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ErrorStats {
    /// Mean squared error.
    pub mse: f64,
    /// Signal-to-quantization-noise ratio in dB: `10·log10(Σx² / Σ(x-x̂)²)`; +inf when exact.
    pub sqnr_db: f64,
    /// Largest absolute difference.
    pub max_abs: f64,
    /// Mean absolute difference.
    pub mean_abs: f64,
    /// Cosine similarity of the two vectors (1 when both are zero).
    pub cosine: f64,
}

/// Compares `x` with its reconstruction `y` (same length; f64 accumulation).
pub fn error_stats(x: &[f32], y: &[f32]) -> ErrorStats {
    assert_eq!(x.len(), y.len(), "error_stats needs equal lengths");
    let (mut se, mut sx, mut sy, mut sxy, mut sabs, mut mx) = (0f64, 0f64, 0f64, 0f64, 0f64, 0f64);
    for (&a, &b) in x.iter().zip(y) {
        let (a, b) = (a as f64, b as f64);
        let d = a - b;
        se += d * d;
        sabs += d.abs();
        mx = mx.max(d.abs());
        sx += a * a;
        sy += b * b;
        sxy += a * b;
    }
    let n = x.len().max(1) as f64;
    let sqnr_db = if se == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (sx / se).log10()
    };
    let cosine = if sx == 0.0 && sy == 0.0 {
        1.0
    } else {
        sxy / (sx.sqrt() * sy.sqrt()).max(f64::MIN_POSITIVE)
    };
    ErrorStats {
        mse: se / n,
        sqnr_db,
        max_abs: mx,
        mean_abs: sabs / n,
        cosine,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_values() {
        let s = error_stats(&[1.0, 2.0, 3.0, 4.0], &[1.0, 2.0, 3.0, 5.0]);
        assert_eq!(s.mse, 0.25);
        assert_eq!(s.max_abs, 1.0);
        assert!((s.sqnr_db - 10.0 * 30f64.log10()).abs() < 1e-12);
        assert!((s.cosine - 34.0 / (30f64.sqrt() * 39f64.sqrt())).abs() < 1e-12);
        assert_eq!(error_stats(&[1.0], &[1.0]).sqnr_db, f64::INFINITY);
    }
}

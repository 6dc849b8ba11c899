//! Entropy calibration as TensorRT does it (Szymon Migacz, "8-bit Inference with TensorRT",
//! GTC 2017): build a 2048-bin histogram of |x|, and for every candidate threshold (bin 128 to
//! 2048) compare the clipped distribution P (outliers folded into the last kept bin) with Q, P
//! squeezed into 128 levels and expanded back; choose the threshold with the smallest KL(P‖Q).

use crate::observer::{Observer, Reservoir};

/// Histogram bins, as TensorRT.
pub const BINS: usize = 2048;
/// Quantized levels on one side of zero for INT8.
pub const LEVELS: usize = 128;

/// KL-divergence (entropy) calibration observer.
#[derive(Debug, Clone, Default)]
pub struct Entropy {
    reservoir: Reservoir,
}

impl Entropy {
    /// A new observer.
    pub fn new() -> Self {
        Self::default()
    }
}

/// Smooths zero bins so KL stays finite (eps mass moved from non-zero bins, as MXNet does).
fn smooth(p: &mut [f64], eps: f64) -> bool {
    let zeros = p.iter().filter(|&&v| v == 0.0).count();
    let nonzeros = p.len() - zeros;
    if nonzeros == 0 {
        return false;
    }
    let take = eps * zeros as f64 / nonzeros as f64;
    for v in p.iter_mut() {
        if *v == 0.0 {
            *v = eps;
        } else {
            *v -= take;
            if *v <= 0.0 {
                return false;
            }
        }
    }
    true
}

/// KL(P‖Q) of two unnormalized histograms of equal length.
fn kl(p: &[f64], q: &[f64]) -> f64 {
    let (sp, sq): (f64, f64) = (p.iter().sum(), q.iter().sum());
    p.iter()
        .zip(q)
        .filter(|(a, _)| **a > 0.0)
        .map(|(a, b)| {
            let (a, b) = (a / sp, b / sq);
            a * (a / b).ln()
        })
        .sum()
}

/// The threshold index (number of kept bins) with the smallest KL divergence.
pub fn best_bin_count(hist: &[f64]) -> usize {
    let n = hist.len();
    let mut best = (f64::INFINITY, n);
    for i in LEVELS..=n {
        let mut p: Vec<f64> = hist[..i].to_vec();
        let outliers: f64 = hist[i..].iter().sum();
        p[i - 1] += outliers;
        // Q: hist[..i] merged into LEVELS groups, each group's mass spread over its non-zero bins.
        let merged = i / LEVELS;
        let mut q = vec![0f64; i];
        for j in 0..LEVELS {
            let start = j * merged;
            let end = if j == LEVELS - 1 { i } else { start + merged };
            let mass: f64 = hist[start..end].iter().sum();
            let nz = hist[start..end].iter().filter(|&&v| v != 0.0).count();
            if nz > 0 {
                for k in start..end {
                    if hist[k] != 0.0 {
                        q[k] = mass / nz as f64;
                    }
                }
            }
        }
        if !smooth(&mut p, 1e-4) || !smooth(&mut q, 1e-4) {
            continue;
        }
        let d = kl(&p, &q);
        if d < best.0 {
            best = (d, i);
        }
    }
    best.1
}

impl Observer for Entropy {
    fn observe(&mut self, x: &[f32]) {
        self.reservoir.add(x);
    }

    fn range(&self) -> (f32, f32) {
        let s = self.reservoir.samples();
        let amax = s.iter().fold(0f32, |m, v| m.max(v.abs()));
        if amax == 0.0 {
            return (0.0, 0.0);
        }
        let width = amax as f64 / BINS as f64;
        let mut hist = vec![0f64; BINS];
        for v in s {
            let b = ((v.abs() as f64 / width) as usize).min(BINS - 1);
            hist[b] += 1.0;
        }
        let kept = best_bin_count(&hist);
        let t = ((kept as f64 + 0.5) * width).min(amax as f64) as f32;
        let nonnegative = s.iter().all(|&v| v >= 0.0);
        if nonnegative { (0.0, t) } else { (-t, t) }
    }

    fn name(&self) -> String {
        "entropy (KL, 2048 bins)".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn clips_a_long_tail_and_keeps_a_compact_distribution() {
        let mut r = Rng::new(9);
        // Gaussian bulk plus a few far outliers: the threshold lands well inside the max.
        let mut x = r.normals(200_000);
        for (i, v) in x.iter_mut().take(20).enumerate() {
            *v = 40.0 + i as f32;
        }
        let mut e = Entropy::new();
        e.observe(&x);
        let (lo, hi) = e.range();
        assert!(hi < 20.0 && hi > 2.5 && lo == -hi, "{lo} {hi}");
        // Uniform data has no tail worth clipping.
        let u: Vec<f32> = (0..200_000).map(|_| r.uniform() as f32).collect();
        let mut e = Entropy::new();
        e.observe(&u);
        let (lo, hi) = e.range();
        assert_eq!(lo, 0.0);
        assert!(hi > 0.9, "{hi}");
    }

    #[test]
    fn kl_of_identical_is_zero() {
        assert_eq!(kl(&[1.0, 2.0], &[2.0, 4.0]), 0.0);
    }
}

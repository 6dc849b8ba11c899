//! Calibration observers: watch activations batch by batch and propose a clipping range.
//!
//! | observer | range | use |
//! |---|---|---|
//! | [`MinMax`] | running min and max | weights; simple, outlier-sensitive |
//! | [`MovingAverageMinMax`] | EMA of per-batch min/max (PyTorch's default for QAT) | activations |
//! | [`Percentile`] | the p-th percentile of \|x\| (symmetric) or both tails | clips rare outliers |
//! | [`MseSearch`] | the clipping that minimizes quantization MSE on the samples | |
//! | [`Entropy`] | TensorRT's KL-divergence threshold on a 2048-bin histogram | INT8 activations |
//!
//! Sample-based observers keep at most [`SAMPLE_CAP`] values by reservoir sampling (seeded), so
//! memory stays bounded however long calibration runs.

use crate::int::{IntFormat, QParams, Scheme};
use crate::rng::Rng;

/// Most samples a sample-based observer keeps.
pub const SAMPLE_CAP: usize = 1 << 22;

/// Watches tensors and proposes a `(lo, hi)` range.
pub trait Observer {
    /// Feeds one batch.
    fn observe(&mut self, x: &[f32]);
    /// The proposed range; `(0, 0)` before any data.
    fn range(&self) -> (f32, f32);
    /// Name for tables.
    fn name(&self) -> String;
}

fn batch_min_max(x: &[f32]) -> Option<(f32, f32)> {
    let mut it = x.iter().copied().filter(|v| v.is_finite());
    let first = it.next()?;
    Some(it.fold((first, first), |(lo, hi), v| (lo.min(v), hi.max(v))))
}

/// Running minimum and maximum.
#[derive(Debug, Clone, Default)]
pub struct MinMax {
    range: Option<(f32, f32)>,
}

impl Observer for MinMax {
    fn observe(&mut self, x: &[f32]) {
        if let Some((lo, hi)) = batch_min_max(x) {
            self.range = Some(match self.range {
                None => (lo, hi),
                Some((a, b)) => (a.min(lo), b.max(hi)),
            });
        }
    }
    fn range(&self) -> (f32, f32) {
        self.range.unwrap_or((0.0, 0.0))
    }
    fn name(&self) -> String {
        "min-max".into()
    }
}

/// Exponential moving average of each batch's min and max: `r ← r + c·(batch − r)`.
#[derive(Debug, Clone)]
pub struct MovingAverageMinMax {
    /// Averaging constant `c` (PyTorch's default is 0.01).
    pub momentum: f32,
    range: Option<(f32, f32)>,
}

impl MovingAverageMinMax {
    /// With averaging constant `momentum` in (0, 1].
    pub fn new(momentum: f32) -> Self {
        Self {
            momentum,
            range: None,
        }
    }
}

impl Observer for MovingAverageMinMax {
    fn observe(&mut self, x: &[f32]) {
        if let Some((lo, hi)) = batch_min_max(x) {
            let c = self.momentum;
            self.range = Some(match self.range {
                None => (lo, hi),
                Some((a, b)) => (a + c * (lo - a), b + c * (hi - b)),
            });
        }
    }
    fn range(&self) -> (f32, f32) {
        self.range.unwrap_or((0.0, 0.0))
    }
    fn name(&self) -> String {
        format!("moving-average min-max (c={})", self.momentum)
    }
}

/// A bounded, seeded reservoir of observed values.
#[derive(Debug, Clone)]
pub struct Reservoir {
    samples: Vec<f32>,
    seen: u64,
    rng: Rng,
}

impl Default for Reservoir {
    fn default() -> Self {
        Self {
            samples: Vec::new(),
            seen: 0,
            rng: Rng::new(0x0b5e_7e12),
        }
    }
}

impl Reservoir {
    /// Adds finite values (Algorithm R).
    pub fn add(&mut self, x: &[f32]) {
        for &v in x.iter().filter(|v| v.is_finite()) {
            self.seen += 1;
            if self.samples.len() < SAMPLE_CAP {
                self.samples.push(v);
            } else {
                let j = (self.rng.uniform() * self.seen as f64) as u64;
                if (j as usize) < SAMPLE_CAP {
                    self.samples[j as usize] = v;
                }
            }
        }
    }

    /// The kept samples.
    pub fn samples(&self) -> &[f32] {
        &self.samples
    }
}

/// Clips at a percentile: symmetric schemes use the p-th percentile of |x| for both ends,
/// asymmetric ones the (100−p)-th and p-th percentiles of x.
#[derive(Debug, Clone)]
pub struct Percentile {
    /// Percentile in (0, 100], e.g. 99.99.
    pub percentile: f64,
    /// Whether to produce a symmetric range.
    pub symmetric: bool,
    reservoir: Reservoir,
}

impl Percentile {
    /// A percentile observer.
    pub fn new(percentile: f64, symmetric: bool) -> Self {
        Self {
            percentile,
            symmetric,
            reservoir: Reservoir::default(),
        }
    }
}

/// The q-th quantile (0..=1) of sorted data, nearest-rank.
fn quantile(sorted: &[f32], q: f64) -> f32 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((q * (sorted.len() - 1) as f64).round() as usize).min(sorted.len() - 1);
    sorted[idx]
}

impl Observer for Percentile {
    fn observe(&mut self, x: &[f32]) {
        self.reservoir.add(x);
    }
    fn range(&self) -> (f32, f32) {
        let p = self.percentile / 100.0;
        if self.symmetric {
            let mut a: Vec<f32> = self.reservoir.samples().iter().map(|v| v.abs()).collect();
            a.sort_unstable_by(f32::total_cmp);
            let t = quantile(&a, p);
            (-t, t)
        } else {
            let mut s = self.reservoir.samples().to_vec();
            s.sort_unstable_by(f32::total_cmp);
            (quantile(&s, 1.0 - p), quantile(&s, p))
        }
    }
    fn name(&self) -> String {
        format!("percentile {}", self.percentile)
    }
}

/// Searches the clipping range that minimizes the mean squared quantization error on the
/// samples: candidates shrink the min-max range by factors `i / steps`, `i = 1..=steps`.
#[derive(Debug, Clone)]
pub struct MseSearch {
    /// Target format.
    pub format: IntFormat,
    /// Target scheme.
    pub scheme: Scheme,
    /// Number of candidate clipping ratios.
    pub steps: usize,
    reservoir: Reservoir,
}

impl MseSearch {
    /// An MSE-search observer for the given quantizer.
    pub fn new(format: IntFormat, scheme: Scheme, steps: usize) -> Self {
        Self {
            format,
            scheme,
            steps: steps.max(1),
            reservoir: Reservoir::default(),
        }
    }
}

impl Observer for MseSearch {
    fn observe(&mut self, x: &[f32]) {
        self.reservoir.add(x);
    }
    fn range(&self) -> (f32, f32) {
        let s = self.reservoir.samples();
        let Some((lo, hi)) = batch_min_max(s) else {
            return (0.0, 0.0);
        };
        let (lo, hi) = match self.scheme {
            Scheme::Symmetric { .. } => {
                let a = lo.abs().max(hi.abs());
                (-a, a)
            }
            Scheme::Asymmetric => (lo, hi),
        };
        let mut best = (f64::INFINITY, (lo, hi));
        for i in 1..=self.steps {
            let r = i as f32 / self.steps as f32;
            let (a, b) = (lo * r, hi * r);
            let Ok(p) = QParams::from_range(a, b, self.format, self.scheme) else {
                continue;
            };
            let mse: f64 = s
                .iter()
                .map(|&v| {
                    let d = (v - p.fake_quant(v)) as f64;
                    d * d
                })
                .sum();
            if mse < best.0 {
                best = (mse, (a, b));
            }
        }
        best.1
    }
    fn name(&self) -> String {
        format!("MSE search ({} steps)", self.steps)
    }
}

pub use crate::entropy::Entropy;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::int::INT8;

    #[test]
    fn minmax_and_moving_average() {
        let mut m = MinMax::default();
        m.observe(&[1.0, -2.0]);
        m.observe(&[3.0, f32::NAN]);
        assert_eq!(m.range(), (-2.0, 3.0));
        let mut e = MovingAverageMinMax::new(0.5);
        e.observe(&[0.0, 2.0]);
        e.observe(&[-2.0, 4.0]);
        assert_eq!(e.range(), (-1.0, 3.0));
    }

    #[test]
    fn percentile_ignores_rare_outliers() {
        let mut r = Rng::new(3);
        let mut x = r.normals(100_000);
        x[0] = 1000.0;
        let mut p = Percentile::new(99.9, true);
        p.observe(&x);
        let (lo, hi) = p.range();
        assert!(hi > 3.0 && hi < 3.6 && lo == -hi, "{lo} {hi}");
    }

    #[test]
    fn mse_search_clips_gaussian_at_4_bits_but_not_uniform_data() {
        // At 4 bits the MSE-optimal clip of a Gaussian is near 2.5σ (Banner et al., ACIQ),
        // well inside the ~4.3σ maximum of 50k samples; uniform data should not be clipped.
        let mut r = Rng::new(4);
        let gauss = r.normals(50_000);
        let amax = gauss.iter().fold(0f32, |a, v| a.max(v.abs()));
        let mut m = MseSearch::new(
            crate::int::INT4,
            Scheme::Symmetric { restricted: true },
            100,
        );
        m.observe(&gauss);
        let t = m.range().1;
        assert!(
            t > 2.0 && t < 3.2 && t < 0.8 * amax,
            "clip {t} of max {amax}"
        );
        let uniform: Vec<f32> = (0..50_000)
            .map(|_| r.uniform() as f32 * 2.0 - 1.0)
            .collect();
        let mut u = MseSearch::new(INT8, Scheme::Symmetric { restricted: true }, 100);
        u.observe(&uniform);
        assert!(u.range().1 > 0.97, "{:?}", u.range());
    }
}

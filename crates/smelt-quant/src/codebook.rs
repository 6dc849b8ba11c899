//! Non-uniform quantization with a learned codebook: 1-D k-means (k-means++ seeding, Lloyd
//! iterations) with `2^bits` centroids, per tensor or per row, optionally weighted (e.g. by an
//! importance such as a Hessian diagonal, as in SqueezeLLM).

use crate::rng::Rng;

/// A codebook and the code of every value.
#[derive(Debug, Clone, PartialEq)]
pub struct Codebook {
    /// Sorted centroids, `2^bits` of them (fewer when there are fewer distinct values).
    pub centroids: Vec<f32>,
    /// Index into `centroids` per value.
    pub codes: Vec<u8>,
}

impl Codebook {
    /// The reconstruction: each value replaced by its centroid.
    pub fn dequantize(&self) -> Vec<f32> {
        self.codes
            .iter()
            .map(|&c| self.centroids[c as usize])
            .collect()
    }
}

/// Settings of the k-means fit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KMeansConfig {
    /// Code width; `2^bits` centroids (1..=8).
    pub bits: u8,
    /// Lloyd iterations at most (stops early when assignments stop changing).
    pub iterations: usize,
    /// Seed of the k-means++ draws.
    pub seed: u64,
}

impl Default for KMeansConfig {
    fn default() -> Self {
        Self {
            bits: 4,
            iterations: 25,
            seed: 0,
        }
    }
}

/// Index of the nearest centroid (centroids sorted) by binary search on midpoints.
fn nearest(sorted: &[f32], v: f32) -> usize {
    let mut lo = 0;
    let mut hi = sorted.len() - 1;
    while lo < hi {
        let mid = (lo + hi) / 2;
        if v > 0.5 * (sorted[mid] + sorted[mid + 1]) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Fits a codebook to `x`; `weights` (same length, non-negative) scale each value's pull.
pub fn kmeans(x: &[f32], weights: Option<&[f32]>, cfg: KMeansConfig) -> Codebook {
    assert!((1..=8).contains(&cfg.bits), "codebook bits must be 1..=8");
    if let Some(w) = weights {
        assert_eq!(w.len(), x.len(), "one weight per value");
    }
    let w = |i: usize| weights.map_or(1.0, |w| w[i] as f64);
    if x.is_empty() {
        return Codebook {
            centroids: vec![0.0],
            codes: Vec::new(),
        };
    }
    let k = 1usize << cfg.bits;
    let mut rng = Rng::new(cfg.seed);
    // k-means++: first centroid by weight, then proportional to weight · D².
    let mut centroids = Vec::with_capacity(k);
    let total_w: f64 = (0..x.len()).map(w).sum();
    let pick = |rng: &mut Rng, score: &dyn Fn(usize) -> f64, total: f64| -> usize {
        let mut t = rng.uniform() * total;
        for i in 0..x.len() {
            t -= score(i);
            if t <= 0.0 {
                return i;
            }
        }
        x.len() - 1
    };
    centroids.push(x[pick(&mut rng, &w, total_w)]);
    let mut d2: Vec<f64> = x
        .iter()
        .map(|&v| ((v - centroids[0]) as f64).powi(2))
        .collect();
    while centroids.len() < k {
        let total: f64 = (0..x.len()).map(|i| w(i) * d2[i]).sum();
        if total <= 0.0 {
            break; // fewer distinct values than centroids
        }
        let c = x[pick(&mut rng, &|i| w(i) * d2[i], total)];
        centroids.push(c);
        for (d, &v) in d2.iter_mut().zip(x) {
            *d = d.min(((v - c) as f64).powi(2));
        }
    }
    centroids.sort_unstable_by(f32::total_cmp);
    centroids.dedup();
    let mut codes: Vec<u8> = x.iter().map(|&v| nearest(&centroids, v) as u8).collect();
    for _ in 0..cfg.iterations {
        let mut sum = vec![0f64; centroids.len()];
        let mut mass = vec![0f64; centroids.len()];
        for (i, &c) in codes.iter().enumerate() {
            sum[c as usize] += w(i) * x[i] as f64;
            mass[c as usize] += w(i);
        }
        for (j, c) in centroids.iter_mut().enumerate() {
            if mass[j] > 0.0 {
                *c = (sum[j] / mass[j]) as f32;
            }
        }
        centroids.sort_unstable_by(f32::total_cmp);
        let new: Vec<u8> = x.iter().map(|&v| nearest(&centroids, v) as u8).collect();
        let changed = new != codes;
        codes = new;
        if !changed {
            break;
        }
    }
    Codebook { centroids, codes }
}

/// One codebook per row of a `(rows, cols)` matrix.
pub fn kmeans_per_row(x: &[f32], cols: usize, cfg: KMeansConfig) -> Vec<Codebook> {
    x.chunks(cols.max(1))
        .map(|row| kmeans(row, None, cfg))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_obvious_clusters() {
        let mut r = Rng::new(5);
        let centers = [-3.0f32, -1.0, 1.0, 3.0];
        let x: Vec<f32> = (0..4000)
            .map(|i| centers[i % 4] + 0.05 * r.normal() as f32)
            .collect();
        let cb = kmeans(
            &x,
            None,
            KMeansConfig {
                bits: 2,
                iterations: 50,
                seed: 1,
            },
        );
        for (c, want) in cb.centroids.iter().zip(centers) {
            assert!((c - want).abs() < 0.02, "{:?}", cb.centroids);
        }
    }

    #[test]
    fn beats_uniform_grid_on_gaussian_data_and_weights_pull() {
        let mut r = Rng::new(6);
        let x = r.normals(20_000);
        let cb = kmeans(&x, None, KMeansConfig::default());
        let mse_km = crate::metrics::error_stats(&x, &cb.dequantize()).mse;
        let spec = crate::granularity::QuantSpec {
            format: crate::int::INT4,
            scheme: crate::int::Scheme::Asymmetric,
            granularity: crate::granularity::Granularity::PerTensor,
        };
        let uni = crate::granularity::fake_quant(&x, &[x.len()], spec).unwrap();
        let mse_uni = crate::metrics::error_stats(&x, &uni).mse;
        assert!(
            mse_km < 0.5 * mse_uni,
            "k-means {mse_km} vs uniform {mse_uni}"
        );
        // Heavy weight on one value forces a centroid onto it.
        let mut w = vec![1.0f32; x.len()];
        w[0] = 1e6;
        let cb = kmeans(&x, Some(&w), KMeansConfig::default());
        assert!((cb.dequantize()[0] - x[0]).abs() < 1e-3);
    }

    #[test]
    fn few_distinct_values_need_few_centroids() {
        let cb = kmeans(
            &[1.0, 1.0, 2.0],
            None,
            KMeansConfig {
                bits: 4,
                ..Default::default()
            },
        );
        assert_eq!(cb.dequantize(), vec![1.0, 1.0, 2.0]);
    }
}

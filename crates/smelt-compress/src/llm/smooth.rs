//! SmoothQuant (Xiao et al., "SmoothQuant: Accurate and Efficient Post-Training Quantization
//! for Large Language Models", arXiv:2211.10438), then W8A8 inference.
//!
//! Per-token int8 activations suffer from a few input channels whose values are far larger
//! than the rest in every token. SmoothQuant moves that difficulty into the weights: for each
//! input channel j of a linear group it picks `s_j = max|X_j|^α / max|W_:,j|^(1−α)` (α, the
//! migration strength, default 0.5), divides the activations by `s` — folded into the
//! preceding RMSNorm weight, so at no run-time cost — and multiplies the weight columns by `s`.
//! The float model is unchanged; the int8 one loses much less.
//!
//! Pairs, as the reference `smooth_lm` does for llama: attention norm → q, k, v and feed-forward
//! norm → gate, up. Optionally (`smooth_down`) also up → down, folded into up's rows (the SwiGLU
//! product is linear in up). Then every layer matrix becomes a W8A8 matrix (per-row int8
//! weights, per-token dynamic int8 activations; see `smelt_kernels::w8a8`). The output head
//! stays in float, as in the paper.
//!
//! Statistics come layer by layer ([`calibrate_sequential`]): each layer's channel maxima are
//! measured on what the already-converted layers before it produce.

use smelt_kernels::QMatrix;
use smelt_models::llama::{Linear, LinearInput, Llama};

use super::PtqError;
use super::sequential::{Capture, LayerStats, calibrate_sequential};

/// SmoothQuant settings.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SmoothConfig {
    /// Migration strength α in [0, 1]; `None` converts to W8A8 without smoothing.
    pub alpha: Option<f32>,
    /// Also smooth up → down (the feed-forward's inner activations).
    pub smooth_down: bool,
}

/// What smoothing did, for the log and the report.
#[derive(Debug, Clone, Default)]
pub struct SmoothReport {
    /// Per layer and input (attention, feed-forward, down): largest |x| channel max over the
    /// median channel max before smoothing.
    pub outlier_ratio_before: Vec<[f32; 3]>,
    /// The same after dividing by the smoothing factors.
    pub outlier_ratio_after: Vec<[f32; 3]>,
}

/// Largest over median of `v` (0 when empty or the median is 0).
fn max_over_median(v: &[f32]) -> f32 {
    let mut s = v.to_vec();
    s.sort_by(f32::total_cmp);
    match (s.get(s.len() / 2), s.last()) {
        (Some(&m), Some(&x)) if m > 0.0 => x / m,
        _ => 0.0,
    }
}

/// `s_j = x_max_j^α / w_max_j^(1−α)`, 1 where either maximum is 0, clamped to [1e-5, 1e5].
pub fn smoothing_factors(x_max: &[f32], w_max: &[f32], alpha: f32) -> Vec<f32> {
    x_max
        .iter()
        .zip(w_max)
        .map(|(&x, &w)| {
            if x <= 0.0 || w <= 0.0 {
                1.0
            } else {
                (x.powf(alpha) / w.powf(1.0 - alpha)).clamp(1e-5, 1e5)
            }
        })
        .collect()
}

/// (cols,) max |w[:, j]| over the rows of every matrix in `mats` (each (rows, cols)).
fn column_max(mats: &[&[f32]], cols: usize) -> Vec<f32> {
    let mut m = vec![0f32; cols];
    for w in mats {
        for row in w.chunks_exact(cols) {
            for (a, v) in m.iter_mut().zip(row) {
                *a = a.max(v.abs());
            }
        }
    }
    m
}

/// Smooths layer `l` with `stats` and `cfg` (when α is set) and turns its matrices into W8A8.
/// Returns (before, after) outlier ratios of the three smoothed inputs.
fn smooth_layer(
    model: &mut Llama,
    l: usize,
    stats: &LayerStats,
    cfg: &SmoothConfig,
) -> Result<([f32; 3], [f32; 3]), PtqError> {
    // (rows, cols) f32 weights of the seven matrices.
    let mut w: Vec<(Linear, Vec<f32>, usize, usize)> = Linear::ALL
        .iter()
        .map(|&k| {
            let m = model.linear(l, k);
            (k, m.to_f32(), m.rows, m.cols)
        })
        .collect();
    let idx = |k: Linear| Linear::ALL.iter().position(|&x| x == k).expect("listed");
    let mut before = [0f32; 3];
    let mut after = [0f32; 3];
    let groups: [(LinearInput, &[Linear]); 3] = [
        (LinearInput::Attn, &[Linear::Q, Linear::K, Linear::V]),
        (LinearInput::Ffn, &[Linear::Gate, Linear::Up]),
        (LinearInput::FfnDown, &[Linear::Down]),
    ];
    for (g, (at, mats)) in groups.into_iter().enumerate() {
        let x_max = &stats.inputs[&at].abs_max;
        before[g] = max_over_median(x_max);
        after[g] = before[g];
        let smooth = match cfg.alpha {
            Some(a) if at != LinearInput::FfnDown || cfg.smooth_down => a,
            _ => continue,
        };
        let cols = w[idx(mats[0])].3;
        let w_max = column_max(
            &mats
                .iter()
                .map(|&k| w[idx(k)].1.as_slice())
                .collect::<Vec<_>>(),
            cols,
        );
        let s = smoothing_factors(x_max, &w_max, smooth);
        for &k in mats {
            for row in w[idx(k)].1.chunks_exact_mut(cols) {
                row.iter_mut().zip(&s).for_each(|(v, f)| *v *= f);
            }
        }
        match at {
            LinearInput::Attn | LinearInput::Ffn => model
                .norm_mut(l, at == LinearInput::Attn)
                .iter_mut()
                .zip(&s)
                .for_each(|(v, f)| *v /= f),
            // Row j of up makes channel j of down's input.
            _ => {
                let up = &mut w[idx(Linear::Up)];
                for (row, f) in up.1.chunks_exact_mut(up.3).zip(&s) {
                    row.iter_mut().for_each(|v| *v /= f);
                }
            }
        }
        let smoothed: Vec<f32> = x_max.iter().zip(&s).map(|(x, f)| x / f).collect();
        after[g] = max_over_median(&smoothed);
    }
    for (k, m, rows, cols) in w {
        let q = QMatrix::w8a8_from_f32(rows, cols, &m).map_err(PtqError::Config)?;
        model.set_linear(l, k, q)?;
    }
    Ok((before, after))
}

/// Smooths (per `cfg`) and converts every layer matrix of `model` (F32, see
/// [`Llama::dequantize_to_f32`]) to W8A8, with channel maxima measured on `windows`.
/// `progress(layer)` after each layer.
pub fn smoothquant_llama(
    model: &mut Llama,
    cfg: &SmoothConfig,
    windows: &[Vec<u32>],
    mut progress: impl FnMut(usize),
) -> Result<SmoothReport, PtqError> {
    if let Some(a) = cfg.alpha
        && !(0.0..=1.0).contains(&a)
    {
        return Err(PtqError::Config(format!(
            "SmoothQuant alpha {a}: must be in [0, 1]"
        )));
    }
    model.dense_ffn_only()?;
    let mut report = SmoothReport::default();
    calibrate_sequential(
        model,
        windows,
        Capture::default(),
        |model, l, stats| -> Result<(), PtqError> {
            let (b, a) = smooth_layer(model, l, stats, cfg)?;
            tracing::debug!("SmoothQuant layer {l}: max/median channel max {b:?} -> {a:?}");
            report.outlier_ratio_before.push(b);
            report.outlier_ratio_after.push(a);
            Ok(())
        },
        &mut progress,
    )?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factors_balance_the_two_maxima() {
        let s = smoothing_factors(&[100.0, 1.0, 0.0, 4.0], &[1.0, 1.0, 2.0, 0.0], 0.5);
        assert_eq!(s, vec![10.0, 1.0, 1.0, 1.0]);
        // After smoothing, activation and weight maxima of a channel are equal at α = 0.5.
        let (x, w) = (64.0f32, 0.25f32);
        let s = smoothing_factors(&[x], &[w], 0.5)[0];
        assert!((x / s - w * s).abs() < 1e-5);
        assert_eq!(max_over_median(&[1.0, 2.0, 8.0]), 4.0);
        assert_eq!(max_over_median(&[]), 0.0);
    }
}

//! Layer-by-layer calibration, as GPTQ runs it: the calibration windows' hidden states enter
//! layer 0; for each layer, one pass records statistics of every linear input (the Hessian
//! `XᵀX`, per-channel |x| mean and max, a sample of rows), the caller quantizes the layer, and
//! a second pass through the *quantized* layer produces the next layer's inputs. So every
//! layer is calibrated on what the already-quantized layers before it really produce. With
//! [`Capture::float_inputs`] that second pass runs before quantization instead, as AutoAWQ
//! does: every layer then sees the float model's activations.

use std::collections::HashMap;

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par};
use smelt_models::llama::{Linear, LinearInput, Llama, ModelError, NoTap, Scratch, Tap};

/// What to record for each linear input.
#[derive(Debug, Clone, Copy, Default)]
pub struct Capture {
    /// Accumulate `XᵀX` (GPTQ).
    pub hessian: bool,
    /// Keep up to this many input rows (AWQ's search), taken evenly from every window,
    /// starting at position 0.
    pub sample_tokens: usize,
    /// Keep the hidden states entering the layer for this many whole windows (AWQ measures the
    /// q/k/v error through attention on them).
    pub keep_windows: usize,
    /// Feed the next layer the *float* layer's outputs (AutoAWQ's order: its inputs are the
    /// float model's) instead of the quantized layer's.
    pub float_inputs: bool,
}

/// Statistics of one linear input over all calibration tokens.
pub struct InputStats {
    /// Input width.
    pub cols: usize,
    /// Rows (tokens) seen.
    pub tokens: usize,
    /// (cols, cols) Σ xᵀx, if asked for.
    pub xtx: Option<Mat<f32>>,
    /// (cols,) Σ |x|.
    pub abs_sum: Vec<f64>,
    /// (cols,) max |x|.
    pub abs_max: Vec<f32>,
    /// (sample_rows, cols) sampled input rows.
    pub sample: Vec<f32>,
    /// (sample_rows,) how many of the window's tokens each sampled row stands for: 1 for
    /// position 0 (the attention sink, sampled in every window), the sampling step for the
    /// rest. Weighting a loss by it counts every token as often as the whole windows would.
    pub sample_weight: Vec<f32>,
}

impl InputStats {
    fn new(cols: usize, hessian: bool) -> Self {
        Self {
            cols,
            tokens: 0,
            xtx: hessian.then(|| Mat::zeros(cols, cols)),
            abs_sum: vec![0.0; cols],
            abs_max: vec![0.0; cols],
            sample: Vec::new(),
            sample_weight: Vec::new(),
        }
    }

    /// GPTQ's Hessian `H = 2/N · XᵀX` in f64.
    pub fn hessian(&self) -> Option<Mat<f64>> {
        let x = self.xtx.as_ref()?;
        let f = 2.0 / self.tokens.max(1) as f64;
        Some(Mat::from_fn(self.cols, self.cols, |i, j| {
            x[(i, j)] as f64 * f
        }))
    }

    /// (cols,) mean |x| per input channel.
    pub fn abs_mean(&self) -> Vec<f32> {
        let n = self.tokens.max(1) as f64;
        self.abs_sum.iter().map(|&s| (s / n) as f32).collect()
    }

    /// Rows held in `sample`.
    pub fn sample_rows(&self) -> usize {
        self.sample.len() / self.cols.max(1)
    }
}

/// The statistics of one layer's four linear inputs.
pub struct LayerStats {
    /// Per input.
    pub inputs: HashMap<LinearInput, InputStats>,
    /// Per kept window ([`Capture::keep_windows`]), the (len, n_embd) hidden states entering the
    /// layer.
    pub windows: Vec<Vec<f32>>,
}

impl LayerStats {
    /// GPTQ's Hessian of each input (captured with [`Capture::hessian`]).
    pub fn hessians(&self) -> HashMap<LinearInput, Mat<f64>> {
        LinearInput::ALL
            .iter()
            .map(|&at| {
                let h = self.inputs[&at].hessian();
                (at, h.expect("captured with Capture::hessian"))
            })
            .collect()
    }

    /// The statistics of the input `which` reads.
    pub fn of(&self, which: Linear) -> &InputStats {
        &self.inputs[&which.input()]
    }
}

struct StatsTap {
    capture: Capture,
    /// Rows to sample from each window.
    per_window: usize,
    stats: HashMap<LinearInput, InputStats>,
}

impl Tap for StatsTap {
    fn input(&mut self, _layer: usize, at: LinearInput, x: &[f32], n: usize) {
        let cols = x.len() / n.max(1);
        let s = self
            .stats
            .entry(at)
            .or_insert_with(|| InputStats::new(cols, self.capture.hessian));
        s.tokens += n;
        for row in x.chunks_exact(cols) {
            for ((sum, max), &v) in s.abs_sum.iter_mut().zip(&mut s.abs_max).zip(row) {
                *sum += v.abs() as f64;
                *max = max.max(v.abs());
            }
        }
        if let Some(h) = &mut s.xtx {
            let xm = MatRef::from_row_major_slice(x, n, cols);
            matmul(
                h.as_mut(),
                Accum::Add,
                xm.transpose(),
                xm,
                1.0f32,
                Par::rayon(0),
            );
        }
        if let Some(step) = n.checked_div(self.per_window) {
            // Rows 0, step, 2·step, ...: position 0 (the attention-sink token, with activations
            // orders of magnitude larger) is in every window's sample. That over-weights it
            // (1 in `per_window` rows instead of 1 in `n`), but on purpose: every later token
            // attends to it, and AWQ's clipping search without those rows clips the weights it
            // needs. Starting half a step in was measured worse: SmolLM2 AWQ 4-bit g128
            // perplexity 56.62 against 40.19 (RTN 43.01; 32 × 512 calibration, 20 windows).
            let step = step.max(1);
            for (k, row) in x
                .chunks_exact(cols)
                .step_by(step)
                .take(self.per_window)
                .enumerate()
            {
                s.sample.extend_from_slice(row);
                s.sample_weight.push(if k == 0 { 1.0 } else { step as f32 });
            }
        }
    }
}

/// Runs the calibration `windows` through `model` layer by layer. After layer `l`'s
/// statistics are recorded, `quantize_layer(model, l, stats)` may replace its weights (and
/// norms); the next layer then sees the quantized layer's outputs. `progress(l)` is called
/// after each layer.
pub fn calibrate_sequential<E>(
    model: &mut Llama,
    windows: &[Vec<u32>],
    capture: Capture,
    mut quantize_layer: impl FnMut(&mut Llama, usize, &LayerStats) -> Result<(), E>,
    mut progress: impl FnMut(usize),
) -> Result<(), E>
where
    E: From<ModelError>,
{
    let len = windows.iter().map(Vec::len).max().unwrap_or(0);
    if len == 0 {
        return Err(ModelError::Unsupported("no calibration tokens".into()).into());
    }
    // The layers run outside `forward`, which checks the cache's room; a window longer than
    // the context would index past the cache's last block.
    if len > model.config.n_ctx {
        return Err(ModelError::Unsupported(format!(
            "calibration windows of {len} tokens do not fit the model's context of {}",
            model.config.n_ctx
        ))
        .into());
    }
    // Per window, the (len, n_embd) hidden states entering the current layer.
    let mut xs = windows
        .iter()
        .map(|w| model.embed(w))
        .collect::<Result<Vec<_>, _>>()?;
    let mut cache = model.new_cache(len);
    let mut scratch = Scratch::default();
    let per_window = capture.sample_tokens.div_ceil(windows.len().max(1));
    for l in 0..model.config.n_layer {
        let mut tap = StatsTap {
            capture,
            per_window,
            stats: HashMap::new(),
        };
        // (len, n_embd) a copy to run through: only the statistics are kept.
        let mut tmp = Vec::new();
        for x in &xs {
            tmp.clear();
            tmp.extend_from_slice(x);
            cache.clear();
            model.run_layer(l, &mut tmp, 0, &mut cache, &mut scratch, &mut tap);
        }
        let stats = LayerStats {
            inputs: tap.stats,
            windows: xs.iter().take(capture.keep_windows).cloned().collect(),
        };
        let mut advance = |model: &Llama, xs: &mut Vec<Vec<f32>>| {
            for x in xs.iter_mut() {
                cache.clear();
                model.run_layer(l, x, 0, &mut cache, &mut scratch, &mut NoTap);
            }
        };
        if capture.float_inputs {
            advance(model, &mut xs);
        }
        quantize_layer(model, l, &stats)?;
        if !capture.float_inputs {
            advance(model, &mut xs);
        }
        progress(l);
    }
    Ok(())
}

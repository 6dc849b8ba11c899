//! AWQ (Lin et al., "AWQ: Activation-aware Weight Quantization for LLM Compression and
//! Acceleration", arXiv:2306.00978), following AutoAWQ's llama recipe. Input channels that carry
//! large activations matter most, so before rounding each weight column is scaled up by
//! `s = mean|x|^α` (and the previous operation scaled down by the same factor, which leaves the
//! float model unchanged). α is picked from a grid of 20 points in [0, 1) by the output error of
//! the block on calibration rows (each sampled row weighted by the tokens it stands for, so the
//! attention-sink row every window contributes counts once per window, as in AutoAWQ's loss
//! over all tokens); then each (row, group) range is shrunk by the clipping ratios that
//! minimize that group's share of the output error (the two ends of an asymmetric range
//! independently); then
//! everything is rounded (RTN) on the same grid as GPTQ.
//!
//! Scaled pairs, as AutoAWQ does for llama: attention norm → q, k, v (error measured on the
//! attention output over a few whole calibration windows); feed-forward norm → gate, up (error on
//! the whole SwiGLU or GeGLU feed-forward output); v → o; up → down. AutoAWQ scales v → o only
//! when v and o have the same shape (no grouped-query attention); here the o columns that one v
//! row feeds (the same dimension of every query head in its group) share one scale, which folds
//! into that v row. q and k are not clipped.

use std::collections::HashMap;

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use smelt_kernels::QMatrix;
use smelt_models::llama::{Linear, LinearInput, Llama, Scratch, Tap};

use super::grid::{GroupParams, QuantizedLinear, WeightGrid, rtn};
use super::sequential::LayerStats;

/// AWQ settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AwqConfig {
    /// The grid.
    pub grid: WeightGrid,
    /// α grid points in [0, 1) (default 20).
    pub n_grid: usize,
    /// Clipping ratios searched: `1 − i/n_grid` for `i < max_shrink · n_grid` (default 0.5:
    /// 1 down to 0.55; 0 disables clipping).
    pub max_shrink: f32,
    /// Calibration rows the clipping search uses, evenly spaced over the sample (default 2048:
    /// every row `--awq-tokens` keeps by default; AutoAWQ uses 512, but with the error taken
    /// from `XᵀX` more rows cost little).
    pub clip_tokens: usize,
    /// Also search AutoAWQ's "duo" scales `mean|x|^α / mean|ŵ|^(1−α)` (ŵ: weights relative to
    /// their group's max) and keep whichever form gives the lower error.
    pub duo: bool,
    /// Whole calibration windows on which the q/k/v scales are judged by the attention output
    /// (rope, causal grouped-query attention), as AutoAWQ inspects `self_attn`; 0 judges them
    /// on the three projections' outputs over the sampled rows instead.
    pub attn_windows: usize,
}

impl AwqConfig {
    /// AutoAWQ's defaults for `grid`.
    pub fn new(grid: WeightGrid) -> Self {
        Self {
            grid,
            n_grid: 20,
            max_shrink: 0.5,
            clip_tokens: 2048,
            duo: true,
            attn_windows: 4,
        }
    }
}

/// `out (n, rows) = x (n, cols) · wᵀ`, `w` (rows, cols) row-major.
fn xwt(x: &[f32], n: usize, w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; n * rows];
    matmul(
        MatMut::from_row_major_slice_mut(&mut out, n, rows),
        Accum::Replace,
        MatRef::from_row_major_slice(x, n, cols),
        MatRef::from_row_major_slice(w, rows, cols).transpose(),
        1.0f32,
        Par::rayon(0),
    );
    out
}

fn sq_err(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum()
}

/// Σ over rows of `weight[row] · |a_row − b_row|²`, for (rows, width) `a` and `b`.
fn weighted_sq_err(a: &[f32], b: &[f32], weight: &[f32]) -> f64 {
    let width = a.len() / weight.len().max(1);
    a.chunks_exact(width.max(1))
        .zip(b.chunks_exact(width.max(1)))
        .zip(weight)
        .map(|((x, y), &w)| w as f64 * sq_err(x, y))
        .sum()
}

fn scale_cols(w: &mut [f32], cols: usize, s: &[f32]) {
    for row in w.chunks_exact_mut(cols) {
        row.iter_mut().zip(s).for_each(|(v, f)| *v *= f);
    }
}

/// Divides row `r` of (rows, cols) `w` by `s[r]`: the other side of a pair whose next matrix's
/// columns were multiplied by `s`.
fn divide_rows(w: &mut [f32], cols: usize, s: &[f32]) {
    for (row, f) in w.chunks_exact_mut(cols).zip(s) {
        row.iter_mut().for_each(|v| *v /= f);
    }
}

/// `w · diag(s)` rounded on the grid, then `· diag(1/s)`: what the scaled, quantized
/// matrix computes on the unscaled input.
fn fake_quant_scaled(
    w: &[f32],
    rows: usize,
    cols: usize,
    s: &[f32],
    grid: &WeightGrid,
) -> Vec<f32> {
    let mut ws = w.to_vec();
    scale_cols(&mut ws, cols, s);
    let mut q = rtn(&ws, rows, cols, grid).dequantize();
    let inv: Vec<f32> = s.iter().map(|v| 1.0 / v).collect();
    scale_cols(&mut q, cols, &inv);
    q
}

/// Scales `x_mean^α` (or `x_mean^α / w_mean^(1−α)` with `w_mean`), normalized so
/// max·min = 1, floored at 1e-4.
fn scales_for(x_mean: &[f32], w_mean: Option<&[f32]>, alpha: f32) -> Vec<f32> {
    let mut s: Vec<f32> = x_mean
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let xs = m.max(1e-4).powf(alpha);
            let v = match w_mean {
                Some(w) => xs / (w[i].powf(1.0 - alpha) + 1e-4),
                None => xs,
            };
            v.max(1e-4)
        })
        .collect();
    let (lo, hi) = s
        .iter()
        .fold((f32::INFINITY, 0f32), |(a, b), &v| (a.min(v), b.max(v)));
    let norm = (lo * hi).sqrt();
    s.iter_mut().for_each(|v| *v /= norm);
    s
}

/// (cols,) mean over the rows of `mats` of |w| relative to its group's max |w| (AutoAWQ's
/// `w_mean`).
fn weight_mean(mats: &[(&[f32], usize, usize)], grid: &WeightGrid) -> Vec<f32> {
    let cols = mats[0].2;
    let gc = grid.group_cols(cols);
    let mut sum = vec![0f64; cols];
    let mut n = 0usize;
    for &(w, rows, _) in mats {
        for row in w.chunks_exact(cols).take(rows) {
            for (g0, grp) in row.chunks(gc).enumerate() {
                let m = grp.iter().fold(0f32, |a, v| a.max(v.abs())) + 1e-6;
                for (j, v) in grp.iter().enumerate() {
                    sum[g0 * gc + j] += (v.abs() / m) as f64;
                }
            }
        }
        n += rows;
    }
    sum.iter().map(|s| (s / n.max(1) as f64) as f32).collect()
}

/// Picks the scales (α on the grid, plain or duo form) that minimize `loss(scales)`; returns
/// (scales, α, loss).
fn search(
    x_mean: &[f32],
    w_mean: Option<&[f32]>,
    n_grid: usize,
    mut loss: impl FnMut(&[f32]) -> f64,
) -> (Vec<f32>, f32, f64) {
    let mut best = (vec![1.0; x_mean.len()], 0.0, f64::INFINITY);
    for form in [None, w_mean]
        .into_iter()
        .take(if w_mean.is_some() { 2 } else { 1 })
    {
        for i in 0..n_grid.max(1) {
            let alpha = i as f32 / n_grid.max(1) as f32;
            let s = scales_for(x_mean, form, alpha);
            let l = loss(&s);
            if l < best.2 {
                best = (s, alpha, l);
            }
        }
    }
    best
}

/// The feed-forward's gated activation, `gate ← act(gate) · up`: SiLU, or GELU for Gemma
/// (its GeGLU), so the search's error is the model's.
fn glu(gelu: bool, gate: &mut [f32], up: &[f32]) {
    if gelu {
        smelt_kernels::gelu::gelu_mul(gate, up);
        return;
    }
    for (g, u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

/// Per (row, group), the clipping range that minimizes the group's partial output error on `x`
/// (n, cols); returns `w` clamped to those ranges. A symmetric grid clamps to `±r·max|w|` for
/// `r = 1 − i/n_grid` as AutoAWQ does. An asymmetric grid shrinks its two ends by independent
/// ratios, to `[r_lo·min w, r_hi·max w]` over the same steps (AutoAWQ clamps to `±r·max|w|`
/// there too, which leaves the shorter side unclipped until `r` reaches it): a group whose
/// outliers sit on one side clips that side alone.
///
/// The error of a trial `q` for one row is `(q − w)ᵀ H (q − w)` with the group's
/// `H = X_gᵀ X_g` (width, width), the same number as `|X_g qᵀ − X_g wᵀ|²` at a fraction of the
/// cost, so every pair of ratios can be tried.
fn clip(w: &[f32], rows: usize, cols: usize, x: &[f32], n: usize, cfg: &AwqConfig) -> Vec<f32> {
    let grid = &cfg.grid;
    let gc = grid.group_cols(cols);
    let steps = (cfg.max_shrink * cfg.n_grid as f32) as usize;
    let mut out = w.to_vec();
    if steps == 0 || n == 0 {
        return out;
    }
    let ratio = |i: usize| 1.0 - i as f32 / cfg.n_grid as f32;
    // (lo step, hi step) pairs to try: the diagonal for a symmetric grid, all pairs otherwise.
    let pairs: Vec<(usize, usize)> = if grid.sym {
        (0..steps).map(|i| (i, i)).collect()
    } else {
        (0..steps)
            .flat_map(|i| (0..steps).map(move |j| (i, j)))
            .collect()
    };
    // Groups are independent: work group by group with (n, g) input slices.
    for g0 in (0..cols).step_by(gc) {
        let g1 = (g0 + gc).min(cols);
        let width = g1 - g0;
        // (n, width) inputs of this group.
        let xg: Vec<f32> = (0..n)
            .flat_map(|t| x[t * cols + g0..t * cols + g1].iter().copied())
            .collect();
        // (width, width) H = X_gᵀ X_g.
        let h = xwt_t(&xg, n, width);
        // (rows, width) weights of this group.
        let wg: Vec<f32> = (0..rows)
            .flat_map(|r| w[r * cols + g0..r * cols + g1].iter().copied())
            .collect();
        // Per row, the (lo, hi) range that ratio 1 keeps.
        let range: Vec<(f32, f32)> = wg
            .chunks_exact(width)
            .map(|r| GroupParams::range(r, grid))
            .collect();
        // Per row: (best error, lo ratio, hi ratio).
        let mut best: Vec<(f64, f32, f32)> = vec![(f64::INFINITY, 1.0, 1.0); rows];
        // (rows, width) trial error q − w.
        let mut diff = vec![0f32; rows * width];
        let mut clamped = vec![0f32; width];
        for &(i, j) in &pairs {
            let (rl, rh) = (ratio(i), ratio(j));
            for r in 0..rows {
                let (lo, hi) = (range[r].0 * rl, range[r].1 * rh);
                let row = &wg[r * width..(r + 1) * width];
                for (c, v) in clamped.iter_mut().zip(row) {
                    *c = v.clamp(lo, hi);
                }
                let p = GroupParams::fit(&clamped, grid);
                for ((d, c), v) in diff[r * width..(r + 1) * width]
                    .iter_mut()
                    .zip(&clamped)
                    .zip(row)
                {
                    *d = p.round(*c) - v;
                }
            }
            // (rows, width) D·H; row r's error is Σ (D·H)[r] ∘ D[r].
            let dh = xwt(&diff, rows, &h, width, width);
            for (r, b) in best.iter_mut().enumerate() {
                let e: f64 = dh[r * width..(r + 1) * width]
                    .iter()
                    .zip(&diff[r * width..(r + 1) * width])
                    .map(|(a, d)| *a as f64 * *d as f64)
                    .sum();
                if e < b.0 {
                    *b = (e, rl, rh);
                }
            }
        }
        for (r, &(_, rl, rh)) in best.iter().enumerate() {
            let (lo, hi) = (range[r].0 * rl, range[r].1 * rh);
            for v in &mut out[r * cols + g0..r * cols + g1] {
                *v = v.clamp(lo, hi);
            }
        }
    }
    out
}

/// `(width, width) = xᵀ x` for (n, width) row-major `x`.
fn xwt_t(x: &[f32], n: usize, width: usize) -> Vec<f32> {
    let mut out = vec![0f32; width * width];
    matmul(
        MatMut::from_row_major_slice_mut(&mut out, width, width),
        Accum::Replace,
        MatRef::from_row_major_slice(x, n, width).transpose(),
        MatRef::from_row_major_slice(x, n, width),
        1.0f32,
        Par::rayon(0),
    );
    out
}

/// Folds scales `s` into a pair: layer `l`'s norm (attention or feed-forward) is divided by
/// them and `mats`' input columns multiplied, which leaves the float model unchanged. Returns
/// the sampled inputs `x` as the scaled matrices now see them (divided by `s`).
fn fold_into_norm(
    model: &mut Llama,
    l: usize,
    attn: bool,
    s: &[f32],
    w: &mut HashMap<Linear, (Vec<f32>, usize, usize)>,
    mats: &[Linear],
    x: &[f32],
) -> Vec<f32> {
    model
        .norm_mut(l, attn)
        .iter_mut()
        .zip(s)
        .for_each(|(v, f)| *v /= f);
    for k in mats {
        let (m, _, c) = w.get_mut(k).expect("all seven");
        scale_cols(m, *c, s);
    }
    divide_cols(x, s)
}

/// `x`'s rows divided elementwise by `s`.
fn divide_cols(x: &[f32], s: &[f32]) -> Vec<f32> {
    x.chunks_exact(s.len())
        .flat_map(|row| row.iter().zip(s).map(|(v, f)| v / f))
        .collect()
}

/// Collects the attention outputs (o's input) a layer run shows.
struct AttnOutTap(Vec<f32>);

impl Tap for AttnOutTap {
    fn input(&mut self, _layer: usize, at: LinearInput, x: &[f32], _n: usize) {
        if at == LinearInput::AttnOut {
            self.0.extend_from_slice(x);
        }
    }
}

/// Layer `l`'s attention outputs on each of `windows` ((len, n_embd) hidden states entering it),
/// concatenated.
fn attention_outputs(model: &Llama, l: usize, windows: &[Vec<f32>]) -> Vec<f32> {
    let e = model.config.n_embd;
    let len = windows.iter().map(|w| w.len() / e).max().unwrap_or(0);
    let mut cache = model.new_cache(len.max(1));
    let mut scratch = Scratch::default();
    let mut tap = AttnOutTap(Vec::new());
    for x in windows {
        let mut tmp = x.clone();
        cache.clear();
        model.run_layer(l, &mut tmp, 0, &mut cache, &mut scratch, &mut tap);
    }
    tap.0
}

/// Puts (rows, cols) f32 `w` into the model as layer `l`'s `which`.
fn put(model: &mut Llama, l: usize, which: Linear, w: &[f32], rows: usize, cols: usize) {
    let mut m = QMatrix::from_f32(rows, cols, w).expect("shape of the model's own matrix");
    m.set_float_gemm(true);
    model
        .set_linear(l, which, m)
        .expect("shape of the model's own matrix");
}

/// What AWQ did to one layer, for the log.
#[derive(Debug, Clone, Copy, Default)]
pub struct AwqLayerReport {
    /// α chosen for q/k/v, gate/up, down and o.
    pub alpha: [f32; 4],
    /// Output error at that α relative to α = 0 (plain RTN), per pair.
    pub gain: [f64; 4],
}

/// Applies AWQ to layer `l` of `model` (F32 matrices), given its calibration statistics (with
/// sampled rows); leaves the scaled, clipped, rounded weights in the model and returns their codes.
pub fn awq_layer(
    model: &mut Llama,
    l: usize,
    stats: &LayerStats,
    cfg: &AwqConfig,
) -> Result<(HashMap<Linear, QuantizedLinear>, AwqLayerReport), String> {
    model.dense_ffn_only().map_err(|e| e.to_string())?;
    let grid = cfg.grid;
    let mut w: HashMap<Linear, (Vec<f32>, usize, usize)> = Linear::ALL
        .iter()
        .map(|&k| {
            let m = model.linear(l, k);
            (k, (m.to_f32(), m.rows, m.cols))
        })
        .collect();
    let mut report = AwqLayerReport::default();
    let input = |at: LinearInput| {
        let s = &stats.inputs[&at];
        (s.sample.clone(), s.sample_rows(), s.cols, s.abs_mean())
    };
    let row_weight = |at: LinearInput| stats.inputs[&at].sample_weight.as_slice();

    // 1. attention norm → q, k, v; error on the attention output over whole windows (or, without
    //    kept windows, on the projections' outputs over the sampled rows).
    let (x, n, e, x_mean) = input(LinearInput::Attn);
    let qkv = [Linear::Q, Linear::K, Linear::V];
    let windows = &stats.windows[..stats.windows.len().min(cfg.attn_windows)];
    let refs: Vec<Vec<f32>> = if windows.is_empty() {
        qkv.iter()
            .map(|k| {
                let (m, r, c) = &w[k];
                xwt(&x, n, m, *r, *c)
            })
            .collect()
    } else {
        vec![attention_outputs(model, l, windows)]
    };
    let mut loss = |s: &[f32]| -> f64 {
        if windows.is_empty() {
            return qkv
                .iter()
                .zip(&refs)
                .map(|(k, want)| {
                    let (m, r, c) = &w[k];
                    weighted_sq_err(
                        &xwt(&x, n, &fake_quant_scaled(m, *r, *c, s, &grid), *r, *c),
                        want,
                        row_weight(LinearInput::Attn),
                    )
                })
                .sum();
        }
        for k in qkv {
            let (m, r, c) = &w[&k];
            put(model, l, k, &fake_quant_scaled(m, *r, *c, s, &grid), *r, *c);
        }
        sq_err(&attention_outputs(model, l, windows), &refs[0])
    };
    let base = loss(&vec![1.0; e]);
    let wm = cfg.duo.then(|| {
        weight_mean(
            &qkv.iter()
                .map(|k| {
                    let (m, r, c) = &w[k];
                    (m.as_slice(), *r, *c)
                })
                .collect::<Vec<_>>(),
            &grid,
        )
    });
    let (s, alpha, best) = search(&x_mean, wm.as_deref(), cfg.n_grid, &mut loss);
    report.alpha[0] = alpha;
    report.gain[0] = best / base.max(f64::MIN_POSITIVE);
    // The search left trial matrices in the model: put the float ones back.
    for k in qkv {
        let (m, r, c) = &w[&k];
        put(model, l, k, m, *r, *c);
    }
    let attn_x = fold_into_norm(model, l, true, &s, &mut w, &qkv, &x);

    // 1b. v → o, error on o's output. With grouped-query attention one v row feeds the same
    //     dimension of every query head in its group, so those o columns share one scale.
    let (o_x, report_vo) = scale_v_into_o(model, l, stats, cfg, &mut w);
    report.alpha[3] = report_vo.0;
    report.gain[3] = report_vo.1;

    // 2. feed-forward norm → gate, up; error on the feed-forward output.
    let (x, n, e, x_mean) = input(LinearInput::Ffn);
    let ff = w[&Linear::Gate].1;
    let (down, _, _) = &w[&Linear::Down];
    let gelu = model.config.arch.is_gemma();
    let mlp = |g: &[f32], u: &[f32], xs: &[f32]| {
        let mut h = xwt(xs, n, g, ff, e);
        glu(gelu, &mut h, &xwt(xs, n, u, ff, e));
        xwt(&h, n, down, e, ff)
    };
    let want = mlp(&w[&Linear::Gate].0, &w[&Linear::Up].0, &x);
    let loss = |s: &[f32]| -> f64 {
        let g = fake_quant_scaled(&w[&Linear::Gate].0, ff, e, s, &grid);
        let u = fake_quant_scaled(&w[&Linear::Up].0, ff, e, s, &grid);
        weighted_sq_err(&mlp(&g, &u, &x), &want, row_weight(LinearInput::Ffn))
    };
    let base = loss(&vec![1.0; e]);
    let wm = cfg.duo.then(|| {
        let (g, u) = (&w[&Linear::Gate], &w[&Linear::Up]);
        weight_mean(
            &[(g.0.as_slice(), g.1, g.2), (u.0.as_slice(), u.1, u.2)],
            &grid,
        )
    });
    let (s, alpha, best) = search(&x_mean, wm.as_deref(), cfg.n_grid, loss);
    report.alpha[1] = alpha;
    report.gain[1] = best / base.max(f64::MIN_POSITIVE);
    let ffn_x = fold_into_norm(model, l, false, &s, &mut w, &[Linear::Gate, Linear::Up], &x);

    // 3. up → down; error on down's output.
    let (x, n, _, x_mean) = input(LinearInput::FfnDown);
    let (dm, dr, dc) = &w[&Linear::Down];
    let want = xwt(&x, n, dm, *dr, *dc);
    let loss = |s: &[f32]| {
        weighted_sq_err(
            &xwt(&x, n, &fake_quant_scaled(dm, *dr, *dc, s, &grid), *dr, *dc),
            &want,
            row_weight(LinearInput::FfnDown),
        )
    };
    let base = loss(&vec![1.0; ff]);
    let wm = cfg
        .duo
        .then(|| weight_mean(&[(dm.as_slice(), *dr, *dc)], &grid));
    let (s, alpha, best) = search(&x_mean, wm.as_deref(), cfg.n_grid, loss);
    report.alpha[2] = alpha;
    report.gain[2] = best / base.max(f64::MIN_POSITIVE);
    {
        let (m, _, c) = w.get_mut(&Linear::Down).expect("all seven");
        scale_cols(m, *c, &s);
        let (u, _, uc) = w.get_mut(&Linear::Up).expect("all seven");
        divide_rows(u, *uc, &s);
    }
    let down_x = divide_cols(&x, &s);

    // 4. clipping (not q, k), on the scaled weights and inputs; 5. rounding.
    let att_out = &o_x;
    let mut out = HashMap::new();
    for k in Linear::ALL {
        let (m, r, c) = &w[&k];
        let x = match k.input() {
            LinearInput::Attn => &attn_x,
            LinearInput::AttnOut => att_out,
            LinearInput::Ffn => &ffn_x,
            LinearInput::FfnDown => &down_x,
        };
        let n = x.len() / c;
        let take = n.min(cfg.clip_tokens);
        // Evenly spaced rows of the sample for the clipping search.
        let step = (n / take.max(1)).max(1);
        let xs: Vec<f32> = x
            .chunks_exact(*c)
            .step_by(step)
            .take(take)
            .flatten()
            .copied()
            .collect();
        let clipped = if matches!(k, Linear::Q | Linear::K) {
            m.clone()
        } else {
            clip(m, *r, *c, &xs, xs.len() / c, cfg)
        };
        out.insert(k, rtn(&clipped, *r, *c, &grid));
    }
    Ok((out, report))
}

/// (n_head·hd,) o-column scales from (n_kv·hd,) v-row scales: query head `h` reads KV head
/// `h / (n_head / n_kv)`.
fn expand_heads(s_v: &[f32], n_head: usize, n_kv: usize, hd: usize) -> Vec<f32> {
    let group = n_head / n_kv;
    (0..n_head * hd)
        .map(|c| s_v[(c / hd / group) * hd + c % hd])
        .collect()
}

/// (n_kv·hd,) per v row, the mean of `per_col` (n_head·hd,) over the o columns it feeds.
fn share_heads(per_col: &[f32], n_head: usize, n_kv: usize, hd: usize) -> Vec<f32> {
    let group = n_head / n_kv;
    let mut out = vec![0f32; n_kv * hd];
    for (c, v) in per_col.iter().enumerate() {
        out[(c / hd / group) * hd + c % hd] += v / group as f32;
    }
    out
}

/// The v → o pair: searches head-shared scales for o's input columns by o's output error on the
/// sampled attention outputs, multiplies o's columns by them and divides v's rows and v's bias
/// (Qwen 2; attention weights sum to one, so the attention output is divided exactly). Returns
/// the sample as the scaled o sees it, and (α, error gain) for the report.
fn scale_v_into_o(
    model: &mut Llama,
    l: usize,
    stats: &LayerStats,
    cfg: &AwqConfig,
    w: &mut HashMap<Linear, (Vec<f32>, usize, usize)>,
) -> (Vec<f32>, (f32, f64)) {
    let c = &model.config;
    let (n_head, n_kv, hd) = (c.n_head, c.n_head_kv, c.head_dim());
    let st = &stats.inputs[&LinearInput::AttnOut];
    let (x, n) = (&st.sample, st.sample_rows());
    let (om, orows, ocols) = &w[&Linear::O];
    if *ocols != n_head * hd || w[&Linear::V].1 != n_kv * hd || n_kv == 0 || n_head % n_kv != 0 {
        return (x.clone(), (0.0, 1.0));
    }
    let want = xwt(x, n, om, *orows, *ocols);
    let loss = |s_v: &[f32]| {
        let s = expand_heads(s_v, n_head, n_kv, hd);
        weighted_sq_err(
            &xwt(
                x,
                n,
                &fake_quant_scaled(om, *orows, *ocols, &s, &cfg.grid),
                *orows,
                *ocols,
            ),
            &want,
            &st.sample_weight,
        )
    };
    let base = loss(&vec![1.0; n_kv * hd]);
    let x_mean = share_heads(&st.abs_mean(), n_head, n_kv, hd);
    let wm = cfg.duo.then(|| {
        let per_col = weight_mean(&[(om.as_slice(), *orows, *ocols)], &cfg.grid);
        share_heads(&per_col, n_head, n_kv, hd)
    });
    let (s_v, alpha, best) = search(&x_mean, wm.as_deref(), cfg.n_grid, loss);
    let s = expand_heads(&s_v, n_head, n_kv, hd);
    {
        let (m, _, oc) = w.get_mut(&Linear::O).expect("all seven");
        scale_cols(m, *oc, &s);
        let (v, _, vc) = w.get_mut(&Linear::V).expect("all seven");
        divide_rows(v, *vc, &s_v);
        if let Some(b) = model.bias_mut(l, Linear::V) {
            b.iter_mut().zip(&s_v).for_each(|(b, s)| *b /= s);
        }
    }
    (
        divide_cols(x, &s),
        (alpha, best / base.max(f64::MIN_POSITIVE)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn o_columns_share_their_v_row_scale() {
        // 6 query heads on 2 KV heads of width 4: heads 0..3 read KV head 0, 3..6 KV head 1.
        let (n_head, n_kv, hd) = (6, 2, 4);
        let s_v: Vec<f32> = (0..n_kv * hd).map(|i| 1.0 + i as f32).collect();
        let s = expand_heads(&s_v, n_head, n_kv, hd);
        for h in 0..n_head {
            for d in 0..hd {
                assert_eq!(s[h * hd + d], s_v[(h / 3) * hd + d], "head {h} dim {d}");
            }
        }
        // Sharing the expanded scales gives them back; per-column values average per v row.
        assert_eq!(share_heads(&s, n_head, n_kv, hd), s_v);
        let cols: Vec<f32> = (0..n_head * hd).map(|c| (c / hd) as f32).collect();
        let shared = share_heads(&cols, n_head, n_kv, hd);
        assert!(shared[..hd].iter().all(|&v| v == 1.0) && shared[hd..].iter().all(|&v| v == 4.0));
    }

    #[test]
    fn weighted_error_counts_each_row_by_its_weight() {
        let a = [1.0, 1.0, 0.0, 0.0, 3.0, 0.0];
        let b = [0.0; 6];
        assert_eq!(weighted_sq_err(&a, &b, &[1.0, 5.0, 2.0]), 2.0 + 0.0 + 18.0);
    }
}

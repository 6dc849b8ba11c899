//! GPTQ (Frantar et al., "GPTQ: Accurate Post-Training Quantization for Generative
//! Pre-trained Transformers", arXiv:2210.17323), following the reference `fasterquant`:
//! quantize one input column at a time and spread its rounding error over the columns not yet
//! quantized, weighted by the inverse Hessian `H⁻¹` of the layer's inputs (`H = 2XᵀX`).
//! The inverse enters through its upper Cholesky factor; updates inside a block of 128
//! columns are applied eagerly and to the rest of the matrix once per block ("lazy batch"),
//! as one GEMM. Act-order visits columns by decreasing `H` diagonal, with groups fixed from
//! the unpermuted weights ("static groups"), so `g_idx` stays `c / group`.

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par, Side};

use super::grid::{GroupParams, QuantizedLinear, WeightGrid};

/// GPTQ settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GptqConfig {
    /// The grid.
    pub grid: WeightGrid,
    /// Dampening added to H's diagonal, as a fraction of its mean (default 0.01).
    pub damp: f64,
    /// Columns per lazy-update block (default 128).
    pub block: usize,
    /// Visit columns by decreasing Hessian diagonal (desc_act), with static groups.
    pub act_order: bool,
    /// Fit each group's range by an error search ([`GroupParams::fit_mse`]) instead of min/max.
    pub mse: bool,
}

impl GptqConfig {
    /// The reference defaults (1 % damping, blocks of 128, no act-order) for `grid`.
    pub fn new(grid: WeightGrid) -> Self {
        Self {
            grid,
            damp: 0.01,
            block: 128,
            act_order: false,
            mse: false,
        }
    }
}

/// Why GPTQ could not run.
#[derive(Debug, thiserror::Error)]
pub enum GptqError {
    /// Shapes disagree.
    #[error("shape: {0}")]
    Shape(String),
    /// H stayed indefinite even after raising the damping.
    #[error("the Hessian is not positive definite even with {0:.3} damping")]
    NotPositiveDefinite(f64),
}

/// How the GPTQ sweep rounds: the grid each weight goes to, chosen as columns are reached (so a
/// grid can be fitted to weights that already carry the earlier columns' error updates).
pub trait ColumnRounder {
    /// Called before column `i` (visiting order) is rounded; `w` is the (rows, cols) working
    /// matrix in visiting order, with every update so far.
    fn start_column(&mut self, i: usize, w: &[f32], rows: usize, cols: usize);
    /// The grid value nearest `x` for row `r` at visiting position `i` (recording its code).
    fn round(&mut self, r: usize, i: usize, x: f32) -> f32;
}

/// The weights in visiting order and the factor the sweep needs.
pub struct Prepared {
    /// (rows, cols) weights, columns in visiting order; dead inputs zeroed.
    pub wp: Vec<f32>,
    /// (cols,) visiting order: `perm[i]` is the original column visited i-th.
    pub perm: Vec<usize>,
    /// (cols, cols) row-major upper Cholesky factor of the permuted, damped `H⁻¹`.
    uf: Vec<f32>,
    rows: usize,
    cols: usize,
}

/// Checks shapes and damping, zeroes inputs that never fire, orders the columns (by decreasing
/// `H` diagonal for act-order) and factors the damped inverse Hessian.
pub fn prepare(
    w: &[f32],
    rows: usize,
    cols: usize,
    h: &Mat<f64>,
    damp: f64,
    act_order: bool,
) -> Result<Prepared, GptqError> {
    if w.len() != rows * cols || h.nrows() != cols || h.ncols() != cols {
        return Err(GptqError::Shape(format!(
            "w has {} values for {rows}x{cols}; H is {}x{}",
            w.len(),
            h.nrows(),
            h.ncols()
        )));
    }
    if !(damp.is_finite() && damp > 0.0) {
        return Err(GptqError::Shape(format!("damping {damp} must be positive")));
    }
    let mut h = h.clone();
    // (rows, cols) working weights, f32 as in the reference.
    let mut w = w.to_vec();
    // Inputs that never fire: their weights cannot matter; pin them to 0.
    for c in 0..cols {
        if h[(c, c)] == 0.0 {
            h[(c, c)] = 1.0;
            for r in 0..rows {
                w[r * cols + c] = 0.0;
            }
        }
    }
    let perm: Vec<usize> = if act_order {
        let mut p: Vec<usize> = (0..cols).collect();
        p.sort_by(|&a, &b| h[(b, b)].total_cmp(&h[(a, a)]));
        p
    } else {
        (0..cols).collect()
    };
    let mut wp = vec![0f32; rows * cols];
    for r in 0..rows {
        for (i, &c) in perm.iter().enumerate() {
            wp[r * cols + i] = w[r * cols + c];
        }
    }
    let hp = Mat::<f64>::from_fn(cols, cols, |i, j| h[(perm[i], perm[j])]);
    let u = inverse_cholesky_upper(hp, damp)?;
    let uf: Vec<f32> = (0..cols * cols)
        .map(|k| u[(k / cols, k % cols)] as f32)
        .collect();
    Ok(Prepared {
        wp,
        perm,
        uf,
        rows,
        cols,
    })
}

impl Prepared {
    /// (rows, cols) weights in original column order (dead inputs zeroed), for fitting static
    /// grids before the sweep.
    pub fn unpermuted(&self) -> Vec<f32> {
        let (rows, cols) = (self.rows, self.cols);
        let mut w = vec![0f32; rows * cols];
        for r in 0..rows {
            for (i, &c) in self.perm.iter().enumerate() {
                w[r * cols + c] = self.wp[r * cols + i];
            }
        }
        w
    }

    /// GPTQ's sweep: round column by column with `rounder`, spreading each rounding error over
    /// the columns not yet visited; updates inside a block of `block` columns are eager, the
    /// rest of the matrix gets one GEMM per block.
    pub fn sweep(mut self, block: usize, rounder: &mut impl ColumnRounder) {
        let (rows, cols) = (self.rows, self.cols);
        let (wp, uf) = (&mut self.wp, &self.uf);
        let block = block.max(1);
        // (rows, block) scaled errors of the current block.
        let mut err = vec![0f32; rows * block];
        for i1 in (0..cols).step_by(block) {
            let i2 = (i1 + block).min(cols);
            let count = i2 - i1;
            for i in i1..i2 {
                let d = uf[i * cols + i];
                rounder.start_column(i, wp, rows, cols);
                for r in 0..rows {
                    let x = wp[r * cols + i];
                    let e = (x - rounder.round(r, i, x)) / d;
                    err[r * block + (i - i1)] = e;
                    // Eager update of this block's later columns.
                    let row = &mut wp[r * cols + i + 1..r * cols + i2];
                    for (wv, &uv) in row.iter_mut().zip(&uf[i * cols + i + 1..i * cols + i2]) {
                        *wv -= e * uv;
                    }
                }
            }
            if i2 < cols {
                // Lazy update: W[:, i2..] -= Err (rows, count) · U[i1..i2, i2..].
                let e = MatRef::from_row_major_slice(&err, rows, block).subcols(0, count);
                let uu = MatRef::from_row_major_slice(uf, cols, cols).submatrix(
                    i1,
                    i2,
                    count,
                    cols - i2,
                );
                let wm =
                    MatMut::from_row_major_slice_mut(wp, rows, cols).subcols_mut(i2, cols - i2);
                matmul(wm, Accum::Add, e, uu, -1.0f32, Par::rayon(0));
            }
        }
    }
}

/// Rounds onto [`WeightGrid`] groups: fitted at each group's first column (or, with
/// act-order, fixed beforehand from the unpermuted weights).
struct GroupRounder {
    grid: WeightGrid,
    fit: fn(&[f32], &WeightGrid) -> GroupParams,
    gc: usize,
    ng: usize,
    /// Fit groups as the sweep reaches them (no act-order).
    dynamic: bool,
    perm: Vec<usize>,
    /// (rows, ng) parameters.
    params: Vec<GroupParams>,
    /// (rows, cols) codes in visiting order.
    codes_p: Vec<u8>,
    cols: usize,
}

impl ColumnRounder for GroupRounder {
    fn start_column(&mut self, i: usize, w: &[f32], rows: usize, cols: usize) {
        if self.dynamic && i.is_multiple_of(self.gc) {
            // Group starts here: fit it on the weights as updated so far.
            let g = i / self.gc;
            let end = ((g + 1) * self.gc).min(cols);
            for r in 0..rows {
                self.params[r * self.ng + g] =
                    (self.fit)(&w[r * cols + i..r * cols + end], &self.grid);
            }
        }
    }

    fn round(&mut self, r: usize, i: usize, x: f32) -> f32 {
        let p = self.params[r * self.ng + self.perm[i] / self.gc];
        let q = p.code(x);
        self.codes_p[r * self.cols + i] = q as u8;
        p.value(q)
    }
}

/// Quantizes the (rows, cols) row-major `w` given the (cols, cols) Hessian `h` of its inputs.
pub fn gptq(
    w: &[f32],
    rows: usize,
    cols: usize,
    h: &Mat<f64>,
    cfg: &GptqConfig,
) -> Result<QuantizedLinear, GptqError> {
    cfg.grid.validate().map_err(GptqError::Shape)?;
    let prep = prepare(w, rows, cols, h, cfg.damp, cfg.act_order)?;
    let grid = cfg.grid;
    let fit = if cfg.mse {
        GroupParams::fit_mse
    } else {
        GroupParams::fit
    };
    let gc = grid.group_cols(cols);
    let ng = cols.div_ceil(gc);
    let params = if cfg.act_order {
        // Static groups: parameters from the unpermuted weights, (rows, ng).
        let w = prep.unpermuted();
        let mut p = Vec::with_capacity(rows * ng);
        for r in 0..rows {
            for g in 0..ng {
                p.push(fit(
                    &w[r * cols + g * gc..r * cols + ((g + 1) * gc).min(cols)],
                    &grid,
                ));
            }
        }
        p
    } else {
        vec![GroupParams::from_range(-1.0, 1.0, grid.sym, grid.maxq()); rows * ng]
    };
    let mut rounder = GroupRounder {
        grid,
        fit,
        gc,
        ng,
        dynamic: !cfg.act_order,
        perm: prep.perm.clone(),
        params,
        codes_p: vec![0u8; rows * cols],
        cols,
    };
    prep.sweep(cfg.block, &mut rounder);
    // Undo the permutation.
    let mut codes = vec![0u8; rows * cols];
    for r in 0..rows {
        for (i, &c) in rounder.perm.iter().enumerate() {
            codes[r * cols + c] = rounder.codes_p[r * cols + i];
        }
    }
    Ok(QuantizedLinear {
        grid,
        rows,
        cols,
        codes,
        params: rounder.params,
        g_idx: (0..cols).map(|c| (c / gc) as u32).collect(),
    })
}

/// Upper Cholesky factor `U` of `(H + λI)⁻¹ = UᵀU`, with λ = `damp` × mean diagonal, raised
/// tenfold up to three times if the matrix is not positive definite.
fn inverse_cholesky_upper(h: Mat<f64>, damp: f64) -> Result<Mat<f64>, GptqError> {
    use faer::linalg::solvers::DenseSolveCore as _;
    let n = h.nrows();
    let mean = (0..n).map(|i| h[(i, i)]).sum::<f64>() / n.max(1) as f64;
    let mut frac = damp;
    for _ in 0..4 {
        let mut hd = h.clone();
        for i in 0..n {
            hd[(i, i)] += frac * mean;
        }
        if let Ok(llt) = hd.llt(Side::Lower) {
            let inv = llt.inverse();
            if let Ok(l2) = inv.llt(Side::Lower) {
                return Ok(l2.L().transpose().to_owned());
            }
        }
        frac *= 10.0;
    }
    Err(GptqError::NotPositiveDefinite(frac / 10.0))
}

//! Calibrated ggml quantization: GPTQ's error feedback inside ggml's block formats (Q4_K, Q6_K,
//! Q5_0, Q8_0, ...), so that a llama.cpp mix such as Q4_K_M keeps its exact bytes-per-weight and
//! runs in llama.cpp, while its codes are chosen with calibration data.
//!
//! Per matrix, the GPTQ sweep visits input columns; when it reaches the first column of a block
//! (e.g. 256 columns for Q4_K), each row's block scales are fitted by the format's own
//! quantizer to the weights *as updated by the error feedback so far*; then every weight in the
//! block goes to the nearest code of that fixed grid, and its rounding error is spread over the
//! columns not yet visited (see [`super::gptq`]). With act-order, grids are fitted up front
//! from the original weights and columns are visited by decreasing Hessian diagonal.

use std::collections::HashMap;

use faer::Mat;
use smelt_gguf::GgmlType;
use smelt_gguf::blocks::regrid::BlockGrid;
use smelt_kernels::{QMatrix, WeightBytes, WeightType};
use smelt_models::llama::{Linear, Llama};

use super::PtqError;
use super::gptq::{ColumnRounder, GptqError, prepare};
use super::sequential::{Capture, calibrate_sequential};

/// Settings of calibrated ggml quantization.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GgmlGptqConfig {
    /// GPTQ dampening fraction of the Hessian's mean diagonal.
    pub damp: f64,
    /// Visit columns by decreasing Hessian diagonal, with grids fitted up front.
    pub act_order: bool,
    /// Columns per lazy-update block.
    pub block: usize,
    /// Fit each block's super-scale by a search weighted by the Hessian diagonal (an
    /// importance per input, as llama.cpp's imatrix) instead of the format's plain fit.
    pub mse: bool,
}

impl Default for GgmlGptqConfig {
    fn default() -> Self {
        Self {
            damp: 0.01,
            act_order: false,
            block: 128,
            mse: false,
        }
    }
}

struct BlockRounder {
    ty: GgmlType,
    /// Values per block.
    be: usize,
    /// Blocks per row.
    nb: usize,
    cols: usize,
    /// Fit grids as the sweep reaches them (no act-order).
    dynamic: bool,
    perm: Vec<usize>,
    /// (cols,) Hessian diagonal in original column order, for the MSE fit.
    importance: Option<Vec<f32>>,
    /// (rows, nb) grids, once fitted.
    grids: Vec<Option<BlockGrid>>,
    /// (rows, cols) codes in original column order.
    codes: Vec<u32>,
}

impl BlockRounder {
    fn fit(&mut self, w: &[f32], r: usize, b: usize) {
        let x = &w[r * self.cols + b * self.be..r * self.cols + (b + 1) * self.be];
        let g = match &self.importance {
            Some(imp) => {
                BlockGrid::fit_mse(self.ty, x, &imp[b * self.be..(b + 1) * self.be], 0.2, 20)
            }
            None => BlockGrid::fit(self.ty, x),
        };
        self.grids[r * self.nb + b] = Some(g.expect("type and length checked before the sweep"));
    }
}

impl ColumnRounder for BlockRounder {
    fn start_column(&mut self, i: usize, w: &[f32], rows: usize, _cols: usize) {
        if self.dynamic && i.is_multiple_of(self.be) {
            for r in 0..rows {
                self.fit(w, r, i / self.be);
            }
        }
    }

    fn round(&mut self, r: usize, i: usize, x: f32) -> f32 {
        let c = self.perm[i];
        let g = self.grids[r * self.nb + c / self.be]
            .as_ref()
            .expect("a block's grid is fitted before its first column");
        let q = g.nearest(c % self.be, x);
        self.codes[r * self.cols + c] = q;
        g.value(c % self.be, q)
    }
}

/// GPTQ on the (rows, cols) row-major `w` with (cols, cols) input Hessian `h`, in `ty` blocks
/// along each row; returns the row-major block bytes.
pub fn gptq_ggml(
    w: &[f32],
    rows: usize,
    cols: usize,
    h: &Mat<f64>,
    ty: GgmlType,
    cfg: &GgmlGptqConfig,
) -> Result<Vec<u8>, GptqError> {
    let be = ty.block().0 as usize;
    if !cols.is_multiple_of(be) {
        return Err(GptqError::Shape(format!(
            "{cols} columns are not a whole number of {} blocks of {be}",
            ty.name()
        )));
    }
    BlockGrid::fit(ty, &vec![0.0; be]).map_err(|e| GptqError::Shape(e.to_string()))?;
    let prep = prepare(w, rows, cols, h, cfg.damp, cfg.act_order)?;
    let nb = cols / be;
    let mut rounder = BlockRounder {
        ty,
        be,
        nb,
        cols,
        dynamic: !cfg.act_order,
        perm: prep.perm.clone(),
        importance: cfg
            .mse
            .then(|| (0..cols).map(|c| h[(c, c)].max(0.0) as f32).collect()),
        grids: vec![None; rows * nb],
        codes: vec![0; rows * cols],
    };
    if cfg.act_order {
        let w0 = prep.unpermuted();
        for r in 0..rows {
            for b in 0..nb {
                rounder.fit(&w0, r, b);
            }
        }
    }
    prep.sweep(cfg.block, &mut rounder);
    let mut out = Vec::with_capacity(rows * nb * ty.block().1 as usize);
    for r in 0..rows {
        for b in 0..nb {
            let g = rounder.grids[r * nb + b]
                .as_ref()
                .expect("every block fitted");
            let start = r * cols + b * be;
            out.extend(g.encode(&rounder.codes[start..start + be]));
        }
    }
    Ok(out)
}

/// Quantizes every layer matrix of `model` (F32, see [`Llama::dequantize_to_f32`]) to the type
/// `types(layer, which)` gives, with GPTQ calibrated layer by layer on `windows`. The model is
/// left running the quantized blocks; returns the bytes by GGUF tensor name
/// (`blk.0.attn_q.weight`, ...). `progress(layer)` after each layer.
pub fn gptq_ggml_llama(
    model: &mut Llama,
    types: &dyn Fn(usize, Linear) -> GgmlType,
    windows: &[Vec<u32>],
    cfg: &GgmlGptqConfig,
    mut progress: impl FnMut(usize),
) -> Result<HashMap<String, Vec<u8>>, PtqError> {
    model.dense_ffn_only()?;
    let mut out = HashMap::new();
    let capture = Capture {
        hessian: true,
        ..Capture::default()
    };
    calibrate_sequential(
        model,
        windows,
        capture,
        |model, l, stats| -> Result<(), PtqError> {
            let hs = stats.hessians();
            for which in Linear::ALL {
                let ty = types(l, which);
                let w = model.linear(l, which);
                let (rows, cols) = (w.rows, w.cols);
                let err = |source| PtqError::Gptq {
                    layer: l,
                    name: which.gguf_name(),
                    source,
                };
                let bytes = gptq_ggml(&w.to_f32(), rows, cols, &hs[&which.input()], ty, cfg)
                    .map_err(err)?;
                let kt = WeightType::from_ggml(ty).ok_or_else(|| {
                    PtqError::Config(format!("the runtime has no kernel for {}", ty.name()))
                })?;
                let m = QMatrix::new(kt, rows, cols, WeightBytes::Owned(bytes.clone()))
                    .map_err(PtqError::Config)?;
                model.set_linear(l, which, m)?;
                out.insert(format!("blk.{l}.{}", which.gguf_name()), bytes);
            }
            Ok(())
        },
        &mut progress,
    )?;
    Ok(out)
}

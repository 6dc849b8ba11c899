//! Post-training quantization of LLM weights: the shared grid and RTN ([`grid`]), GPTQ
//! ([`gptq`]), calibration text ([`calib`]) and the layer-by-layer driver ([`sequential`]).
//! [`quantize_llama`] runs a method over a whole llama model in place, leaving the dequantized
//! values in its F32 matrices (so our runtime evaluates exactly what a packed file holds) and
//! returning the codes for writing files.

pub mod awq;
pub mod calib;
pub mod ggml_gptq;
pub mod gptq;
pub mod grid;
pub mod hf_gptq;
pub mod pack;
pub mod sequential;
pub mod smooth;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use smelt_kernels::QMatrix;
use smelt_models::llama::{Linear, Llama, ModelError};

use awq::{AwqConfig, awq_layer};
use gptq::{GptqConfig, GptqError, gptq};
use grid::{QuantizedLinear, WeightGrid, rtn};
use sequential::{Capture, calibrate_sequential};

/// A weight quantization method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Round to nearest on a min/max grid; no calibration.
    Rtn,
    /// GPTQ: Hessian-weighted error compensation from calibration inputs.
    Gptq,
    /// AWQ: activation-aware per-channel scaling and clipping, then RTN.
    Awq,
}

impl Method {
    /// Every method.
    pub const ALL: [Method; 3] = [Method::Rtn, Method::Gptq, Method::Awq];

    /// The method called `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == s)
    }

    /// `rtn`, `gptq`.
    pub fn name(self) -> &'static str {
        match self {
            Method::Rtn => "rtn",
            Method::Gptq => "gptq",
            Method::Awq => "awq",
        }
    }
}

/// Which activations calibrate each layer after the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CalibInputs {
    /// The outputs of the already-quantized layers before it (GPTQ's order), so a layer's
    /// calibration sees the error upstream. The default for GPTQ and AWQ.
    #[default]
    Quantized,
    /// The float model's activations (AutoAWQ's order: its next-layer inputs come from the layer
    /// before quantization). For AWQ on SmolLM2 4-bit g128 neither order was clearly better
    /// (README, LLM weight PTQ).
    Float,
}

impl CalibInputs {
    /// The value called `s` (`quantized` or `float`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "quantized" => Some(Self::Quantized),
            "float" => Some(Self::Float),
            _ => None,
        }
    }
}

/// Settings of one quantization run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PtqConfig {
    /// The method.
    pub method: Method,
    /// The weight grid.
    pub grid: WeightGrid,
    /// GPTQ dampening fraction.
    pub damp: f64,
    /// GPTQ act-order (static groups).
    pub act_order: bool,
    /// GPTQ: fit group ranges by error search instead of min/max.
    pub mse: bool,
    /// AWQ: calibration rows kept for the scale search.
    pub awq_tokens: usize,
    /// GPTQ, AWQ: which activations calibrate the layers after the first.
    #[serde(default)]
    pub inputs: CalibInputs,
}

/// Why quantization failed.
#[derive(Debug, thiserror::Error)]
pub enum PtqError {
    /// The model could not run.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// GPTQ failed on a matrix.
    #[error("blk.{layer}.{name}: {source}")]
    Gptq {
        /// Layer.
        layer: usize,
        /// Tensor.
        name: &'static str,
        /// Why.
        source: GptqError,
    },
    /// Bad settings.
    #[error("{0}")]
    Config(String),
}

/// Every quantized matrix, by layer.
pub struct QuantizedModel {
    /// Settings used.
    pub config: PtqConfig,
    /// Per layer, the seven matrices.
    pub layers: Vec<HashMap<Linear, QuantizedLinear>>,
}

impl QuantizedModel {
    /// Weights quantized and the bits they take (codes + group parameters).
    pub fn size(&self) -> (usize, f64) {
        let mut n = 0usize;
        let mut bits = 0f64;
        for q in self.layers.iter().flat_map(|m| m.values()) {
            let count = q.rows * q.cols;
            n += count;
            bits += q.grid.bits_per_weight(q.cols) * count as f64;
        }
        (n, bits)
    }
}

fn install(
    model: &mut Llama,
    l: usize,
    which: Linear,
    q: &QuantizedLinear,
) -> Result<(), PtqError> {
    let mut m = QMatrix::from_f32(q.rows, q.cols, &q.dequantize()).map_err(PtqError::Config)?;
    m.set_float_gemm(true);
    model.set_linear(l, which, m)?;
    Ok(())
}

/// Quantizes every layer matrix of `model` (whose matrices should be F32, see
/// [`Llama::dequantize_to_f32`]) with `cfg`, calibrating on `windows` where the method needs
/// it. The model is left holding the dequantized values. `progress(layer)` after each layer.
pub fn quantize_llama(
    model: &mut Llama,
    cfg: &PtqConfig,
    windows: &[Vec<u32>],
    mut progress: impl FnMut(usize),
) -> Result<QuantizedModel, PtqError> {
    cfg.grid.validate().map_err(PtqError::Config)?;
    model.dense_ffn_only()?;
    let mut layers = Vec::with_capacity(model.config.n_layer);
    match cfg.method {
        Method::Rtn => {
            for l in 0..model.config.n_layer {
                let mut m = HashMap::new();
                for which in Linear::ALL {
                    let w = model.linear(l, which);
                    let q = rtn(&w.to_f32(), w.rows, w.cols, &cfg.grid);
                    install(model, l, which, &q)?;
                    m.insert(which, q);
                }
                layers.push(m);
                progress(l);
            }
        }
        Method::Gptq => {
            let gcfg = GptqConfig {
                damp: cfg.damp,
                act_order: cfg.act_order,
                mse: cfg.mse,
                ..GptqConfig::new(cfg.grid)
            };
            let capture = Capture {
                hessian: true,
                float_inputs: cfg.inputs == CalibInputs::Float,
                ..Capture::default()
            };
            calibrate_sequential(
                model,
                windows,
                capture,
                |model, l, stats| -> Result<(), PtqError> {
                    let hs = stats.hessians();
                    let mut m = HashMap::new();
                    for which in Linear::ALL {
                        let w = model.linear(l, which);
                        let (rows, cols) = (w.rows, w.cols);
                        let q = gptq(&w.to_f32(), rows, cols, &hs[&which.input()], &gcfg).map_err(
                            |source| PtqError::Gptq {
                                layer: l,
                                name: which.gguf_name(),
                                source,
                            },
                        )?;
                        install(model, l, which, &q)?;
                        m.insert(which, q);
                    }
                    layers.push(m);
                    Ok(())
                },
                &mut progress,
            )?;
        }
        Method::Awq => {
            let acfg = AwqConfig::new(cfg.grid);
            let capture = Capture {
                hessian: false,
                sample_tokens: cfg.awq_tokens,
                keep_windows: acfg.attn_windows,
                float_inputs: cfg.inputs == CalibInputs::Float,
            };
            calibrate_sequential(
                model,
                windows,
                capture,
                |model, l, stats| -> Result<(), PtqError> {
                    let (m, rep) = awq_layer(model, l, stats, &acfg).map_err(PtqError::Config)?;
                    tracing::debug!(
                        "AWQ layer {l}: alpha {:?}, error vs RTN {:?}",
                        rep.alpha,
                        rep.gain
                    );
                    for (which, q) in &m {
                        install(model, l, *which, q)?;
                    }
                    layers.push(m);
                    Ok(())
                },
                &mut progress,
            )?;
        }
    }
    Ok(QuantizedModel {
        config: *cfg,
        layers,
    })
}

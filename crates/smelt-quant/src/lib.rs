//! Number formats and quantization math: the layer every other part of smelt builds on.
//!
//! - [`int`]: INT8/UINT8/INT4/UINT4 (any width 2..=8), symmetric and asymmetric schemes with
//!   the formulas, 4-bit packing.
//! - [`granularity`]: per-tensor, per-channel, group-wise and 2-D block parameter sharing;
//!   [`granularity::QuantizedTensor`] and [`granularity::fake_quant`].
//! - [`fp8`], [`fp4`]: FP8 E4M3FN / E5M2 and FP4 E2M1 with round-to-nearest-even and explicit
//!   saturating or non-saturating overflow ([`minifloat`] is the shared engine).
//! - [`nf4`]: QLoRA's NormalFloat4 with block absmax scaling.
//! - [`codebook`]: k-means codebooks (k-means++, Lloyd), per tensor or per row, weighted.
//! - [`observer`], [`entropy`]: calibration observers (min-max, moving average, percentile,
//!   MSE search, TensorRT's KL entropy).
//! - [`metrics`]: MSE, SQNR, max/mean abs error, cosine similarity.
//! - [`rng`]: the seeded generator experiments draw from.
//! - [`simd`]: the hot slice kernels, reference and run-time-selected fast variants.

#![deny(missing_docs)]

pub mod codebook;
pub mod entropy;
pub mod fp4;
pub mod fp8;
pub mod granularity;
pub mod int;
pub mod metrics;
pub mod minifloat;
pub mod nf4;
pub mod nf4_dq;
pub mod observer;
pub mod rng;
pub mod simd;

pub use granularity::{Granularity, QuantSpec, QuantizedTensor, fake_quant};
pub use int::{INT4, INT8, IntFormat, QParams, Scheme, UINT4, UINT8};
pub use metrics::{ErrorStats, error_stats};

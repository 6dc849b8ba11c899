//! Quantization-aware training: the forward pass fake-quantizes weights (symmetric, per output
//! channel, `bits` wide) and activations (u8 at every quantization point, ranges tracked by an
//! exponential moving average of each batch's min and max, as PyTorch's QAT observers do);
//! the backward pass treats rounding as identity (the straight-through estimator:
//! `x + (q(x) − x).detach()`). Afterwards [`quantize_static`] turns the fine-tuned weights and
//! the tracked ranges into the same integer network PTQ produces.

use candle_core::{D, Tensor};
use smelt_models::cnn::float::{Hook, quant_points};
use smelt_models::cnn::int8::{ActQuant, QuantizedCnn};
use smelt_models::cnn::{CnnError, CnnParams, CnnSpec};

use crate::ptq::{WeightGranularity, quantize_static};

/// The QAT hook: fake quantization with straight-through gradients, and the range trackers.
pub struct QatHook {
    bits: u8,
    momentum: f32,
    relu: Vec<bool>,
    /// `(lo, hi)` per quantization point.
    pub ranges: Vec<(f32, f32)>,
}

impl QatHook {
    /// Starts from calibrated ranges (one per quantization point of `spec`).
    pub fn new(spec: &CnnSpec, bits: u8, start_ranges: Vec<(f32, f32)>) -> Self {
        Self {
            bits,
            momentum: 0.01,
            relu: quant_points(spec).iter().map(|p| p.relu).collect(),
            ranges: start_ranges,
        }
    }

    /// The integer network for fine-tuned parameters `p` with the tracked ranges.
    pub fn convert(&self, p: &CnnParams) -> Result<QuantizedCnn, CnnError> {
        quantize_static(p, &self.ranges, self.bits, WeightGranularity::PerChannel)
    }
}

/// `x + (q − x).detach()`: the value of `q`, the gradient of `x`.
fn straight_through(x: &Tensor, q: &Tensor) -> candle_core::Result<Tensor> {
    x + (q - x)?.detach()
}

impl Hook for QatHook {
    fn params(
        &mut self,
        _layer: usize,
        _input_point: usize,
        w: &Tensor,
        b: &Tensor,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let qmax = ((1i32 << (self.bits - 1)) - 1) as f64;
        let oc = w.dim(0)?;
        let rows = w.reshape((oc, ()))?; // [oc, k]
        let scale = (rows
            .detach()
            .abs()?
            .max_keepdim(D::Minus1)?
            .clamp(1e-12, f64::MAX)?
            / qmax)?; // [oc, 1]
        let q = rows
            .broadcast_div(&scale)?
            .round()?
            .clamp(-qmax, qmax)?
            .broadcast_mul(&scale)?;
        let wq = straight_through(&rows, &q)?.reshape(w.dims())?;
        Ok((wq, b.clone()))
    }

    fn activation(&mut self, point: usize, x: &Tensor) -> candle_core::Result<Tensor> {
        let lo = x.min_all()?.to_scalar::<f32>()?;
        let hi = x.max_all()?.to_scalar::<f32>()?;
        let (l, h) = &mut self.ranges[point];
        *l += self.momentum * (lo - *l);
        *h += self.momentum * (hi - *h);
        let a = ActQuant::from_range(if self.relu[point] { 0.0 } else { *l }, *h);
        let (s, zp) = (a.scale as f64, a.zp as f64);
        let q = ((x / s)?.round()? + zp)?.clamp(0.0, 255.0)?;
        let fq = ((q - zp)? * s)?;
        straight_through(x, &fq)
    }
}

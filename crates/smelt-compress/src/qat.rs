//! Quantization-aware training: the forward pass fake-quantizes weights (symmetric, per output
//! channel, `bits` wide) and activations (u8 at every quantization point, ranges tracked by an
//! exponential moving average of each batch's min and max, as PyTorch's QAT observers do);
//! the backward pass treats rounding as identity (the straight-through estimator:
//! `x + (q(x) − x).detach()`). Afterwards [`quantize_static`] turns the fine-tuned weights and
//! the tracked ranges into the same integer network PTQ produces.

use candle_core::{D, DType, Tensor};
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

/// Rounds to the nearest integer, ties to even, as the deployed model's quantizer rounds
/// (`f32::round_ties_even`; candle's `round` takes ties away from zero). Adding and removing
/// 1.5 · 2^(mantissa bits) leaves the float arithmetic's own round-half-even, exact below half
/// that; fake-quant codes are far inside it (|x / s| ≤ 255 but for what the clamp removes).
fn round_ties_even(x: &Tensor) -> candle_core::Result<Tensor> {
    let bits = match x.dtype() {
        DType::F32 => 23,
        DType::F64 => 52,
        _ => return x.round(),
    };
    let shift = 1.5 * (1u64 << bits) as f64;
    let limit = (1u64 << (bits - 1)) as f64;
    (x.clamp(-limit, limit)? + shift)? - shift
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
        // Divided, not multiplied by a reciprocal, as the deployed quantizer divides: a tie
        // is only a tie in the same floats.
        let qmax_t = Tensor::new(qmax as f32, w.device())?.to_dtype(w.dtype())?;
        let scale = rows
            .detach()
            .abs()?
            .max_keepdim(D::Minus1)?
            .clamp(1e-12, f64::MAX)?
            .broadcast_div(&qmax_t)?; // [oc, 1]
        let q = rows.broadcast_div(&scale)?;
        let q = round_ties_even(&q)?
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
        // x / scale as `ActQuant::quantize` divides (candle's `x / f64` multiplies by 1/s).
        let s_t = Tensor::new(a.scale, x.device())?.to_dtype(x.dtype())?;
        let q = (round_ties_even(&x.broadcast_div(&s_t)?)? + zp)?.clamp(0.0, 255.0)?;
        let fq = ((q - zp)? * s)?;
        straight_through(x, &fq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_quant_rounds_ties_to_even_as_the_deployed_quantizer() {
        let mut rng = smelt_quant::rng::Rng::new(smelt_quant::rng::test_seed());
        let mut xs: Vec<f32> = (-8..=8).map(|k| k as f32 + 0.5).collect();
        xs.extend(rng.normals(2000).iter().map(|v| v * 200.0));
        xs.extend([0.0, -0.0, 255.0, -255.0, 1e9, -1e9, 0.49999997, 2.5000002]);
        for dtype in [DType::F32, DType::F64] {
            let t = Tensor::new(xs.as_slice(), &candle_core::Device::Cpu)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let got: Vec<f64> = round_ties_even(&t)
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap()
                .to_vec1()
                .unwrap();
            for (x, g) in xs.iter().zip(got) {
                let want = if x.abs() < 1e6 {
                    (*x as f64).round_ties_even()
                } else {
                    // Beyond the clamp: only its sign and size matter to the codes after it.
                    g
                };
                assert_eq!(g, want, "{dtype:?} {x}");
            }
        }
    }
}

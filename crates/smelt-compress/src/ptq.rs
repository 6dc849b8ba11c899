//! Post-training quantization of a CNN: calibration (observers at every activation quantization
//! point, fed by the float forward), static quantization into a [`QuantizedCnn`] (symmetric
//! weights per tensor or per output channel, u8 activations, i32 biases), and the fake-quant
//! simulation of that network in float, which the integer engine must agree with.

use candle_core::{Device, Tensor};
use serde::Serialize;
use smelt_models::cnn::float::{FloatNet, Hook, NoHook, quant_points};
use smelt_models::cnn::int8::{ActQuant, QuantLayer, QuantizedCnn};
use smelt_models::cnn::{CnnError, CnnParams};
use smelt_quant::observer::{MinMax, MseSearch, Observer, Percentile, Reservoir};
use smelt_quant::{Scheme, UINT8};

/// How weights are scaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum WeightGranularity {
    /// One scale per tensor.
    PerTensor,
    /// One scale per output channel (conv filters, linear rows).
    PerChannel,
}

/// How activation ranges are chosen from calibration data.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum ActObserver {
    /// Smallest and largest value seen.
    MinMax,
    /// Clip at this percentile (e.g. 99.99) of the values seen.
    Percentile(f64),
    /// The clipping range with the least squared u8 quantization error.
    Mse,
}

impl ActObserver {
    /// Parses `minmax`, `mse` or `percentile:99.99`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "minmax" => Ok(Self::MinMax),
            "mse" => Ok(Self::Mse),
            _ => match s.strip_prefix("percentile:").map(str::parse::<f64>) {
                Some(Ok(p)) if p > 50.0 && p <= 100.0 => Ok(Self::Percentile(p)),
                _ => Err(format!(
                    "unknown observer `{s}`: use minmax, mse or percentile:P (50 < P <= 100)"
                )),
            },
        }
    }

    fn make(self) -> Box<dyn Observer> {
        match self {
            Self::MinMax => Box::new(MinMax::default()),
            Self::Percentile(p) => Box::new(Percentile::new(p, false)),
            Self::Mse => Box::new(MseSearch::new(UINT8, Scheme::Asymmetric, 40)),
        }
    }
}

/// Static PTQ settings.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PtqConfig {
    /// Weight bits: 8 (codes ±127) or 4 (codes ±7).
    pub weight_bits: u8,
    /// Weight scale granularity.
    pub granularity: WeightGranularity,
    /// Activation range observer.
    pub observer: ActObserver,
}

/// What calibration saw at each quantization point.
pub struct Calibration {
    /// Proposed `(lo, hi)` per point.
    pub ranges: Vec<(f32, f32)>,
    /// A bounded sample of the values per point, for histograms.
    pub samples: Vec<Reservoir>,
    /// Name of the observer.
    pub observer: String,
}

struct CalibrationHook {
    observers: Vec<Box<dyn Observer>>,
    samples: Vec<Reservoir>,
}

impl Hook for CalibrationHook {
    fn activation(&mut self, point: usize, x: &Tensor) -> candle_core::Result<Tensor> {
        let v = x.flatten_all()?.to_vec1::<f32>()?;
        self.observers[point].observe(&v);
        self.samples[point].add(&v);
        Ok(x.clone())
    }
}

/// Runs `pixels: [n][C·H·W]` (the calibration images) through the float network and observes
/// every quantization point.
pub fn calibrate(
    p: &CnnParams,
    pixels: &[u8],
    observer: ActObserver,
) -> Result<Calibration, CnnError> {
    let [c, h, w] = p.spec.input;
    if pixels.len() < c * h * w {
        // No forward pass would run: every range would be (0, 0), every scale a default.
        return Err(CnnError::Spec(
            p.spec.name.clone(),
            "calibration needs at least one image".into(),
        ));
    }
    let n_points = quant_points(&p.spec).len();
    let mut hook = CalibrationHook {
        observers: (0..n_points).map(|_| observer.make()).collect(),
        samples: (0..n_points).map(|_| Reservoir::default()).collect(),
    };
    let net = FloatNet::from_params(p, &Device::Cpu)?;
    net.logits(pixels, 64, &mut hook)?;
    Ok(Calibration {
        ranges: hook.observers.iter().map(|o| o.range()).collect(),
        observer: hook.observers.first().map(|o| o.name()).unwrap_or_default(),
        samples: hook.samples,
    })
}

/// Symmetric weight codes and scales for one layer (`w` in PyTorch layout, `oc` rows).
pub fn quantize_weights(
    w: &[f32],
    oc: usize,
    bits: u8,
    granularity: WeightGranularity,
) -> (Vec<i8>, Vec<f32>) {
    let qmax = ((1i32 << (bits - 1)) - 1) as f32;
    let per = w.len() / oc;
    let amax = |s: &[f32]| s.iter().fold(0f32, |m, v| m.max(v.abs()));
    let scales: Vec<f32> = match granularity {
        WeightGranularity::PerTensor => vec![amax(w)],
        WeightGranularity::PerChannel => w.chunks_exact(per).map(amax).collect(),
    }
    .into_iter()
    .map(|a| if a > 0.0 { a / qmax } else { 1.0 })
    .collect();
    let codes = w
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let s = if scales.len() == 1 {
                scales[0]
            } else {
                scales[i / per]
            };
            (v / s).round_ties_even().clamp(-qmax, qmax) as i8
        })
        .collect();
    (codes, scales)
}

/// Builds the integer network from float parameters and per-point activation ranges.
pub fn quantize_static(
    p: &CnnParams,
    ranges: &[(f32, f32)],
    weight_bits: u8,
    granularity: WeightGranularity,
) -> Result<QuantizedCnn, CnnError> {
    let points = quant_points(&p.spec);
    if ranges.len() != points.len() {
        return Err(CnnError::Spec(
            p.spec.name.clone(),
            format!(
                "{} ranges for {} quantization points",
                ranges.len(),
                points.len()
            ),
        ));
    }
    if !matches!(weight_bits, 4 | 8) {
        return Err(CnnError::Spec(
            p.spec.name.clone(),
            format!("{weight_bits}-bit weights: use 8 or 4"),
        ));
    }
    let acts: Vec<ActQuant> = ranges
        .iter()
        .zip(&points)
        .map(|(&(lo, hi), pt)| ActQuant::from_range(if pt.relu { 0.0 } else { lo }, hi))
        .collect();
    let mut layers = Vec::new();
    for (li, pt) in points.iter().skip(1).enumerate() {
        let layer = pt.layer.expect("conv/linear point");
        let name = p.spec.layers[layer]
            .param_name()
            .expect("weighted")
            .to_string();
        let w = p.get(&format!("{name}.weight"));
        let b = p.get(&format!("{name}.bias"));
        let oc = b.len();
        let (w_codes, w_scales) = quantize_weights(w, oc, weight_bits, granularity);
        let s_in = acts[li].scale as f64;
        let b_codes = b
            .iter()
            .enumerate()
            .map(|(o, &v)| {
                let s = s_in
                    * if w_scales.len() == 1 {
                        w_scales[0]
                    } else {
                        w_scales[o]
                    } as f64;
                (v as f64 / s)
                    .round_ties_even()
                    .clamp(i32::MIN as f64 / 2.0, i32::MAX as f64 / 2.0) as i32
            })
            .collect();
        layers.push(QuantLayer {
            name,
            w_codes,
            w_scales,
            b_codes,
        });
    }
    Ok(QuantizedCnn {
        spec: p.spec.clone(),
        weight_bits,
        acts,
        layers,
    })
}

/// Calibrate then quantize: static PTQ in one call.
pub fn ptq_static(
    p: &CnnParams,
    calib_pixels: &[u8],
    cfg: &PtqConfig,
) -> Result<(QuantizedCnn, Calibration), CnnError> {
    let cal = calibrate(p, calib_pixels, cfg.observer)?;
    let q = quantize_static(p, &cal.ranges, cfg.weight_bits, cfg.granularity)?;
    Ok((q, cal))
}

/// The float simulation of a [`QuantizedCnn`]: dequantized weights and biases, activations
/// rounded to their u8 grid at every quantization point ("fake quantization").
pub struct FakeQuant<'a> {
    q: &'a QuantizedCnn,
    layer_of: Vec<usize>,
}

impl<'a> FakeQuant<'a> {
    /// The simulation of `q`.
    pub fn new(q: &'a QuantizedCnn) -> Self {
        let layer_of = quant_points(&q.spec)
            .iter()
            .skip(1)
            .map(|p| p.layer.expect("weighted"))
            .collect();
        Self { q, layer_of }
    }

    /// Logits of the simulation for raw pixels.
    pub fn logits(&mut self, pixels: &[u8]) -> Result<Vec<f32>, CnnError> {
        // Parameters come from the hook; the float net only supplies shapes.
        let mut tensors = std::collections::BTreeMap::new();
        for (name, shape) in self.q.spec.param_shapes() {
            let len = shape.iter().product();
            tensors.insert(name, (shape, vec![0f32; len]));
        }
        let shell = CnnParams::new(self.q.spec.clone(), tensors)?;
        let net = FloatNet::from_params(&shell, &Device::Cpu)?;
        net.logits(pixels, 500, self)
    }
}

impl Hook for FakeQuant<'_> {
    fn params(
        &mut self,
        layer: usize,
        input_point: usize,
        w: &Tensor,
        b: &Tensor,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let li = self
            .layer_of
            .iter()
            .position(|&l| l == layer)
            .expect("weighted layer");
        let ql = &self.q.layers[li];
        let oc = ql.b_codes.len();
        let per = ql.w_codes.len() / oc;
        let wv: Vec<f32> = ql
            .w_codes
            .iter()
            .enumerate()
            .map(|(i, &c)| c as f32 * ql.w_scale(i / per))
            .collect();
        let s_in = self.q.acts[input_point].scale;
        let bv: Vec<f32> = ql
            .b_codes
            .iter()
            .enumerate()
            .map(|(o, &c)| (c as f64 * s_in as f64 * ql.w_scale(o) as f64) as f32)
            .collect();
        Ok((
            Tensor::from_vec(wv, w.dims(), w.device())?,
            Tensor::from_vec(bv, b.dims(), b.device())?,
        ))
    }

    fn activation(&mut self, point: usize, x: &Tensor) -> candle_core::Result<Tensor> {
        let a = self.q.acts[point];
        let v = x.flatten_all()?.to_vec1::<f32>()?;
        let fq: Vec<f32> = v.iter().map(|&t| a.dequantize(a.quantize(t))).collect();
        Tensor::from_vec(fq, x.dims(), x.device())
    }
}

/// Float logits with no quantization (convenience for tables).
pub fn float_logits(p: &CnnParams, pixels: &[u8]) -> Result<Vec<f32>, CnnError> {
    FloatNet::from_params(p, &Device::Cpu)?.logits(pixels, 500, &mut NoHook)
}

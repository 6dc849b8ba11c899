//! Training a [`CnnSpec`] on labelled images with candle (autograd + AdamW), seeded and
//! deterministic for a given thread count. The same loop fine-tunes with quantization in the
//! loop (QAT): the caller passes a [`Hook`] that fake-quantizes the forward pass.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use serde::Serialize;
use smelt_models::cnn::float::{FloatNet, Hook};
use smelt_models::cnn::{CnnError, CnnParams, CnnSpec};
use smelt_quant::rng::Rng;

/// Training settings.
#[derive(Debug, Clone, Serialize)]
pub struct TrainConfig {
    /// Passes over the training images.
    pub epochs: usize,
    /// Images per step.
    pub batch: usize,
    /// Peak learning rate (AdamW); a cosine schedule decays it to 2 % over the run.
    pub lr: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Seed for initialization and shuffling.
    pub seed: u64,
    /// Use at most this many training images (0 = all), for quick runs.
    pub limit: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 4,
            batch: 64,
            lr: 2e-3,
            weight_decay: 1e-4,
            seed: 1,
            limit: 0,
        }
    }
}

/// Progress callback: `(epoch, step within epoch, steps per epoch, mean loss so far)`.
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize, usize, f32);

/// Labelled images: `pixels: [n][C·H·W]` raw bytes, `labels: [n]`.
pub struct Images<'a> {
    /// Raw pixels.
    pub pixels: &'a [u8],
    /// Class per image.
    pub labels: &'a [u8],
}

/// PyTorch's default initialization for conv/linear layers: `U(−1/√fan_in, 1/√fan_in)` for
/// weights and biases (kaiming-uniform with a = √5), from our own seeded generator.
pub fn init_params(spec: &CnnSpec, seed: u64) -> Result<CnnParams, CnnError> {
    let mut rng = Rng::new(seed);
    let mut tensors = BTreeMap::new();
    let shapes = spec.param_shapes();
    for pair in shapes.chunks(2) {
        let fan_in: usize = pair[0].1[1..].iter().product();
        let bound = 1.0 / (fan_in as f64).sqrt();
        for (name, shape) in pair {
            let len: usize = shape.iter().product();
            let v = (0..len)
                .map(|_| ((rng.uniform() * 2.0 - 1.0) * bound) as f32)
                .collect();
            tensors.insert(name.clone(), (shape.clone(), v));
        }
    }
    CnnParams::new(spec.clone(), tensors)
}

/// Trains from `start` on `data`; `hook` is applied in every forward (use `NoHook` for plain
/// float training). Returns the trained parameters and the last epoch's mean loss.
pub fn train(
    start: &CnnParams,
    data: &Images<'_>,
    cfg: &TrainConfig,
    hook: &mut dyn Hook,
    progress: Progress<'_>,
) -> Result<(CnnParams, f32), CnnError> {
    let dev = Device::Cpu;
    let [c, h, w] = start.spec.input;
    let per = c * h * w;
    let n_all = data.labels.len();
    let n = if cfg.limit > 0 {
        cfg.limit.min(n_all)
    } else {
        n_all
    };
    if cfg.batch == 0 {
        return Err(CnnError::Spec(
            start.spec.name.clone(),
            "a batch of 0 images".into(),
        ));
    }
    if n == 0 || data.pixels.len() < n * per {
        return Err(CnnError::Spec(
            start.spec.name.clone(),
            "no training images".into(),
        ));
    }
    let init = FloatNet::from_params(start, &dev)?;
    let mut vars = BTreeMap::new();
    for (name, t) in &init.params {
        vars.insert(name.clone(), Var::from_tensor(t)?);
    }
    let mut opt = AdamW::new(
        vars.values().cloned().collect(),
        ParamsAdamW {
            lr: cfg.lr,
            weight_decay: cfg.weight_decay,
            ..Default::default()
        },
    )?;
    let normalized = start.spec.normalize(&data.pixels[..n * per]); // [n][C·H·W]
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = Rng::new(cfg.seed ^ 0x5eed);
    let steps = n.div_ceil(cfg.batch);
    let total = (steps * cfg.epochs).max(1);
    let mut last_loss = f32::NAN;
    for epoch in 0..cfg.epochs {
        // Fisher–Yates with our generator: the same order on every machine.
        for i in (1..n).rev() {
            order.swap(i, rng.below(i + 1));
        }
        let mut sum = 0.0f64;
        for (step, idx) in order.chunks(cfg.batch).enumerate() {
            let t = (epoch * steps + step) as f64 / total as f64;
            opt.set_learning_rate(
                cfg.lr * (0.02 + 0.98 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())),
            );
            let mut xb = Vec::with_capacity(idx.len() * per); // [b][C·H·W]
            let mut yb = Vec::with_capacity(idx.len()); // [b]
            for &i in idx {
                xb.extend_from_slice(&normalized[i * per..(i + 1) * per]);
                yb.push(data.labels[i] as u32);
            }
            let x = Tensor::from_vec(xb, (idx.len(), c, h, w), &dev)?;
            let y = Tensor::from_vec(yb, idx.len(), &dev)?;
            let net = FloatNet {
                spec: start.spec.clone(),
                params: vars
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
                    .collect(),
                unfold_convs: true,
            };
            let logits = net.forward(&x, hook)?;
            let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
            opt.backward_step(&loss)?;
            let l = loss.to_dtype(DType::F32)?.to_scalar::<f32>()?;
            sum += l as f64;
            progress(epoch, step + 1, steps, (sum / (step + 1) as f64) as f32);
        }
        last_loss = (sum / steps as f64) as f32;
    }
    let net = FloatNet {
        spec: start.spec.clone(),
        params: vars
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect(),
        unfold_convs: true,
    };
    Ok((net.to_params()?, last_loss))
}

/// Fraction of `labels` that `predictions` gets right.
pub fn accuracy(predictions: &[usize], labels: &[u8]) -> f64 {
    let right = predictions
        .iter()
        .zip(labels)
        .filter(|(p, l)| **p == **l as usize)
        .count();
    right as f64 / labels.len().max(1) as f64
}

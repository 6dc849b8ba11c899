//! The float forward pass of a [`CnnSpec`] on candle tensors, with a [`Hook`] at every point
//! where an int8 network quantizes: the parameters of each conv/linear layer and the activations
//! at each [`QuantPoint`]. The same forward trains (no hook), calibrates (observing hook),
//! simulates quantization (fake-quant hook) and runs QAT (fake quant with the straight-through
//! estimator) — one definition of the network, not four.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};

use super::{CnnError, CnnParams, CnnSpec, Layer};

/// A place where the integer network holds quantized activations: the input, then the output of
/// every conv/linear layer (after its ReLU when one follows — ReLU is fused into the
/// requantization). Pooling and flattening keep their input's quantization.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantPoint {
    /// Index of the conv/linear layer whose output this is; `None` for the network input.
    pub layer: Option<usize>,
    /// Whether a ReLU is fused (the range then starts at 0).
    pub relu: bool,
    /// Name for reports: `input`, `conv1`, …
    pub name: String,
}

/// The quantization points of a network, in order.
pub fn quant_points(spec: &CnnSpec) -> Vec<QuantPoint> {
    let mut v = vec![QuantPoint {
        layer: None,
        relu: false,
        name: "input".into(),
    }];
    for (i, l) in spec.layers.iter().enumerate() {
        if let Some(name) = l.param_name() {
            v.push(QuantPoint {
                layer: Some(i),
                relu: matches!(spec.layers.get(i + 1), Some(Layer::Relu)),
                name: name.to_string(),
            });
        }
    }
    v
}

/// Called by [`FloatNet::forward`] where quantization happens. Both methods default to
/// identity.
pub trait Hook {
    /// Parameters of conv/linear layer `layer` (`w`, `b`) before use; `point` is the
    /// quantization point of this layer's input.
    fn params(
        &mut self,
        layer: usize,
        input_point: usize,
        w: &Tensor,
        b: &Tensor,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let _ = (layer, input_point);
        Ok((w.clone(), b.clone()))
    }
    /// Activations at quantization point `point` (index into [`quant_points`]).
    fn activation(&mut self, point: usize, x: &Tensor) -> candle_core::Result<Tensor> {
        let _ = point;
        Ok(x.clone())
    }
}

/// The identity hook: plain float inference and training.
pub struct NoHook;
impl Hook for NoHook {}

/// A network's parameters as candle tensors (or training variables' tensors).
pub struct FloatNet {
    /// Architecture.
    pub spec: CnnSpec,
    /// name → tensor in PyTorch layout.
    pub params: BTreeMap<String, Tensor>,
    /// Convolutions as shifted slices + one matmul instead of candle's `conv2d`: same values,
    /// and on CPU several times faster than candle 0.11's tiled direct convolution, forward and
    /// backward (its `conv_transpose2d` is plain loops). On by default.
    pub unfold_convs: bool,
}

impl FloatNet {
    /// Tensors on `device` holding `p`'s values.
    pub fn from_params(p: &CnnParams, device: &Device) -> Result<Self, CnnError> {
        let mut params = BTreeMap::new();
        for (name, (shape, v)) in &p.tensors {
            params.insert(
                name.clone(),
                Tensor::from_slice(v, shape.as_slice(), device)?,
            );
        }
        Ok(Self {
            spec: p.spec.clone(),
            params,
            unfold_convs: true,
        })
    }

    /// Reads the current values back into plain parameters.
    pub fn to_params(&self) -> Result<CnnParams, CnnError> {
        let mut tensors = BTreeMap::new();
        for (name, t) in &self.params {
            let v = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            tensors.insert(name.clone(), (t.dims().to_vec(), v));
        }
        CnnParams::new(self.spec.clone(), tensors)
    }

    /// Logits `[n, classes]` for normalized inputs `x: [n, C, H, W]`.
    pub fn forward(&self, x: &Tensor, hook: &mut dyn Hook) -> candle_core::Result<Tensor> {
        let mut x = hook.activation(0, x)?;
        let mut point = 0;
        let layers = &self.spec.layers;
        let mut i = 0;
        while i < layers.len() {
            match &layers[i] {
                Layer::Conv2d { name, .. } | Layer::Linear { name, .. } => {
                    let w = &self.params[&format!("{name}.weight")];
                    let b = &self.params[&format!("{name}.bias")];
                    let (w, b) = hook.params(i, point, w, b)?;
                    x = match &layers[i] {
                        Layer::Conv2d { pad, kernel, .. } => {
                            let oc = b.dims1()?;
                            let y = if self.unfold_convs {
                                conv2d_unfold(&x, &w, *kernel, *pad)?
                            } else {
                                x.conv2d(&w, *pad, 1, 1, 1)?
                            };
                            y.broadcast_add(&b.reshape((1, oc, 1, 1))?)?
                        }
                        _ => x.matmul(&w.t()?)?.broadcast_add(&b)?,
                    };
                    if matches!(layers.get(i + 1), Some(Layer::Relu)) {
                        x = x.relu()?;
                        i += 1;
                    }
                    point += 1;
                    x = hook.activation(point, &x)?;
                }
                Layer::Relu => x = x.relu()?,
                Layer::MaxPool2 => x = x.max_pool2d(2)?,
                Layer::Flatten => x = x.flatten_from(1)?,
            }
            i += 1;
        }
        Ok(x)
    }

    /// Logits for raw pixel rows `pixels: [n][C·H·W]`, in batches of `batch`.
    pub fn logits(
        &self,
        pixels: &[u8],
        batch: usize,
        hook: &mut dyn Hook,
    ) -> Result<Vec<f32>, CnnError> {
        let [c, h, w] = self.spec.input;
        let per = c * h * w;
        let mut out = Vec::new();
        for chunk in pixels.chunks(batch.max(1) * per) {
            let n = chunk.len() / per;
            let x = Tensor::from_vec(self.spec.normalize(chunk), (n, c, h, w), &Device::Cpu)?;
            let y = self.forward(&x, hook)?;
            out.extend(y.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(out)
    }
}

/// Stride-1 convolution of `x: [n, c, h, w]` with `w: [oc, c, k, k]` as im2col by tensor ops:
/// the k² shifted views are concatenated to `[n, c·k·k, oh·ow]` (channel-major, matching the
/// weight's `[oc, c·k·k]` flattening) and multiplied by the weight matrix.
fn conv2d_unfold(x: &Tensor, w: &Tensor, k: usize, pad: usize) -> candle_core::Result<Tensor> {
    let (n, c, h, wd) = x.dims4()?;
    let oc = w.dim(0)?;
    let xp = x.pad_with_zeros(2, pad, pad)?.pad_with_zeros(3, pad, pad)?;
    let (oh, ow) = (h + 2 * pad + 1 - k, wd + 2 * pad + 1 - k);
    let mut views = Vec::with_capacity(k * k);
    for ky in 0..k {
        for kx in 0..k {
            views.push(xp.narrow(2, ky, oh)?.narrow(3, kx, ow)?.unsqueeze(2)?); // [n, c, 1, oh, ow]
        }
    }
    let cols = Tensor::cat(&views, 2)?.reshape((n, c * k * k, oh * ow))?; // [n, c·k², oh·ow]
    let wm = w
        .reshape((1, oc, c * k * k))?
        .broadcast_as((n, oc, c * k * k))?;
    wm.matmul(&cols)?.reshape((n, oc, oh, ow))
}

//! Dynamic quantization (PyTorch's `quantize_dynamic` idea, applied to convolutions too):
//! int8 weights per output channel, prepared once; each conv/linear input is quantized to u8
//! with a scale and zero-point taken from the min and max of the current batch, multiplied in
//! integers (the same i32 GEMM as the static engine), and scaled back to float with the float
//! bias. No calibration data; activations between layers stay float.

use smelt_kernels::Variant;
use smelt_kernels::int8::{PackedI8, gemm_u8i8};

use super::int8::{ActQuant, engine_weights, im2col_nhwc, max_pool_nhwc};
use super::{CnnError, CnnParams, Layer, Shape3};

struct DynStage {
    conv: Option<(usize, usize, Shape3, Shape3)>,
    w: PackedI8,
    /// Per output channel weight scale, `[oc]`.
    w_scales: Vec<f32>,
    /// Float bias, `[oc]`.
    bias: Vec<f32>,
    relu: bool,
}

enum Stage {
    Mat(DynStage),
    Pool(Shape3),
}

/// A network ready for dynamic-quantized inference.
pub struct DynamicEngine {
    input: Shape3,
    norm: (f32, f32),
    stages: Vec<Stage>,
    variant: Variant,
}

impl DynamicEngine {
    /// Quantizes `p`'s weights to int8 per output channel (symmetric, ±127).
    pub fn new(p: &CnnParams, variant: Variant) -> Result<Self, CnnError> {
        let shapes = p.spec.shapes()?;
        let mut stages = Vec::new();
        let mut prev = p.spec.input;
        let mut flat_from = None;
        let mut i = 0;
        while i < p.spec.layers.len() {
            let layer = &p.spec.layers[i];
            match layer {
                Layer::Conv2d { name, .. } | Layer::Linear { name, .. } => {
                    let w = p.get(&format!("{name}.weight"));
                    let bias = p.get(&format!("{name}.bias")).to_vec();
                    let oc = bias.len();
                    let k = w.len() / oc;
                    let mut codes = Vec::with_capacity(w.len());
                    let mut w_scales = Vec::with_capacity(oc);
                    for row in w.chunks_exact(k) {
                        let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
                        let s = if amax > 0.0 { amax / 127.0 } else { 1.0 };
                        codes.extend(
                            row.iter()
                                .map(|v| (v / s).round_ties_even().clamp(-127.0, 127.0) as i8),
                        );
                        w_scales.push(s);
                    }
                    let w = engine_weights(layer, &codes, oc, flat_from.take());
                    let relu = matches!(p.spec.layers.get(i + 1), Some(Layer::Relu));
                    let conv = match layer {
                        Layer::Conv2d { kernel, pad, .. } => Some((*kernel, *pad, prev, shapes[i])),
                        _ => None,
                    };
                    stages.push(Stage::Mat(DynStage {
                        conv,
                        w: PackedI8::new(&w, oc, k),
                        w_scales,
                        bias,
                        relu,
                    }));
                    if relu {
                        i += 1;
                    }
                }
                Layer::Relu => {
                    return Err(CnnError::Spec(
                        p.spec.name.clone(),
                        format!("layer {i}: a ReLU must follow a conv or linear layer"),
                    ));
                }
                Layer::MaxPool2 => stages.push(Stage::Pool(prev)),
                Layer::Flatten => flat_from = Some(prev),
            }
            prev = shapes[i];
            i += 1;
        }
        Ok(Self {
            input: p.spec.input,
            norm: (p.spec.norm_mean, p.spec.norm_std),
            stages,
            variant,
        })
    }

    /// Logits `[n][classes]` for raw pixels `[n][C·H·W]`.
    pub fn logits(&self, pixels: &[u8]) -> Vec<f32> {
        let [c, h, w] = self.input;
        let per = c * h * w;
        let n = pixels.len() / per;
        let (mean, std) = self.norm;
        // Float activations, NHWC.
        let mut x = vec![0f32; n * per];
        for img in 0..n {
            for ch in 0..c {
                for p in 0..h * w {
                    x[img * per + p * c + ch] =
                        (pixels[img * per + ch * h * w + p] as f32 / 255.0 - mean) / std;
                }
            }
        }
        let mut q = Vec::new();
        let mut cols = Vec::new();
        for stage in &self.stages {
            x = match stage {
                Stage::Pool(s) => max_pool_nhwc(&x, n, *s),
                Stage::Mat(m) => {
                    // This batch's range → u8 parameters.
                    let (lo, hi) = x
                        .iter()
                        .fold((0f32, 0f32), |(a, b), &v| (a.min(v), b.max(v)));
                    let aq = ActQuant::from_range(lo, hi);
                    q.clear();
                    q.extend(x.iter().map(|&v| aq.quantize(v)));
                    let kp = m.w.k_pad();
                    match m.conv {
                        Some((k, pad, s_in, s_out)) => {
                            im2col_nhwc(&q, n, s_in, s_out, k, pad, aq.zp as u8, kp, &mut cols)
                        }
                        None => {
                            cols.clear();
                            cols.resize(n * kp, 0);
                            for (dst, src) in cols.chunks_exact_mut(kp).zip(q.chunks_exact(m.w.k()))
                            {
                                dst[..src.len()].copy_from_slice(src);
                            }
                        }
                    }
                    let rows = cols.len() / kp;
                    let oc = m.w.oc();
                    let oc_pad = oc.div_ceil(8) * 8;
                    let mut acc = vec![0i32; rows * oc_pad]; // [rows][oc_pad]
                    gemm_u8i8(&cols, &m.w, &mut acc, self.variant);
                    let sums = m.w.row_sums();
                    let mut y = vec![0f32; rows * oc]; // [rows][oc], NHWC for convs
                    for (r, yr) in y.chunks_exact_mut(oc).enumerate() {
                        for (o, v) in yr.iter_mut().enumerate() {
                            let a = acc[r * oc_pad + o] - aq.zp * sums[o];
                            let f = a as f32 * aq.scale * m.w_scales[o] + m.bias[o];
                            *v = if m.relu { f.max(0.0) } else { f };
                        }
                    }
                    y
                }
            };
        }
        x
    }
}

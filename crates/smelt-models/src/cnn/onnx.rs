//! ONNX export of a CNN (opset 13, dynamic batch axis `N`): the FP32 network as plain
//! Conv/Relu/MaxPool/Flatten/Gemm, and a [`QuantizedCnn`] in QDQ form — int8 weight and int32
//! bias initializers behind `DequantizeLinear` (per output channel on axis 0 where the weights
//! are per-channel), and a `QuantizeLinear → DequantizeLinear` pair (u8) at every activation
//! quantization point, so runtimes such as onnxruntime fuse them into integer kernels.
//!
//! Input: `input`, float `[N, C, H, W]`, already normalized `(pixel/255 − mean)/std`.
//! Output: `logits`, float `[N, classes]`.

use smelt_onnx::{Dim, GraphBuilder, ModelProto};

use super::int8::QuantizedCnn;
use super::{CnnError, CnnParams, CnnSpec, Layer};

/// The opset both exports use.
pub const OPSET: i64 = 13;

fn io(b: &mut GraphBuilder, spec: &CnnSpec, classes: usize) {
    let [c, h, w] = spec.input;
    b.input_f32(
        "input",
        &[
            Dim::Symbolic("N".into()),
            Dim::Fixed(c as i64),
            Dim::Fixed(h as i64),
            Dim::Fixed(w as i64),
        ],
    );
    b.output_f32(
        "logits",
        &[Dim::Symbolic("N".into()), Dim::Fixed(classes as i64)],
    );
}

/// Where the weights come from: float values, or codes + scales + the input scale for biases.
enum Params<'a> {
    Float(&'a CnnParams),
    Quant(&'a QuantizedCnn),
}

fn build(spec: &CnnSpec, params: Params<'_>) -> Result<ModelProto, CnnError> {
    let shapes = spec.shapes()?;
    let classes = shapes.last().map(|s| s[0]).unwrap_or(0);
    let mut b = GraphBuilder::new(&spec.name);
    io(&mut b, spec, classes);
    let mut x = "input".to_string();
    let mut point = 0;
    let mut li = 0;
    // Q → DQ with the parameters of quantization point `pt`; returns the dequantized name.
    let qdq = |b: &mut GraphBuilder, x: &str, pt: usize, tag: &str| -> String {
        let Params::Quant(q) = &params else {
            return x.to_string();
        };
        let a = q.acts[pt];
        let (s, z) = (format!("{tag}.q_scale"), format!("{tag}.q_zero"));
        b.scalar_f32(&s, a.scale);
        b.scalar_u8(&z, a.zp as u8);
        let (qn, dn) = (format!("{tag}.q"), format!("{tag}.dq"));
        b.node("QuantizeLinear", &[x, &s, &z], &[&qn]);
        b.node("DequantizeLinear", &[&qn, &s, &z], &[&dn]);
        dn
    };
    x = qdq(&mut b, &x, 0, "input");
    let n_layers = spec.layers.len();
    for (i, layer) in spec.layers.iter().enumerate() {
        let out = if i + 1 == n_layers && !matches!(params, Params::Quant(_)) {
            "logits".to_string()
        } else {
            format!("l{i}")
        };
        match layer {
            Layer::Conv2d { name, .. } | Layer::Linear { name, .. } => {
                let (wn, bn) = (format!("{name}.weight"), format!("{name}.bias"));
                let wshape: Vec<i64> = spec
                    .param_shapes()
                    .into_iter()
                    .find(|(n, _)| *n == wn)
                    .map(|(_, s)| s.iter().map(|&d| d as i64).collect())
                    .expect("spec parameter");
                let oc = wshape[0];
                let (w_in, b_in) = match &params {
                    Params::Float(p) => {
                        b.initializer_f32(&wn, &wshape, p.get(&wn));
                        b.initializer_f32(&bn, &[oc], p.get(&bn));
                        (wn.clone(), bn.clone())
                    }
                    Params::Quant(q) => {
                        let ql = &q.layers[li];
                        let s_in = q.acts[point].scale;
                        let per_channel = ql.w_scales.len() > 1;
                        let (wq, ws, wz) = (
                            format!("{wn}_q"),
                            format!("{wn}_scale"),
                            format!("{wn}_zero"),
                        );
                        b.initializer_i8(&wq, &wshape, &ql.w_codes);
                        let bias_scales: Vec<f32> = (0..oc as usize)
                            .map(|o| (s_in as f64 * ql.w_scale(o) as f64) as f32)
                            .collect();
                        let (bq, bs, bz) = (
                            format!("{bn}_q"),
                            format!("{bn}_scale"),
                            format!("{bn}_zero"),
                        );
                        b.initializer_i32(&bq, &[oc], &ql.b_codes);
                        b.initializer_f32(&bs, &[oc], &bias_scales);
                        b.initializer_i32(&bz, &[oc], &vec![0; oc as usize]);
                        if per_channel {
                            b.initializer_f32(&ws, &[oc], &ql.w_scales);
                            b.initializer_i8(&wz, &[oc], &vec![0; oc as usize]);
                        } else {
                            b.scalar_f32(&ws, ql.w_scales[0]);
                            b.scalar_i8(&wz, 0);
                        }
                        let (wd, bd) = (format!("{wn}_dq"), format!("{bn}_dq"));
                        let node = b.node("DequantizeLinear", &[&wq, &ws, &wz], &[&wd]);
                        if per_channel {
                            node.attr_int("axis", 0);
                        }
                        b.node("DequantizeLinear", &[&bq, &bs, &bz], &[&bd])
                            .attr_int("axis", 0);
                        (wd, bd)
                    }
                };
                match layer {
                    Layer::Conv2d { kernel, pad, .. } => {
                        let (k, p) = (*kernel as i64, *pad as i64);
                        b.node("Conv", &[&x, &w_in, &b_in], &[&out])
                            .name(name)
                            .attr_ints("kernel_shape", &[k, k])
                            .attr_ints("pads", &[p, p, p, p])
                            .attr_ints("strides", &[1, 1]);
                    }
                    _ => {
                        b.node("Gemm", &[&x, &w_in, &b_in], &[&out])
                            .name(name)
                            .attr_int("transB", 1);
                    }
                }
                x = out;
                if matches!(spec.layers.get(i + 1), Some(Layer::Relu)) {
                    let r = format!("{x}.relu");
                    b.node("Relu", &[&x], &[&r]);
                    x = r;
                }
                point += 1;
                li += 1;
                x = qdq(&mut b, &x, point, name);
            }
            Layer::Relu => {
                // Fused above when it follows a conv/linear layer.
                if !matches!(
                    i.checked_sub(1).map(|j| &spec.layers[j]),
                    Some(Layer::Conv2d { .. } | Layer::Linear { .. })
                ) {
                    b.node("Relu", &[&x], &[&out]);
                    x = out;
                }
            }
            Layer::MaxPool2 => {
                b.node("MaxPool", &[&x], &[&out])
                    .attr_ints("kernel_shape", &[2, 2])
                    .attr_ints("strides", &[2, 2]);
                x = qdq(&mut b, &out, point, &format!("pool{i}"));
            }
            Layer::Flatten => {
                b.node("Flatten", &[&x], &[&out]).attr_int("axis", 1);
                x = qdq(&mut b, &out, point, &format!("flatten{i}"));
            }
        }
    }
    if x != "logits" {
        b.node("Identity", &[&x], &["logits"]);
    }
    Ok(b.finish(OPSET, "smelt"))
}

/// The FP32 network as an ONNX model.
pub fn export_fp32(p: &CnnParams) -> Result<ModelProto, CnnError> {
    build(&p.spec, Params::Float(p))
}

/// The quantized network in QDQ form.
pub fn export_qdq(q: &QuantizedCnn) -> Result<ModelProto, CnnError> {
    if q.weight_bits != 8 {
        return Err(CnnError::Spec(
            q.spec.name.clone(),
            format!(
                "QDQ export is for 8-bit weights (opset 13 has no int4), this network has {}",
                q.weight_bits
            ),
        ));
    }
    build(&q.spec, Params::Quant(q))
}

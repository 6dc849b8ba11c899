//! Static PTQ on small random CNNs (shapes that do not divide the kernels' tiles): the integer
//! engine against its float fake-quant simulation, every kernel variant bit-identical, dynamic
//! quantization close to float, and the QAT straight-through estimator's gradients.

use std::collections::BTreeMap;

use candle_core::{Device, Tensor, Var};
use smelt_compress::ptq::{
    ActObserver, FakeQuant, PtqConfig, WeightGranularity, float_logits, ptq_static,
};
use smelt_compress::qat::QatHook;
use smelt_models::cnn::dynamic::DynamicEngine;
use smelt_models::cnn::float::Hook;
use smelt_models::cnn::int8::Int8Engine;
use smelt_models::cnn::{CnnParams, CnnSpec, Layer, argmax_rows};
use smelt_quant::rng::Rng;

use smelt_quant::rng::test_seed as seed;

fn odd_spec() -> CnnSpec {
    CnnSpec {
        name: "odd".into(),
        input: [3, 11, 9],
        norm_mean: 0.2,
        norm_std: 0.5,
        layers: vec![
            Layer::Conv2d {
                name: "c1".into(),
                in_ch: 3,
                out_ch: 5,
                kernel: 3,
                pad: 1,
            },
            Layer::Relu,
            Layer::MaxPool2,
            Layer::Conv2d {
                name: "c2".into(),
                in_ch: 5,
                out_ch: 9,
                kernel: 2,
                pad: 0,
            },
            Layer::Relu,
            Layer::Flatten,
            Layer::Linear {
                name: "f1".into(),
                in_f: 9 * 4 * 3,
                out_f: 13,
            },
            Layer::Relu,
            Layer::Linear {
                name: "f2".into(),
                in_f: 13,
                out_f: 4,
            },
        ],
    }
}

fn random_params(spec: &CnnSpec, rng: &mut Rng) -> CnnParams {
    let mut t = BTreeMap::new();
    for (name, shape) in spec.param_shapes() {
        let fan_in: usize = if shape.len() > 1 {
            shape[1..].iter().product()
        } else {
            4
        };
        let v = rng
            .normals(shape.iter().product())
            .iter()
            .map(|x| x / (fan_in as f32).sqrt())
            .collect();
        t.insert(name, (shape, v));
    }
    CnnParams::new(spec.clone(), t).unwrap()
}

#[test]
fn integer_engine_matches_fake_quant_and_variants_are_identical() {
    let mut rng = Rng::new(seed());
    let spec = odd_spec();
    let per = 3 * 11 * 9;
    for gran in [WeightGranularity::PerTensor, WeightGranularity::PerChannel] {
        for bits in [8, 4] {
            let p = random_params(&spec, &mut rng);
            let calib: Vec<u8> = (0..64 * per).map(|_| rng.below(256) as u8).collect();
            let images: Vec<u8> = (0..200 * per).map(|_| rng.below(256) as u8).collect();
            let cfg = PtqConfig {
                weight_bits: bits,
                granularity: gran,
                observer: ActObserver::MinMax,
            };
            let (q, _) = ptq_static(&p, &calib, &cfg).unwrap();
            let want = Int8Engine::new(&q, smelt_kernels::Variant::Reference)
                .unwrap()
                .run(&images);
            for &v in smelt_kernels::available_variants() {
                let got = Int8Engine::new(&q, v).unwrap().run(&images);
                assert_eq!(
                    got,
                    want,
                    "{} differs from the reference ({gran:?}, {bits} bits)",
                    v.name()
                );
            }
            // Integer requantization vs float fake quantization: the same u8 grid, so codes
            // differ by at most one step, and only where a float rounding tie falls differently.
            let engine = Int8Engine::new(&q, smelt_kernels::variant()).unwrap();
            let int_logits = engine.logits(&images);
            let fq_logits = FakeQuant::new(&q).logits(&images).unwrap();
            let step = q.acts.last().unwrap().scale;
            let far = int_logits
                .iter()
                .zip(&fq_logits)
                .filter(|(a, b)| (*a - *b).abs() > 1.01 * step)
                .count();
            let off = int_logits
                .iter()
                .zip(&fq_logits)
                .filter(|(a, b)| (*a - *b).abs() > 0.01 * step)
                .count();
            eprintln!(
                "{gran:?} {bits}-bit: {off} of {} logits one step apart",
                int_logits.len()
            );
            assert!(
                far * 100 <= int_logits.len(),
                "{far} logits more than one step apart"
            );
            assert!(off * 20 <= int_logits.len(), "{off} logits differ");
            let agree = argmax_rows(&int_logits, 4)
                .iter()
                .zip(argmax_rows(&fq_logits, 4))
                .filter(|(a, b)| **a == *b)
                .count();
            assert!(agree >= 190, "only {agree}/200 same predictions");
        }
    }
}

#[test]
fn dynamic_quantization_stays_close_to_float() {
    let mut rng = Rng::new(seed());
    let spec = odd_spec();
    let p = random_params(&spec, &mut rng);
    let images: Vec<u8> = (0..100 * 3 * 11 * 9)
        .map(|_| rng.below(256) as u8)
        .collect();
    let f = float_logits(&p, &images).unwrap();
    let d = DynamicEngine::new(&p, smelt_kernels::variant())
        .unwrap()
        .logits(&images);
    let r = DynamicEngine::new(&p, smelt_kernels::Variant::Reference)
        .unwrap()
        .logits(&images);
    assert_eq!(d, r, "dynamic engine: SIMD and reference differ");
    let scale = f.iter().fold(0f32, |m, v| m.max(v.abs()));
    let err = f
        .iter()
        .zip(&d)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(err < 0.05 * scale, "max error {err} vs logit scale {scale}");
}

#[test]
fn qat_forward_is_fake_quant_and_backward_is_straight_through() {
    let spec = odd_spec();
    let mut hook = QatHook::new(&spec, 4, vec![(-1.0, 1.0); 5]);
    let w = Var::from_tensor(
        &Tensor::new(&[[0.3f32, -0.7, 0.05], [1.0, 0.2, -0.1]], &Device::Cpu).unwrap(),
    )
    .unwrap();
    let b = Tensor::zeros(2, candle_core::DType::F32, &Device::Cpu).unwrap();
    let (wq, _) = hook.params(0, 0, w.as_tensor(), &b).unwrap();
    // Row scales 0.7/7 and 1/7: codes round to the grid. 0.05 is half a step (0.5 in f32): a
    // tie, rounded to the even code 0 as the deployed model's quantizer rounds it.
    let got = wq.to_vec2::<f32>().unwrap();
    let want = [[0.3f32, -0.7, 0.0], [1.0, 1.0 / 7.0, -1.0 / 7.0]];
    for (g, w_) in got.iter().flatten().zip(want.iter().flatten()) {
        assert!((g - w_).abs() < 1e-6, "{got:?}");
    }
    let grads = wq.sum_all().unwrap().backward().unwrap();
    let g = grads.get(w.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
    assert!(g.iter().flatten().all(|v| *v == 1.0), "STE gradient {g:?}");
}

/// QAT's activation fake quant gives the values the deployed u8 quantizer gives
/// (`ActQuant::quantize`, then back), ties included: inputs on and next to the half-steps of
/// a scale (76.5 / 255, about 0.3) whose reciprocal is inexact.
#[test]
fn qat_activation_codes_are_the_deployed_quantizers() {
    use smelt_models::cnn::int8::ActQuant;
    let spec = odd_spec();
    let (lo, hi) = (0.0f32, 76.5f32);
    let a = ActQuant::from_range(lo, hi);
    let mut rng = Rng::new(seed());
    let mut xs: Vec<f32> = (0..255)
        .map(|k| (k as f32 + 0.5) * a.scale)
        .flat_map(|v| {
            [
                v,
                f32::from_bits(v.to_bits() + 1),
                f32::from_bits(v.to_bits() - 1),
            ]
        })
        .collect();
    xs.extend(rng.normals(1000).iter().map(|v| (v.abs() * 20.0).min(hi)));
    // The batch's extremes are the ranges, so the moving average leaves them there.
    xs.extend([lo, hi]);
    let mut hook = QatHook::new(&spec, 8, vec![(lo, hi); 5]);
    let x = Tensor::new(xs.as_slice(), &Device::Cpu).unwrap();
    let got = hook.activation(0, &x).unwrap().to_vec1::<f32>().unwrap();
    for (v, g) in xs.iter().zip(got) {
        let want = (a.quantize(*v) as i32 - a.zp) as f32 * a.scale;
        assert_eq!(g, want, "{v}");
    }
}

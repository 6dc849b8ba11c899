//! Property tests over many random tensors, shapes, formats, schemes and granularities:
//! in-range error ≤ scale/2, exact zero for asymmetric schemes, lossless INT4 packing.

use smelt_quant::int::{IntFormat, pack_nibbles, unpack_nibbles};
use smelt_quant::rng::Rng;
use smelt_quant::{Granularity, QuantSpec, QuantizedTensor, Scheme};

fn random_case(r: &mut Rng) -> (Vec<f32>, Vec<usize>, QuantSpec) {
    let rows = 1 + r.below(9);
    let cols = 1 + r.below(40);
    let shape = vec![rows, cols];
    let spread = 10f32.powf(r.uniform() as f32 * 6.0 - 3.0);
    let offset = (r.uniform() as f32 - 0.5) * spread * 2.0;
    let x: Vec<f32> = (0..rows * cols)
        .map(|_| offset + spread * r.normal() as f32)
        .collect();
    let bits = 2 + r.below(7) as u8;
    let signed = r.uniform() < 0.6;
    let scheme = match (signed, r.below(3)) {
        (true, 0) => Scheme::Symmetric { restricted: true },
        (true, 1) => Scheme::Symmetric { restricted: false },
        _ => Scheme::Asymmetric,
    };
    let granularity = match r.below(5) {
        0 => Granularity::PerTensor,
        1 => Granularity::PerChannel { axis: r.below(2) },
        2 => Granularity::Group {
            axis: 1,
            size: 1 + r.below(cols),
        },
        3 => Granularity::Group {
            axis: 0,
            size: 1 + r.below(rows),
        },
        _ => Granularity::Block2D {
            rows: 1 + r.below(rows),
            cols: 1 + r.below(cols),
        },
    };
    let spec = QuantSpec {
        format: IntFormat { bits, signed },
        scheme,
        granularity,
    };
    (x, shape, spec)
}

#[test]
fn min_max_error_is_at_most_half_a_step() {
    let mut r = Rng::new(2026);
    for case in 0..3000 {
        let (x, shape, spec) = random_case(&mut r);
        let q = QuantizedTensor::quantize(&x, &shape, spec).unwrap();
        let y = q.dequantize();
        // With min-max ranges every element is in range, so its error is at most half a step
        // of its group's scale (the group is found among those that decode its code to y).
        let codes = q.codes();
        for (i, (&a, &b)) in x.iter().zip(&y).enumerate() {
            let fits = q.params.iter().any(|p| {
                // f32 rounding of x / scale and (q - zp) * scale adds a few ulps of |x|.
                (a - b).abs() <= p.scale * 0.5 + 4.0 * f32::EPSILON * a.abs()
                    && p.dequantize(codes[i]) == b
            });
            assert!(fits, "case {case} {spec:?}: x[{i}]={a} -> {b}");
        }
    }
}

#[test]
fn asymmetric_schemes_represent_zero_exactly() {
    let mut r = Rng::new(7);
    for _ in 0..2000 {
        let (mut x, shape, mut spec) = random_case(&mut r);
        spec.scheme = Scheme::Asymmetric;
        let zeros: Vec<usize> = (0..x.len()).filter(|_| r.uniform() < 0.2).collect();
        for &i in &zeros {
            x[i] = 0.0;
        }
        let q = QuantizedTensor::quantize(&x, &shape, spec).unwrap();
        for p in &q.params {
            assert_eq!(p.dequantize(p.quantize(0.0)), 0.0, "{p:?}");
        }
        let y = q.dequantize();
        for &i in &zeros {
            assert_eq!(y[i], 0.0, "{spec:?}");
        }
    }
}

#[test]
fn int4_packing_is_lossless() {
    let mut r = Rng::new(11);
    for _ in 0..2000 {
        let n = r.below(100);
        let signed = r.uniform() < 0.5;
        let codes: Vec<i8> = (0..n)
            .map(|_| {
                if signed {
                    r.below(16) as i8 - 8
                } else {
                    r.below(16) as i8
                }
            })
            .collect();
        let packed = pack_nibbles(&codes);
        assert_eq!(packed.len(), n.div_ceil(2));
        assert_eq!(unpack_nibbles(&packed, n, signed), codes);
    }
}

//! Every int8 GEMM variant against the reference on fresh random inputs: the integers must be
//! identical (integer arithmetic has no rounding freedom). Seed printed; `SMELT_SEED` replays.

use smelt_kernels::int8::{
    FixedMultiplier, PackedI8, Requant, gemm_reference, gemm_u8i8, gemm_u8i8_blocks,
    gemm_u8i8_requant, k_padded,
};
use smelt_kernels::{Variant, available_variants};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

use smelt_quant::rng::test_seed as seed;

/// Shapes from LeNet and the ccexam CNN plus awkward ones (k and oc not multiples of 4 / 8).
const SHAPES: [(usize, usize, usize); 8] = [
    (1, 1, 1),
    (5, 16, 25),
    (37, 32, 400),
    (3, 10, 84),
    (9, 7, 13),
    (70, 64, 288),
    (130, 120, 150),
    (4, 9, 3),
];

fn random_case(rng: &mut Rng, rows: usize, oc: usize, k: usize) -> (Vec<u8>, Vec<i8>) {
    let kp = k_padded(k);
    let mut a = vec![0u8; rows * kp];
    for r in 0..rows {
        for kk in 0..k {
            // Extreme bytes often: saturation bugs show at 255 × −128.
            a[r * kp + kk] = match rng.below(4) {
                0 => 255,
                _ => rng.below(256) as u8,
            };
        }
    }
    let w = (0..oc * k)
        .map(|_| match rng.below(4) {
            0 => -128i8,
            1 => 127,
            _ => rng.below(256) as u8 as i8,
        })
        .collect();
    (a, w)
}

#[test]
fn raw_sums_equal_plain_dot_products() {
    let mut rng = Rng(seed());
    for &(rows, oc, k) in &SHAPES {
        let (a, w) = random_case(&mut rng, rows, oc, k);
        let packed = PackedI8::new(&w, oc, k);
        let oc_pad = oc.div_ceil(8) * 8;
        let mut want = vec![0i32; rows * oc_pad];
        gemm_reference(&a, &packed, &mut want);
        // The reference against the unpacked definition.
        let kp = packed.k_pad();
        for r in 0..rows {
            for o in 0..oc {
                let d: i32 = (0..k)
                    .map(|kk| a[r * kp + kk] as i32 * w[o * k + kk] as i32)
                    .sum();
                assert_eq!(
                    want[r * oc_pad + o],
                    d,
                    "reference at ({r},{o}) of {rows}x{oc}x{k}"
                );
            }
        }
        for &v in available_variants() {
            let mut got = vec![-7i32; rows * oc_pad];
            gemm_u8i8(&a, &packed, &mut got, v);
            assert_eq!(got, want, "{} raw sums, shape {rows}x{oc}x{k}", v.name());
        }
    }
}

#[test]
fn output_block_ranges_equal_the_full_product() {
    let mut rng = Rng(seed());
    for &(rows, oc, k) in &SHAPES {
        let (a, w) = random_case(&mut rng, rows, oc, k);
        let packed = PackedI8::new(&w, oc, k);
        let nb = oc.div_ceil(8);
        let mut full = vec![0i32; rows * nb * 8];
        gemm_reference(&a, &packed, &mut full);
        let b0 = rng.below(nb as u64) as usize;
        let b1 = b0 + 1 + rng.below((nb - b0) as u64) as usize;
        let width = (b1 - b0) * 8;
        for &v in available_variants() {
            let mut got = vec![-7i32; rows * width];
            gemm_u8i8_blocks(&a, &packed, b0..b1, &mut got, v);
            for r in 0..rows {
                assert_eq!(
                    got[r * width..(r + 1) * width],
                    full[r * nb * 8 + b0 * 8..r * nb * 8 + b1 * 8],
                    "{} blocks {b0}..{b1} of {rows}x{oc}x{k}, row {r}",
                    v.name()
                );
            }
        }
    }
}

#[test]
fn fixed_multiplier_matches_real_product() {
    let mut rng = Rng(seed());
    for _ in 0..2000 {
        // Mantissa in [0.5, 1], exponent 0..=30: the whole documented range [2^-31, 1].
        let real = (rng.below(1 << 19) as f64 + (1u64 << 19) as f64 + 1.0) / (1u64 << 20) as f64
            * 2f64.powi(-(rng.below(31) as i32));
        let m = FixedMultiplier::new(real).expect("in range");
        assert!(
            (m.real() / real - 1.0).abs() < 1e-9,
            "{real} vs {}",
            m.real()
        );
        let x = rng.below(1 << 24) as i32 - (1 << 23);
        // Round half up of the exact product x·m/2^shift, in exact integer arithmetic.
        let den = 1i128 << m.shift;
        let want = (2 * x as i128 * m.m as i128 + den).div_euclid(2 * den) as i32;
        assert_eq!(m.apply(x), want, "x {x} real {real}");
        assert!((m.apply(x) as f64 - x as f64 * real).abs() <= 0.5 + 1e-3);
    }
    assert!(FixedMultiplier::new(2f64.powi(-31)).is_some());
    assert!(FixedMultiplier::new(2f64.powi(-40)).is_none());
    assert!(FixedMultiplier::new(0.0).is_none());
    assert!(FixedMultiplier::new(-1.0).is_none());
    assert!(FixedMultiplier::new(f64::NAN).is_none());
    assert!(FixedMultiplier::new(1e12).is_none());
}

#[test]
fn requantized_outputs_identical_across_variants() {
    let mut rng = Rng(seed());
    for &(rows, oc, k) in &SHAPES {
        let (a, w) = random_case(&mut rng, rows, oc, k);
        let packed = PackedI8::new(&w, oc, k);
        let bias: Vec<i32> = (0..oc)
            .map(|_| rng.below(200_000) as i32 - 100_000)
            .collect();
        let mult: Vec<FixedMultiplier> = (0..oc)
            .map(|_| FixedMultiplier::new((rng.below(1000) as f64 + 1.0) * 1e-6).unwrap())
            .collect();
        let zp = rng.below(256) as i32;
        let lo = if rng.below(2) == 0 { 0 } else { zp };
        let epi = Requant {
            bias: &bias,
            mult: &mult,
            zp,
            lo,
            hi: 255,
        };
        let mut want = vec![0u8; rows * oc];
        gemm_u8i8_requant(&a, &packed, epi, &mut want, Variant::Reference);
        // Reference epilogue against its definition.
        let kp = packed.k_pad();
        for r in 0..rows {
            for o in 0..oc {
                let d: i32 = (0..k)
                    .map(|kk| a[r * kp + kk] as i32 * w[o * k + kk] as i32)
                    .sum();
                let v = (mult[o].apply(d + bias[o]) + zp).clamp(lo, 255);
                assert_eq!(want[r * oc + o] as i32, v);
            }
        }
        for &v in available_variants() {
            let mut got = vec![0xA5u8; rows * oc];
            gemm_u8i8_requant(&a, &packed, epi, &mut got, v);
            assert_eq!(got, want, "{} requantized, shape {rows}x{oc}x{k}", v.name());
        }
    }
}

#[test]
fn large_products_take_the_threaded_path_and_agree() {
    let mut rng = Rng(seed());
    let (rows, oc, k) = (1000, 32, 400);
    let (a, w) = random_case(&mut rng, rows, oc, k);
    let packed = PackedI8::new(&w, oc, k);
    let bias = vec![-1000; oc];
    let mult = vec![FixedMultiplier::new(3.1e-5).unwrap(); oc];
    let epi = Requant {
        bias: &bias,
        mult: &mult,
        zp: 3,
        lo: 3,
        hi: 255,
    };
    let mut want = vec![0u8; rows * oc];
    gemm_u8i8_requant(&a, &packed, epi, &mut want, Variant::Reference);
    let mut got = vec![0u8; rows * oc];
    gemm_u8i8_requant(
        &a,
        &packed,
        epi,
        &mut got,
        *available_variants().last().unwrap(),
    );
    assert_eq!(got, want);
}

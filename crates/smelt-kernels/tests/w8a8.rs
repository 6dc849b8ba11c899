//! W8A8 (per-row int8 weights × per-token int8 activations): every variant, through the
//! threaded matrix product, against the plain reference on fresh random inputs. The integer
//! sums are exact and the scaling shared, so results must be bit-identical. Seed printed;
//! `SMELT_SEED` replays.

use smelt_kernels::w8a8::{RowInt8, TokenInt8, matmul_reference};
use smelt_kernels::{ActKinds, Activations, QMatrix, available_variants, matmul_multi};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in [-1, 1), with a few large outlier channels as LLM activations have.
    fn value(&mut self) -> f32 {
        let u = (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
        if self.next().is_multiple_of(50) {
            u * 40.0
        } else {
            u
        }
    }
}

use smelt_quant::rng::test_seed as seed;

/// (tokens, rows, cols): decode and prefill batches, SmolLM2's shapes, odd sizes.
const SHAPES: [(usize, usize, usize); 6] = [
    (1, 576, 576),
    (3, 1536, 576),
    (70, 576, 1536),
    (17, 13, 9),
    (130, 192, 576),
    (1, 5, 3),
];

#[test]
fn every_variant_equals_the_reference() {
    let mut rng = Rng(seed());
    for &(n, rows, cols) in &SHAPES {
        let w: Vec<f32> = (0..rows * cols).map(|_| rng.value()).collect();
        let x: Vec<f32> = (0..n * cols).map(|_| rng.value()).collect();
        let q = RowInt8::quantize(&w, rows, cols).unwrap();
        let mut a = TokenInt8::default();
        a.set(&x, n, cols);
        let mut want = vec![0f32; n * rows];
        matmul_reference(&q, &a, &mut want);
        // The reference against float math on the dequantized codes: close, not equal.
        let wd = q.to_f32();
        for t in 0..n {
            for o in 0..rows {
                let xd: Vec<f32> = (0..cols)
                    .map(|k| (a.codes[t * a.k_pad + k] as f32 - 128.0) * a.scales[t])
                    .collect();
                let f: f64 = (0..cols)
                    .map(|k| xd[k] as f64 * wd[o * cols + k] as f64)
                    .sum();
                let got = want[t * rows + o] as f64;
                assert!(
                    (got - f).abs() <= 1e-4 * (1.0 + f.abs()),
                    "reference ({t},{o}) of {n}x{rows}x{cols}: {got} vs {f}"
                );
            }
        }
        let mut acts = Activations::new();
        acts.set(
            &x,
            n,
            cols,
            ActKinds {
                i8row: true,
                ..ActKinds::default()
            },
        );
        for &v in available_variants() {
            let m = QMatrix::w8a8_from_f32(rows, cols, &w)
                .unwrap()
                .with_variant(v);
            assert!(m.is_w8a8());
            let mut got = vec![f32::NAN; n * rows];
            matmul_multi(&[&m], &acts, &mut [&mut got]);
            assert_eq!(got, want, "{} on {n}x{rows}x{cols}", v.name());
        }
    }
}

#[test]
fn per_token_error_stays_within_the_grids() {
    let mut rng = Rng(seed());
    let (n, rows, cols) = (8, 64, 256);
    let w: Vec<f32> = (0..rows * cols).map(|_| rng.value()).collect();
    let x: Vec<f32> = (0..n * cols).map(|_| rng.value()).collect();
    let m = QMatrix::w8a8_from_f32(rows, cols, &w).unwrap();
    let mut acts = Activations::new();
    acts.set(&x, n, cols, m.act_kinds());
    let mut got = vec![0f32; n * rows];
    m.matmul(&acts, &mut got);
    for t in 0..n {
        let xr = &x[t * cols..(t + 1) * cols];
        let xmax = xr.iter().fold(0f32, |a, v| a.max(v.abs()));
        for o in 0..rows {
            let wr = &w[o * cols..(o + 1) * cols];
            let wmax = wr.iter().fold(0f32, |a, v| a.max(v.abs()));
            let exact: f64 = xr.iter().zip(wr).map(|(a, b)| *a as f64 * *b as f64).sum();
            // Each product errs by at most half a step of either grid (plus their product).
            let bound: f64 = xr
                .iter()
                .zip(wr)
                .map(|(a, b)| {
                    let (ea, eb) = (xmax as f64 / 254.0, wmax as f64 / 254.0);
                    (*a as f64).abs() * eb + (*b as f64).abs() * ea + ea * eb
                })
                .sum();
            let e = (got[t * rows + o] as f64 - exact).abs();
            assert!(e <= bound * 1.001 + 1e-5, "({t},{o}): error {e} > {bound}");
        }
    }
}

//! The kernel harness: every variant of every format against the reference, on fresh random
//! inputs (the seed is printed so a failure can be replayed with `SMELT_SEED`), and the
//! reference itself against a float64 dot product of the dequantized weights and activations.
//! Like ggml's `test-backend-ops`, errors are normalised by Σ|w·x|.

use smelt_gguf::{GgmlType, blocks};
use smelt_kernels::{
    ActKinds, Activations, DotFn, GEMM_MIN_TOKENS, QMatrix, TILE_WIDTHS, Variant, WEIGHT_TYPES,
    WeightBytes, WeightType, available_variants, matmul_multi,
};

mod common;
use common::Rng;

/// Weight bytes for `rows × cols`: half quantized from random floats, half random bytes with
/// sane f16 scale fields (so every code and packed-scale pattern occurs).
fn random_weights(ty: WeightType, rows: usize, cols: usize, rng: &mut Rng, raw: bool) -> Vec<u8> {
    let floats: Vec<f32> = (0..rows * cols).map(|_| rng.uniform()).collect();
    if !raw || matches!(ty, WeightType::F32 | WeightType::F16) {
        return blocks::quantize(ty.ggml(), &floats).expect("quantize");
    }
    let (_, bb) = ty.block();
    let n_blocks = rows * cols / ty.block().0;
    let mut bytes: Vec<u8> = (0..n_blocks * bb).map(|_| rng.next() as u8).collect();
    let f16_fields: &[usize] = match ty {
        WeightType::Q4_1 | WeightType::Q5_1 | WeightType::Q4K | WeightType::Q5K => &[0, 2],
        WeightType::Q6K => &[208],
        WeightType::Q2K => &[80, 82],
        WeightType::Q3K => &[108],
        _ => &[0],
    };
    for b in bytes.chunks_exact_mut(bb) {
        for &at in f16_fields {
            let v = half::f16::from_f32(rng.uniform() * 0.05);
            b[at..at + 2].copy_from_slice(&v.to_bits().to_le_bytes());
        }
    }
    bytes
}

fn activations(n: usize, cols: usize, ty: WeightType, rng: &mut Rng) -> Activations {
    let x: Vec<f32> = (0..n * cols).map(|_| rng.activation()).collect();
    let mut a = Activations::new();
    a.set(&x, n, cols, ty.act_kinds());
    a
}

/// Row `t` of the activations as a kernel reading `k` sees them (dequantized blocks, or the
/// floats): Q4_K and Q2_K as written read `q8k`, repacked they read `q8k_x4`, whose groups of
/// 4 round differently ([`DotFn::act_kinds`]).
fn seen_activations(a: &Activations, k: ActKinds, t: usize) -> Vec<f32> {
    if k.q8 {
        a.row_q8(t)
            .iter()
            .flat_map(|b| b.qs.iter().map(move |&q| b.d * q as f32))
            .collect()
    } else if k.q8k || k.q8k_x4 {
        let row = if k.q8k_x4 {
            a.row_q8k_x4(t)
        } else {
            a.row_q8k(t)
        };
        row.iter()
            .flat_map(|b| b.qs.iter().map(move |&q| b.d * q as f32))
            .collect()
    } else {
        a.row_f32(t).to_vec()
    }
}

#[test]
fn reference_equals_float64_dot_of_dequantized_operands() {
    let mut rng = Rng::fresh();
    let cols = 512;
    for ty in WEIGHT_TYPES {
        for raw in [false, true] {
            let w = random_weights(ty, 4, cols, &mut rng, raw);
            // 9 rows: the k-quants' batch orders for most, the one-token order for some.
            let acts = activations(9, cols, ty, &mut rng);
            let m = QMatrix::new(ty, 4, cols, WeightBytes::Owned(w)).unwrap();
            // Q4_0 and Q4_K in both of llama.cpp's layouts: as written (4 rows), repacked (8).
            for (dot, r) in [4, 8]
                .map(|layout| DotFn::new(ty, Variant::Reference, layout))
                .into_iter()
                .flat_map(|dot| (0..4).map(move |r| (dot, r)))
            {
                let wf = blocks::dequantize(ty.ggml(), m.row(r), cols).unwrap();
                for t in 0..9 {
                    let x = seen_activations(&acts, dot.act_kinds(ty), t);
                    let mut exact: f64 =
                        wf.iter().zip(&x).map(|(&a, &b)| a as f64 * b as f64).sum();
                    // The offset formats meet the block sum as ggml's q8_1 stores it (f16):
                    // Σ (d·q + m)·x = d·Σ q·x + m·s_f16.
                    if matches!(ty, WeightType::Q4_1 | WeightType::Q5_1) {
                        let bytes = ty.block().1;
                        for (b, a) in m.row(r).chunks_exact(bytes).zip(acts.row_q8(t)) {
                            let mw = half::f16::from_le_bytes([b[2], b[3]]).to_f32() as f64;
                            exact += mw * (a.s_f16 as f64 - a.s as f64);
                        }
                    }
                    let norm: f64 = wf
                        .iter()
                        .zip(&x)
                        .map(|(&a, &b)| (a as f64 * b as f64).abs())
                        .sum();
                    let got = dot.dot(m.row(r), &acts, t) as f64;
                    let err = (got - exact).abs() / norm.max(1e-30);
                    assert!(
                        err < 1e-5,
                        "{ty:?} raw={raw} row {r} token {t}: {got} vs {exact} (normalised error {err:e})"
                    );
                }
            }
        }
    }
}

/// The formats every variant sums in ggml's order (`reference::dot_q8_0`, `dot_q4_1`,
/// `dot_f32`).
const GGML_ORDER: [WeightType; 13] = [
    WeightType::F32,
    WeightType::IQ4NL,
    WeightType::Q4K,
    WeightType::Q5K,
    WeightType::Q6K,
    WeightType::Q2K,
    WeightType::Q3K,
    WeightType::IQ4XS,
    WeightType::Q4_0,
    WeightType::Q8_0,
    WeightType::Q5_0,
    WeightType::Q4_1,
    WeightType::Q5_1,
];

#[test]
fn every_variant_matches_the_reference() {
    let mut rng = Rng::fresh();
    let variants = available_variants();
    eprintln!("variants: {variants:?}");
    for ty in WEIGHT_TYPES {
        for &cols in &[256usize, 768] {
            // The k-quants' two orders: 9 rows of one sequence (Q4_K: 8 in groups of 4, one
            // alone; Q5_K, Q6_K: a batch of 8 or more) and 9 single-token sequences.
            for (raw, alone) in [(false, false), (true, false), (true, true)] {
                let (rows, n) = (5, 9);
                let w = random_weights(ty, rows, cols, &mut rng, raw);
                let mut acts = activations(n, cols, ty, &mut rng);
                if alone {
                    let x = acts.f32.clone();
                    acts.set_spans(&x, &[1; 9], cols, ty.act_kinds());
                }
                let m = QMatrix::new(ty, rows, cols, WeightBytes::Owned(w)).unwrap();
                // Q4_0 and Q4_K in both of llama.cpp's layouts: as written, repacked.
                for (layout, &v) in [rows, 8]
                    .into_iter()
                    .flat_map(|l| variants.iter().map(move |v| (l, v)))
                {
                    let reference = DotFn::new(ty, Variant::Reference, layout);
                    let fast = DotFn::new(ty, v, layout);
                    for r in 0..rows {
                        // Every tile width at every start that fits.
                        for (t, nt, t0) in TILE_WIDTHS
                            .into_iter()
                            .flat_map(|nt| (0..=n - nt).map(move |t0| (nt, t0)))
                            .flat_map(|(nt, t0)| (t0..t0 + nt).map(move |t| (t, nt, t0)))
                        {
                            if fast.run(&acts, t0, nt) < nt {
                                continue; // the tile mixes k-quant orders: matmul cuts it
                            }
                            let want = reference.dot(m.row(r), &acts, t);
                            let mut tile = vec![f32::NAN; nt];
                            fast.dot_tokens(m.row(r), &acts, t0, &mut tile);
                            let got = tile[t - t0];
                            let x = seen_activations(&acts, reference.act_kinds(ty), t);
                            let wf = blocks::dequantize(ty.ggml(), m.row(r), cols).unwrap();
                            let norm: f32 = wf.iter().zip(&x).map(|(a, b)| (a * b).abs()).sum();
                            let err = (got - want).abs() / norm.max(1e-30);
                            assert!(
                                err < 1e-6,
                                "{ty:?} {} cols={cols} raw={raw} alone={alone} row {r} token {t} (tile {t0}+{nt}): {got} vs {want} ({err:e})",
                                v.name()
                            );
                            // Formats in ggml's order: every variant gives the same bits.
                            if GGML_ORDER.contains(&ty) && smelt_kernels::ggml_sums() {
                                assert_eq!(
                                    got.to_bits(),
                                    want.to_bits(),
                                    "{ty:?} {} row {r} token {t} (tile {t0}+{nt})",
                                    v.name()
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn threaded_products_equal_row_by_row_dots() {
    let mut rng = Rng::fresh();
    let cols = 512;
    // Row counts that are not multiples of the tile; two matrices in one region. The pairs
    // cover every offset kind of the 32-blocks (stored, centred, signed), whose 8-token tiles
    // take a separate path on AVX-512 VNNI.
    for (ta, tb) in [
        (WeightType::Q4K, WeightType::Q5_0),
        (WeightType::Q4_1, WeightType::Q8_0),
        (WeightType::Q4_0, WeightType::Q5_1),
    ] {
        let wa = random_weights(ta, 37, cols, &mut rng, false);
        let wb = random_weights(tb, 21, cols, &mut rng, false);
        for &v in available_variants() {
            let a = QMatrix::new(ta, 37, cols, WeightBytes::Owned(wa.clone()))
                .unwrap()
                .with_variant(v);
            let b = QMatrix::new(tb, 21, cols, WeightBytes::Owned(wb.clone()))
                .unwrap()
                .with_variant(v);
            let n = 13;
            let x: Vec<f32> = (0..n * cols).map(|_| rng.activation()).collect();
            let mut acts = Activations::new();
            acts.set(&x, n, cols, ta.act_kinds() | tb.act_kinds());
            let (mut ya, mut yb) = (vec![f32::NAN; n * 37], vec![f32::NAN; n * 21]);
            matmul_multi(&[&a, &b], &acts, &mut [&mut ya, &mut yb]);
            let (da, db) = (DotFn::new(ta, v, 37), DotFn::new(tb, v, 21));
            // Every tile width adds a token's terms in the same order: batching changes no bit.
            for t in 0..n {
                for r in 0..37 {
                    assert_eq!(
                        ya[t * 37 + r],
                        da.dot(a.row(r), &acts, t),
                        "{} a[{t}, {r}]",
                        v.name()
                    );
                }
                for r in 0..21 {
                    assert_eq!(
                        yb[t * 21 + r],
                        db.dot(b.row(r), &acts, t),
                        "{} b[{t}, {r}]",
                        v.name()
                    );
                }
            }
        }
    }
}

#[test]
fn k_quant_rows_sum_as_their_sequence_alone_would() {
    let mut rng = Rng::fresh();
    let cols = 512;
    // One sequence of each kind: groups of 4 and a rest, a single token, a batch of 8 or more.
    let spans = [5usize, 9, 1, 4, 12];
    let n: usize = spans.iter().sum();
    // 24 rows: Q4_K repacked by llama.cpp; 13: left as written.
    for (ty, rows) in [
        (WeightType::Q4K, 24),
        (WeightType::Q4K, 13),
        (WeightType::Q5K, 24),
        (WeightType::Q6K, 13),
        (WeightType::Q2K, 13),
        (WeightType::Q3K, 24),
        (WeightType::IQ4XS, 13),
        // Whole 16-row groups: the batch rows take the interleaved copies on AVX-512 VNNI.
        (WeightType::Q4K, 32),
        (WeightType::Q2K, 48),
        (WeightType::Q6K, 48),
        // IQ4_NL as written: a token alone takes `vec_dot`'s order, 2 rows or more sgemm's.
        (WeightType::IQ4NL, 13),
    ] {
        let w = random_weights(ty, rows, cols, &mut rng, false);
        let x: Vec<f32> = (0..n * cols).map(|_| rng.activation()).collect();
        for &v in available_variants() {
            let m = QMatrix::new(ty, rows, cols, WeightBytes::Owned(w.clone()))
                .unwrap()
                .with_variant(v);
            let mut acts = Activations::new();
            acts.set_spans(&x, &spans, cols, ty.act_kinds());
            let mut y = vec![f32::NAN; n * rows];
            matmul_multi(&[&m], &acts, &mut [&mut y]);
            let mut t0 = 0;
            for &len in &spans {
                let mut alone = Activations::new();
                alone.set(&x[t0 * cols..(t0 + len) * cols], len, cols, ty.act_kinds());
                let mut y1 = vec![f32::NAN; len * rows];
                matmul_multi(&[&m], &alone, &mut [&mut y1]);
                for (i, want) in y1.iter().enumerate() {
                    let got = y[t0 * rows + i];
                    let (t, r) = (t0 + i / rows, i % rows);
                    assert_eq!(
                        got.to_bits(),
                        want.to_bits(),
                        "{ty:?} {} [{t}, {r}]",
                        v.name()
                    );
                }
                t0 += len;
            }
        }
    }
}

#[test]
fn interleaved_k_quant_batches_equal_the_reference_bit_for_bit() {
    let mut rng = Rng::fresh();
    let cols = 512;
    // Sequences of every order: groups of 4 and a rest, a token alone, batches of 8 or more.
    let spans = [5usize, 9, 1, 4, 12];
    let n: usize = spans.iter().sum();
    // 48 rows: three groups of 16, so a row tile starts past 0 and one holds a single group.
    let rows = 48;
    for ty in [
        WeightType::Q2K,
        WeightType::Q3K,
        WeightType::Q4K,
        WeightType::Q5K,
        WeightType::Q6K,
        WeightType::IQ4XS,
    ] {
        for raw in [false, true] {
            let w = random_weights(ty, rows, cols, &mut rng, raw);
            let m = QMatrix::new(ty, rows, cols, WeightBytes::Owned(w))
                .unwrap()
                .with_variant(smelt_kernels::variant());
            let x: Vec<f32> = (0..n * cols).map(|_| rng.activation()).collect();
            let mut acts = Activations::new();
            acts.set_spans(&x, &spans, cols, ty.act_kinds());
            let mut y = vec![f32::NAN; n * rows];
            matmul_multi(&[&m], &acts, &mut [&mut y]);
            let reference = DotFn::new(ty, Variant::Reference, rows);
            for t in 0..n {
                for r in 0..rows {
                    let want = reference.dot(m.row(r), &acts, t);
                    assert_eq!(
                        y[t * rows + r].to_bits(),
                        want.to_bits(),
                        "{ty:?} raw={raw} [{t}, {r}]"
                    );
                }
            }
        }
    }
}

#[test]
fn one_row_matrices_skip_the_batch_copy_and_give_the_same_bits() {
    let mut rng = Rng::fresh();
    let (rows, cols, n) = (48, 512, 9);
    let copying =
        smelt_kernels::variant() == Variant::Avx512Vnni && smelt_kernels::interleaved_rows();
    for ty in [WeightType::Q4K, WeightType::Q6K] {
        let w = random_weights(ty, rows, cols, &mut rng, false);
        let batch = QMatrix::new(ty, rows, cols, WeightBytes::Owned(w.clone())).unwrap();
        let head = QMatrix::new_one_row(ty, rows, cols, WeightBytes::Owned(w)).unwrap();
        // The batch matrix may still lack its copy where tests running alongside have spent
        // the process's budget; the head never has one.
        assert!(copying || !batch.has_batch_copy(), "{ty:?}");
        assert!(!head.has_batch_copy(), "{ty:?}");
        let x: Vec<f32> = (0..n * cols).map(|_| rng.activation()).collect();
        let mut acts = Activations::new();
        acts.set(&x, n, cols, ty.act_kinds());
        let (mut a, mut b) = (vec![f32::NAN; n * rows], vec![f32::NAN; n * rows]);
        matmul_multi(&[&batch, &head], &acts, &mut [&mut a, &mut b]);
        let same = a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits());
        assert!(same, "{ty:?}: the head matrix's products differ");
    }
}

#[test]
fn interleaved_matrices_match_the_reference_and_batching_changes_no_bit() {
    let mut rng = Rng::fresh();
    let interleaving =
        available_variants().contains(&Variant::Avx512Vnni) && smelt_kernels::interleaved_rows();
    let n = 13;
    for ty in [
        WeightType::Q4_0,
        WeightType::Q4_1,
        WeightType::Q5_0,
        WeightType::Q5_1,
        WeightType::Q8_0,
        WeightType::IQ4NL,
    ] {
        // 576 columns: an odd number of blocks; 48 rows: three groups of 16.
        for (rows, cols, raw) in [(48usize, 576usize, false), (32, 256, true)] {
            let w = random_weights(ty, rows, cols, &mut rng, raw);
            let m = QMatrix::new(ty, rows, cols, WeightBytes::Owned(w))
                .unwrap()
                .with_variant(Variant::Avx512Vnni);
            assert_eq!(m.is_interleaved(), interleaving, "{ty:?}");
            let x: Vec<f32> = (0..n * cols).map(|_| rng.activation()).collect();
            let mut acts = Activations::new();
            acts.set(&x, n, cols, ty.act_kinds());
            let mut y = vec![f32::NAN; n * rows];
            matmul_multi(&[&m], &acts, &mut [&mut y]);
            let reference = DotFn::new(ty, Variant::Reference, rows);
            for t in 0..n {
                // The token alone: every tile width gives each token the same operations.
                let mut alone = Activations::new();
                alone.set(&x[t * cols..(t + 1) * cols], 1, cols, ty.act_kinds());
                let mut y1 = vec![f32::NAN; rows];
                matmul_multi(&[&m], &alone, &mut [&mut y1]);
                let seen = seen_activations(&acts, reference.act_kinds(ty), t);
                for r in 0..rows {
                    let got = y[t * rows + r];
                    assert_eq!(got.to_bits(), y1[r].to_bits(), "{ty:?} [{t}, {r}] alone");
                    let want = reference.dot(m.row(r), &acts, t);
                    let wf = blocks::dequantize(ty.ggml(), m.row(r), cols).unwrap();
                    let norm: f32 = wf.iter().zip(&seen).map(|(a, b)| (a * b).abs()).sum();
                    let err = (got - want).abs() / norm.max(1e-30);
                    assert!(
                        err < 1e-6,
                        "{ty:?} rows={rows} cols={cols} raw={raw} [{t}, {r}]: {got} vs {want} ({err:e})"
                    );
                    if GGML_ORDER.contains(&ty) && smelt_kernels::ggml_sums() {
                        assert_eq!(
                            got.to_bits(),
                            want.to_bits(),
                            "{ty:?} [{t}, {r}] ggml order"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn wrong_sizes_are_rejected() {
    let err = QMatrix::new(WeightType::Q4K, 2, 300, WeightBytes::Owned(vec![0; 288]))
        .err()
        .unwrap();
    assert!(err.contains("not a whole number"), "{err}");
    let err = QMatrix::new(WeightType::Q8_0, 2, 64, WeightBytes::Owned(vec![0; 100]))
        .err()
        .unwrap();
    assert!(err.contains("do not hold 2 rows"), "{err}");
}

#[test]
fn float_gemm_path_matches_the_reference() {
    let mut rng = Rng::fresh();
    let (rows, cols, n) = (70, 320, GEMM_MIN_TOKENS + 5);
    let w = random_weights(WeightType::F32, rows, cols, &mut rng, false);
    let mut m = QMatrix::new(WeightType::F32, rows, cols, WeightBytes::Owned(w)).unwrap();
    m.set_float_gemm(true);
    let x: Vec<f32> = (0..n * cols).map(|_| rng.activation()).collect();
    let mut acts = Activations::new();
    acts.set(&x, n, cols, WeightType::F32.act_kinds());
    let mut y = vec![f32::NAN; n * rows];
    m.matmul(&acts, &mut y);
    let reference = DotFn::new(WeightType::F32, Variant::Reference, rows);
    for t in 0..n {
        for r in 0..rows {
            let want = reference.dot(m.row(r), &acts, t);
            let wf = blocks::dequantize(GgmlType::F32, m.row(r), cols).unwrap();
            let norm: f32 = wf
                .iter()
                .zip(acts.row_f32(t))
                .map(|(a, b)| (a * b).abs())
                .sum();
            let got = y[t * rows + r];
            assert!(
                (got - want).abs() <= 1e-5 * norm.max(1e-30),
                "[{t}, {r}]: {got} vs {want}"
            );
        }
    }
}

#[test]
fn gelu_table_matches_the_reference() {
    use smelt_kernels::gelu::{gelu_mul, gelu_mul_reference};
    let mut rng = Rng::fresh();
    // Every f16 value (the table's entries), the ±10 cut-offs, values between f16 steps, and
    // random activations times random ups.
    let mut gate: Vec<f32> = (0..=u16::MAX)
        .map(|b| half::f16::from_bits(b).to_f32())
        .filter(|x| !x.is_nan())
        .collect();
    gate.extend([-10.0, 10.0, -9.999, 9.999, 1e-8, -1e-8, 1.000_1, -2.000_3]);
    gate.extend((0..5000).map(|_| rng.activation() * 4.0));
    let up: Vec<f32> = gate.iter().map(|_| rng.activation()).collect();
    let mut want = gate.clone();
    gelu_mul_reference(&mut want, &up);
    let mut got = gate.clone();
    gelu_mul(&mut got, &up);
    for ((x, a), b) in gate.iter().zip(&got).zip(&want) {
        assert_eq!(a.to_bits(), b.to_bits(), "x {x}: {a} vs {b}");
    }
}

#[test]
fn silu_variants_match_the_reference() {
    use smelt_kernels::silu::{silu_mul_reference, silu_mul_with};
    let mut rng = Rng::fresh();
    // Ordinary activations, large magnitudes, and the overflow and subnormal regions; rows of
    // 101 values leave a 5-value tail per row that takes libm's expf.
    let mut gate = vec![
        0.0,
        -0.0,
        1e-30,
        -1e-30,
        88.0,
        -88.0,
        100.0,
        -100.0,
        1e4,
        -1e4,
        87.5,
        -87.5,
        95.0,
        -95.0,
        104.0,
        -104.0,
        200.0,
        -200.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ];
    gate.extend((0..283).map(|_| rng.activation() * 3.0));
    let up: Vec<f32> = gate.iter().map(|_| rng.activation()).collect();
    let mut want = gate.clone();
    silu_mul_reference(&mut want, &up, 101);
    for &v in available_variants() {
        let mut got = gate.clone();
        silu_mul_with(v, &mut got, &up, 101);
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!(
                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                "{} element {i} (gate {}): {a} vs {b}",
                v.name(),
                gate[i]
            );
        }
    }
}

#[test]
fn ggml_exp_is_within_two_ulp_of_libm() {
    // The approximation's stated bound is 1.45 + 0.5 ulp; libm's expf is within 1 ulp of e^x.
    // Normal results over [−87, 87], then subnormal ones down to where both flush to zero.
    let mut rng = Rng::fresh();
    for _ in 0..100_000 {
        let x = rng.uniform() * 87.0;
        let (a, b) = (smelt_kernels::silu::exp(x), x.exp());
        assert!(
            (a - b).abs() <= 2.0 * f32::EPSILON * b,
            "e^{x}: {a} vs libm {b}"
        );
    }
    for i in 0..2000 {
        let x = -87.5 - i as f32 * 0.0085;
        let (a, b) = (smelt_kernels::silu::exp(x), x.exp());
        let subnormal_ulp = f32::from_bits(1);
        assert!(
            (a - b).abs() <= 2.0 * f32::EPSILON * b + 2.0 * subnormal_ulp,
            "e^{x}: {a} vs libm {b}"
        );
    }
    assert_eq!(smelt_kernels::silu::exp(f32::NEG_INFINITY), 0.0);
    assert_eq!(smelt_kernels::silu::exp(0.0), 1.0);
    assert_eq!(smelt_kernels::silu::exp(200.0), f32::INFINITY);
}

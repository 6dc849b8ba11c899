//! GPTQ on small synthetic layers: its output error on the calibration inputs never exceeds
//! round-to-nearest's, and the act-order permutation is undone (column c of the result is
//! column c of the input). Fresh random inputs each run; the seed is printed.

use faer::Mat;
use smelt_compress::llm::gptq::{GptqConfig, gptq};
use smelt_compress::llm::grid::{QuantizedLinear, WeightGrid, rtn};
use smelt_quant::rng::Rng;

use smelt_quant::rng::test_seed as seed;

/// (n, cols) inputs with correlated channels and a few large ones, like a transformer's.
fn inputs(rng: &mut Rng, n: usize, cols: usize) -> Vec<f32> {
    let k = cols / 4;
    // (k, cols) mixing matrix
    let mix = rng.normals(k * cols);
    let scale: Vec<f32> = (0..cols)
        .map(|c| if c % 37 == 5 { 8.0 } else { 1.0 })
        .collect();
    let mut x = vec![0f32; n * cols];
    for t in 0..n {
        let z = rng.normals(k);
        let noise = rng.normals(cols);
        for c in 0..cols {
            let s: f32 = (0..k).map(|j| z[j] * mix[j * cols + c]).sum();
            x[t * cols + c] = (s / (k as f32).sqrt() + 0.3 * noise[c]) * scale[c];
        }
    }
    x
}

fn hessian(x: &[f32], n: usize, cols: usize) -> Mat<f64> {
    Mat::from_fn(cols, cols, |i, j| {
        2.0 / n as f64
            * (0..n)
                .map(|t| x[t * cols + i] as f64 * x[t * cols + j] as f64)
                .sum::<f64>()
    })
}

/// Σ over tokens and rows of (x·w − x·q)².
fn output_error(x: &[f32], n: usize, w: &[f32], q: &QuantizedLinear) -> f64 {
    output_error_f32(x, n, w, &q.dequantize(), q.rows, q.cols)
}

#[test]
fn gptq_output_error_is_at_most_rtn_on_every_layer() {
    let mut rng = Rng::new(seed());
    // Layer shapes (rows, cols) like a small decoder's, with group sizes that do and do not
    // divide the width.
    let layers = [(48usize, 192usize), (96, 160), (32, 256)];
    let grids = [
        WeightGrid {
            bits: 4,
            sym: false,
            group: Some(64),
        },
        WeightGrid {
            bits: 3,
            sym: false,
            group: Some(64),
        },
        WeightGrid {
            bits: 4,
            sym: true,
            group: None,
        },
        WeightGrid {
            bits: 2,
            sym: false,
            group: Some(32),
        },
        WeightGrid {
            bits: 8,
            sym: true,
            group: Some(128),
        },
    ];
    for (li, &(rows, cols)) in layers.iter().enumerate() {
        let n = 4 * cols;
        let x = inputs(&mut rng, n, cols);
        let h = hessian(&x, n, cols);
        let w: Vec<f32> = rng.normals(rows * cols).iter().map(|v| v * 0.05).collect();
        for grid in grids {
            let base = output_error(&x, n, &w, &rtn(&w, rows, cols, &grid));
            for act_order in [false, true] {
                let cfg = GptqConfig {
                    block: 64,
                    act_order,
                    ..GptqConfig::new(grid)
                };
                let q = gptq(&w, rows, cols, &h, &cfg).unwrap();
                let e = output_error(&x, n, &w, &q);
                eprintln!(
                    "layer {li} ({rows}x{cols}) {} act_order={act_order}: GPTQ {e:.4e} vs RTN {base:.4e} ({:.2}x)",
                    grid.name(),
                    e / base
                );
                assert!(
                    e <= base,
                    "layer {li} {} act_order={act_order}: GPTQ error {e} > RTN {base}",
                    grid.name()
                );
            }
        }
    }
}

#[test]
fn act_order_permutation_is_undone() {
    let mut rng = Rng::new(seed());
    let (rows, cols) = (16, 96);
    let grid = WeightGrid {
        bits: 4,
        sym: false,
        group: Some(32),
    };
    // Weights exactly on a grid the min/max fit reproduces (power-of-two steps, codes 0 and
    // 15 present in every group): the right answer is the weights themselves, column for
    // column; a permutation left in place would move columns.
    let w0: Vec<f32> = rng.normals(rows * cols);
    let w: Vec<f32> = (0..rows * cols)
        .map(|i| {
            let (r, c) = (i / cols, i % cols);
            let g = c / 32;
            let step = 2f32.powi(-3 - ((r + g) % 3) as i32);
            let zero = 3 + ((r * 7 + g) % 9) as i32;
            let code = match c % 32 {
                0 => 0,
                1 => 15,
                _ => rng.below(16) as i32,
            };
            step * (code - zero) as f32
        })
        .collect();
    let n = 4 * cols;
    let x = inputs(&mut rng, n, cols);
    let h = hessian(&x, n, cols);
    let cfg = GptqConfig {
        act_order: true,
        ..GptqConfig::new(grid)
    };
    let q = gptq(&w, rows, cols, &h, &cfg).unwrap();
    assert_eq!(q.dequantize(), w);
    assert_eq!(
        q.g_idx,
        (0..cols).map(|c| (c / 32) as u32).collect::<Vec<_>>()
    );

    // With a diagonal Hessian no error is passed on, so GPTQ in any order is RTN with the
    // same (static) groups.
    let diag = Mat::from_fn(cols, cols, |i, j| {
        if i == j {
            1.0 + (i * 7 % 13) as f64
        } else {
            0.0
        }
    });
    let q = gptq(&w0, rows, cols, &diag, &cfg).unwrap();
    let r = rtn(&w0, rows, cols, &grid);
    assert_eq!(q.codes, r.codes);
    assert_eq!(q.dequantize(), r.dequantize());
}

#[test]
fn bad_shapes_are_errors() {
    let grid = WeightGrid {
        bits: 4,
        sym: false,
        group: Some(32),
    };
    let h = Mat::<f64>::identity(8, 8);
    assert!(gptq(&[0.0; 10], 2, 8, &h, &GptqConfig::new(grid)).is_err());
    let bad = WeightGrid { bits: 9, ..grid };
    assert!(gptq(&[0.0; 16], 2, 8, &h, &GptqConfig::new(bad)).is_err());
}

/// Σ over tokens and rows of (x·w − x·d)² for dequantized (rows, cols) `d`.
fn output_error_f32(x: &[f32], n: usize, w: &[f32], d: &[f32], rows: usize, cols: usize) -> f64 {
    let mut e = 0.0;
    for t in 0..n {
        let xr = &x[t * cols..(t + 1) * cols];
        for r in 0..rows {
            let diff: f64 = (0..cols)
                .map(|c| xr[c] as f64 * (w[r * cols + c] - d[r * cols + c]) as f64)
                .sum();
            e += diff * diff;
        }
    }
    e
}

/// GPTQ inside ggml blocks: at most the error of the format's own rounding on every layer and
/// format; with a diagonal Hessian (no error to pass on) it gives exactly the format's bytes.
#[test]
fn ggml_block_gptq_beats_the_format_rounding() {
    use smelt_compress::llm::ggml_gptq::{GgmlGptqConfig, gptq_ggml};
    use smelt_gguf::{GgmlType, blocks};
    let mut rng = Rng::new(seed());
    let (rows, cols) = (24, 512);
    let n = 3 * cols;
    let x = inputs(&mut rng, n, cols);
    let h = hessian(&x, n, cols);
    let w: Vec<f32> = rng.normals(rows * cols).iter().map(|v| v * 0.05).collect();
    for ty in [
        GgmlType::Q4_K,
        GgmlType::Q6_K,
        GgmlType::Q5_0,
        GgmlType::Q8_0,
        GgmlType::Q4_0,
    ] {
        let plain = blocks::quantize(ty, &w).unwrap();
        let base = output_error_f32(
            &x,
            n,
            &w,
            &blocks::dequantize(ty, &plain, w.len()).unwrap(),
            rows,
            cols,
        );
        for act_order in [false, true] {
            let cfg = GgmlGptqConfig {
                act_order,
                ..GgmlGptqConfig::default()
            };
            let b = gptq_ggml(&w, rows, cols, &h, ty, &cfg).unwrap();
            assert_eq!(b.len(), plain.len(), "{} size", ty.name());
            let d = blocks::dequantize(ty, &b, w.len()).unwrap();
            let e = output_error_f32(&x, n, &w, &d, rows, cols);
            eprintln!(
                "{} act_order={act_order}: GPTQ {e:.4e} vs rounding {base:.4e} ({:.2}x)",
                ty.name(),
                e / base
            );
            assert!(e <= base, "{}: GPTQ {e} > rounding {base}", ty.name());
        }
        let diag = Mat::from_fn(
            cols,
            cols,
            |i, j| if i == j { 1.0 + (i % 5) as f64 } else { 0.0 },
        );
        let cfg = GgmlGptqConfig {
            act_order: true,
            ..GgmlGptqConfig::default()
        };
        let b = gptq_ggml(&w, rows, cols, &diag, ty, &cfg).unwrap();
        let same = blocks::dequantize(ty, &b, w.len()).unwrap();
        let want = blocks::dequantize(ty, &plain, w.len()).unwrap();
        // Nearest code of the format's own grid: the format's choice, except where its own
        // search kept a farther code (make_qkx2_quants may); never farther from w.
        for (i, (a, b)) in same.iter().zip(&want).enumerate() {
            assert!(
                (a - w[i]).abs() <= (b - w[i]).abs() + 1e-6,
                "{} at {i}: {a} vs {b} for {}",
                ty.name(),
                w[i]
            );
        }
    }
    let h8 = Mat::<f64>::identity(100, 100);
    assert!(
        gptq_ggml(
            &[0.0; 200],
            2,
            100,
            &h8,
            GgmlType::Q4_K,
            &GgmlGptqConfig::default()
        )
        .is_err()
    );
}

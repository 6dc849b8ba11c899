//! Every kernel variant's quantized products equal ggml's own, bit for bit, over a sweep of
//! shapes: 12 block formats × row counts 13, 24, 48 × batches of 1 to 17 tokens (for the
//! 32-block formats 544 columns with 13 rows, an odd number of blocks, and 576 otherwise; 512
//! for the 256-block ones).
//!
//! The golden data (`data/ggml_matmul.bin`, and `data/ggml_matmul_f32.bin` for F32 weights of
//! 13 × 528, 24 × 540 and 48 × 528) is ggml's output: `benches/ggml_matmul.c`, built
//! against llama.cpp from the llama-cpp-python 0.3.36 sdist (vendored; x86-64 with AVX-512, no
//! AMX), quantizes random weights with `ggml_quantize_chunk`, places them as llama.cpp's loader
//! does (repacked where the CPU device takes them so: Q4_0, Q4_K, Q2_K and IQ4_NL with rows a
//! multiple of 8; the test checks that `ggml_repacks` agrees)
//! and runs `ggml_mul_mat` on f32 activations. Written by `benches/ggml_matmul_golden.sh`, which
//! states the layout. Unlike the model-level golden tests this covers row counts SmolLM2 does
//! not have, and every batch size on each side of ggml's order switches (4, 8).

use smelt_gguf::GgmlType;
use smelt_kernels::{
    Activations, QMatrix, WeightBytes, WeightType, available_variants, ggml_repacks,
};

/// Reads the little-endian fields of the golden file in order.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
    fn u32(&mut self) -> usize {
        u32::from_le_bytes(self.take(4).try_into().unwrap()) as usize
    }
    fn f32s(&mut self, n: usize) -> Vec<f32> {
        self.take(4 * n)
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }
}

/// One matrix of the file: its weights and ggml's output for each batch size.
struct Case {
    ty: WeightType,
    rows: usize,
    cols: usize,
    repacked: bool,
    weights: Vec<u8>,
    /// (n_tokens, y (n_tokens, rows)).
    runs: Vec<(usize, Vec<f32>)>,
}

/// The activations x (max_tokens, max_cols), their width, and the cases (whose activations are
/// the first `cols` of each row).
fn golden(bytes: &[u8]) -> (Vec<f32>, usize, Vec<Case>) {
    let mut c = Cursor(bytes);
    assert_eq!(c.take(4), b"SMGM");
    assert_eq!(c.u32(), 2, "layout version");
    let (cols, max_tokens) = (c.u32(), c.u32());
    let x = c.f32s(max_tokens * cols);
    let cases = (0..c.u32())
        .map(|_| {
            let id = c.u32() as u32;
            let ggml = GgmlType::from_id(id).unwrap_or_else(|| panic!("ggml type {id}"));
            let ty = WeightType::from_ggml(ggml).unwrap_or_else(|| panic!("{ggml:?}"));
            let (rows, cols, repacked) = (c.u32(), c.u32(), c.u32() == 1);
            let n_bytes = c.u32();
            let weights = c.take(n_bytes).to_vec();
            let runs = (0..c.u32())
                .map(|_| {
                    let n = c.u32();
                    (n, c.f32s(n * rows))
                })
                .collect();
            Case {
                ty,
                rows,
                cols,
                repacked,
                weights,
                runs,
            }
        })
        .collect();
    assert!(c.0.is_empty(), "trailing bytes");
    (x, cols, cases)
}

#[test]
fn products_equal_ggml_bit_for_bit_for_every_shape_and_batch() {
    check(include_bytes!("data/ggml_matmul.bin"));
}

/// F32 weights: `ggml_vec_dot_f32` for one token (four 16-lane accumulators, then the leftovers
/// past the last 64: 16 or 28 of them here), llamafile's sgemm for 2 or more when the matrix
/// is whole 4s of rows of whole 16s (48 × 528), `ggml_vec_dot_f32` again when it is not
/// (13 × 528, 24 × 540).
#[test]
fn f32_products_equal_ggml_bit_for_bit() {
    check(include_bytes!("data/ggml_matmul_f32.bin"));
}

fn check(bytes: &[u8]) {
    let (x, max_cols, cases) = golden(bytes);
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in &cases {
        assert_eq!(
            ggml_repacks(case.ty, case.rows),
            case.repacked,
            "{:?} with {} rows: does ggml repack it?",
            case.ty,
            case.rows
        );
        let cols = case.cols;
        // (max_tokens, cols): the first `cols` of each activation row.
        let xc: Vec<f32> = x
            .chunks_exact(max_cols)
            .flat_map(|r| &r[..cols])
            .copied()
            .collect();
        for &v in available_variants() {
            let m = QMatrix::new(
                case.ty,
                case.rows,
                cols,
                WeightBytes::Owned(case.weights.clone()),
            )
            .unwrap()
            .with_variant(v);
            for (n, want) in &case.runs {
                let mut acts = Activations::new();
                acts.set(&xc[..n * cols], *n, cols, m.act_kinds());
                let mut got = vec![f32::NAN; n * case.rows];
                m.matmul(&acts, &mut got);
                let differ = got
                    .iter()
                    .zip(want)
                    .filter(|(g, w)| g.to_bits() != w.to_bits())
                    .count();
                checked += got.len();
                if differ > 0 {
                    failures.push(format!(
                        "{:?} rows {} ({}) × {n} tokens, {}: {differ}/{} differ",
                        case.ty,
                        case.rows,
                        if case.repacked { "repacked" } else { "plain" },
                        v.name(),
                        got.len()
                    ));
                }
            }
        }
    }
    eprintln!(
        "{checked} products of {} matrices, {} batch sizes each, on {:?}: {} runs differ from ggml",
        cases.len(),
        cases[0].runs.len(),
        available_variants(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of the products differ from ggml's:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked > 0);
}

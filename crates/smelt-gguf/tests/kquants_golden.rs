//! K-quants against golden vectors from ggml's reference C quantizers (tests/data/kquants,
//! provenance in its README): our bytes must equal ggml's byte for byte, and dequantizing
//! ggml's bytes must give the values of ggml's own dequantization arithmetic.

use smelt_gguf::{GgmlType, blocks};

fn data(name: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/kquants")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn input() -> Vec<f32> {
    data("input.bin")
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn check(ty: GgmlType, file: &str) {
    let x = input();
    let want = data(file);
    let ours = blocks::quantize(ty, &x).unwrap();
    assert_eq!(ours.len(), want.len(), "{ty:?} size");
    let block = ty.block().1 as usize;
    for (b, (o, w)) in ours.chunks(block).zip(want.chunks(block)).enumerate() {
        if o != w {
            let i = o.iter().zip(w).position(|(a, b)| a != b).unwrap();
            panic!(
                "{ty:?}: super-block {b} differs from ggml at byte {i}: ours {} ggml {}",
                o[i], w[i]
            );
        }
    }
    // Dequantization is exercised on ggml's bytes; its error stays within the format's grid.
    let y = blocks::dequantize(ty, &want, x.len()).unwrap();
    for (sb, (xs, ys)) in x.chunks(256).zip(y.chunks(256)).enumerate() {
        // (IQ4_NL blocks are 32 wide; checking per 256 values still bounds each block's error.)
        let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
        let err = xs
            .iter()
            .zip(ys)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        // Loose sanity bound (the exact dequantization is checked against gguf-py elsewhere):
        // 2- and 3-bit grids leave up to about a third of the range as error.
        let rel = match ty {
            GgmlType::Q2_K => 0.4,
            GgmlType::Q3_K => 0.3,
            _ => 0.2,
        };
        assert!(
            err <= amax * rel + 1e-6,
            "{ty:?} super-block {sb}: max error {err} for amax {amax}"
        );
    }
}

#[test]
fn q2_k_matches_ggml() {
    check(GgmlType::Q2_K, "q2_K.bin");
}

#[test]
fn q3_k_matches_ggml() {
    check(GgmlType::Q3_K, "q3_K.bin");
}

#[test]
fn q4_k_matches_ggml() {
    check(GgmlType::Q4_K, "q4_K.bin");
}

#[test]
fn q5_k_matches_ggml() {
    check(GgmlType::Q5_K, "q5_K.bin");
}

#[test]
fn q6_k_matches_ggml() {
    check(GgmlType::Q6_K, "q6_K.bin");
}

#[test]
fn q8_k_matches_ggml() {
    check(GgmlType::Q8_K, "q8_K.bin");
}

#[test]
fn iq4_nl_matches_ggml() {
    check(GgmlType::IQ4_NL, "iq4_nl.bin");
}

#[test]
fn iq4_xs_matches_ggml() {
    check(GgmlType::IQ4_XS, "iq4_xs.bin");
}

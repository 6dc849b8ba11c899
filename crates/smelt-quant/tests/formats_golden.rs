//! FP8 / FP4 against ml_dtypes' golden vectors (tests/data/fp8_golden.json, made by
//! tests/data/gen_fp8_golden.py), and NF4 against bitsandbytes' published table and error.

use serde_json::Value;
use smelt_quant::fp4::E2M1;
use smelt_quant::fp8::{E4M3FN, E5M2};
use smelt_quant::minifloat::{MiniFloat, Overflow};
use smelt_quant::nf4;
use smelt_quant::rng::Rng;

fn golden() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/fp8_golden.json");
    serde_json::from_slice(&std::fs::read(path).expect("golden file")).expect("valid JSON")
}

/// Same generator as gen_fp8_golden.py's `random_bits`.
fn random_bits(n: usize) -> Vec<u32> {
    let mut state: u64 = 0x005E_EDF8;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let r = z ^ (z >> 31);
        if i % 64 == 63 {
            out.push(r as u32);
        } else {
            let sign = (r >> 63) as u32;
            let exp = ((r >> 40) % 42) as i32 - 24;
            out.push((sign << 31) | (((127 + exp) as u32) << 23) | (r as u32 & 0x7F_FFFF));
        }
    }
    out
}

fn check_format(name: &str, f: &MiniFloat) {
    let g = &golden()["formats"][name];
    // 1. Every code decodes to ml_dtypes' value.
    let table = g["decode"].as_array().unwrap();
    assert_eq!(table.len(), 1 << f.bits());
    for (code, want) in table.iter().enumerate() {
        let got = f.decode(code as u8);
        match want.as_str() {
            Some("nan") => assert!(got.is_nan(), "{name} code {code}: {got}"),
            Some("inf") => assert_eq!(got, f32::INFINITY, "{name} code {code}"),
            Some("-inf") => assert_eq!(got, f32::NEG_INFINITY, "{name} code {code}"),
            _ => {
                let w = want.as_f64().unwrap() as f32;
                assert_eq!(
                    got.to_bits(),
                    w.to_bits(),
                    "{name} code {code}: {got} vs {w}"
                );
            }
        }
    }
    // 2. Edge cases encode to ml_dtypes' codes (non-saturating is ml_dtypes' behaviour).
    for case in g["edge_cases"].as_array().unwrap() {
        let x = f32::from_bits(case["input_bits"].as_u64().unwrap() as u32);
        let want = case["code"].as_u64().unwrap() as u8;
        assert_eq!(
            f.encode(x, Overflow::NonSaturating),
            want,
            "{name}: encode({x:e}) [bits {:#010x}]",
            x.to_bits()
        );
    }
    // 3. One million pseudo-random floats: first 4096 codes compared one by one, all by hash.
    let bits = random_bits(g["random"]["count"].as_u64().unwrap() as usize);
    let codes: Vec<u8> = bits
        .iter()
        .map(|&b| {
            let x = f32::from_bits(b);
            let x = if f.bits() == 4 && x.is_nan() { 0.0 } else { x };
            f.encode(x, Overflow::NonSaturating)
        })
        .collect();
    for (i, want) in g["random"]["first_codes"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        assert_eq!(
            codes[i] as u64,
            want.as_u64().unwrap(),
            "{name}: random input {i} = {:e}",
            f32::from_bits(bits[i])
        );
    }
    assert_eq!(
        smelt_files_sha256(&codes),
        g["random"]["sha256"].as_str().unwrap(),
        "{name}: codes of the 1M random inputs differ from ml_dtypes"
    );
}

fn smelt_files_sha256(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn e4m3fn_matches_ml_dtypes() {
    check_format("e4m3fn", &E4M3FN);
}

#[test]
fn e5m2_matches_ml_dtypes() {
    check_format("e5m2", &E5M2);
}

#[test]
fn e2m1_matches_ml_dtypes() {
    check_format("e2m1fn", &E2M1);
}

#[test]
fn saturating_mode_clamps_where_ml_dtypes_overflows() {
    for f in [E4M3FN, E5M2] {
        let max = f.max_finite();
        for x in [max * 1.5, 1e30, f32::INFINITY] {
            assert_eq!(f.decode(f.encode(x, Overflow::Saturating)), max);
            assert_eq!(f.decode(f.encode(-x, Overflow::Saturating)), -max);
        }
        assert!(f.decode(f.encode(f32::NAN, Overflow::Saturating)).is_nan());
        // In range, both modes agree.
        assert_eq!(
            f.encode(1.3, Overflow::Saturating),
            f.encode(1.3, Overflow::NonSaturating)
        );
    }
}

/// bitsandbytes' `nf4_dequantization_lut` (csrc/kernels.cu), as printed there.
const BNB_NF4: [f64; 16] = [
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
];

#[test]
fn nf4_table_is_bitsandbytes_table() {
    for (ours, theirs) in nf4::NF4_TABLE.iter().zip(BNB_NF4) {
        assert_eq!(*ours, theirs as f32);
    }
}

#[test]
fn nf4_block64_error_on_randn_matches_bitsandbytes() {
    // Target from issue 3: mean absolute error 0.0728 ± 0.001 for NF4, block size 64, on
    // randn(1024, 1024) — the value bitsandbytes' own 4-bit quantization test expects.
    let x = Rng::new(42).normals(1024 * 1024);
    let q = nf4::quantize(&x, 64);
    let y = nf4::dequantize(&q);
    let mae = x
        .iter()
        .zip(&y)
        .map(|(a, b)| (a - b).abs() as f64)
        .sum::<f64>()
        / x.len() as f64;
    eprintln!("NF4 block-64 mean absolute error on randn(1024x1024): {mae:.6}");
    assert!((mae - 0.0728).abs() < 0.001, "NF4 block-64 MAE {mae}");
    assert_eq!(q.packed.len(), x.len() / 2);
    assert_eq!(q.absmax.len(), x.len() / 64);
}

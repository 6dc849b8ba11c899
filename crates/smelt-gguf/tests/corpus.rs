//! Every file of the malformed corpus (tests/corpus, made by make_corpus.py) is rejected with
//! the specific error of its bug class — never a panic, never a huge allocation.

use smelt_gguf::{GgufError, Header};

const EXPECTED: &[(&str, &str)] = &[
    ("bad-magic", "not a GGUF file"),
    ("big-endian", "big-endian GGUF"),
    ("version-1", "version 1 is not supported"),
    (
        "kv-count-huge",
        "metadata count 9223372036854775808 cannot fit",
    ),
    (
        "tensor-count-overflow",
        "tensor count 2305843009213693952 cannot fit",
    ),
    ("string-len-past-eof", "needed 1099511627776 bytes"),
    ("string-len-wraps", "needed 18446744073709551615 bytes"),
    (
        "array-count-huge",
        "array length 4611686018427387904 cannot fit",
    ),
    ("array-nesting-bomb", "arrays nested deeper than 4"),
    ("bool-invalid", "bool byte 2 is not 0 or 1"),
    ("unknown-value-type", "unknown metadata value type 13"),
    ("empty-key", "empty metadata key"),
    (
        "duplicate-key",
        "duplicate metadata key \"general.architecture\"",
    ),
    (
        "alignment-zero",
        "general.alignment must be a power-of-two uint32",
    ),
    ("alignment-not-power-of-two", "found U32(24)"),
    ("alignment-huge", "found U32(2147483648)"),
    ("alignment-wrong-type", "found I32(32)"),
    ("n-dims-5", "has 5 dims"),
    ("n-dims-zero", "has 0 dims"),
    (
        "dims-times-stride-wraps",
        "data of tensor \"token_embd.weight\"",
    ),
    (
        "dims-product-overflow",
        "dims [4294967296, 4294967296] overflow",
    ),
    ("unknown-ggml-type", "unknown ggml type 4"),
    (
        "row-not-block-multiple",
        "first dim 33 is not a multiple of the q4_0 block size 32",
    ),
    (
        "offset-misaligned",
        "offset 4 is not a multiple of the alignment 32",
    ),
    ("offset-plus-size-wraps", "data of tensor \"w\""),
    ("tensor-past-eof", "data of tensor \"w\" (4096 bytes)"),
    ("tensors-overlap", "tensors \"a\" and \"b\" overlap"),
    (
        "offsets-out-of-order",
        "offsets must increase in file order",
    ),
    ("duplicate-tensor-name", "duplicate tensor name \"w\""),
    ("empty-tensor-name", "empty tensor name"),
    (
        "padding-past-eof",
        "padding to the 32-byte aligned tensor data",
    ),
    (
        "truncated-in-tensor-info",
        "truncated: needed 8 bytes at offset 94 for tensor offset",
    ),
];

fn corpus_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

#[test]
fn every_malformed_file_is_rejected_with_its_specific_error() {
    for (name, want) in EXPECTED {
        let bytes = std::fs::read(corpus_dir().join(format!("{name}.gguf"))).unwrap();
        let err: GgufError = Header::parse(&bytes).expect_err(name);
        let msg = err.to_string();
        assert!(
            msg.contains(want),
            "{name}: got {msg:?}, expected it to contain {want:?}"
        );
    }
}

#[test]
fn the_corpus_and_the_table_agree() {
    let mut files: Vec<String> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            n.strip_suffix(".gguf").map(str::to_string)
        })
        .collect();
    files.sort();
    let mut listed: Vec<String> = EXPECTED.iter().map(|(n, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(files, listed);
}

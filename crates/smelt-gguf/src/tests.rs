//! Header parsing against hand-built files, including hostile ones.

use super::*;

/// Builds a GGUF v3 byte image by hand, so tests do not depend on our (future) writer.
struct Builder {
    kv: Vec<u8>,
    n_kv: u64,
    infos: Vec<u8>,
    n_tensors: u64,
    data: Vec<u8>,
}

fn s(out: &mut Vec<u8>, v: &str) {
    out.extend((v.len() as u64).to_le_bytes());
    out.extend(v.as_bytes());
}

impl Builder {
    fn new() -> Self {
        Self {
            kv: Vec::new(),
            n_kv: 0,
            infos: Vec::new(),
            n_tensors: 0,
            data: Vec::new(),
        }
    }

    fn kv_raw(mut self, key: &str, ty: u32, payload: &[u8]) -> Self {
        s(&mut self.kv, key);
        self.kv.extend(ty.to_le_bytes());
        self.kv.extend(payload);
        self.n_kv += 1;
        self
    }

    fn kv_str(self, key: &str, v: &str) -> Self {
        let mut p = Vec::new();
        s(&mut p, v);
        self.kv_raw(key, 8, &p)
    }

    fn tensor(mut self, name: &str, dims: &[u64], ty: u32, offset: u64, data: &[u8]) -> Self {
        s(&mut self.infos, name);
        self.infos.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            self.infos.extend(d.to_le_bytes());
        }
        self.infos.extend(ty.to_le_bytes());
        self.infos.extend(offset.to_le_bytes());
        self.n_tensors += 1;
        let end = offset as usize + data.len();
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        self.data[offset as usize..end].copy_from_slice(data);
        self
    }

    fn build(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend(self.n_tensors.to_le_bytes());
        out.extend(self.n_kv.to_le_bytes());
        out.extend(&self.kv);
        out.extend(&self.infos);
        out.resize(out.len().next_multiple_of(32), 0);
        out.extend(&self.data);
        out
    }
}

fn sample() -> Builder {
    let f32s: Vec<u8> = (0..8).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let mut arr = Vec::new();
    arr.extend(8u32.to_le_bytes());
    arr.extend(2u64.to_le_bytes());
    s(&mut arr, "a");
    s(&mut arr, "b");
    Builder::new()
        .kv_str("general.architecture", "llama")
        .kv_raw("llama.block_count", 4, &30u32.to_le_bytes())
        .kv_raw("tokenizer.ggml.tokens", 9, &arr)
        .kv_raw("flag", 7, &[1])
        .tensor("w", &[4, 2], 0, 0, &f32s)
        .tensor("q", &[32], 2, 32, &[7u8; 18])
}

#[test]
fn parses_metadata_and_tensors() {
    let bytes = sample().build();
    let h = Header::parse(&bytes).unwrap();
    assert_eq!(h.version, 3);
    assert_eq!(
        h.get("general.architecture").unwrap().as_str(),
        Some("llama")
    );
    assert_eq!(h.get("llama.block_count").unwrap().as_u64(), Some(30));
    assert_eq!(h.get("flag"), Some(&MetaValue::Bool(true)));
    match h.get("tokenizer.ggml.tokens").unwrap() {
        MetaValue::Array(MetaType::String, items) => assert_eq!(items.len(), 2),
        other => panic!("{other:?}"),
    }
    assert_eq!(h.tensors.len(), 2);
    assert_eq!(h.tensors[0].dims, vec![4, 2]);
    assert_eq!(h.tensors[0].size, 32);
    assert_eq!(h.tensors[1].ggml_type, GgmlType::Q4_0);
    assert_eq!(h.tensors[1].size, 18);
    let w = h.tensor_data(&bytes, &h.tensors[0]);
    assert_eq!(f32::from_le_bytes(w[4..8].try_into().unwrap()), 1.0);
    assert_eq!(h.tensor_data(&bytes, &h.tensors[1]), &[7u8; 18]);
}

#[test]
fn every_truncation_is_a_typed_error() {
    let bytes = sample().build();
    for cut in 0..bytes.len() {
        assert!(
            Header::parse(&bytes[..cut]).is_err(),
            "prefix {cut} accepted"
        );
    }
}

#[test]
fn bad_magic_version_and_endianness() {
    let mut b = sample().build();
    b[0] = b'X';
    assert!(matches!(Header::parse(&b), Err(GgufError::BadMagic(_))));
    let mut b = sample().build();
    b[4..8].copy_from_slice(&3u32.to_be_bytes());
    assert!(matches!(Header::parse(&b), Err(GgufError::BigEndian(_))));
    let mut b = sample().build();
    b[4..8].copy_from_slice(&1u32.to_le_bytes());
    assert_eq!(Header::parse(&b), Err(GgufError::Version(1)));
}

#[test]
fn absurd_counts_fail_before_allocating() {
    let mut b = sample().build();
    b[8..16].copy_from_slice(&u64::MAX.to_le_bytes()); // tensor count
    assert!(matches!(Header::parse(&b), Err(GgufError::Invalid { .. })));
    let mut b = sample().build();
    b[16..24].copy_from_slice(&(1u64 << 60).to_le_bytes()); // kv count
    assert!(matches!(Header::parse(&b), Err(GgufError::Invalid { .. })));
    // An array claiming 2^62 u64 elements.
    let mut arr = Vec::new();
    arr.extend(10u32.to_le_bytes());
    arr.extend((1u64 << 62).to_le_bytes());
    let b = Builder::new().kv_raw("x", 9, &arr).build();
    assert!(matches!(Header::parse(&b), Err(GgufError::Invalid { .. })));
    // A string claiming u64::MAX bytes.
    let b = Builder::new()
        .kv_raw("x", 8, &u64::MAX.to_le_bytes())
        .build();
    assert!(matches!(
        Header::parse(&b),
        Err(GgufError::Truncated { .. })
    ));
}

#[test]
fn deep_nesting_is_refused() {
    let mut payload = Vec::new();
    for _ in 0..10 {
        payload.extend(9u32.to_le_bytes());
        payload.extend(1u64.to_le_bytes());
    }
    payload.extend(0u32.to_le_bytes());
    payload.extend(1u64.to_le_bytes());
    payload.push(0);
    let b = Builder::new().kv_raw("nest", 9, &payload).build();
    assert!(matches!(Header::parse(&b), Err(GgufError::Invalid { .. })));
}

#[test]
fn tensor_rules_are_enforced() {
    let d = [0u8; 64];
    let cases: Vec<(&str, Builder)> = vec![
        (
            "overlap",
            Builder::new()
                .tensor("a", &[8], 0, 0, &d[..32])
                .tensor("b", &[8], 0, 0, &d[..32]),
        ),
        (
            "misaligned",
            Builder::new().tensor("a", &[8], 0, 4, &d[..32]),
        ),
        (
            "past end",
            Builder::new().tensor("a", &[1024], 0, 0, &d[..32]),
        ),
        (
            "unknown type",
            Builder::new().tensor("a", &[8], 4, 0, &d[..32]),
        ),
        (
            "partial block",
            Builder::new().tensor("a", &[33], 2, 0, &d[..36]),
        ),
        (
            "too many dims",
            Builder::new().tensor("a", &[1, 1, 1, 1, 1], 0, 0, &d[..4]),
        ),
        (
            "overflow",
            Builder::new().tensor("a", &[u64::MAX, 2], 0, 0, &d[..4]),
        ),
        (
            "duplicate",
            Builder::new()
                .tensor("a", &[8], 0, 0, &d[..32])
                .tensor("a", &[8], 0, 32, &d[..32]),
        ),
    ];
    for (what, b) in cases {
        assert!(Header::parse(&b.build()).is_err(), "{what} accepted");
    }
    let bad_align = Builder::new().kv_raw("general.alignment", 4, &24u32.to_le_bytes());
    assert!(Header::parse(&bad_align.build()).is_err());
    let dup_key = Builder::new().kv_str("k", "a").kv_str("k", "b");
    assert!(Header::parse(&dup_key.build()).is_err());
    let bad_bool = Builder::new().kv_raw("b", 7, &[2]);
    assert!(Header::parse(&bad_bool.build()).is_err());
}

#[test]
fn random_byte_flips_never_panic() {
    let clean = sample().build();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..20_000 {
        let mut b = clean.clone();
        for _ in 0..3 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let i = (state % b.len() as u64) as usize;
            b[i] = (state >> 32) as u8;
        }
        let _ = Header::parse(&b);
    }
}

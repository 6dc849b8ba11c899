//! Tests of the pickle reader (kept apart to keep the reader short).
use super::*;
use crate::numpy::{NdArray, dtype_string};

/// `pickle.dumps(numpy.arange(6, dtype='<f4').reshape(2, 3), protocol=2)` from Python 2.7 /
/// numpy 1.x, written out by hand from `pickletools.dis` of the MNIST file's header (same opcodes).
fn array_pickle(data: &[u8], shape: &[u16], code: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 2];
    p.extend(b"cnumpy.core.multiarray\n_reconstruct\nq\x01cnumpy\nndarray\nq\x02K\x00\x85U\x01b\x87Rq\x03(K\x01");
    for &d in shape {
        p.push(b'M');
        p.extend(d.to_le_bytes());
    }
    p.push(0x84 + shape.len() as u8);
    p.extend(b"cnumpy\ndtype\nq\x04U");
    p.push(code.len() as u8);
    p.extend(code);
    p.extend(b"K\x00K\x01\x87Rq\x05(K\x03U\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89T");
    p.extend((data.len() as u32).to_le_bytes());
    p.extend(data);
    p.extend(b"tb.");
    p
}

#[test]
fn decodes_a_protocol2_numpy_array() {
    let vals: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let v = parse(&array_pickle(&vals, &[2, 3], b"f4")).unwrap();
    let a = NdArray::from_value(&v).unwrap();
    assert_eq!(a.shape, vec![2, 3]);
    assert_eq!(a.dtype, "<f4");
    assert_eq!(a.to_f32().unwrap(), vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
}

#[test]
fn wrong_data_length_is_an_error() {
    let v = parse(&array_pickle(&[0u8; 20], &[2, 3], b"f4")).unwrap();
    assert!(NdArray::from_value(&v).unwrap_err().contains("needs 24"));
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let vals = vec![7u8; 48];
    let full = array_pickle(&vals, &[2, 3], b"i8");
    for cut in 0..full.len() {
        assert!(parse(&full[..cut]).is_err(), "prefix of {cut} bytes parsed");
    }
    assert!(parse(&full).is_ok());
}

#[test]
fn huge_declared_length_is_rejected_without_allocating() {
    let p = [0x80, 2, b'T', 0xff, 0xff, 0xff, 0x7f, b'.'];
    assert!(matches!(parse(&p), Err(PickleError::Truncated(_))));
    let p8 = [
        0x80, 4, 0x8e, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ];
    assert!(matches!(parse(&p8), Err(PickleError::Truncated(_))));
}

#[test]
fn containers_memo_and_long1() {
    // {'a': [1, -2, 300], 'b': (None, True)} with a memo round trip and a LONG1 of -2.
    let p = b"\x80\x02}q\x00(U\x01a]q\x01(K\x01\x8a\x01\xfeM,\x01eU\x01b(N\x88tq\x02u0h\x02.";
    let v = parse(p).unwrap();
    assert_eq!(v, Value::Tuple(vec![Value::None, Value::Bool(true)]));
    let whole = parse(
        &p[..p.len() - 4]
            .iter()
            .chain(b".")
            .copied()
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    let b = |s: &str| Value::Bytes(Rc::new(s.as_bytes().to_vec()));
    assert_eq!(
        whole,
        Value::Dict(vec![
            (
                b("a"),
                Value::List(vec![Value::Int(1), Value::Int(-2), Value::Int(300)])
            ),
            (b("b"), Value::Tuple(vec![Value::None, Value::Bool(true)])),
        ])
    );
}

#[test]
fn memo_sees_in_place_build() {
    // numpy memoizes a dtype *before* BUILD sets its byte order, then refers back to it
    // with BINGET for the next array (MNIST's valid/test splits do exactly this).
    let mut p = b"\x80\x02cnumpy\ndtype\nq\x04U\x02f4K\x00K\x01\x87Rq\x05".to_vec();
    p.extend(b"(K\x03U\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tbh\x05\x86.");
    let v = parse(&p).unwrap();
    let pair = v.as_seq().unwrap();
    assert!(matches!(pair[1], Value::Build { .. }), "{:?}", pair[1]);
    assert_eq!(pair[0], pair[1]);
    assert_eq!(dtype_string(&pair[1]).unwrap(), "<f4");
}

#[test]
fn stack_underflow_is_malformed() {
    assert!(matches!(
        parse(b"\x80\x02R."),
        Err(PickleError::Malformed { .. })
    ));
    assert!(matches!(
        parse(b"\x80\x02t."),
        Err(PickleError::Malformed { .. })
    ));
}

#[test]
fn deep_nesting_is_refused_and_moderate_nesting_parses() {
    // `)` then TUPLE1 n times: a tuple n + 1 levels deep.
    let nested = |n: usize| {
        let mut p = b"\x80\x02)".to_vec();
        p.extend(std::iter::repeat_n(0x85u8, n));
        p.push(b'.');
        p
    };
    let mut v = parse(&nested(200)).unwrap();
    for _ in 0..200 {
        v = v.as_seq().unwrap()[0].clone();
    }
    assert_eq!(v, Value::Tuple(Vec::new()));
    // A million levels parsed before and then overflowed the stack when dropped.
    let e = parse(&nested(1_000_000)).unwrap_err().to_string();
    assert!(e.contains("nested deeper than 256"), "{e}");
    // Nesting grows in place too: 300 appends of shallow items stay shallow, 300 lists
    // each appended into the one below are 300 deep.
    let mut p = b"\x80\x02]".to_vec();
    for _ in 0..300 {
        p.extend(b"]\x85a"); // APPEND a one-list tuple
    }
    p.push(b'.');
    assert!(
        parse(&p).is_ok(),
        "300 appends of shallow items are not deep"
    );
    let mut p = b"\x80\x02".to_vec();
    p.extend(std::iter::repeat_n(b']', 300));
    p.extend(std::iter::repeat_n(b'a', 299));
    p.push(b'.');
    let e = parse(&p).unwrap_err().to_string();
    assert!(e.contains("nested deeper"), "{e}");
}

#[test]
fn copies_that_double_are_refused() {
    // `]`, then `step` `n` times: each step doubles the tree.
    let doubled = |step: &[u8], n: usize| {
        let mut p = b"\x80\x02]".to_vec();
        for _ in 0..n {
            p.extend(step);
        }
        p.push(b'.');
        parse(&p)
    };
    // DUP + TUPLE2, and through the memo (BINPUT, then BINGET twice): 2^40 nodes from
    // 84 and 204 bytes.
    for step in [&b"2\x86"[..], b"q\x00h\x00\x86"] {
        let e = doubled(step, 40).unwrap_err().to_string();
        assert!(
            e.contains("copies of memoized or duplicated values exceed"),
            "{e}"
        );
    }
    // A few doublings are fine.
    assert!(doubled(b"2\x86", 8).is_ok());
}

//! Tests of the PyTorch checkpoint reader (kept apart to keep the reader short).
use super::*;
use std::io::Write;

/// Written by `tests/data/gen_tiny_state_dict.py` (Python's pickle with stub `torch`
/// modules; no torch needed). Its docstring lists the tensors and expected values.
const GOLDEN: &[u8] = include_bytes!("../tests/data/tiny_state_dict.pth");

/// A tensor for [`pickle_of`]: name, storage type, storage key, storage numel, offset,
/// size, stride.
struct Spec<'a> {
    name: &'a str,
    stype: &'a str,
    key: &'a str,
    numel: i32,
    offset: i32,
    size: Vec<i32>,
    stride: Vec<i32>,
}

/// A contiguous float tensor at offset 0.
fn float<'a>(name: &'a str, key: &'a str, numel: i32, size: &[i32]) -> Spec<'a> {
    let mut stride = vec![0; size.len()];
    let mut s = 1;
    for (d, st) in size.iter().zip(stride.iter_mut()).rev() {
        *st = s;
        s *= d;
    }
    Spec {
        name,
        stype: "FloatStorage",
        key,
        numel,
        offset: 0,
        size: size.to_vec(),
        stride,
    }
}

/// Hand-assembled protocol-2 pickle with torch's opcodes (no memo): an OrderedDict of
/// `_rebuild_tensor_v2` calls, then the `_metadata` BUILD.
fn pickle_of(specs: &[Spec]) -> Vec<u8> {
    let text = |p: &mut Vec<u8>, s: &str| {
        p.push(b'X');
        p.extend((s.len() as u32).to_le_bytes());
        p.extend(s.as_bytes());
    };
    let int = |p: &mut Vec<u8>, i: i32| {
        p.push(b'J');
        p.extend(i.to_le_bytes());
    };
    let mut p = b"\x80\x02ccollections\nOrderedDict\n)R(".to_vec();
    for s in specs {
        text(&mut p, s.name);
        p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n((");
        text(&mut p, "storage");
        p.extend(format!("ctorch\n{}\n", s.stype).as_bytes());
        text(&mut p, s.key);
        text(&mut p, "cpu");
        int(&mut p, s.numel);
        p.extend(b"tQ");
        int(&mut p, s.offset);
        p.push(b'(');
        for &d in &s.size {
            int(&mut p, d);
        }
        p.extend(b"t(");
        for &d in &s.stride {
            int(&mut p, d);
        }
        p.extend(b"t\x89ccollections\nOrderedDict\n)RtR");
    }
    p.extend(b"u}");
    text(&mut p, "_metadata");
    p.extend(b"ccollections\nOrderedDict\n)R(");
    text(&mut p, "");
    p.push(b'}');
    text(&mut p, "version");
    p.extend(b"K\x01su");
    p.extend(b"sb.");
    p
}

/// A zip like torch's (stored members under `archive/`).
fn zip_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in members {
        w.start_file(format!("archive/{name}"), opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn get<'a>(t: &'a [TorchTensor], name: &str) -> &'a TorchTensor {
    t.iter().find(|t| t.name == name).unwrap()
}

#[test]
fn golden_file() {
    let t = parse_state_dict(GOLDEN).unwrap();
    let names: Vec<&str> = t.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "conv.weight",
            "scalar",
            "fc.weight",
            "fc.bias",
            "view",
            "half",
            "bf16",
            "double",
            "empty"
        ]
    );
    let conv = get(&t, "conv.weight");
    assert_eq!(conv.shape, [2, 1, 2, 2]);
    assert_eq!(conv.data, [-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5]);
    let scalar = get(&t, "scalar");
    assert_eq!((scalar.shape.as_slice(), scalar.numel()), (&[][..], 1));
    assert_eq!(scalar.data, [0.5]);
    // Transposed view of a 2x3 storage: non-contiguous strides.
    assert_eq!(get(&t, "fc.weight").shape, [3, 2]);
    assert_eq!(get(&t, "fc.weight").data, [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    // Storage offsets, two tensors sharing one storage.
    assert_eq!(get(&t, "fc.bias").data, [14.0, 15.0, 16.0]);
    assert_eq!(get(&t, "view").shape, [2, 2]);
    assert_eq!(get(&t, "view").data, [11.0, 12.0, 14.0, 15.0]);
    assert_eq!(get(&t, "half").data, [1.0, -2.5, 65504.0]);
    assert_eq!(get(&t, "bf16").data, [1.0, -0.5, 3.0]);
    assert_eq!(get(&t, "double").data, [0.25, -8.0]);
    assert_eq!(get(&t, "empty").shape, [0, 3]);
    assert!(get(&t, "empty").data.is_empty());
}

#[test]
fn hand_written_round_trip() {
    let pkl = pickle_of(&[float("a", "0", 6, &[2, 3]), float("b", "1", 2, &[2])]);
    let a = f32s(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let b = f32s(&[-7.5, 1e-3]);
    let z = zip_of(&[
        ("data.pkl", &pkl),
        ("byteorder", b"little"),
        ("data/0", &a),
        ("data/1", &b),
        ("version", b"3\n"),
    ]);
    let t = parse_state_dict(&z).unwrap();
    assert_eq!(
        t,
        vec![
            TorchTensor {
                name: "a".into(),
                shape: vec![2, 3],
                data: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
            },
            TorchTensor {
                name: "b".into(),
                shape: vec![2],
                data: vec![-7.5, 1e-3]
            },
        ]
    );
    // Same through a file; errors then name it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.pth");
    std::fs::write(&path, &z).unwrap();
    assert_eq!(load_state_dict(&path).unwrap(), t);
    let missing = dir.path().join("missing.pth");
    let e = load_state_dict(&missing).unwrap_err().to_string();
    assert!(e.contains("missing.pth"), "{e}");
}

#[test]
fn strided_view_with_offset() {
    // A [2, 2] view at offset 1 with strides (4, 2) into a 3x4 row-major storage 0..12:
    // elements 1, 3, 5, 7.
    let spec = Spec {
        name: "w",
        stype: "FloatStorage",
        key: "0",
        numel: 12,
        offset: 1,
        size: vec![2, 2],
        stride: vec![4, 2],
    };
    let vals: Vec<f32> = (0..12).map(|i| i as f32).collect();
    let z = zip_of(&[("data.pkl", &pickle_of(&[spec])), ("data/0", &f32s(&vals))]);
    let t = parse_state_dict(&z).unwrap();
    assert_eq!(t[0].data, [1.0, 3.0, 5.0, 7.0]);
}

#[test]
fn big_endian_storage_is_converted() {
    let be: Vec<u8> = [1.5f32, -2.0]
        .iter()
        .flat_map(|x| x.to_be_bytes())
        .collect();
    let pkl = pickle_of(&[float("x", "0", 2, &[2])]);
    let z = zip_of(&[("data.pkl", &pkl), ("byteorder", b"big"), ("data/0", &be)]);
    assert_eq!(parse_state_dict(&z).unwrap()[0].data, [1.5, -2.0]);
    let z = zip_of(&[
        ("data.pkl", &pkl),
        ("byteorder", b"middle"),
        ("data/0", &be),
    ]);
    let e = parse_state_dict(&z).unwrap_err().to_string();
    assert!(e.contains("unknown byte order 'middle'"), "{e}");
}

#[test]
fn truncated_zip_is_an_error() {
    for cut in [0, 1, 4, 100, GOLDEN.len() / 2, GOLDEN.len() - 1] {
        let e = parse_state_dict(&GOLDEN[..cut]).unwrap_err();
        assert!(matches!(e, TorchError::Zip(_)), "cut {cut}: {e}");
    }
    // Every prefix (none has the whole end-of-central-directory record) errors
    // without panicking.
    for cut in 0..GOLDEN.len() {
        assert!(parse_state_dict(&GOLDEN[..cut]).is_err(), "cut {cut}");
    }
}

#[test]
fn storage_shorter_than_the_tensor_is_an_error() {
    // The storage honestly holds 1000 floats, but the tensor's shape needs 401408.
    let pkl = pickle_of(&[float("fc1.weight", "3", 1000, &[128, 3136])]);
    let z = zip_of(&[("data.pkl", &pkl), ("data/3", &vec![0u8; 4000])]);
    let e = parse_state_dict(&z).unwrap_err().to_string();
    assert_eq!(
        e,
        "tensor fc1.weight needs 401408 floats from storage 3 but it holds 1000"
    );
    // Strides that reach past the end, with a valid element count.
    let spec = Spec {
        stride: vec![3, 1],
        ..float("w", "0", 4, &[2, 2])
    };
    let z = zip_of(&[("data.pkl", &pickle_of(&[spec])), ("data/0", &[0u8; 16])]);
    let e = parse_state_dict(&z).unwrap_err().to_string();
    assert!(
        e.contains("needs 5 floats from storage 0 but it holds 4"),
        "{e}"
    );
    // Offset past the end.
    let spec = Spec {
        offset: 4,
        ..float("w", "0", 4, &[1])
    };
    let z = zip_of(&[("data.pkl", &pickle_of(&[spec])), ("data/0", &[0u8; 16])]);
    assert!(matches!(
        parse_state_dict(&z).unwrap_err(),
        TorchError::OutOfBounds { needs: 5, .. }
    ));
}

#[test]
fn storage_member_shorter_than_declared_is_an_error() {
    // The persistent id declares 401408 floats, the member holds 4000 bytes: no
    // 1.6 MB allocation, a clear error.
    let pkl = pickle_of(&[float("fc1.weight", "3", 401408, &[128, 3136])]);
    let z = zip_of(&[("data.pkl", &pkl), ("data/3", &vec![0u8; 4000])]);
    let e = parse_state_dict(&z).unwrap_err().to_string();
    assert_eq!(
        e,
        "storage 3 (torch.FloatStorage) declares 401408 elements (1605632 bytes) but \
         archive/data/3 holds 4000 bytes"
    );
    // A member that is missing altogether.
    let z = zip_of(&[("data.pkl", &pkl)]);
    let e = parse_state_dict(&z).unwrap_err().to_string();
    assert!(e.contains("archive/data/3: missing"), "{e}");
    // Absurd declared sizes do not allocate.
    let pkl = pickle_of(&[float("w", "0", i32::MAX, &[i32::MAX, i32::MAX])]);
    let z = zip_of(&[("data.pkl", &pkl), ("data/0", &[0u8; 8])]);
    assert!(matches!(
        parse_state_dict(&z).unwrap_err(),
        TorchError::StorageTooShort { holds: 8, .. }
    ));
}

#[test]
fn wrong_storage_type_is_an_error() {
    let spec = Spec {
        stype: "LongStorage",
        ..float("bn.num_batches_tracked", "0", 1, &[])
    };
    let z = zip_of(&[("data.pkl", &pickle_of(&[spec])), ("data/0", &[0u8; 8])]);
    let e = parse_state_dict(&z).unwrap_err();
    assert!(
        matches!(&e, TorchError::UnsupportedStorage { storage_type, .. }
            if storage_type == "torch.LongStorage"),
        "{e}"
    );
    assert!(
        e.to_string().starts_with(
            "tensor bn.num_batches_tracked: unsupported storage type torch.LongStorage"
        )
    );
}

#[test]
fn other_malformed_inputs_are_errors() {
    let ok = pickle_of(&[float("x", "0", 2, &[2])]);
    let data = f32s(&[1.0, 2.0]);
    // Not a zip at all, and the legacy format.
    assert!(matches!(
        parse_state_dict(b"hello").unwrap_err(),
        TorchError::Zip(_)
    ));
    let legacy = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.";
    assert!(matches!(
        parse_state_dict(legacy).unwrap_err(),
        TorchError::Legacy
    ));
    // A zip without data.pkl.
    let z = zip_of(&[("data/0", &data)]);
    assert!(
        parse_state_dict(&z)
            .unwrap_err()
            .to_string()
            .contains("data.pkl")
    );
    // A truncated pickle.
    let z = zip_of(&[("data.pkl", &ok[..ok.len() - 3]), ("data/0", &data)]);
    assert!(matches!(
        parse_state_dict(&z).unwrap_err(),
        TorchError::Pickle { .. }
    ));
    // A non-tensor entry.
    let mut p = b"\x80\x02}(X\x05\x00\x00\x00epochK\x03u.".to_vec();
    let z = zip_of(&[("data.pkl", &p)]);
    let e = parse_state_dict(&z).unwrap_err().to_string();
    assert!(
        e.contains("entry 'epoch' is the int 3, not a tensor"),
        "{e}"
    );
    // Not a mapping.
    p = b"\x80\x02K\x03.".to_vec();
    let z = zip_of(&[("data.pkl", &p)]);
    assert!(matches!(
        parse_state_dict(&z).unwrap_err(),
        TorchError::Structure(_)
    ));
    // Rank mismatch between size and stride.
    let spec = Spec {
        stride: vec![1],
        ..float("x", "0", 4, &[2, 2])
    };
    let z = zip_of(&[("data.pkl", &pickle_of(&[spec])), ("data/0", &[0u8; 16])]);
    assert!(matches!(
        parse_state_dict(&z).unwrap_err(),
        TorchError::BadTensor { .. }
    ));
    // Negative offset.
    let spec = Spec {
        offset: -1,
        ..float("x", "0", 2, &[2])
    };
    let z = zip_of(&[("data.pkl", &pickle_of(&[spec])), ("data/0", &data)]);
    let e = parse_state_dict(&z).unwrap_err().to_string();
    assert!(e.contains("storage offset is the int -1"), "{e}");
    // A broadcast (stride 0) view larger than its storage is refused, not allocated.
    let spec = Spec {
        stride: vec![0, 0],
        ..float("x", "0", 1, &[1 << 30, 1 << 30])
    };
    let z = zip_of(&[("data.pkl", &pickle_of(&[spec])), ("data/0", &data[..4])]);
    let e = parse_state_dict(&z).unwrap_err().to_string();
    assert!(e.contains("broadcast views"), "{e}");
    // Path tricks in the storage key.
    let spec = float("x", "../0", 2, &[2]);
    let z = zip_of(&[("data.pkl", &pickle_of(&[spec])), ("data/0", &data)]);
    assert!(matches!(
        parse_state_dict(&z).unwrap_err(),
        TorchError::BadTensor { .. }
    ));
}

#[test]
fn every_pickle_truncation_is_an_error_not_a_panic() {
    let z = zip::ZipArchive::new(Cursor::new(GOLDEN));
    let mut z = z.unwrap();
    let pkl = read_member(&mut z, "tiny/data.pkl", 1 << 20, GOLDEN.len() as u64).unwrap();
    let mut members: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..z.len() {
        let mut f = z.by_index(i).unwrap();
        let name = f.name().unwrap().trim_start_matches("tiny/").to_string();
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).unwrap();
        members.push((name, buf));
    }
    for cut in 0..pkl.len() {
        let files: Vec<(&str, &[u8])> = members
            .iter()
            .map(|(n, b)| {
                let b: &[u8] = if n == "data.pkl" { &pkl[..cut] } else { b };
                (n.as_str(), b)
            })
            .collect();
        assert!(parse_state_dict(&zip_of(&files)).is_err(), "cut {cut}");
    }
}

#[test]
fn half_conversion() {
    assert_eq!(f16_to_f32(0x3c00), 1.0);
    assert_eq!(f16_to_f32(0xc000), -2.0);
    assert_eq!(f16_to_f32(0x7bff), 65504.0);
    assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
    assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
    assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
    assert!(f16_to_f32(0x7e00).is_nan());
}

/// The real asset (`smelt fetch ccexam-mnist-cnn`), if present.
#[test]
fn real_ccexam_mnist_cnn() {
    let path = crate::fetch::default_home().join("assets/ccexam-mnist-cnn/mnist.pth");
    if !path.exists() {
        println!("skipped: {} is absent", path.display());
        return;
    }
    let t = load_state_dict(&path).unwrap();
    let got: Vec<(&str, &[usize])> = t
        .iter()
        .map(|t| (t.name.as_str(), t.shape.as_slice()))
        .collect();
    let want: [(&str, &[usize]); 8] = [
        ("features.0.weight", &[32, 1, 3, 3]),
        ("features.0.bias", &[32]),
        ("features.3.weight", &[64, 32, 3, 3]),
        ("features.3.bias", &[64]),
        ("classifier.0.weight", &[128, 3136]),
        ("classifier.0.bias", &[128]),
        ("classifier.2.weight", &[10, 128]),
        ("classifier.2.bias", &[10]),
    ];
    assert_eq!(got, want);
    assert_eq!(t.iter().map(|t| t.data.len()).sum::<usize>(), 421_642);
    // First and last values and the sum of each tensor, from Python's `struct.unpack` of
    // the raw `mnist/data/<k>` members.
    let want: [(f32, f32, f64); 8] = [
        (-0.208_153_2, -0.374_824_3, -16.344_372_688_792_646),
        (-0.200_049_18, -0.101_210_475, -13.012_135_986_238_718),
        (0.185_065_21, -0.388_630_57, -1_455.139_664_949_056_2),
        (0.200_889_45, -0.228_228_64, -11.969_870_662_840_549),
        (0.010_980_657, 0.053_493_563, -1_268.738_961_044_380_2),
        (-0.204_381_4, -0.204_935_85, -8.188_771_029_592_317),
        (0.062_966_93, 0.190_259_02, -82.527_993_687_377_6),
        (-0.166_540_25, 0.053_010_486, -0.038_716_256_618_499_756),
    ];
    for (t, (first, last, sum)) in t.iter().zip(want) {
        assert_eq!(
            (t.data[0], t.data[t.data.len() - 1]),
            (first, last),
            "{}",
            t.name
        );
        let got: f64 = t.data.iter().map(|&x| x as f64).sum();
        assert!((got - sum).abs() < 1e-6, "{}: sum {got} vs {sum}", t.name);
    }
    for t in &t {
        assert_eq!(t.data.len(), t.numel());
        assert!(t.data.iter().all(|x| x.is_finite()), "{}", t.name);
    }
}

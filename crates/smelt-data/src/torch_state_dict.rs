//! Loads PyTorch `state_dict` files (the zip format `torch.save` writes since torch 1.6)
//! without PyTorch or Python.
//!
//! Such a file is a zip archive (members stored uncompressed) holding, under one top folder
//! `<prefix>/`:
//!
//! * `data.pkl`: a pickle (protocol 2) of an `OrderedDict` mapping each parameter name to
//!   `torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
//!   backward_hooks)`, where `storage` is a persistent id
//!   `('storage', torch.FloatStorage, key, location, numel)`;
//! * `data/<key>`: the raw bytes of each storage, in the byte order named by
//! * `byteorder`: `little` or `big` (big-endian storages are converted); absent in files
//!   from older torch, which means little;
//! * `version`, `.format_version`, `.storage_alignment`, `.data/serialization_id`: ignored.
//!
//! Float storages (`FloatStorage`) load as they are; `DoubleStorage`, `HalfStorage` and
//! `BFloat16Storage` are converted to `f32`. Any other storage type (for example the
//! `LongStorage` of a BatchNorm's `num_batches_tracked`) is an error naming it.
//!
//! Nothing read from the file is trusted: every offset, size and stride is checked against
//! the storage it indexes before anything is allocated, so a corrupt or hostile file gives a
//! [`TorchError`], never a panic or an allocation out of proportion to the file.

use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use crate::pickle::{self, PickleError, Value};

/// One tensor of a `state_dict`, materialized as dense row-major `f32` values.
#[derive(Debug, Clone, PartialEq)]
pub struct TorchTensor {
    /// The parameter name, e.g. `features.0.weight`.
    pub name: String,
    /// The tensor's shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values in row-major (C) order, whatever the saved strides.
    pub data: Vec<f32>,
}

impl TorchTensor {
    /// Number of elements (`1` for a scalar).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Why a `state_dict` file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TorchError {
    /// Any error, prefixed with the file it came from (what [`load_state_dict`] returns).
    #[error("{}: {inner}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong in it.
        inner: Box<TorchError>,
    },
    /// The file could not be read.
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    /// The pre-1.6 `torch.save` format (a bare pickle stream, not a zip archive).
    #[error(
        "this is the legacy (torch < 1.6, non-zip) torch.save format, which is not supported; \
         re-save it with a current torch"
    )]
    Legacy,
    /// Not a zip archive, or a damaged one.
    #[error("not a valid PyTorch zip checkpoint: {0}")]
    Zip(String),
    /// A required archive member is missing, unreadable or malformed.
    #[error("archive member {member}: {what}")]
    Member {
        /// The member's path inside the archive.
        member: String,
        /// What was wrong.
        what: String,
    },
    /// `data.pkl` is not a valid pickle.
    #[error("{member}: {source}")]
    Pickle {
        /// The pickle's path inside the archive.
        member: String,
        /// The parse error.
        source: PickleError,
    },
    /// The pickle is valid but is not a `state_dict` of tensors as torch writes it.
    #[error("not a state_dict: {0}")]
    Structure(String),
    /// A tensor's storage type is not one this loader converts to `f32`.
    #[error(
        "tensor {tensor}: unsupported storage type {storage_type} \
         (supported: torch.FloatStorage, torch.DoubleStorage, torch.HalfStorage, \
         torch.BFloat16Storage)"
    )]
    UnsupportedStorage {
        /// The tensor's name.
        tensor: String,
        /// The storage type as written in the pickle, e.g. `torch.LongStorage`.
        storage_type: String,
    },
    /// A storage member holds fewer bytes than its persistent id declares.
    #[error(
        "storage {key} ({storage_type}) declares {numel} elements ({needs} bytes) \
         but {member} holds {holds} bytes"
    )]
    StorageTooShort {
        /// The storage key.
        key: String,
        /// Its type, e.g. `torch.FloatStorage`.
        storage_type: String,
        /// Elements declared.
        numel: u64,
        /// Bytes those elements need.
        needs: u64,
        /// The member holding the bytes.
        member: String,
        /// Bytes it holds.
        holds: u64,
    },
    /// A tensor's offset, sizes and strides reach past the end of its storage.
    #[error("tensor {tensor} needs {needs} {unit} from storage {key} but it holds {holds}")]
    OutOfBounds {
        /// The tensor's name.
        tensor: String,
        /// Storage elements the view spans (`offset + Σ (size-1)·stride + 1`).
        needs: u64,
        /// Element kind, e.g. `floats`.
        unit: &'static str,
        /// The storage key.
        key: String,
        /// Elements the storage holds.
        holds: u64,
    },
    /// Any other inconsistent tensor description (negative or overflowing numbers,
    /// rank mismatch, a broadcast view larger than its storage).
    #[error("tensor {tensor}: {what}")]
    BadTensor {
        /// The tensor's name.
        tensor: String,
        /// What was wrong.
        what: String,
    },
}

/// Reads the file at `path` and returns its tensors in file order (see [`parse_state_dict`]).
/// Errors name the file.
pub fn load_state_dict(path: &Path) -> Result<Vec<TorchTensor>, TorchError> {
    let in_file = |e: TorchError| TorchError::File {
        path: path.to_path_buf(),
        inner: Box::new(e),
    };
    let bytes = std::fs::read(path).map_err(|e| in_file(e.into()))?;
    parse_state_dict(&bytes).map_err(in_file)
}

/// Parses the bytes of a zip-format `torch.save(state_dict)` file and returns its tensors in
/// file order, each as dense row-major `f32`.
pub fn parse_state_dict(zip_bytes: &[u8]) -> Result<Vec<TorchTensor>, TorchError> {
    let mut archive = match zip::ZipArchive::new(Cursor::new(zip_bytes)) {
        Ok(a) => a,
        Err(e) => {
            // Legacy format: a pickled magic number, LONG1 0x1950a86a20f9469cfc6c.
            const LEGACY: &[u8] = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19";
            if zip_bytes.starts_with(LEGACY) {
                return Err(TorchError::Legacy);
            }
            return Err(TorchError::Zip(e.to_string()));
        }
    };
    let mut names = Vec::with_capacity(archive.len());
    for name in archive.file_names() {
        names.push(
            name.map_err(|e| TorchError::Zip(e.to_string()))?
                .into_owned(),
        );
    }
    let pkls: Vec<&String> = names
        .iter()
        .filter(|n| {
            n.strip_suffix("/data.pkl")
                .is_some_and(|p| !p.is_empty() && !p.contains('/'))
        })
        .collect();
    let pkl_name = match pkls.as_slice() {
        [one] => one.to_string(),
        [] => {
            return Err(TorchError::Zip(
                "no <prefix>/data.pkl member (is this a torch.save file?)".into(),
            ));
        }
        many => {
            return Err(TorchError::Zip(format!(
                "several data.pkl members: {}",
                many.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    };
    let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
    let archive_len = zip_bytes.len() as u64;

    let byteorder_name = format!("{prefix}byteorder");
    let big_endian = if names.contains(&byteorder_name) {
        let raw = read_member(&mut archive, &byteorder_name, 64, archive_len)?;
        match String::from_utf8_lossy(&raw).trim() {
            "little" => false,
            "big" => true,
            other => {
                return Err(TorchError::Member {
                    member: byteorder_name,
                    what: format!("unknown byte order '{other}' (expected 'little' or 'big')"),
                });
            }
        }
    } else {
        false
    };

    const MAX_PICKLE: u64 = 1 << 30;
    let pkl = read_member(&mut archive, &pkl_name, MAX_PICKLE, archive_len)?;
    let root = pickle::parse(&pkl).map_err(|source| TorchError::Pickle {
        member: pkl_name.clone(),
        source,
    })?;

    let mut storages: HashMap<String, Storage> = HashMap::new();
    let mut out = Vec::new();
    for (key, value) in mapping_entries(&root)? {
        let name = key
            .as_text()
            .ok_or_else(|| {
                TorchError::Structure(format!("a key is {}, not a string", describe(key)))
            })?
            .to_string();
        if name == "_metadata" && tensor_call(value).is_none() {
            continue; // the module versions torch keeps as an attribute of the OrderedDict
        }
        let spec = TensorSpec::from_value(&name, value)?;
        let storage = match storages.get(&spec.key) {
            Some(s) => {
                if s.dtype != spec.dtype || s.type_name != spec.type_name {
                    return Err(TorchError::BadTensor {
                        tensor: name,
                        what: format!(
                            "storage {} is {} here but {} for an earlier tensor",
                            spec.key, spec.type_name, s.type_name
                        ),
                    });
                }
                s
            }
            None => {
                let s = Storage::load(&mut archive, &prefix, &spec, big_endian, archive_len)?;
                storages.entry(spec.key.clone()).or_insert(s)
            }
        };
        let (shape, data) = materialize(&name, &spec, storage)?;
        out.push(TorchTensor { name, shape, data });
    }
    Ok(out)
}

/// Reads a member whole, refusing more than `limit` bytes.
fn read_member<R: Read + std::io::Seek>(
    archive: &mut zip::ZipArchive<R>,
    name: &str,
    limit: u64,
    archive_len: u64,
) -> Result<Vec<u8>, TorchError> {
    let buf = read_prefix(archive, name, limit.saturating_add(1), archive_len)?;
    if buf.len() as u64 > limit {
        return Err(TorchError::Member {
            member: name.to_string(),
            what: format!("larger than the {limit}-byte limit"),
        });
    }
    Ok(buf)
}

/// Reads at most `max` bytes of a member. The up-front allocation never exceeds the
/// archive's own size, whatever the member's header claims.
fn read_prefix<R: Read + std::io::Seek>(
    archive: &mut zip::ZipArchive<R>,
    name: &str,
    max: u64,
    archive_len: u64,
) -> Result<Vec<u8>, TorchError> {
    let bad = |what: String| TorchError::Member {
        member: name.to_string(),
        what,
    };
    let file = archive
        .by_name(name)
        .map_err(|e| bad(format!("cannot open: {e}")))?;
    let hint = file.size().min(max).min(archive_len);
    let mut buf = Vec::with_capacity(hint as usize);
    file.take(max)
        .read_to_end(&mut buf)
        .map_err(|e| bad(format!("cannot read: {e}")))?;
    Ok(buf)
}

/// The `(key, value)` pairs of the top-level mapping: a plain dict, or an `OrderedDict`
/// (REDUCE of `collections.OrderedDict` whose items the pickle reader keeps as `Build`
/// states, one per `SETITEMS` batch, plus the `BUILD` that sets `_metadata`).
fn mapping_entries(v: &Value) -> Result<Vec<(&Value, &Value)>, TorchError> {
    match v {
        Value::Dict(items) => Ok(items.iter().map(|(k, v)| (k, v)).collect()),
        Value::Call { callable, args } if callable.is_global("collections", "OrderedDict") => {
            // `OrderedDict()` from torch; `OrderedDict([[k, v], ...])` from protocol 0/1.
            let mut out = Vec::new();
            if let Some(pairs) = args
                .as_seq()
                .and_then(|a| a.first())
                .and_then(|p| p.as_seq())
            {
                for pair in pairs {
                    match pair.as_seq() {
                        Some([k, v]) => out.push((k, v)),
                        _ => {
                            return Err(TorchError::Structure(
                                "OrderedDict argument is not a list of pairs".into(),
                            ));
                        }
                    }
                }
            }
            Ok(out)
        }
        Value::Build { obj, state } => {
            let mut out = mapping_entries(obj)?;
            match state.as_ref() {
                Value::Dict(items) => out.extend(items.iter().map(|(k, v)| (k, v))),
                Value::None => {}
                other => {
                    return Err(TorchError::Structure(format!(
                        "the mapping's state is {}, not a dict",
                        describe(other)
                    )));
                }
            }
            Ok(out)
        }
        other => Err(TorchError::Structure(format!(
            "the pickle holds {}, not a dict or OrderedDict of tensors",
            describe(other)
        ))),
    }
}

/// The `_rebuild_tensor*` call inside a tensor value, unwrapping `_rebuild_parameter`.
fn tensor_call(v: &Value) -> Option<&[Value]> {
    match v {
        Value::Call { callable, args } => {
            let args = args.as_seq()?;
            if callable.is_global("torch._utils", "_rebuild_tensor_v2")
                || callable.is_global("torch._utils", "_rebuild_tensor")
            {
                Some(args)
            } else if callable.is_global("torch._utils", "_rebuild_parameter")
                || callable.is_global("torch._utils", "_rebuild_parameter_with_state")
            {
                tensor_call(args.first()?)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// A short description of a pickle value for error messages.
fn describe(v: &Value) -> String {
    match v {
        Value::None => "None".into(),
        Value::Bool(_) => "a bool".into(),
        Value::Int(i) => format!("the int {i}"),
        Value::Float(f) => format!("the float {f}"),
        Value::Bytes(_) => "bytes".into(),
        Value::Str(s) => format!("the string {s:?}"),
        Value::Tuple(_) => "a tuple".into(),
        Value::List(_) => "a list".into(),
        Value::Dict(_) => "a dict".into(),
        Value::Global { module, name } => format!("{module}.{name}"),
        Value::Call { callable, .. } => format!("a call of {}", describe(callable)),
        Value::Build { obj, .. } => describe(obj),
        Value::PersistentId(_) => "a persistent id".into(),
    }
}

/// Element types this loader converts to `f32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DType {
    F32,
    F64,
    F16,
    BF16,
}

impl DType {
    fn from_storage(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => DType::F32,
            "DoubleStorage" => DType::F64,
            "HalfStorage" => DType::F16,
            "BFloat16Storage" => DType::BF16,
            _ => return None,
        })
    }

    fn size(self) -> u64 {
        match self {
            DType::F32 => 4,
            DType::F64 => 8,
            DType::F16 | DType::BF16 => 2,
        }
    }

    fn unit(self) -> &'static str {
        match self {
            DType::F32 => "floats",
            DType::F64 => "doubles",
            DType::F16 => "halfs",
            DType::BF16 => "bfloat16s",
        }
    }
}

/// One tensor's description, validated for sign and rank but not yet against its storage.
struct TensorSpec {
    key: String,
    type_name: String,
    dtype: DType,
    declared_numel: u64,
    offset: u64,
    size: Vec<u64>,
    stride: Vec<u64>,
}

impl TensorSpec {
    fn from_value(name: &str, v: &Value) -> Result<Self, TorchError> {
        let bad = |what: String| TorchError::BadTensor {
            tensor: name.to_string(),
            what,
        };
        let args = tensor_call(v).ok_or_else(|| {
            TorchError::Structure(format!(
                "entry '{name}' is {}, not a tensor (torch._utils._rebuild_tensor_v2)",
                describe(v)
            ))
        })?;
        let [storage, offset, size, stride, ..] = args else {
            return Err(bad(format!(
                "_rebuild_tensor has {} arguments, expected at least 4",
                args.len()
            )));
        };
        let pid = match storage {
            Value::PersistentId(p) => p.as_seq(),
            _ => None,
        }
        .ok_or_else(|| {
            bad(format!(
                "storage is {}, not a persistent id",
                describe(storage)
            ))
        })?;
        let [tag, stype, key, _location, numel, ..] = pid else {
            return Err(bad(format!(
                "storage persistent id has {} fields, expected 5",
                pid.len()
            )));
        };
        if tag.as_text() != Some("storage") {
            return Err(bad(format!(
                "persistent id tag is {}, expected 'storage'",
                describe(tag)
            )));
        }
        let (module, sname) = match stype {
            Value::Global { module, name } => (module.as_str(), name.as_str()),
            other => return Err(bad(format!("storage type is {}", describe(other)))),
        };
        let type_name = format!("{module}.{sname}");
        let dtype = (module == "torch")
            .then(|| DType::from_storage(sname))
            .flatten()
            .ok_or_else(|| TorchError::UnsupportedStorage {
                tensor: name.to_string(),
                storage_type: type_name.clone(),
            })?;
        let key = match key {
            Value::Int(i) => i.to_string(),
            k => k
                .as_text()
                .ok_or_else(|| bad(format!("storage key is {}", describe(k))))?
                .to_string(),
        };
        if key.is_empty() || key.contains('/') || key.contains("..") {
            return Err(bad(format!("storage key {key:?} is not a plain name")));
        }
        let uint = |v: &Value, what: &str| -> Result<u64, TorchError> {
            v.as_int()
                .and_then(|i| u64::try_from(i).ok())
                .ok_or_else(|| bad(format!("{what} is {}, not a non-negative int", describe(v))))
        };
        let declared_numel = uint(numel, "storage size")?;
        let offset = uint(offset, "storage offset")?;
        let ints = |v: &Value, what: &str| -> Result<Vec<u64>, TorchError> {
            v.as_seq()
                .ok_or_else(|| bad(format!("{what} is {}, not a tuple", describe(v))))?
                .iter()
                .map(|x| uint(x, what))
                .collect()
        };
        let size = ints(size, "size")?;
        let stride = ints(stride, "stride")?;
        if size.len() != stride.len() {
            return Err(bad(format!(
                "size {size:?} and stride {stride:?} have different ranks"
            )));
        }
        Ok(TensorSpec {
            key,
            type_name,
            dtype,
            declared_numel,
            offset,
            size,
            stride,
        })
    }
}

/// A storage's bytes, exactly `numel * dtype.size()` of them.
struct Storage {
    type_name: String,
    dtype: DType,
    numel: u64,
    big_endian: bool,
    bytes: Vec<u8>,
}

impl Storage {
    fn load<R: Read + std::io::Seek>(
        archive: &mut zip::ZipArchive<R>,
        prefix: &str,
        spec: &TensorSpec,
        big_endian: bool,
        archive_len: u64,
    ) -> Result<Self, TorchError> {
        let member = format!("{prefix}data/{}", spec.key);
        let needs = spec
            .declared_numel
            .checked_mul(spec.dtype.size())
            .ok_or_else(|| TorchError::Member {
                member: member.clone(),
                what: format!(
                    "declared size of {} elements overflows",
                    spec.declared_numel
                ),
            })?;
        if archive.index_for_name(&member).is_none() {
            return Err(TorchError::Member {
                member,
                what: format!("missing (storage {} of {})", spec.key, spec.type_name),
            });
        }
        // Bytes past the declared size, if any, are not part of the storage.
        let bytes = read_prefix(archive, &member, needs, archive_len)?;
        if (bytes.len() as u64) < needs {
            return Err(TorchError::StorageTooShort {
                key: spec.key.clone(),
                storage_type: spec.type_name.clone(),
                numel: spec.declared_numel,
                needs,
                member,
                holds: bytes.len() as u64,
            });
        }
        Ok(Storage {
            type_name: spec.type_name.clone(),
            dtype: spec.dtype,
            numel: spec.declared_numel,
            big_endian,
            bytes,
        })
    }

    /// Element `i` as `f32`; `i < self.numel` is the caller's promise.
    fn get(&self, i: usize) -> f32 {
        let n = self.dtype.size() as usize;
        let b = &self.bytes[i * n..(i + 1) * n];
        macro_rules! num {
            ($t:ty) => {{
                let a = b.try_into().expect("slice length is the element size");
                if self.big_endian {
                    <$t>::from_be_bytes(a)
                } else {
                    <$t>::from_le_bytes(a)
                }
            }};
        }
        match self.dtype {
            DType::F32 => num!(f32),
            DType::F64 => num!(f64) as f32,
            DType::F16 => f16_to_f32(num!(u16)),
            DType::BF16 => f32::from_bits((num!(u16) as u32) << 16),
        }
    }
}

/// Checks the view against its storage, then copies it out densely in row-major order.
fn materialize(
    name: &str,
    spec: &TensorSpec,
    storage: &Storage,
) -> Result<(Vec<usize>, Vec<f32>), TorchError> {
    let bad = |what: String| TorchError::BadTensor {
        tensor: name.to_string(),
        what,
    };
    let numel = spec
        .size
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad(format!("size {:?} overflows", spec.size)))?;
    let shape = spec
        .size
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| bad(format!("size {d} does not fit in memory"))))
        .collect::<Result<Vec<_>, _>>()?;
    if numel == 0 {
        return Ok((shape, Vec::new()));
    }
    // A stride of a length-1 dimension never moves; zero it so it cannot overflow below.
    let stride: Vec<u64> = spec
        .size
        .iter()
        .zip(&spec.stride)
        .map(|(&d, &s)| if d == 1 { 0 } else { s })
        .collect();
    let overflow = || bad(format!("offset/size/stride overflow: {:?}", spec.stride));
    let mut last = spec.offset;
    for (&d, &s) in spec.size.iter().zip(&stride) {
        let span = (d - 1).checked_mul(s).ok_or_else(overflow)?;
        last = last.checked_add(span).ok_or_else(overflow)?;
    }
    let needs = last.checked_add(1).ok_or_else(overflow)?;
    if needs > storage.numel {
        return Err(TorchError::OutOfBounds {
            tensor: name.to_string(),
            needs,
            unit: storage.dtype.unit(),
            key: spec.key.clone(),
            holds: storage.numel,
        });
    }
    if numel > storage.numel {
        return Err(bad(format!(
            "{numel} elements is more than storage {} holds ({}); broadcast views \
             (stride 0) are not supported",
            spec.key, storage.numel
        )));
    }
    // Every index below is at most `last < storage.numel`, which fits in usize (the storage
    // bytes are in memory); intermediate sums stay below `2 * storage.numel`.
    let numel = numel as usize;
    let offset = spec.offset as usize;
    let mut data = Vec::with_capacity(numel);
    let contiguous = {
        let mut expect = 1u64;
        let mut ok = true;
        for (&d, &s) in spec.size.iter().zip(&stride).rev() {
            if d != 1 && s != expect {
                ok = false;
                break;
            }
            expect *= d;
        }
        ok
    };
    if contiguous {
        data.extend((offset..offset + numel).map(|i| storage.get(i)));
    } else {
        let stride: Vec<usize> = stride.iter().map(|&s| s as usize).collect();
        let mut idx = vec![0usize; shape.len()];
        let mut pos = offset;
        for _ in 0..numel {
            data.push(storage.get(pos));
            for d in (0..shape.len()).rev() {
                idx[d] += 1;
                pos += stride[d];
                if idx[d] < shape[d] {
                    break;
                }
                pos -= stride[d] * shape[d];
                idx[d] = 0;
            }
        }
    }
    Ok((shape, data))
}

/// IEEE 754 binary16 to binary32 (exact).
fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0f32 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    match exp {
        0 => sign * man as f32 * (1.0 / 16_777_216.0), // zero and subnormals: man · 2⁻²⁴
        0x1f => f32::from_bits(((h as u32 & 0x8000) << 16) | 0x7f80_0000 | (man << 13)),
        _ => f32::from_bits(((h as u32 & 0x8000) << 16) | ((exp + 112) << 23) | (man << 13)),
    }
}

#[cfg(test)]
#[path = "torch_state_dict_tests.rs"]
mod tests;

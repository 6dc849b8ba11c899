//! Parsing a GGUF header (v2 and v3, little-endian) from bytes, with every count, length and
//! offset checked against the bytes that actually exist before anything is allocated.
//!
//! Layout (ggml/docs/gguf.md): magic `GGUF`, u32 version, u64 tensor count, u64 metadata count,
//! the metadata key/value pairs, the tensor infos (name, n_dims, dims, type, offset), padding to
//! `general.alignment` (default 32), then the tensor data; each tensor's offset is relative to
//! the start of the data and aligned.

use crate::types::GgmlType;

/// Most dimensions a ggml tensor can have (`GGML_MAX_DIMS`).
pub const MAX_DIMS: u32 = 4;
/// Default data alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// How deeply arrays may nest inside arrays; real files use 1.
pub const MAX_ARRAY_DEPTH: u32 = 4;
/// Largest accepted `general.alignment` (1 MiB); real files use 32. A huge alignment is the
/// classic route to padding arithmetic that wraps around.
pub const MAX_ALIGNMENT: u32 = 1 << 20;

/// A metadata value.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    /// Element type id and the elements (all of that type).
    Array(MetaType, Vec<MetaValue>),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// GGUF metadata value type ids.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum MetaType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl MetaType {
    fn from_id(id: u32) -> Option<Self> {
        use MetaType::*;
        [
            U8, I8, U16, I16, U32, I32, F32, Bool, String, Array, U64, I64, F64,
        ]
        .get(id as usize)
        .copied()
    }

    /// Size of one element in bytes, for fixed-size types.
    fn fixed_size(self) -> Option<u64> {
        use MetaType::*;
        Some(match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 => 8,
            String | Array => return None,
        })
    }

    /// Lower-case name as gguf-py prints it.
    pub fn name(self) -> &'static str {
        use MetaType::*;
        match self {
            U8 => "uint8",
            I8 => "int8",
            U16 => "uint16",
            I16 => "int16",
            U32 => "uint32",
            I32 => "int32",
            F32 => "float32",
            Bool => "bool",
            String => "string",
            Array => "array",
            U64 => "uint64",
            I64 => "int64",
            F64 => "float64",
        }
    }
}

impl MetaValue {
    /// The value's type id.
    pub fn meta_type(&self) -> MetaType {
        match self {
            MetaValue::U8(_) => MetaType::U8,
            MetaValue::I8(_) => MetaType::I8,
            MetaValue::U16(_) => MetaType::U16,
            MetaValue::I16(_) => MetaType::I16,
            MetaValue::U32(_) => MetaType::U32,
            MetaValue::I32(_) => MetaType::I32,
            MetaValue::F32(_) => MetaType::F32,
            MetaValue::Bool(_) => MetaType::Bool,
            MetaValue::String(_) => MetaType::String,
            MetaValue::Array(..) => MetaType::Array,
            MetaValue::U64(_) => MetaType::U64,
            MetaValue::I64(_) => MetaType::I64,
            MetaValue::F64(_) => MetaType::F64,
        }
    }

    /// Integer value of any integer type, if it fits in u64.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::U8(v) => Some(v as u64),
            MetaValue::U16(v) => Some(v as u64),
            MetaValue::U32(v) => Some(v as u64),
            MetaValue::U64(v) => Some(v),
            MetaValue::I8(v) => u64::try_from(v).ok(),
            MetaValue::I16(v) => u64::try_from(v).ok(),
            MetaValue::I32(v) => u64::try_from(v).ok(),
            MetaValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Float value of a float or integer.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(v) => Some(v as f64),
            MetaValue::F64(v) => Some(v),
            MetaValue::I8(v) => Some(v as f64),
            MetaValue::I16(v) => Some(v as f64),
            MetaValue::I32(v) => Some(v as f64),
            MetaValue::I64(v) => Some(v as f64),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::String(s) => Some(s),
            _ => None,
        }
    }
}

/// One tensor's description from the header.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions in ggml order: `dims[0]` is the innermost (contiguous) one.
    pub dims: Vec<u64>,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Offset of the data relative to the start of the data section.
    pub offset: u64,
    /// Size of the data in bytes.
    pub size: u64,
}

impl TensorInfo {
    /// Number of elements.
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// Why a GGUF file was rejected. Offsets are from the start of the file.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GgufError {
    /// Not a GGUF file at all.
    #[error("not a GGUF file (magic is {0:02x?}, expected \"GGUF\")")]
    BadMagic([u8; 4]),
    /// A byte-swapped (big-endian) file.
    #[error(
        "big-endian GGUF (version field reads {0:#x}); smelt reads little-endian files only: convert it with gguf-py on a little-endian machine"
    )]
    BigEndian(u32),
    /// A version smelt does not read.
    #[error("GGUF version {0} is not supported (smelt reads v2 and v3)")]
    Version(u32),
    /// The file ends inside a structure.
    #[error("truncated: needed {needed} bytes at offset {at} for {what}, file has {len}")]
    Truncated {
        /// What was being read.
        what: String,
        /// Offset.
        at: u64,
        /// Bytes needed.
        needed: u64,
        /// File length.
        len: u64,
    },
    /// A value that breaks the format's rules.
    #[error("invalid GGUF at offset {at}: {what}")]
    Invalid {
        /// Offset.
        at: u64,
        /// What was wrong.
        what: String,
    },
}

/// A parsed GGUF header; tensor data stays in the caller's bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata in file order.
    pub metadata: Vec<(String, MetaValue)>,
    /// Tensor infos in file order.
    pub tensors: Vec<TensorInfo>,
    /// Data alignment in bytes.
    pub alignment: u64,
    /// Absolute offset of the data section.
    pub data_offset: u64,
    /// Length of the file the header was read from.
    pub file_len: u64,
}

impl Header {
    /// Looks up a metadata value.
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Parses and validates a whole GGUF file held in memory (e.g. an mmap).
    pub fn parse(bytes: &[u8]) -> Result<Self, GgufError> {
        let mut c = Cursor { bytes, pos: 0 };
        let magic: [u8; 4] = c.take(4, "magic")?.try_into().expect("4 bytes");
        if &magic != b"GGUF" {
            return Err(GgufError::BadMagic(magic));
        }
        let version = c.u32("version")?;
        if version.swap_bytes() <= 3 && version > 3 {
            return Err(GgufError::BigEndian(version));
        }
        if version != 2 && version != 3 {
            return Err(GgufError::Version(version));
        }
        let n_tensors = c.u64("tensor count")?;
        let n_kv = c.u64("metadata count")?;
        // Every key/value needs ≥ 13 bytes (8 key length + 1 key byte + 4 type) and every tensor
        // info ≥ 29 bytes, so a count beyond that cannot be honest: refuse before allocating.
        c.plausible(n_kv, 13, "metadata count")?;
        let mut metadata = Vec::with_capacity(n_kv as usize);
        // Keys seen (a set: a file of a million keys must not take 10^12 comparisons).
        let mut keys = std::collections::HashSet::new();
        for _ in 0..n_kv {
            let key_at = c.pos as u64;
            let key = c.string("metadata key")?;
            if key.is_empty() {
                return Err(c.invalid_at(key_at, "empty metadata key".into()));
            }
            if !keys.insert(key.clone()) {
                return Err(c.invalid_at(key_at, format!("duplicate metadata key {key:?}")));
            }
            let ty = c.meta_type()?;
            let value = c.value(ty, 0)?;
            metadata.push((key, value));
        }
        let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some((_, MetaValue::U32(a))) if a.is_power_of_two() && *a <= MAX_ALIGNMENT => *a as u64,
            Some((_, v)) => {
                return Err(c.invalid(format!(
                    "general.alignment must be a power-of-two uint32 of at most {MAX_ALIGNMENT}, found {v:?}"
                )));
            }
        };
        c.plausible(n_tensors, 29, "tensor count")?;
        let mut tensors = Vec::with_capacity(n_tensors as usize);
        let mut names = std::collections::HashSet::new();
        for _ in 0..n_tensors {
            let at = c.pos as u64;
            let t = c.tensor_info(alignment)?;
            if !names.insert(t.name.clone()) {
                return Err(c.invalid_at(at, format!("duplicate tensor name {:?}", t.name)));
            }
            tensors.push(t);
        }
        let file_len = bytes.len() as u64;
        let data_offset = (c.pos as u64).next_multiple_of(alignment);
        if !tensors.is_empty() && data_offset > file_len {
            // Found by fuzzing: a zero-size tensor "fits" in an empty data section that starts
            // past the end of the file, and slicing it would panic.
            return Err(GgufError::Truncated {
                what: format!("padding to the {alignment}-byte aligned tensor data"),
                at: c.pos as u64,
                needed: data_offset - c.pos as u64,
                len: file_len,
            });
        }
        let data_len = file_len - data_offset.min(file_len);
        let mut spans: Vec<(u64, u64, &str)> = Vec::with_capacity(tensors.len());
        for w in tensors.windows(2) {
            if w[1].offset <= w[0].offset {
                return Err(c.invalid_at(
                    data_offset.saturating_add(w[1].offset),
                    format!(
                        "tensor {:?} (offset {}) is not after {:?} (offset {}): offsets must increase in file order",
                        w[1].name, w[1].offset, w[0].name, w[0].offset
                    ),
                ));
            }
        }
        for t in &tensors {
            let end = t.offset.checked_add(t.size).filter(|&e| e <= data_len);
            let Some(end) = end else {
                return Err(GgufError::Truncated {
                    what: format!("data of tensor {:?} ({} bytes)", t.name, t.size),
                    at: data_offset.saturating_add(t.offset),
                    needed: t.size,
                    len: file_len,
                });
            };
            spans.push((t.offset, end, &t.name));
        }
        spans.sort_unstable();
        for w in spans.windows(2) {
            if w[1].0 < w[0].1 {
                return Err(c.invalid_at(
                    data_offset + w[1].0,
                    format!("tensors {:?} and {:?} overlap", w[0].2, w[1].2),
                ));
            }
        }
        Ok(Self {
            version,
            metadata,
            tensors,
            alignment,
            data_offset,
            file_len,
        })
    }

    /// Bytes of a tensor's data inside `file` (the same bytes given to [`Header::parse`]).
    pub fn tensor_data<'a>(&self, file: &'a [u8], t: &TensorInfo) -> &'a [u8] {
        let start = (self.data_offset + t.offset) as usize;
        &file[start..start + t.size as usize]
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8], GgufError> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                what: what.to_string(),
                at: self.pos as u64,
                needed: n,
                len: self.bytes.len() as u64,
            });
        }
        let s = &self.bytes[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn invalid(&self, what: String) -> GgufError {
        self.invalid_at(self.pos as u64, what)
    }

    fn invalid_at(&self, at: u64, what: String) -> GgufError {
        GgufError::Invalid { at, what }
    }

    fn plausible(&self, count: u64, min_each: u64, what: &str) -> Result<(), GgufError> {
        if count > self.remaining() / min_each {
            return Err(self.invalid(format!(
                "{what} {count} cannot fit in the {} bytes that remain",
                self.remaining()
            )));
        }
        Ok(())
    }

    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().unwrap()))
    }

    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().unwrap()))
    }

    fn string(&mut self, what: &str) -> Result<String, GgufError> {
        let at = self.pos as u64;
        let len = self.u64(what)?;
        let raw = self.take(len, what)?;
        String::from_utf8(raw.to_vec())
            .map_err(|_| self.invalid_at(at, format!("{what} is not valid UTF-8")))
    }

    fn meta_type(&mut self) -> Result<MetaType, GgufError> {
        let at = self.pos as u64;
        let id = self.u32("value type")?;
        MetaType::from_id(id)
            .ok_or_else(|| self.invalid_at(at, format!("unknown metadata value type {id}")))
    }

    fn value(&mut self, ty: MetaType, depth: u32) -> Result<MetaValue, GgufError> {
        let what = ty.name();
        Ok(match ty {
            MetaType::U8 => MetaValue::U8(self.take(1, what)?[0]),
            MetaType::I8 => MetaValue::I8(self.take(1, what)?[0] as i8),
            MetaType::U16 => {
                MetaValue::U16(u16::from_le_bytes(self.take(2, what)?.try_into().unwrap()))
            }
            MetaType::I16 => {
                MetaValue::I16(i16::from_le_bytes(self.take(2, what)?.try_into().unwrap()))
            }
            MetaType::U32 => MetaValue::U32(self.u32(what)?),
            MetaType::I32 => MetaValue::I32(self.u32(what)? as i32),
            MetaType::F32 => MetaValue::F32(f32::from_bits(self.u32(what)?)),
            MetaType::Bool => {
                let at = self.pos as u64;
                match self.take(1, what)?[0] {
                    0 => MetaValue::Bool(false),
                    1 => MetaValue::Bool(true),
                    b => return Err(self.invalid_at(at, format!("bool byte {b} is not 0 or 1"))),
                }
            }
            MetaType::String => MetaValue::String(self.string("string value")?),
            MetaType::U64 => MetaValue::U64(self.u64(what)?),
            MetaType::I64 => MetaValue::I64(self.u64(what)? as i64),
            MetaType::F64 => MetaValue::F64(f64::from_bits(self.u64(what)?)),
            MetaType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(
                        self.invalid(format!("arrays nested deeper than {MAX_ARRAY_DEPTH}"))
                    );
                }
                let elem = self.meta_type()?;
                let n = self.u64("array length")?;
                // Fixed-size elements must all be present; strings and arrays need ≥ 8 bytes each.
                let min_each = elem.fixed_size().unwrap_or(8);
                self.plausible(n, min_each, "array length")?;
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.value(elem, depth + 1)?);
                }
                MetaValue::Array(elem, items)
            }
        })
    }

    fn tensor_info(&mut self, alignment: u64) -> Result<TensorInfo, GgufError> {
        let name_at = self.pos as u64;
        let name = self.string("tensor name")?;
        if name.is_empty() {
            return Err(self.invalid_at(name_at, "empty tensor name".into()));
        }
        let at = self.pos as u64;
        let n_dims = self.u32("tensor n_dims")?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(self.invalid_at(
                at,
                format!("tensor {name:?} has {n_dims} dims (1..={MAX_DIMS} allowed)"),
            ));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(self.u64("tensor dim")?);
        }
        let elements = dims
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .filter(|&e| e <= i64::MAX as u64)
            .ok_or_else(|| {
                self.invalid_at(at, format!("tensor {name:?} dims {dims:?} overflow"))
            })?;
        let type_at = self.pos as u64;
        let type_id = self.u32("tensor type")?;
        let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| {
            self.invalid_at(
                type_at,
                format!("tensor {name:?} has unknown ggml type {type_id}"),
            )
        })?;
        let (block, _) = ggml_type.block();
        if !dims[0].is_multiple_of(block) {
            return Err(self.invalid_at(
                at,
                format!(
                    "tensor {name:?}: first dim {} is not a multiple of the {} block size {block}",
                    dims[0],
                    ggml_type.name()
                ),
            ));
        }
        let size = ggml_type
            .bytes_for(elements)
            .ok_or_else(|| self.invalid_at(at, format!("tensor {name:?} size overflows")))?;
        let off_at = self.pos as u64;
        let offset = self.u64("tensor offset")?;
        if !offset.is_multiple_of(alignment) {
            return Err(self.invalid_at(
                off_at,
                format!(
                    "tensor {name:?} offset {offset} is not a multiple of the alignment {alignment}"
                ),
            ));
        }
        Ok(TensorInfo {
            name,
            dims,
            ggml_type,
            offset,
            size,
        })
    }
}

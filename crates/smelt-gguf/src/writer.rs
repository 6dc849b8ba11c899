//! Writing GGUF v3: metadata, tensor infos, aligned data, to a temporary file renamed into place.

use std::io::Write;
use std::path::Path;

use crate::reader::{DEFAULT_ALIGNMENT, MAX_DIMS, MetaValue};
use crate::types::GgmlType;

/// Why a file could not be built or written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A key or tensor name is empty or repeated.
    #[error("{0}")]
    Name(String),
    /// A tensor's bytes do not match its type and shape.
    #[error("tensor {name:?}: {why}")]
    Tensor {
        /// Tensor name.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// An array mixes element types.
    #[error("metadata {0:?}: array elements must all have the declared type")]
    Array(String),
    /// Writing failed.
    #[error("writing {path}: {source}")]
    Io {
        /// Target file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
}

struct PendingTensor {
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
    data: Vec<u8>,
}

/// Collects metadata and tensors, then writes a GGUF v3 file.
pub struct GgufWriter {
    metadata: Vec<(String, MetaValue)>,
    tensors: Vec<PendingTensor>,
    alignment: u64,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    /// An empty file with the default alignment (32).
    pub fn new() -> Self {
        Self {
            metadata: Vec::new(),
            tensors: Vec::new(),
            alignment: DEFAULT_ALIGNMENT,
        }
    }

    /// Uses a different data alignment (a power of two); recorded as `general.alignment`.
    pub fn alignment(&mut self, alignment: u32) -> Result<&mut Self, WriteError> {
        if !alignment.is_power_of_two() || alignment > crate::MAX_ALIGNMENT {
            return Err(WriteError::Name(format!(
                "alignment {alignment} is not a power of two of at most {}",
                crate::MAX_ALIGNMENT
            )));
        }
        self.alignment = alignment as u64;
        self.metadata.retain(|(k, _)| k != "general.alignment");
        self.metadata
            .push(("general.alignment".into(), MetaValue::U32(alignment)));
        Ok(self)
    }

    /// Adds a metadata value; keys must be non-empty and unique.
    pub fn meta(&mut self, key: &str, value: MetaValue) -> Result<&mut Self, WriteError> {
        if key.is_empty() {
            return Err(WriteError::Name("empty metadata key".into()));
        }
        if self.metadata.iter().any(|(k, _)| k == key) {
            return Err(WriteError::Name(format!("duplicate metadata key {key:?}")));
        }
        check_array(key, &value)?;
        self.metadata.push((key.to_string(), value));
        Ok(self)
    }

    /// Rewrites every metadata entry with `f` (keys and values in place), e.g. to move a
    /// model's keys to another architecture's prefix; the keys must stay non-empty and unique.
    pub fn map_meta(
        &mut self,
        mut f: impl FnMut(&mut String, &mut MetaValue),
    ) -> Result<&mut Self, WriteError> {
        for (k, v) in &mut self.metadata {
            f(k, v);
            if k.is_empty() {
                return Err(WriteError::Name("empty metadata key".into()));
            }
            check_array(k, v)?;
        }
        let mut keys: Vec<&str> = self.metadata.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        if let Some(w) = keys.windows(2).find(|w| w[0] == w[1]) {
            return Err(WriteError::Name(format!(
                "duplicate metadata key {:?}",
                w[0]
            )));
        }
        Ok(self)
    }

    /// Adds a tensor; `dims` in ggml order (innermost first), `data` already encoded as `ty`.
    pub fn tensor(
        &mut self,
        name: &str,
        dims: &[u64],
        ty: GgmlType,
        data: Vec<u8>,
    ) -> Result<&mut Self, WriteError> {
        let bad = |why: String| WriteError::Tensor {
            name: name.to_string(),
            why,
        };
        if name.is_empty() || self.tensors.iter().any(|t| t.name == name) {
            return Err(WriteError::Name(format!(
                "tensor name {name:?} is empty or repeated"
            )));
        }
        if dims.is_empty() || dims.len() > MAX_DIMS as usize {
            return Err(bad(format!("{} dims (1..={MAX_DIMS} allowed)", dims.len())));
        }
        let elements = dims
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .ok_or_else(|| bad("shape overflows".into()))?;
        if !dims[0].is_multiple_of(ty.block().0) {
            return Err(bad(format!(
                "first dim {} is not a multiple of the {} block size {}",
                dims[0],
                ty.name(),
                ty.block().0
            )));
        }
        let need = ty
            .bytes_for(elements)
            .ok_or_else(|| bad("size overflows".into()))?;
        if need != data.len() as u64 {
            return Err(bad(format!(
                "needs {need} bytes of {}, got {}",
                ty.name(),
                data.len()
            )));
        }
        self.tensors.push(PendingTensor {
            name: name.to_string(),
            dims: dims.to_vec(),
            ty,
            data,
        });
        Ok(self)
    }

    /// Everything before the tensor data: header, metadata, tensor infos, padding.
    fn header_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(b"GGUF");
        out.extend(3u32.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend((self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            put_str(&mut out, k);
            out.extend((v.meta_type() as u32).to_le_bytes());
            put_value(&mut out, v);
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            put_str(&mut out, &t.name);
            out.extend((t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend(d.to_le_bytes());
            }
            out.extend((t.ty as u32).to_le_bytes());
            out.extend(offset.to_le_bytes());
            offset = (offset + t.data.len() as u64).next_multiple_of(self.alignment);
        }
        pad(&mut out, self.alignment);
        out
    }

    /// Streams the file to `w`: header, then each tensor's data followed by its padding.
    pub fn write_to(&self, w: &mut impl Write) -> std::io::Result<()> {
        w.write_all(&self.header_bytes())?;
        let zeros = vec![0u8; self.alignment as usize];
        for t in &self.tensors {
            w.write_all(&t.data)?;
            let padding =
                (t.data.len() as u64).next_multiple_of(self.alignment) - t.data.len() as u64;
            w.write_all(&zeros[..padding as usize])?;
        }
        Ok(())
    }

    /// Serializes the whole file in memory.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out)
            .expect("writing to a Vec cannot fail");
        out
    }

    /// Writes the file atomically (temporary name, fsync, rename), streaming the tensor data.
    pub fn write(&self, path: &Path) -> Result<(), WriteError> {
        let io = |source| WriteError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut f = smelt_files::AtomicFile::create(path).map_err(io)?;
        self.write_to(&mut f).map_err(io)?;
        f.commit().map_err(io)
    }
}

fn pad(out: &mut Vec<u8>, alignment: u64) {
    let len = (out.len() as u64).next_multiple_of(alignment) as usize;
    out.resize(len, 0);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

fn check_array(key: &str, v: &MetaValue) -> Result<(), WriteError> {
    if let MetaValue::Array(ty, items) = v {
        for item in items {
            if item.meta_type() != *ty {
                return Err(WriteError::Array(key.to_string()));
            }
            check_array(key, item)?;
        }
    }
    Ok(())
}

fn put_value(out: &mut Vec<u8>, v: &MetaValue) {
    match v {
        MetaValue::U8(x) => out.push(*x),
        MetaValue::I8(x) => out.push(*x as u8),
        MetaValue::U16(x) => out.extend(x.to_le_bytes()),
        MetaValue::I16(x) => out.extend(x.to_le_bytes()),
        MetaValue::U32(x) => out.extend(x.to_le_bytes()),
        MetaValue::I32(x) => out.extend(x.to_le_bytes()),
        MetaValue::F32(x) => out.extend(x.to_le_bytes()),
        MetaValue::Bool(x) => out.push(*x as u8),
        MetaValue::String(s) => put_str(out, s),
        MetaValue::U64(x) => out.extend(x.to_le_bytes()),
        MetaValue::I64(x) => out.extend(x.to_le_bytes()),
        MetaValue::F64(x) => out.extend(x.to_le_bytes()),
        MetaValue::Array(ty, items) => {
            out.extend((*ty as u32).to_le_bytes());
            out.extend((items.len() as u64).to_le_bytes());
            // Nested arrays carry their own element type and length.
            for i in items {
                put_value(out, i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Header, MetaType};

    #[test]
    fn written_files_parse_back_identically() {
        let mut w = GgufWriter::new();
        w.meta("general.architecture", MetaValue::String("llama".into()))
            .unwrap()
            .meta("a.u8", MetaValue::U8(7))
            .unwrap()
            .meta("a.i64", MetaValue::I64(-5))
            .unwrap()
            .meta("a.f64", MetaValue::F64(0.25))
            .unwrap()
            .meta(
                "a.nested",
                MetaValue::Array(
                    MetaType::Array,
                    vec![MetaValue::Array(
                        MetaType::I16,
                        vec![MetaValue::I16(-1), MetaValue::I16(2)],
                    )],
                ),
            )
            .unwrap();
        let x: Vec<f32> = (0..64).map(|i| i as f32 * 0.1 - 3.0).collect();
        let q = crate::blocks::quantize(GgmlType::Q8_0, &x).unwrap();
        w.tensor("t.q8", &[32, 2], GgmlType::Q8_0, q.clone())
            .unwrap();
        w.tensor("t.f32", &[3], GgmlType::F32, vec![0u8; 12])
            .unwrap();
        let bytes = w.to_bytes();
        let h = Header::parse(&bytes).unwrap();
        assert_eq!(h.metadata, w.metadata);
        assert_eq!(h.tensors.len(), 2);
        assert_eq!(h.tensor_data(&bytes, &h.tensors[0]), &q[..]);
        assert_eq!(h.tensors[1].offset % 32, 0);
    }

    #[test]
    fn bad_tensors_and_names_are_refused() {
        let mut w = GgufWriter::new();
        assert!(w.meta("", MetaValue::U8(1)).is_err());
        w.meta("k", MetaValue::U8(1)).unwrap();
        assert!(w.meta("k", MetaValue::U8(2)).is_err());
        assert!(w.tensor("x", &[33], GgmlType::Q4_0, vec![0; 18]).is_err());
        assert!(w.tensor("x", &[32], GgmlType::Q4_0, vec![0; 17]).is_err());
        assert!(
            w.tensor("x", &[1, 1, 1, 1, 1], GgmlType::F32, vec![0; 4])
                .is_err()
        );
        let mixed = MetaValue::Array(MetaType::U8, vec![MetaValue::U8(1), MetaValue::I8(1)]);
        assert!(w.meta("m", mixed).is_err());
        assert!(w.alignment(24).is_err());
        assert!(w.alignment(1 << 21).is_err());
    }
}

//! GGUF, the model container of llama.cpp/ggml: a hardened reader, a writer, the ggml block-type
//! table and bit-exact quantizers for the simple block types.
//!
//! GGUF parsers have a long record of heap overflows from trusting counts and offsets in the
//! file. This one checks every count against the bytes that remain before allocating, every
//! tensor against the file's end and against its neighbours, and returns a typed
//! [`GgufError`] (never a panic) for anything it cannot accept.

#![deny(missing_docs)]

pub mod blocks;
pub mod hf;
pub mod mix;
pub mod pretokenizer;
pub mod quantize;
mod reader;
mod types;
mod writer;

use std::path::{Path, PathBuf};

pub use reader::{
    DEFAULT_ALIGNMENT, GgufError, Header, MAX_ALIGNMENT, MAX_ARRAY_DEPTH, MAX_DIMS, MetaType,
    MetaValue, TensorInfo,
};
pub use types::{ALL_TYPES, GgmlType};
pub use writer::{GgufWriter, WriteError};

/// A GGUF file mapped into memory with its parsed header.
pub struct GgufFile {
    /// Where it was opened from.
    pub path: PathBuf,
    /// The parsed and validated header.
    pub header: Header,
    map: memmap2::Mmap,
}

/// Why a GGUF file could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid GGUF.
    #[error("{path}: {source}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        source: GgufError,
    },
}

impl GgufFile {
    /// Maps `path` read-only and validates its header. Tensor data is not copied.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, OpenError> {
        let path = path.as_ref();
        let io = |source| OpenError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the map is read-only; smelt never writes model files in place (it writes a
        // temporary file and renames), so the mapped bytes do not change under us.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        let header = Header::parse(&map).map_err(|source| OpenError::Format {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            header,
            map,
        })
    }

    /// The raw bytes of a tensor.
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        self.header.tensor_data(&self.map, t)
    }

    /// Total number of weights across all tensors.
    pub fn parameter_count(&self) -> u64 {
        self.header.tensors.iter().map(|t| t.elements()).sum()
    }
}

impl AsRef<[u8]> for GgufFile {
    /// The whole mapped file (so models can borrow tensor bytes without copying them).
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}

#[cfg(test)]
mod tests;

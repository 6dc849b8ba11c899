//! The IDX format of the MNIST distribution (LeCun et al.): a big-endian header
//! `0x00 0x00 <type> <ndims>`, one big-endian u32 per dimension, then the elements in C order.
//! smelt only uses type `0x08` (unsigned byte), which covers images and labels.

use std::io::Write;
use std::path::Path;

/// An IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxU8 {
    /// Dimensions, outermost first: `[n, 28, 28]` for images, `[n]` for labels.
    pub dims: Vec<usize>,
    /// Elements in C order; `len == product(dims)`.
    pub data: Vec<u8>,
}

/// Why an IDX file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum IdxError {
    /// Reading the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The bytes are not a valid u8 IDX file.
    #[error("{path}: not a u8 IDX file: {why}")]
    Format {
        /// The file.
        path: String,
        /// What was wrong.
        why: String,
    },
}

impl IdxU8 {
    /// Parses IDX bytes; `name` only labels errors.
    pub fn parse(bytes: &[u8], name: &str) -> Result<Self, IdxError> {
        let bad = |why: String| IdxError::Format {
            path: name.to_string(),
            why,
        };
        if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
            return Err(bad("missing the 0x0000 magic".into()));
        }
        if bytes[2] != 0x08 {
            return Err(bad(format!(
                "element type 0x{:02x}, expected 0x08",
                bytes[2]
            )));
        }
        let ndims = bytes[3] as usize;
        let header = 4 + 4 * ndims;
        if bytes.len() < header {
            return Err(bad(format!("header of {ndims} dims is truncated")));
        }
        let dims: Vec<usize> = (0..ndims)
            .map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize)
            .collect();
        let count = dims
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| bad("dimensions overflow".into()))?;
        if bytes.len() - header != count {
            return Err(bad(format!(
                "dims {dims:?} need {count} bytes of data, file has {}",
                bytes.len() - header
            )));
        }
        Ok(Self {
            dims,
            data: bytes[header..].to_vec(),
        })
    }

    /// Reads an IDX file.
    pub fn read(path: &Path) -> Result<Self, IdxError> {
        let bytes = std::fs::read(path).map_err(|source| IdxError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&bytes, &path.display().to_string())
    }

    /// Serializes to IDX bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 4 * self.dims.len() + self.data.len());
        out.extend([0, 0, 0x08, self.dims.len() as u8]);
        for &d in &self.dims {
            out.extend((d as u32).to_be_bytes());
        }
        out.extend(&self.data);
        out
    }

    /// Writes the array atomically.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let mut f = smelt_files::AtomicFile::create(path)?;
        f.write_all(&self.to_bytes())?;
        f.commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_magic_number_is_a_clear_error() {
        // A gzip header (what an IDX file looks like before decompression) instead of 0x0000.
        let bytes = [0x1f, 0x8b, 0x08, 0x03, 0, 0, 0, 1, 0, 0, 0, 28, 0, 0, 0, 28];
        let e = IdxU8::parse(&bytes, "t10k-images-idx3-ubyte")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("t10k-images-idx3-ubyte") && e.contains("magic"),
            "{e}"
        );
        // Right magic, wrong element type (0x0D = float).
        let e = IdxU8::parse(&[0, 0, 0x0d, 1, 0, 0, 0, 0], "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("element type 0x0d"), "{e}");
    }

    #[test]
    fn round_trip_and_header_layout() {
        let a = IdxU8 {
            dims: vec![2, 2, 3],
            data: (0..12).collect(),
        };
        let b = a.to_bytes();
        assert_eq!(&b[..8], &[0, 0, 8, 3, 0, 0, 0, 2]);
        assert_eq!(IdxU8::parse(&b, "t").unwrap(), a);
    }

    #[test]
    fn inconsistent_lengths_are_errors() {
        let mut b = IdxU8 {
            dims: vec![3],
            data: vec![1, 2, 3],
        }
        .to_bytes();
        b.pop();
        assert!(IdxU8::parse(&b, "t").is_err());
        assert!(IdxU8::parse(&[0, 0, 8, 200], "t").is_err());
        assert!(IdxU8::parse(&[0, 0, 0x0d, 1, 0, 0, 0, 0], "t").is_err());
    }
}

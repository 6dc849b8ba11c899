//! Granularity: which elements of a tensor share one scale and zero-point.
//!
//! Shapes are row-major. For a `[out_features, in_features]` weight, per-channel usually means
//! `axis = 0` (one scale per output row) and group-wise means groups of `size` consecutive
//! elements along the reduction axis `axis = 1` (GPTQ/AWQ's "group size 128").

use serde::{Deserialize, Serialize};

use crate::int::{IntFormat, ParamError, QParams, Scheme, pack_nibbles, unpack_nibbles};

/// How elements are grouped for quantization parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Granularity {
    /// One scale for the whole tensor.
    PerTensor,
    /// One scale per index along `axis`.
    PerChannel {
        /// The channel axis.
        axis: usize,
    },
    /// Groups of `size` consecutive indices along `axis` (the last group may be shorter),
    /// separately for every position on the other axes.
    Group {
        /// The axis the groups run along (the reduction axis of a matmul).
        axis: usize,
        /// Elements per group.
        size: usize,
    },
    /// `rows × cols` tiles of a 2-D tensor (edge tiles may be smaller).
    Block2D {
        /// Tile height.
        rows: usize,
        /// Tile width.
        cols: usize,
    },
}

impl Granularity {
    /// Short name for tables: `per-tensor`, `per-channel(0)`, `group(1, 128)`, `block(32x32)`.
    pub fn name(&self) -> String {
        match self {
            Granularity::PerTensor => "per-tensor".into(),
            Granularity::PerChannel { axis } => format!("per-channel(axis {axis})"),
            Granularity::Group { axis, size } => format!("group {size} (axis {axis})"),
            Granularity::Block2D { rows, cols } => format!("block {rows}x{cols}"),
        }
    }
}

/// Format + scheme + granularity: everything that defines a uniform integer quantizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuantSpec {
    /// Integer format.
    pub format: IntFormat,
    /// Symmetric or asymmetric.
    pub scheme: Scheme,
    /// Parameter sharing.
    pub granularity: Granularity,
}

/// Why a tensor could not be quantized.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuantError {
    /// The data length does not match the shape.
    #[error("shape {shape:?} holds {expected} elements, data has {actual}")]
    Length {
        /// Given shape.
        shape: Vec<usize>,
        /// Product of the shape.
        expected: usize,
        /// Data length.
        actual: usize,
    },
    /// The granularity does not fit the shape.
    #[error("{0}")]
    Granularity(String),
    /// Parameters could not be computed.
    #[error(transparent)]
    Params(#[from] ParamError),
}

/// A contiguous run of elements `[start, start + len)` that all belong to group `group`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Run {
    start: usize,
    len: usize,
    group: usize,
}

/// Splits `shape` around `axis` into (outer, axis length, inner).
fn around(shape: &[usize], axis: usize) -> Result<(usize, usize, usize), QuantError> {
    if axis >= shape.len() {
        return Err(QuantError::Granularity(format!(
            "axis {axis} is out of range for shape {shape:?}"
        )));
    }
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    Ok((outer, shape[axis], inner))
}

/// Number of groups and the runs that cover the tensor, in memory order.
fn runs(shape: &[usize], g: Granularity) -> Result<(usize, Vec<Run>), QuantError> {
    let n: usize = shape.iter().product();
    let mut out = Vec::new();
    let groups = match g {
        Granularity::PerTensor => {
            out.push(Run {
                start: 0,
                len: n,
                group: 0,
            });
            1
        }
        Granularity::PerChannel { axis } => {
            let (outer, a_len, inner) = around(shape, axis)?;
            for o in 0..outer {
                for a in 0..a_len {
                    out.push(Run {
                        start: (o * a_len + a) * inner,
                        len: inner,
                        group: a,
                    });
                }
            }
            a_len
        }
        Granularity::Group { axis, size } => {
            if size == 0 {
                return Err(QuantError::Granularity(
                    "group size must be positive".into(),
                ));
            }
            let (outer, a_len, inner) = around(shape, axis)?;
            let chunks = a_len.div_ceil(size);
            for o in 0..outer {
                for c in 0..chunks {
                    let a0 = c * size;
                    let a1 = (a0 + size).min(a_len);
                    let base = (o * chunks + c) * inner;
                    if inner == 1 {
                        out.push(Run {
                            start: o * a_len + a0,
                            len: a1 - a0,
                            group: base,
                        });
                    } else {
                        for a in a0..a1 {
                            for k in 0..inner {
                                out.push(Run {
                                    start: (o * a_len + a) * inner + k,
                                    len: 1,
                                    group: base + k,
                                });
                            }
                        }
                    }
                }
            }
            outer * chunks * inner
        }
        Granularity::Block2D { rows, cols } => {
            let [r_len, c_len] = shape else {
                return Err(QuantError::Granularity(format!(
                    "2-D blocks need a 2-D tensor, shape is {shape:?}"
                )));
            };
            if rows == 0 || cols == 0 {
                return Err(QuantError::Granularity(
                    "block sides must be positive".into(),
                ));
            }
            let col_blocks = c_len.div_ceil(cols);
            for i in 0..*r_len {
                for cb in 0..col_blocks {
                    let j0 = cb * cols;
                    out.push(Run {
                        start: i * c_len + j0,
                        len: cols.min(c_len - j0),
                        group: (i / rows) * col_blocks + cb,
                    });
                }
            }
            r_len.div_ceil(rows) * col_blocks
        }
    };
    Ok((groups, out))
}

/// Elements handled per step of the fused 4-bit paths (a stack buffer).
const FUSE_CHUNK: usize = 256;

/// Whether every run starts on a byte boundary of the nibble stream and, except the last run
/// of the tensor, covers whole bytes: then runs can be packed and unpacked independently.
fn nibble_aligned(runs: &[Run]) -> bool {
    let last_end = runs.iter().map(|r| r.start + r.len).max().unwrap_or(0);
    runs.iter().all(|r| {
        r.start.is_multiple_of(2) && (r.len.is_multiple_of(2) || r.start + r.len == last_end)
    })
}

/// Per-group `(min, max)` of `x`; groups with no elements get `(0, 0)`.
pub fn group_ranges(
    x: &[f32],
    shape: &[usize],
    g: Granularity,
) -> Result<Vec<(f32, f32)>, QuantError> {
    check_len(x, shape)?;
    let (groups, runs) = runs(shape, g)?;
    let mut r = vec![(f32::INFINITY, f32::NEG_INFINITY); groups];
    for run in runs {
        crate::simd::min_max(&x[run.start..run.start + run.len], &mut r[run.group]);
    }
    for (lo, hi) in &mut r {
        if lo > hi {
            (*lo, *hi) = (0.0, 0.0);
        }
    }
    Ok(r)
}

fn check_len(x: &[f32], shape: &[usize]) -> Result<(), QuantError> {
    let expected: usize = shape.iter().product();
    if expected != x.len() {
        return Err(QuantError::Length {
            shape: shape.to_vec(),
            expected,
            actual: x.len(),
        });
    }
    Ok(())
}

/// A quantized tensor: integer codes and one [`QParams`] per group.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedTensor {
    /// Shape, row-major.
    pub shape: Vec<usize>,
    /// How it was quantized.
    pub spec: QuantSpec,
    /// Parameters per group, in group order.
    pub params: Vec<QParams>,
    /// Codes: one byte per element (two's complement for signed), or two per byte for 4-bit
    /// formats (see [`pack_nibbles`] for the nibble order).
    pub data: Vec<u8>,
}

impl QuantizedTensor {
    /// Quantizes with min-max ranges per group.
    pub fn quantize(x: &[f32], shape: &[usize], spec: QuantSpec) -> Result<Self, QuantError> {
        check_len(x, shape)?;
        let (groups, runs) = runs(shape, spec.granularity)?;
        if runs.len() == groups {
            // Every group is one contiguous run (per-tensor, per-row, groups along the last
            // axis): take each run's range right before quantizing it, while it is in cache.
            Self::quantize_runs(x, shape, spec, groups, runs, None)
        } else {
            let ranges = group_ranges(x, shape, spec.granularity)?;
            Self::quantize_runs(x, shape, spec, groups, runs, Some(&ranges))
        }
    }

    /// Quantizes with given per-group ranges (from an observer or a search).
    pub fn quantize_with_ranges(
        x: &[f32],
        shape: &[usize],
        spec: QuantSpec,
        ranges: &[(f32, f32)],
    ) -> Result<Self, QuantError> {
        check_len(x, shape)?;
        let (groups, runs) = runs(shape, spec.granularity)?;
        if ranges.len() != groups {
            return Err(QuantError::Granularity(format!(
                "{} ranges given for {groups} groups",
                ranges.len()
            )));
        }
        Self::quantize_runs(x, shape, spec, groups, runs, Some(ranges))
    }

    /// The quantization loop. `ranges` per group, or `None` when each group is exactly one run
    /// and its min-max range is taken from the run itself.
    fn quantize_runs(
        x: &[f32],
        shape: &[usize],
        spec: QuantSpec,
        groups: usize,
        runs: Vec<Run>,
        ranges: Option<&[(f32, f32)]>,
    ) -> Result<Self, QuantError> {
        let from = |(lo, hi): (f32, f32)| QParams::from_range(lo, hi, spec.format, spec.scheme);
        let mut params = match ranges {
            Some(r) => r.iter().map(|&g| from(g)).collect::<Result<Vec<_>, _>>()?,
            None => vec![from((0.0, 0.0))?; groups],
        };
        // The parameters of a run: given, or made from the run's own range just before use.
        let mut param = |run: &Run| -> Result<QParams, QuantError> {
            if ranges.is_none() {
                let mut mm = (f32::INFINITY, f32::NEG_INFINITY);
                crate::simd::min_max(&x[run.start..run.start + run.len], &mut mm);
                if mm.0 > mm.1 {
                    mm = (0.0, 0.0);
                }
                params[run.group] = from(mm)?;
            }
            Ok(params[run.group])
        };
        let data = if spec.format.bits == 4 && nibble_aligned(&runs) {
            // Fused: quantize a run piece into a stack buffer and pack it straight into place,
            // so no (n,) code array is ever allocated.
            let mut data = vec![0u8; x.len().div_ceil(2)];
            // One spare slot: an odd final piece is padded with a 0 nibble.
            let mut buf = [0i8; FUSE_CHUNK + 1];
            for run in &runs {
                let p = param(run)?;
                for off in (0..run.len).step_by(FUSE_CHUNK) {
                    let len = FUSE_CHUNK.min(run.len - off);
                    let s = run.start + off;
                    crate::simd::quantize(&p, &x[s..s + len], &mut buf[..len]);
                    buf[len] = 0;
                    let even = len.next_multiple_of(2);
                    crate::simd::pack_nibbles(&buf[..even], &mut data[s / 2..s / 2 + even / 2]);
                }
            }
            data
        } else {
            // (n,) codes as bytes: two's complement when signed, the plain byte when unsigned.
            let mut data = vec![0u8; x.len()];
            {
                // SAFETY: u8 and i8 have the same size and alignment; every bit pattern is valid.
                let codes: &mut [i8] = unsafe {
                    std::slice::from_raw_parts_mut(data.as_mut_ptr() as *mut i8, data.len())
                };
                for run in &runs {
                    let p = param(run)?;
                    let r = run.start..run.start + run.len;
                    crate::simd::quantize(&p, &x[r.clone()], &mut codes[r]);
                }
            }
            if spec.format.bits == 4 {
                // Runs that split bytes (rare shapes): pack the whole code array at the end.
                let codes: Vec<i8> = data.iter().map(|&b| b as i8).collect();
                pack_nibbles(&codes)
            } else {
                data
            }
        };
        Ok(Self {
            shape: shape.to_vec(),
            spec,
            params,
            data,
        })
    }

    /// The integer codes, one per element.
    pub fn codes(&self) -> Vec<i32> {
        let n: usize = self.shape.iter().product();
        let signed = self.spec.format.signed;
        if self.spec.format.bits == 4 {
            unpack_nibbles(&self.data, n, signed)
                .into_iter()
                .map(|c| if signed { c as i32 } else { c as u8 as i32 })
                .collect()
        } else {
            self.data
                .iter()
                .map(|&b| if signed { b as i8 as i32 } else { b as i32 })
                .collect()
        }
    }

    /// Back to f32.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.shape.iter().product()];
        self.dequantize_into(&mut out);
        out
    }

    /// Back to f32 into a caller's buffer of the tensor's length (reused across calls by
    /// inference code, so no page faults on a fresh allocation).
    pub fn dequantize_into(&self, out: &mut [f32]) {
        let n: usize = self.shape.iter().product();
        assert_eq!(
            out.len(),
            n,
            "dequantize_into needs a buffer of the tensor's length"
        );
        let (_, runs) = runs(&self.shape, self.spec.granularity).expect("validated at quantize");
        let signed = self.spec.format.signed;
        if self.spec.format.bits == 4 {
            if nibble_aligned(&runs) {
                let mut buf = [0i8; FUSE_CHUNK];
                for run in runs {
                    for off in (0..run.len).step_by(FUSE_CHUNK) {
                        let len = FUSE_CHUNK.min(run.len - off);
                        let s = run.start + off;
                        let bytes = &self.data[s / 2..(s + len).div_ceil(2)];
                        let codes = &mut buf[..bytes.len() * 2];
                        crate::simd::unpack_nibbles(bytes, signed, codes);
                        let p = &self.params[run.group];
                        crate::simd::dequantize(p, &codes[..len], signed, &mut out[s..s + len]);
                    }
                }
            } else {
                let codes = unpack_nibbles(&self.data, n, signed);
                for run in runs {
                    let r = run.start..run.start + run.len;
                    let p = &self.params[run.group];
                    crate::simd::dequantize(p, &codes[r.clone()], signed, &mut out[r]);
                }
            }
            return;
        }
        // SAFETY: u8 and i8 have the same size and alignment; every bit pattern is valid.
        let codes: &[i8] =
            unsafe { std::slice::from_raw_parts(self.data.as_ptr() as *const i8, self.data.len()) };
        for run in runs {
            let r = run.start..run.start + run.len;
            crate::simd::dequantize(
                &self.params[run.group],
                &codes[r.clone()],
                signed,
                &mut out[r],
            );
        }
    }

    /// Bytes of codes plus parameters (f32 scale + i32 zero-point each; 4 bytes when symmetric).
    pub fn storage_bytes(&self) -> usize {
        let per_param = match self.spec.scheme {
            Scheme::Symmetric { .. } => 4,
            Scheme::Asymmetric => 8,
        };
        self.data.len() + self.params.len() * per_param
    }
}

/// Quantize → dequantize in one call, the "fake quantization" every experiment measures.
pub fn fake_quant(x: &[f32], shape: &[usize], spec: QuantSpec) -> Result<Vec<f32>, QuantError> {
    Ok(QuantizedTensor::quantize(x, shape, spec)?.dequantize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::int::{INT4, INT8, UINT8};

    fn spec(g: Granularity) -> QuantSpec {
        QuantSpec {
            format: INT8,
            scheme: Scheme::Symmetric { restricted: true },
            granularity: g,
        }
    }

    #[test]
    fn group_counts_and_membership() {
        let shape = [4, 6];
        let x: Vec<f32> = (0..24).map(|i| i as f32).collect();
        let r = group_ranges(&x, &shape, Granularity::PerChannel { axis: 0 }).unwrap();
        assert_eq!(r, vec![(0.0, 5.0), (6.0, 11.0), (12.0, 17.0), (18.0, 23.0)]);
        let r = group_ranges(&x, &shape, Granularity::PerChannel { axis: 1 }).unwrap();
        assert_eq!(r[0], (0.0, 18.0));
        assert_eq!(r.len(), 6);
        let r = group_ranges(&x, &shape, Granularity::Group { axis: 1, size: 4 }).unwrap();
        assert_eq!(
            r,
            vec![
                (0.0, 3.0),
                (4.0, 5.0),
                (6.0, 9.0),
                (10.0, 11.0),
                (12.0, 15.0),
                (16.0, 17.0),
                (18.0, 21.0),
                (22.0, 23.0)
            ]
        );
        let r = group_ranges(&x, &shape, Granularity::Group { axis: 0, size: 2 }).unwrap();
        assert_eq!(r.len(), 12);
        assert_eq!(r[0], (0.0, 6.0));
        let r = group_ranges(&x, &shape, Granularity::Block2D { rows: 2, cols: 4 }).unwrap();
        assert_eq!(r, vec![(0.0, 9.0), (4.0, 11.0), (12.0, 21.0), (16.0, 23.0)]);
    }

    #[test]
    fn bad_shapes_are_errors() {
        let x = vec![0.0; 6];
        assert!(QuantizedTensor::quantize(&x, &[4], spec(Granularity::PerTensor)).is_err());
        assert!(
            QuantizedTensor::quantize(&x, &[6], spec(Granularity::PerChannel { axis: 1 })).is_err()
        );
        assert!(
            QuantizedTensor::quantize(&x, &[6], spec(Granularity::Block2D { rows: 2, cols: 2 }))
                .is_err()
        );
        assert!(
            QuantizedTensor::quantize(&x, &[6], spec(Granularity::Group { axis: 0, size: 0 }))
                .is_err()
        );
    }

    #[test]
    fn int4_and_uint8_codes_round_trip_through_storage() {
        let x: Vec<f32> = (0..10).map(|i| i as f32 - 4.5).collect();
        let q = QuantizedTensor::quantize(
            &x,
            &[10],
            QuantSpec {
                format: INT4,
                scheme: Scheme::Symmetric { restricted: false },
                granularity: Granularity::PerTensor,
            },
        )
        .unwrap();
        assert_eq!(q.data.len(), 5);
        assert!(q.codes().iter().all(|&c| (-8..=7).contains(&c)));
        let u = QuantizedTensor::quantize(
            &x,
            &[10],
            QuantSpec {
                format: UINT8,
                scheme: Scheme::Asymmetric,
                granularity: Granularity::PerTensor,
            },
        )
        .unwrap();
        // The range ends land within a rounding step of the code range's ends.
        assert!(*u.codes().iter().max().unwrap() >= 254);
        assert!(*u.codes().iter().min().unwrap() <= 1);
        let back = u.dequantize();
        for (a, b) in x.iter().zip(&back) {
            assert!((a - b).abs() <= u.params[0].scale / 2.0 + 1e-6);
        }
    }
}

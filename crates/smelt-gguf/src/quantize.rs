//! Whole-model quantization: a GGUF in, a GGUF out, each tensor converted to the type its mix
//! assigns (see [`crate::mix`]), rows split across threads.

use crate::GgufFile;
use crate::blocks::{self, BlockError};
use crate::mix::{self, FileType};
use crate::reader::MetaValue;
use crate::types::GgmlType;
use crate::writer::{GgufWriter, WriteError};

/// Settings of [`quantize_model`].
#[derive(Debug, Clone, Copy)]
pub struct QuantizeOptions {
    /// The mix.
    pub ftype: FileType,
    /// Allow converting tensors that are already quantized (quality loss), as llama-quantize's
    /// `--allow-requantize`.
    pub allow_requantize: bool,
    /// Worker threads.
    pub threads: usize,
}

/// Why a model could not be quantized.
#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    /// A source tensor is already quantized and requantizing was not allowed.
    #[error(
        "tensor {name} is already {ty}; requantizing loses quality: pass --allow-requantize to do it anyway"
    )]
    Requantize {
        /// Tensor.
        name: String,
        /// Its type.
        ty: String,
    },
    /// A block conversion failed.
    #[error("tensor {name}: {source}")]
    Block {
        /// Tensor.
        name: String,
        /// Cause.
        source: BlockError,
    },
    /// Building the output failed.
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// What happened to one tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorReport {
    /// Name.
    pub name: String,
    /// Source type.
    pub from: GgmlType,
    /// Output type.
    pub to: GgmlType,
    /// Source bytes.
    pub bytes_in: u64,
    /// Output bytes.
    pub bytes_out: u64,
}

fn is_float(t: GgmlType) -> bool {
    matches!(t, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16)
}

/// Refuses a plan that would quantize an already quantized tensor again (lossy twice over):
/// one whose type changes, or (`provided` says so) whose bytes are chosen anew. Checked
/// before any work; callers that compute some tensors' bytes first (calibrated GPTQ) call it
/// before that.
pub fn requantize_check(
    h: &crate::Header,
    plan: &[Option<GgmlType>],
    provided: impl Fn(&str) -> bool,
) -> Result<(), QuantizeError> {
    for (t, target) in h.tensors.iter().zip(plan) {
        let changed = target.is_some_and(|to| to != t.ggml_type) || provided(&t.name);
        if changed && !is_float(t.ggml_type) {
            return Err(QuantizeError::Requantize {
                name: t.name.clone(),
                ty: t.ggml_type.name(),
            });
        }
    }
    Ok(())
}

/// Quantizes every tensor of `src`; `progress(done, total)` is called after each tensor with
/// source bytes. Returns the writer (not yet written) and a report per tensor.
pub fn quantize_model(
    src: &GgufFile,
    opts: QuantizeOptions,
    progress: impl FnMut(u64, u64),
) -> Result<(GgufWriter, Vec<TensorReport>), QuantizeError> {
    quantize_model_with(src, opts, &std::collections::HashMap::new(), progress)
}

/// [`quantize_model`], except that tensors named in `provided` take those bytes (already in
/// the type the mix assigns them, e.g. chosen with calibration data) instead of being rounded
/// here. Their length is checked against that type.
pub fn quantize_model_with(
    src: &GgufFile,
    opts: QuantizeOptions,
    provided: &std::collections::HashMap<String, Vec<u8>>,
    mut progress: impl FnMut(u64, u64),
) -> Result<(GgufWriter, Vec<TensorReport>), QuantizeError> {
    let h = &src.header;
    let plan = mix::plan(h, opts.ftype);
    if !opts.allow_requantize {
        requantize_check(h, &plan, |name| provided.contains_key(name))?;
    }
    let mut w = GgufWriter::new();
    if h.alignment != crate::DEFAULT_ALIGNMENT {
        w.alignment(h.alignment as u32)?;
    }
    for (k, v) in &h.metadata {
        if k == "general.alignment"
            || k == "general.file_type"
            || k == "general.quantization_version"
        {
            continue;
        }
        w.meta(k, v.clone())?;
    }
    w.meta(
        "general.file_type",
        MetaValue::U32(opts.ftype.llama_ftype()),
    )?;
    w.meta("general.quantization_version", MetaValue::U32(2))?;
    let total: u64 = h.tensors.iter().map(|t| t.size).sum();
    let mut done = 0u64;
    let mut reports = Vec::with_capacity(h.tensors.len());
    // Written in llama.cpp's order (by layer, then name), as llama-quantize writes them.
    for i in mix::llama_order(h) {
        let (t, target) = (&h.tensors[i], plan[i]);
        let bytes = src.tensor_data(t);
        let to = target.unwrap_or(t.ggml_type);
        let data = if let Some(b) = provided.get(&t.name) {
            let n: u64 = t.dims.iter().product();
            if to.bytes_for(n) != Some(b.len() as u64) {
                return Err(QuantizeError::Block {
                    name: t.name.clone(),
                    source: BlockError::Length(format!(
                        "{} provided bytes do not hold {n} {} values",
                        b.len(),
                        to.name()
                    )),
                });
            }
            b.clone()
        } else if to == t.ggml_type {
            bytes.to_vec()
        } else {
            if !is_float(t.ggml_type) && !opts.allow_requantize {
                return Err(QuantizeError::Requantize {
                    name: t.name.clone(),
                    ty: t.ggml_type.name(),
                });
            }
            let block_err = |source| QuantizeError::Block {
                name: t.name.clone(),
                source,
            };
            convert_rows(bytes, t.ggml_type, t.dims[0] as usize, to, opts.threads)
                .map_err(block_err)?
        };
        reports.push(TensorReport {
            name: t.name.clone(),
            from: t.ggml_type,
            to,
            bytes_in: t.size,
            bytes_out: data.len() as u64,
        });
        w.tensor(&t.name, &t.dims, to, data)?;
        done += t.size;
        progress(done, total);
    }
    Ok((w, reports))
}

/// Converts `bytes` (rows of `ncols` values of type `from`) to type `to` on `threads` threads,
/// each dequantizing and quantizing whole rows.
fn convert_rows(
    bytes: &[u8],
    from: GgmlType,
    ncols: usize,
    to: GgmlType,
    threads: usize,
) -> Result<Vec<u8>, BlockError> {
    let row_bytes = from.bytes_for(ncols as u64).unwrap_or(0) as usize;
    let rows = bytes.len() / row_bytes.max(1);
    let convert = |chunk: &[u8]| -> Result<Vec<u8>, BlockError> {
        let n = chunk.len() / row_bytes.max(1) * ncols;
        blocks::quantize_for_model(to, &blocks::dequantize(from, chunk, n)?)
    };
    let threads = threads.clamp(1, rows.max(1));
    if threads == 1 || row_bytes == 0 {
        return convert(bytes);
    }
    let per = rows.div_ceil(threads) * row_bytes;
    let parts: Vec<Result<Vec<u8>, BlockError>> = std::thread::scope(|s| {
        let handles: Vec<_> = bytes
            .chunks(per)
            .map(|chunk| s.spawn(move || convert(chunk)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("quantize worker panicked"))
            .collect()
    });
    let mut out = Vec::with_capacity(to.bytes_for((rows * ncols) as u64).unwrap_or(0) as usize);
    for p in parts {
        out.extend(p?);
    }
    Ok(out)
}

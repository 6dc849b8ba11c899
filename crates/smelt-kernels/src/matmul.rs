//! Weight matrices in block form and the threaded product driver.
//!
//! Work is split into tiles of `TILE` weight rows; a tile computes its rows for every token of
//! the batch, so in prompt processing the tile's bytes stay in L1 while the tokens stream past
//! (one pass over the weights per batch instead of per token). Several matrices that read the
//! same input (q/k/v, gate/up) run in one parallel region to halve the fork-join count.

use std::sync::Arc;

use rayon::prelude::*;

use crate::w8a8::{self, RowInt8};
use crate::{
    ActKinds, Activations, DotFn, MAX_TILE_TOKENS, Variant, WeightType, tile_width, variant,
};

/// Weight rows per kernel call: their bytes stay in L1/L2 while the token tiles go past.
const TILE: usize = 32;

// The interleaved kernels take whole groups of 16 rows.
#[cfg(target_arch = "x86_64")]
const _: () = assert!(TILE.is_multiple_of(crate::interleaved::GROUP));

/// Weight rows per parallel task for a matrix of `rows`: about four tasks per thread, so each
/// thread streams long contiguous runs of weights (which the hardware prefetcher follows) and
/// still balances.
fn task_rows(rows: usize) -> usize {
    let per = rows.div_ceil(4 * rayon::current_num_threads().max(1));
    per.div_ceil(TILE).max(1) * TILE
}

/// Where a matrix's bytes live.
pub enum WeightBytes {
    /// Owned by the matrix.
    Owned(Vec<u8>),
    /// A range of a shared buffer (an mmap-ed GGUF file).
    Shared {
        /// The whole buffer.
        data: Arc<dyn AsRef<[u8]> + Send + Sync>,
        /// First byte.
        start: usize,
        /// Length in bytes.
        len: usize,
    },
}

impl WeightBytes {
    fn bytes(&self) -> &[u8] {
        match self {
            Self::Owned(v) => v,
            Self::Shared { data, start, len } => &(**data).as_ref()[*start..*start + *len],
        }
    }
}

/// A `(rows, cols)` weight matrix in block form: `y = W x` maps `cols` inputs to `rows` outputs.
pub struct QMatrix {
    /// Block format (for a W8A8 matrix, `F32`: the form [`QMatrix::to_f32`] gives).
    pub ty: WeightType,
    /// Output features.
    pub rows: usize,
    /// Input features.
    pub cols: usize,
    row_bytes: usize,
    data: WeightBytes,
    /// The same rows interleaved 16 at a time, and their kernel, which then replaces `dot`:
    /// (rows / 16, blocks per row, 16 · block bytes), see `interleaved.rs`.
    #[cfg(target_arch = "x86_64")]
    interleaved: Option<(crate::interleaved::Lines, crate::interleaved::StridedKernel)>,
    /// k-quants: the same rows decoded and interleaved 16 at a time, their kernel for the rows
    /// of a batch (llama.cpp's batch orders) and the bytes of one 16-row group; see
    /// `interleaved_k.rs`.
    #[cfg(target_arch = "x86_64")]
    kgroups: Option<crate::interleaved_k::KGroups>,
    dot: DotFn,
    variant: Variant,
    /// F32 only: batches of at least [`GEMM_MIN_TOKENS`] go through a blocked GEMM.
    float_gemm: bool,
    /// W8A8 weights (then `data` is empty): per-row int8 × per-token int8 activations.
    int8: Option<RowInt8>,
    /// Whether a k-quant matrix may take `kgroups` (not for [`QMatrix::new_one_row`]).
    batch_copies: bool,
}

/// Smallest batch that [`QMatrix::set_float_gemm`] sends through the GEMM.
pub const GEMM_MIN_TOKENS: usize = 16;

impl QMatrix {
    /// Wraps `data`, which must hold `rows` rows of `cols` elements in `ty` blocks.
    pub fn new(
        ty: WeightType,
        rows: usize,
        cols: usize,
        data: WeightBytes,
    ) -> Result<Self, String> {
        Self::build(ty, rows, cols, data, true)
    }

    /// [`QMatrix::new`] for a matrix that mostly sees one row at a time, such as a model's
    /// output head (run on each sequence's last position): a k-quant one gets no 16-row copy
    /// for batch rows, whose memory (0.59–1.16 bytes per weight; a 128k-token vocabulary
    /// × 2048 is 262M weights) the rare batch (perplexity) would not repay. Same bits either
    /// way.
    pub fn new_one_row(
        ty: WeightType,
        rows: usize,
        cols: usize,
        data: WeightBytes,
    ) -> Result<Self, String> {
        Self::build(ty, rows, cols, data, false)
    }

    fn build(
        ty: WeightType,
        rows: usize,
        cols: usize,
        data: WeightBytes,
        batch_copies: bool,
    ) -> Result<Self, String> {
        let (be, bb) = ty.block();
        if !cols.is_multiple_of(be) {
            return Err(format!(
                "{cols} columns are not a whole number of {ty:?} blocks of {be}"
            ));
        }
        let row_bytes = cols / be * bb;
        let have = data.bytes().len();
        if rows.checked_mul(row_bytes) != Some(have) {
            return Err(format!(
                "{have} bytes do not hold {rows} rows of {cols} {ty:?} weights ({row_bytes} bytes each)"
            ));
        }
        let mut m = Self {
            ty,
            rows,
            cols,
            row_bytes,
            data,
            #[cfg(target_arch = "x86_64")]
            interleaved: None,
            #[cfg(target_arch = "x86_64")]
            kgroups: None,
            dot: DotFn::new(ty, variant(), rows),
            variant: variant(),
            float_gemm: false,
            int8: None,
            batch_copies,
        };
        m.choose_kernel(variant());
        Ok(m)
    }

    /// The kernel for `v`: the 16-row interleaved one (repacking the rows once) where `v` is
    /// AVX-512 VNNI, the format has one and the rows come in whole groups; else `v`'s own.
    /// k-quants keep `v`'s row kernels and, on AVX-512 VNNI with whole groups, also get the
    /// 16-row copies their batch rows take (`interleaved_k.rs`).
    fn choose_kernel(&mut self, v: Variant) {
        self.variant = v;
        self.dot = DotFn::new(self.ty, v, self.rows);
        #[cfg(target_arch = "x86_64")]
        {
            let eligible = v == Variant::Avx512Vnni
                && crate::available_variants().contains(&v)
                && crate::interleaved_rows()
                && self.int8.is_none();
            self.interleaved = eligible
                .then(|| {
                    crate::interleaved::interleave(
                        self.ty,
                        self.data.bytes(),
                        self.rows,
                        self.row_bytes,
                    )
                })
                .flatten();
            self.kgroups = (eligible && self.batch_copies)
                .then(|| {
                    crate::interleaved_k::interleave(
                        self.ty,
                        self.data.bytes(),
                        self.rows,
                        self.row_bytes,
                    )
                })
                .flatten();
        }
    }

    /// A W8A8 matrix (SmoothQuant's scheme, see [`crate::w8a8`]) from (rows, cols) row-major
    /// f32 weights: int8 codes with one scale per row; its input is quantized per token.
    pub fn w8a8_from_f32(rows: usize, cols: usize, w: &[f32]) -> Result<Self, String> {
        let q = RowInt8::quantize(w, rows, cols)?;
        let mut m = Self::new(WeightType::F32, 0, cols, WeightBytes::Owned(Vec::new()))?;
        m.rows = rows;
        m.int8 = Some(q);
        Ok(m)
    }

    /// Whether the kernel reads a 16-row interleaved copy (see [`crate::interleaved_rows`]).
    pub fn is_interleaved(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        return self.interleaved.is_some();
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    /// Whether a k-quant matrix holds the 16-row copy its batch rows take
    /// (`interleaved_k.rs`).
    pub fn has_batch_copy(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        return self.kgroups.is_some();
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    /// Whether this is a W8A8 matrix.
    pub fn is_w8a8(&self) -> bool {
        self.int8.is_some()
    }

    /// The format's name for summaries: the ggml type, or `w8a8`.
    pub fn type_name(&self) -> String {
        if self.int8.is_some() {
            "w8a8".into()
        } else {
            self.ty.ggml().name().to_string()
        }
    }

    /// The activation forms this matrix's kernel reads.
    pub fn act_kinds(&self) -> ActKinds {
        if self.int8.is_some() {
            ActKinds {
                i8row: true,
                ..ActKinds::default()
            }
        } else {
            let kinds = self.dot.act_kinds(self.ty);
            ActKinds {
                q8_paired: kinds.q8_paired && !self.is_interleaved(),
                ..kinds
            }
        }
    }

    /// For F32 weights: run batches of [`GEMM_MIN_TOKENS`] or more through a cache-blocked
    /// GEMM (the `gemm` crate), several times faster for calibration and perplexity. The sum
    /// order then depends on the batch, so a token's result is no longer bit-identical to its
    /// result alone; the default keeps that batch invariance, which serving relies on.
    pub fn set_float_gemm(&mut self, on: bool) {
        self.float_gemm = on && self.ty == WeightType::F32 && self.int8.is_none();
    }

    /// The same matrix computed with `v` (for tests and benchmarks).
    pub fn with_variant(mut self, v: Variant) -> Self {
        self.choose_kernel(v);
        self
    }

    /// An owned F32 matrix from (rows, cols) row-major values.
    pub fn from_f32(rows: usize, cols: usize, w: &[f32]) -> Result<Self, String> {
        if w.len() != rows * cols {
            return Err(format!("{} values for a {rows}x{cols} matrix", w.len()));
        }
        let bytes = w.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self::new(WeightType::F32, rows, cols, WeightBytes::Owned(bytes))
    }

    /// The (rows, cols) row-major values the blocks stand for.
    pub fn to_f32(&self) -> Vec<f32> {
        if let Some(q) = &self.int8 {
            return q.to_f32();
        }
        smelt_gguf::blocks::dequantize(self.ty.ggml(), self.data.bytes(), self.rows * self.cols)
            .expect("sizes were checked when the matrix was made")
    }

    /// Row `r`'s block bytes (a W8A8 matrix has none: panics).
    pub fn row(&self, r: usize) -> &[u8] {
        assert!(self.int8.is_none(), "a W8A8 matrix has no block rows");
        &self.data.bytes()[r * self.row_bytes..(r + 1) * self.row_bytes]
    }

    /// Bytes of the whole matrix.
    pub fn nbytes(&self) -> usize {
        match &self.int8 {
            Some(q) => q.nbytes(),
            None => self.rows * self.row_bytes,
        }
    }

    /// Bytes one token's product reads: the 16-row k-quant copy where that serves single
    /// tokens (Q4_K: 0.59 bytes per weight against the file's 0.56; Q2_K: 0.66 against 0.33), else
    /// [`QMatrix::nbytes`] (the 32-block copies are the file's size). Decode's bandwidth
    /// figures count these.
    pub fn one_token_bytes(&self) -> usize {
        #[cfg(target_arch = "x86_64")]
        if let Some(copy) = &self.kgroups
            && copy.alone.is_some()
        {
            return copy.lines.bytes().len();
        }
        self.nbytes()
    }

    /// `out (n, rows) = acts (n, cols) · Wᵀ`.
    pub fn matmul(&self, acts: &Activations, out: &mut [f32]) {
        matmul_multi(&[self], acts, &mut [out]);
    }
}

/// Raw output pointer shared by the tasks; each task writes a disjoint set of elements.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: tasks write disjoint (token, row) elements of buffers that outlive the parallel region.
unsafe impl Send for OutPtr {}
// SAFETY: as above.
unsafe impl Sync for OutPtr {}

/// `outs[m] (n, rows_m) = acts (n, cols) · W_mᵀ` for every matrix, in one parallel region.
/// `acts` must hold the block forms the matrices need (see [`QMatrix::act_kinds`]).
pub fn matmul_multi(mats: &[&QMatrix], acts: &Activations, outs: &mut [&mut [f32]]) {
    let jobs: Vec<(&QMatrix, &Activations)> = mats.iter().map(|&w| (w, acts)).collect();
    matmul_each(&jobs, outs);
}

/// `outs[m] (n_m, rows_m) = acts_m (n_m, cols_m) · W_mᵀ` for every (matrix, activations)
/// pair, in one parallel region: products with inputs of their own (a mixture's experts, each
/// on the rows routed to it) without a fork and join per product.
pub fn matmul_each(jobs: &[(&QMatrix, &Activations)], outs: &mut [&mut [f32]]) {
    assert_eq!(jobs.len(), outs.len(), "one output per matrix");
    for (&(w, acts), o) in jobs.iter().zip(outs.iter()) {
        let n = acts.n;
        assert!(acts.f32.len() >= n * acts.cols, "activations are (n, cols)");
        assert_eq!(w.cols, acts.cols, "input width");
        assert!(o.len() >= n * w.rows, "output is (n, rows)");
        let k = w.act_kinds();
        assert!(
            !k.i8row || (acts.i8row.n == n && acts.i8row.k_pad == acts.cols.div_ceil(4) * 4),
            "int8 rows missing"
        );
        assert!(
            !k.q8 || acts.q8.len() == n * acts.cols / 32,
            "32-blocks missing"
        );
        assert!(
            !k.q8k || acts.q8k.len() == n * acts.cols / 256,
            "256-blocks missing"
        );
        assert!(
            !k.q8k_x4 || acts.q8k_x4.len() == n * acts.cols / 256,
            "Q4_K 256-blocks missing"
        );
    }
    let ptrs: Vec<OutPtr> = outs.iter_mut().map(|o| OutPtr(o.as_mut_ptr())).collect();
    // Tasks [first[m], first[m + 1]) cover matrix m, `per[m]` rows each.
    let per: Vec<usize> = jobs.iter().map(|(w, _)| task_rows(w.rows)).collect();
    let mut first = Vec::with_capacity(jobs.len() + 1);
    first.push(0usize);
    for ((w, _), &p) in jobs.iter().zip(&per) {
        first.push(first.last().unwrap() + w.rows.div_ceil(p));
    }
    let total = *first.last().unwrap();
    (0..total).into_par_iter().for_each(|task| {
        let m = first.partition_point(|&f| f <= task) - 1;
        let ((w, acts), out) = (jobs[m], ptrs[m]);
        let n = acts.n;
        let start = (task - first[m]) * per[m];
        let end = (start + per[m]).min(w.rows);
        if let Some(q) = &w.int8 {
            int8_rows(q, acts, start, end, w.variant, out);
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if let Some((packed, kernel)) = &w.interleaved {
            // TILE rows at a time (whole groups, as start, end and TILE are multiples of 16),
            // every token tile over them, results stored straight into `out`.
            for r0 in (start..end).step_by(TILE) {
                let r1 = (r0 + TILE).min(end);
                let rows = &packed.bytes()[r0 * w.row_bytes..r1 * w.row_bytes];
                let mut t0 = 0;
                while t0 < n {
                    let nt = tile_width(n - t0);
                    let tile: [&[crate::BlockQ8x32]; MAX_TILE_TOKENS] =
                        std::array::from_fn(|i| acts.row_q8(t0 + i.min(nt - 1)));
                    // SAFETY: the kernel was chosen after detecting its CPU features; tokens
                    // t0..t0 + nt and rows r0..r1 are inside `outs[m]` (checked above), and
                    // only this task writes rows start..end.
                    unsafe {
                        let dst = out.0.add(t0 * w.rows + r0);
                        kernel(rows, w.row_bytes, &tile[..nt], dst, w.rows)
                    };
                    t0 += nt;
                }
            }
            return;
        }
        let bytes = w.data.bytes();
        if w.float_gemm && n >= GEMM_MIN_TOKENS {
            gemm_f32_rows(w, bytes, acts, start, end, out);
            return;
        }
        // (TILE, nt) results of one kernel call.
        let mut tile = [0f32; TILE * MAX_TILE_TOKENS];
        for r0 in (start..end).step_by(TILE) {
            let r1 = (r0 + TILE).min(end);
            let rows = &bytes[r0 * w.row_bytes..r1 * w.row_bytes];
            let mut t0 = 0;
            while t0 < n {
                let nt = tile_width(w.dot.run(acts, t0, MAX_TILE_TOKENS));
                #[cfg(target_arch = "x86_64")]
                if let Some(copy) = &w.kgroups
                    && let DotFn::Q8K(_, _, rule) = w.dot
                    && let Some(kernel) = if acts.k_batch(t0, rule) {
                        Some(copy.batch)
                    } else {
                        copy.alone
                    }
                {
                    use crate::interleaved::GROUP;
                    // Whole groups: the matrix's rows are, and so are TILE and the task bounds.
                    assert!(r0.is_multiple_of(GROUP) && r1.is_multiple_of(GROUP));
                    let gb = copy.group_bytes;
                    let groups = &copy.lines.bytes()[r0 / GROUP * gb..r1 / GROUP * gb];
                    let tile: [&[crate::BlockQ8K]; MAX_TILE_TOKENS] =
                        std::array::from_fn(|i| acts.row_q8k_for(t0 + i.min(nt - 1), rule));
                    // SAFETY: the kernel was chosen after detecting its CPU features; rows
                    // r0..r1 are whole groups (the matrix's rows are), tokens t0..t0 + nt and
                    // those rows are inside `outs[m]` (checked above), and only this task
                    // writes rows start..end.
                    unsafe {
                        let dst = out.0.add(t0 * w.rows + r0);
                        kernel(groups, gb, &tile[..nt], dst, w.rows)
                    };
                    t0 += nt;
                    continue;
                }
                w.dot.dot_rows(rows, w.row_bytes, acts, t0, nt, &mut tile);
                // Token by token, so the stores into `out` (n, rows) are contiguous.
                for i in 0..nt {
                    for r in r0..r1 {
                        // SAFETY: (t0 + i, r) is inside `outs[m]` (checked above) and only
                        // this task writes rows start..end.
                        unsafe { *out.0.add((t0 + i) * w.rows + r) = tile[(r - r0) * nt + i] };
                    }
                }
                t0 += nt;
            }
        }
    });
}

/// `out[t, r]` for rows `start..end` of a W8A8 matrix, for every token.
fn int8_rows(
    q: &RowInt8,
    acts: &Activations,
    start: usize,
    end: usize,
    variant: Variant,
    out: OutPtr,
) {
    let width = end - start;
    // (n, width) results of this task.
    let mut part = vec![0f32; acts.n * width];
    w8a8::matmul_rows(q, &acts.i8row, start, end, &mut part, variant);
    for (t, row) in part.chunks_exact(width).enumerate() {
        for (j, v) in row.iter().enumerate() {
            // SAFETY: (t, start + j) is inside the checked output and only this task writes
            // rows start..end.
            unsafe { *out.0.add(t * q.rows + start + j) = *v };
        }
    }
}

/// `out[t, r] = Σ_k acts[t, k] · W[r, k]` for rows `start..end` of an F32 matrix, one GEMM.
fn gemm_f32_rows(
    w: &QMatrix,
    bytes: &[u8],
    acts: &Activations,
    start: usize,
    end: usize,
    out: OutPtr,
) {
    let (n, k) = (acts.n, w.cols);
    // (rows, cols) f32 weights; the mapped file may not be 4-byte aligned, so copy if needed.
    let rows_bytes = &bytes[start * w.row_bytes..end * w.row_bytes];
    let copied: Vec<f32>;
    let wf: &[f32] = match bytemuck_f32(rows_bytes) {
        Some(s) => s,
        None => {
            copied = rows_bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            &copied
        }
    };
    // SAFETY: lhs is (n, k) row-major inside `acts.f32`; rhs reads W[r, kk] at r * k + kk for
    // r < end - start; dst (t, r) is out[t * rows + start + r], inside the checked output, and
    // only this task writes rows start..end.
    unsafe {
        gemm::gemm(
            n,
            end - start,
            k,
            out.0.add(start),
            1,
            w.rows as isize,
            false,
            acts.f32.as_ptr(),
            1,
            k as isize,
            wf.as_ptr(),
            k as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// The bytes as little-endian f32s when they are suitably aligned (x86 is little-endian).
fn bytemuck_f32(b: &[u8]) -> Option<&[f32]> {
    if cfg!(target_endian = "little")
        && (b.as_ptr() as usize).is_multiple_of(4)
        && b.len().is_multiple_of(4)
    {
        // SAFETY: aligned, length a multiple of 4, every bit pattern is a valid f32.
        Some(unsafe { std::slice::from_raw_parts(b.as_ptr().cast::<f32>(), b.len() / 4) })
    } else {
        None
    }
}

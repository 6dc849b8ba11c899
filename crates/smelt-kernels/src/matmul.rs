//! Weight matrices in block form and the threaded product driver.
//!
//! Work is split into tiles of `TILE` weight rows; a tile computes its rows for every token of
//! the batch, so in prompt processing the tile's bytes stay in L1 while the tokens stream past
//! (one pass over the weights per batch instead of per token). Several matrices that read the
//! same input (q/k/v, gate/up) run in one parallel region to halve the fork-join count.

use std::sync::Arc;

use rayon::prelude::*;

use crate::{Activations, DotFn, MAX_TILE_TOKENS, Variant, WeightType, tile_width, variant};

/// Weight rows per kernel call: their bytes stay in L1/L2 while the token tiles go past.
const TILE: usize = 32;

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
    /// Block format.
    pub ty: WeightType,
    /// Output features.
    pub rows: usize,
    /// Input features.
    pub cols: usize,
    row_bytes: usize,
    data: WeightBytes,
    dot: DotFn,
}

impl QMatrix {
    /// Wraps `data`, which must hold `rows` rows of `cols` elements in `ty` blocks.
    pub fn new(
        ty: WeightType,
        rows: usize,
        cols: usize,
        data: WeightBytes,
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
        Ok(Self {
            ty,
            rows,
            cols,
            row_bytes,
            data,
            dot: DotFn::new(ty, variant()),
        })
    }

    /// The same matrix computed with `v` (for tests and benchmarks).
    pub fn with_variant(mut self, v: Variant) -> Self {
        self.dot = DotFn::new(self.ty, v);
        self
    }

    /// Row `r`'s block bytes.
    pub fn row(&self, r: usize) -> &[u8] {
        &self.data.bytes()[r * self.row_bytes..(r + 1) * self.row_bytes]
    }

    /// Bytes of the whole matrix.
    pub fn nbytes(&self) -> usize {
        self.rows * self.row_bytes
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
/// `acts` must hold the block forms the matrices need (see [`WeightType::act_kinds`]).
pub fn matmul_multi(mats: &[&QMatrix], acts: &Activations, outs: &mut [&mut [f32]]) {
    assert_eq!(mats.len(), outs.len(), "one output per matrix");
    let n = acts.n;
    for (w, o) in mats.iter().zip(outs.iter()) {
        assert_eq!(w.cols, acts.cols, "input width");
        assert!(o.len() >= n * w.rows, "output is (n, rows)");
        let k = w.ty.act_kinds();
        assert!(
            !k.q8 || acts.q8.len() == n * acts.cols / 32,
            "32-blocks missing"
        );
        assert!(
            !k.q8k || acts.q8k.len() == n * acts.cols / 256,
            "256-blocks missing"
        );
    }
    let ptrs: Vec<OutPtr> = outs.iter_mut().map(|o| OutPtr(o.as_mut_ptr())).collect();
    // Tasks [first[m], first[m + 1]) cover matrix m, `per[m]` rows each.
    let per: Vec<usize> = mats.iter().map(|w| task_rows(w.rows)).collect();
    let mut first = Vec::with_capacity(mats.len() + 1);
    first.push(0usize);
    for (w, &p) in mats.iter().zip(&per) {
        first.push(first.last().unwrap() + w.rows.div_ceil(p));
    }
    let total = *first.last().unwrap();
    (0..total).into_par_iter().for_each(|task| {
        let m = first.partition_point(|&f| f <= task) - 1;
        let (w, out) = (mats[m], ptrs[m]);
        let start = (task - first[m]) * per[m];
        let end = (start + per[m]).min(w.rows);
        let bytes = w.data.bytes();
        // (TILE, nt) results of one kernel call.
        let mut tile = [0f32; TILE * MAX_TILE_TOKENS];
        for r0 in (start..end).step_by(TILE) {
            let r1 = (r0 + TILE).min(end);
            let rows = &bytes[r0 * w.row_bytes..r1 * w.row_bytes];
            let mut t0 = 0;
            while t0 < n {
                let nt = tile_width(n - t0);
                w.dot.dot_rows(rows, w.row_bytes, acts, t0, nt, &mut tile);
                for r in r0..r1 {
                    for i in 0..nt {
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

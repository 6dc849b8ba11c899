//! The key/value cache. [`KvPool`] holds every layer's keys and values in fixed-size blocks of
//! positions; a sequence reaches its positions through a block table (logical block → physical
//! block), so a server can hand blocks to many sequences (a paged cache, as vLLM does).
//! [`KvCache`] is the single-sequence case: one block as long as the context.
//! Keys and values are stored as f16, as llama.cpp does by default: half the memory, and the
//! same rounding, so logits track llama.cpp's.

use half::f16;

/// Keys and values of every layer in `n_blocks` blocks of `block` positions.
pub struct KvPool {
    /// Per layer, (n_blocks · block, kv_dim) keys.
    keys: Vec<Vec<f16>>,
    /// Per layer, (n_blocks · block, kv_dim) values.
    values: Vec<Vec<f16>>,
    kv_dim: usize,
    block: usize,
    n_blocks: usize,
    /// The most positions one sequence may hold (what llama.cpp calls `n_ctx_seq`).
    seq_ctx: usize,
}

impl KvPool {
    /// A pool of `n_blocks` blocks of `block` positions for `n_layer` layers of `kv_dim`
    /// values per position.
    pub fn new(n_layer: usize, n_blocks: usize, block: usize, kv_dim: usize) -> Self {
        let rows = n_blocks * block;
        Self {
            keys: vec![vec![f16::ZERO; rows * kv_dim]; n_layer],
            values: vec![vec![f16::ZERO; rows * kv_dim]; n_layer],
            kv_dim,
            block,
            n_blocks,
            seq_ctx: rows,
        }
    }

    /// This pool with sequences of at most `n` positions (a server's per-sequence limit; the
    /// whole pool by default). LongRoPE chooses its factors by it ([`crate::ops::Rope::for_context`]).
    pub fn with_seq_ctx(mut self, n: usize) -> Self {
        self.seq_ctx = n;
        self
    }

    /// The most positions one sequence may hold.
    pub fn seq_ctx(&self) -> usize {
        self.seq_ctx
    }

    /// Bytes of keys and values per block (all layers) for a model's shape.
    pub fn bytes_per_block(n_layer: usize, block: usize, kv_dim: usize) -> usize {
        2 * n_layer * block * kv_dim * std::mem::size_of::<f16>()
    }

    /// Positions per block.
    pub fn block_size(&self) -> usize {
        self.block
    }

    /// Blocks in the pool.
    pub fn n_blocks(&self) -> usize {
        self.n_blocks
    }

    /// Elements per position (all KV heads).
    pub fn kv_dim(&self) -> usize {
        self.kv_dim
    }

    /// Stores layer `layer`'s key and value in physical row `row` (block · block_size + offset).
    pub fn store(&mut self, layer: usize, row: usize, k: &[f32], v: &[f32]) {
        let r = row * self.kv_dim..(row + 1) * self.kv_dim;
        for (o, &x) in self.keys[layer][r.clone()].iter_mut().zip(k) {
            *o = f16::from_f32(x);
        }
        for (o, &x) in self.values[layer][r].iter_mut().zip(v) {
            *o = f16::from_f32(x);
        }
    }

    /// Layer `layer`'s (n_blocks · block, kv_dim) key and value slabs.
    pub fn layer(&self, layer: usize) -> (&[f16], &[f16]) {
        (&self.keys[layer], &self.values[layer])
    }

    /// Copies every layer's rows of block `from` into block `to` (copy-on-write of a shared
    /// block).
    pub fn copy_block(&mut self, from: usize, to: usize) {
        let len = self.block * self.kv_dim;
        for slab in self.keys.iter_mut().chain(self.values.iter_mut()) {
            slab.copy_within(from * len..(from + 1) * len, to * len);
        }
    }
}

/// Where one sequence's positions live in a [`KvPool`]: position p is row
/// `table[p / block] · block + p % block`.
#[derive(Debug, Clone, Copy)]
pub struct BlockTable<'a> {
    /// Physical block of each logical block.
    pub table: &'a [u32],
    /// Positions per block.
    pub block: usize,
}

impl BlockTable<'_> {
    /// The pool row of position `p`.
    pub fn row(&self, p: usize) -> usize {
        self.table[p / self.block] as usize * self.block + p % self.block
    }

    /// Positions the table can address.
    pub fn capacity(&self) -> usize {
        self.table.len() * self.block
    }
}

/// One sequence's keys and values, positions `0..len`, in a pool of one block.
pub struct KvCache {
    pool: KvPool,
    len: usize,
}

/// The block table of a [`KvCache`]: its only block.
const ONE_BLOCK: [u32; 1] = [0];

impl KvCache {
    /// An empty cache for `n_layer` layers, `capacity` positions of `kv_dim` values each.
    pub fn new(n_layer: usize, capacity: usize, kv_dim: usize) -> Self {
        Self {
            pool: KvPool::new(n_layer, 1, capacity.max(1), kv_dim),
            len: 0,
        }
    }

    /// Positions stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions it can hold.
    pub fn capacity(&self) -> usize {
        self.pool.block
    }

    /// The pool behind the cache and its block table (for the batched forward pass).
    pub fn paged(&mut self) -> (&mut KvPool, BlockTable<'static>) {
        let block = self.pool.block;
        (
            &mut self.pool,
            BlockTable {
                table: &ONE_BLOCK,
                block,
            },
        )
    }

    /// Stores layer `layer`'s key and value at position `pos` (< capacity).
    pub fn store(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        self.pool.store(layer, pos, k, v)
    }

    /// Layer `layer`'s (capacity, kv_dim) key and value slabs.
    pub fn layer(&self, layer: usize) -> (&[f16], &[f16]) {
        self.pool.layer(layer)
    }

    /// Elements per position (all KV heads).
    pub fn kv_dim(&self) -> usize {
        self.pool.kv_dim
    }

    /// Layer `layer`'s (kv_dim,) key at `pos`.
    pub fn key(&self, layer: usize, pos: usize) -> &[f16] {
        let d = self.pool.kv_dim;
        &self.pool.keys[layer][pos * d..(pos + 1) * d]
    }

    /// Layer `layer`'s (kv_dim,) value at `pos`.
    pub fn value(&self, layer: usize, pos: usize) -> &[f16] {
        let d = self.pool.kv_dim;
        &self.pool.values[layer][pos * d..(pos + 1) * d]
    }

    /// Marks the `n` positions just stored in every layer as complete.
    pub fn advance(&mut self, n: usize) {
        assert!(self.len + n <= self.capacity(), "advance past capacity");
        self.len += n;
    }

    /// Drops every position from `len` on (e.g. to reuse a shared prefix).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Forgets everything (keeps the memory).
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

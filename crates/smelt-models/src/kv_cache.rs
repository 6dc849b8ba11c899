//! The key/value cache: one contiguous slab per layer, filled position by position. A narrow
//! interface (store, key, value, len, capacity) so a paged cache for serving can replace it.
//! Keys and values are stored as f16, as llama.cpp does by default: half the memory, and the
//! same rounding, so logits track llama.cpp's.

use half::f16;

/// Keys and values of every layer for the positions seen so far.
pub struct KvCache {
    /// Per layer, (capacity, kv_dim) keys.
    keys: Vec<Vec<f16>>,
    /// Per layer, (capacity, kv_dim) values.
    values: Vec<Vec<f16>>,
    kv_dim: usize,
    capacity: usize,
    len: usize,
}

impl KvCache {
    /// An empty cache for `n_layer` layers, `capacity` positions of `kv_dim` values each.
    pub fn new(n_layer: usize, capacity: usize, kv_dim: usize) -> Self {
        Self {
            keys: vec![vec![f16::ZERO; capacity * kv_dim]; n_layer],
            values: vec![vec![f16::ZERO; capacity * kv_dim]; n_layer],
            kv_dim,
            capacity,
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
        self.capacity
    }

    /// Stores layer `layer`'s key and value at position `pos` (< capacity).
    pub fn store(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let r = pos * self.kv_dim..(pos + 1) * self.kv_dim;
        for (o, &x) in self.keys[layer][r.clone()].iter_mut().zip(k) {
            *o = f16::from_f32(x);
        }
        for (o, &x) in self.values[layer][r].iter_mut().zip(v) {
            *o = f16::from_f32(x);
        }
    }

    /// Layer `layer`'s (capacity, kv_dim) key and value slabs.
    pub fn layer(&self, layer: usize) -> (&[f16], &[f16]) {
        (&self.keys[layer], &self.values[layer])
    }

    /// Elements per position (all KV heads).
    pub fn kv_dim(&self) -> usize {
        self.kv_dim
    }

    /// Layer `layer`'s (kv_dim,) key at `pos`.
    pub fn key(&self, layer: usize, pos: usize) -> &[f16] {
        &self.keys[layer][pos * self.kv_dim..(pos + 1) * self.kv_dim]
    }

    /// Layer `layer`'s (kv_dim,) value at `pos`.
    pub fn value(&self, layer: usize, pos: usize) -> &[f16] {
        &self.values[layer][pos * self.kv_dim..(pos + 1) * self.kv_dim]
    }

    /// Marks the `n` positions just stored in every layer as complete.
    pub fn advance(&mut self, n: usize) {
        assert!(self.len + n <= self.capacity, "advance past capacity");
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

//! The KV block manager: which blocks of the paged pool are free, which are in use (and by how
//! many sequences: a cached prefix block can be shared), and the prefix cache. A full block is
//! known by the hash of its parent block's hash and its own token ids, so equal prefixes map to
//! the same chain of hashes (vLLM's automatic prefix caching). When the last user of a hashed
//! block lets go it stays cached, evictable least-recently-used first; unhashed blocks go
//! straight back to the free list.
//!
//! A sequence owns its blocks through [`SeqBlocks`], whose `Drop` returns them: a finished,
//! cancelled or preempted sequence cannot leak a block.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

/// Hash of a full block: its parent's hash (0 for the first block) and its tokens. SipHash
/// with fixed keys, so equal prefixes hash equally across requests.
pub fn block_hash(parent: u64, tokens: &[u32]) -> u64 {
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new_with_keys(0x0073_6d65_6c74, 0x6b76);
    parent.hash(&mut h);
    tokens.hash(&mut h);
    h.finish()
}

/// Counts for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockStats {
    /// Blocks in the pool.
    pub total: usize,
    /// Blocks held by at least one sequence.
    pub used: usize,
    /// Free blocks that still hold a cached prefix.
    pub cached_free: usize,
    /// Prefix-cache lookups (blocks asked for).
    pub queries: u64,
    /// Lookups that found the block.
    pub hits: u64,
}

/// Free list, reference counts and prefix cache of the pool's blocks.
#[derive(Debug)]
pub struct BlockManager {
    /// (n_blocks,) sequences holding each block.
    refs: Vec<u32>,
    /// (n_blocks,) the hash a block is cached under.
    hash: Vec<Option<u64>>,
    /// (n_blocks,) when a cached free block was released (its key in `evictable`).
    released_at: Vec<u64>,
    /// Never-cached free blocks.
    free: VecDeque<u32>,
    /// Cached free blocks by release tick, oldest first.
    evictable: BTreeMap<u64, u32>,
    /// Prefix cache: block hash → block.
    cached: HashMap<u64, u32>,
    tick: u64,
    queries: u64,
    hits: u64,
}

impl BlockManager {
    /// `n_blocks` free blocks.
    pub fn new(n_blocks: usize) -> Self {
        Self {
            refs: vec![0; n_blocks],
            hash: vec![None; n_blocks],
            released_at: vec![0; n_blocks],
            free: (0..n_blocks as u32).collect(),
            evictable: BTreeMap::new(),
            cached: HashMap::new(),
            tick: 0,
            queries: 0,
            hits: 0,
        }
    }

    /// Blocks that [`BlockManager::allocate`] can hand out (free, or cached and evictable).
    pub fn available(&self) -> usize {
        self.free.len() + self.evictable.len()
    }

    /// A block for one sequence, evicting the least recently used cached block if no plain
    /// free block is left; `None` when every block is in use.
    pub fn allocate(&mut self) -> Option<u32> {
        let b = match self.free.pop_front() {
            Some(b) => b,
            None => {
                let (_, b) = self.evictable.pop_first()?;
                if let Some(h) = self.hash[b as usize].take() {
                    self.cached.remove(&h);
                }
                b
            }
        };
        self.refs[b as usize] = 1;
        Some(b)
    }

    /// Whether a block with hash `h` is cached (taking nothing, counting nothing).
    pub fn is_cached(&self, h: u64) -> bool {
        self.cached.contains_key(&h)
    }

    /// The cached block with hash `h`, now also held by the caller; counts a query and a hit.
    pub fn lookup(&mut self, h: u64) -> Option<u32> {
        self.queries += 1;
        let b = *self.cached.get(&h)?;
        self.hits += 1;
        if self.refs[b as usize] == 0 {
            self.evictable.remove(&self.released_at[b as usize]);
        }
        self.refs[b as usize] += 1;
        Some(b)
    }

    /// Records that held block `b` is full with contents hashing to `h`. If another block
    /// already caches `h`, `b` stays uncached.
    pub fn register(&mut self, b: u32, h: u64) {
        if self.hash[b as usize].is_none() && !self.cached.contains_key(&h) {
            self.cached.insert(h, b);
            self.hash[b as usize] = Some(h);
        }
    }

    /// One holder lets go of `b`.
    pub fn release(&mut self, b: u32) {
        let r = &mut self.refs[b as usize];
        assert!(*r > 0, "block {b} released more often than held");
        *r -= 1;
        if *r == 0 {
            if self.hash[b as usize].is_some() {
                self.tick += 1;
                self.released_at[b as usize] = self.tick;
                self.evictable.insert(self.tick, b);
            } else {
                self.free.push_back(b);
            }
        }
    }

    /// Counts for the metrics.
    pub fn stats(&self) -> BlockStats {
        BlockStats {
            total: self.refs.len(),
            used: self.refs.iter().filter(|&&r| r > 0).count(),
            cached_free: self.evictable.len(),
            queries: self.queries,
            hits: self.hits,
        }
    }

    /// Checks the bookkeeping: every block is exactly one of held, free, or cached-free, and
    /// the cache map and the per-block hashes agree. An error names the first inconsistency.
    pub fn check(&self) -> Result<(), String> {
        let mut seen = vec![0u8; self.refs.len()];
        for &b in self.free.iter().chain(self.evictable.values()) {
            seen[b as usize] += 1;
        }
        for (b, (&r, &s)) in self.refs.iter().zip(&seen).enumerate() {
            match (r > 0, s) {
                (true, 0) | (false, 1) => {}
                _ => return Err(format!("block {b}: {r} holders, on {s} free lists")),
            }
        }
        for &b in self.free.iter() {
            if self.hash[b as usize].is_some() {
                return Err(format!("block {b} is on the plain free list but cached"));
            }
        }
        for (&h, &b) in &self.cached {
            if self.hash[b as usize] != Some(h) {
                return Err(format!("cache entry for block {b} disagrees with its hash"));
            }
        }
        if self.hash.iter().flatten().count() != self.cached.len() {
            return Err("a block has a hash that the cache map lacks".into());
        }
        Ok(())
    }
}

/// The block manager shared by the engine and the guards.
pub type SharedBlocks = Arc<Mutex<BlockManager>>;

/// Locks the manager; a panic elsewhere while holding it does not make the counts unusable.
pub fn lock(m: &SharedBlocks) -> MutexGuard<'_, BlockManager> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A sequence's block table; dropping it returns every block.
#[derive(Debug)]
pub struct SeqBlocks {
    /// Physical block of each logical block.
    table: Vec<u32>,
    manager: SharedBlocks,
}

impl SeqBlocks {
    /// An empty table drawing from `manager`.
    pub fn new(manager: SharedBlocks) -> Self {
        Self {
            table: Vec::new(),
            manager,
        }
    }

    /// The table (logical → physical block).
    pub fn table(&self) -> &[u32] {
        &self.table
    }

    /// Blocks held.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no block is held.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Appends a block already taken from the manager (a prefix-cache hit or an allocation).
    pub fn push(&mut self, b: u32) {
        self.table.push(b);
    }

    /// Grows the table to `n` blocks; on failure the table keeps what it had before the call.
    pub fn grow_to(&mut self, n: usize) -> bool {
        let mut m = lock(&self.manager);
        if n > self.table.len() && m.available() < n - self.table.len() {
            return false;
        }
        while self.table.len() < n {
            let b = m.allocate().expect("availability was checked");
            self.table.push(b);
        }
        true
    }

    /// Returns every block (the table becomes empty).
    pub fn clear(&mut self) {
        let mut m = lock(&self.manager);
        for b in self.table.drain(..) {
            m.release(b);
        }
    }
}

impl Drop for SeqBlocks {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(n: usize) -> SharedBlocks {
        Arc::new(Mutex::new(BlockManager::new(n)))
    }

    #[test]
    fn dropping_a_table_returns_its_blocks() {
        let m = shared(4);
        {
            let mut t = SeqBlocks::new(m.clone());
            assert!(t.grow_to(3));
            assert!(!t.grow_to(5), "only 4 blocks exist");
            assert_eq!(t.len(), 3, "a failed grow keeps the table");
            assert_eq!(lock(&m).stats().used, 3);
        }
        assert_eq!(lock(&m).stats().used, 0);
        assert_eq!(lock(&m).available(), 4);
        lock(&m).check().unwrap();
    }

    #[test]
    fn prefix_blocks_are_shared_cached_and_evicted_lru() {
        let m = shared(3);
        let (h1, h2) = (block_hash(0, &[1, 2]), block_hash(0, &[3, 4]));
        assert_ne!(h1, h2);
        assert_ne!(
            block_hash(h1, &[5]),
            block_hash(h2, &[5]),
            "the parent counts"
        );
        let mut a = SeqBlocks::new(m.clone());
        assert!(a.grow_to(2));
        lock(&m).register(a.table()[0], h1);
        lock(&m).register(a.table()[1], h2);
        // A second sequence with the same first block shares it.
        let mut b = SeqBlocks::new(m.clone());
        let hit = lock(&m).lookup(h1).unwrap();
        assert_eq!(hit, a.table()[0]);
        b.push(hit);
        drop(a);
        // h1 is still held by b; h2 is cached and free.
        let s = lock(&m).stats();
        assert_eq!((s.used, s.cached_free, s.queries, s.hits), (1, 1, 1, 1));
        drop(b);
        lock(&m).check().unwrap();
        // Both cached; h2 was released first, so it is evicted first once the plain free
        // block is gone.
        let mut c = SeqBlocks::new(m.clone());
        assert!(c.grow_to(2));
        assert!(lock(&m).lookup(h2).is_none(), "h2 was evicted");
        let h1_block = lock(&m).lookup(h1).expect("h1 survived");
        c.push(h1_block);
        lock(&m).check().unwrap();
        drop(c);
        assert_eq!(lock(&m).available(), 3);
    }

    #[test]
    fn random_workload_keeps_the_books_straight() {
        let m = shared(16);
        let mut seed = 7u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut live: Vec<SeqBlocks> = Vec::new();
        for _ in 0..5000 {
            match next() % 4 {
                0 if !live.is_empty() => {
                    let i = (next() % live.len() as u64) as usize;
                    live.swap_remove(i);
                }
                1 => {
                    let mut s = SeqBlocks::new(m.clone());
                    if let Some(b) = lock(&m).lookup(next() % 8) {
                        s.push(b);
                    }
                    let want = s.len() + (next() % 3) as usize;
                    s.grow_to(want);
                    live.push(s);
                }
                _ => {
                    if let Some(&b) = live.last().and_then(|s| s.table().last()) {
                        lock(&m).register(b, next() % 8);
                    }
                }
            }
            lock(&m).check().unwrap();
        }
        live.clear();
        let s = lock(&m).stats();
        assert_eq!((s.used, lock(&m).available()), (0, 16));
    }
}

//! Iteration-level scheduling (continuous batching): every step runs one token of each running
//! sequence that is decoding, then prompt chunks (of running sequences part-way through their
//! prompt, then of newly admitted ones) until the step's token budget is spent. When a decode
//! needs a KV block and none is left, the newest running sequence is preempted: its blocks go
//! back and it waits at the front of the queue to be recomputed (vLLM's preemption by
//! recompute). Admission looks the prompt's full blocks up in the prefix cache first.
//!
//! The scheduler knows sequences only by their tokens and blocks; the engine's per-request
//! state rides along as `P`.

use std::collections::VecDeque;

use crate::blocks::{SeqBlocks, SharedBlocks, block_hash, lock};

/// Limits of one step and of the queues.
#[derive(Debug, Clone, Copy)]
pub struct SchedulerConfig {
    /// Most sequences running at once.
    pub max_num_seqs: usize,
    /// Most tokens in one step (decodes plus prompt chunks).
    pub max_batched_tokens: usize,
    /// Positions per KV block.
    pub block_size: usize,
    /// Reuse cached full blocks of equal prompt prefixes.
    pub prefix_caching: bool,
}

/// One sequence: its tokens (prompt, then generated), how many have keys and values in its
/// blocks, and the engine's state.
pub struct Seq<P> {
    /// Engine-wide id.
    pub id: u64,
    /// Prompt tokens followed by generated ones.
    pub tokens: Vec<u32>,
    /// Prompt length.
    pub prompt_len: usize,
    /// Positions whose keys and values are in `blocks`.
    pub computed: usize,
    /// Its KV blocks.
    pub blocks: SeqBlocks,
    /// Hash chain of its full blocks registered in (or found in) the prefix cache.
    hashes: Vec<u64>,
    /// Prompt tokens found in the prefix cache at first admission.
    pub cached_tokens: Option<usize>,
    /// Times it was preempted.
    pub preemptions: u32,
    /// Whether its prompt may start from cached blocks (not when every prompt position's
    /// logits are wanted, as for prompt log-probabilities).
    pub reuse_prefix: bool,
    /// Most tokens of it one step may run (bounds the (rows, n_vocab) logits of a prompt
    /// whose every position is scored).
    pub max_chunk: usize,
    /// The engine's state for it.
    pub payload: P,
}

impl<P> Seq<P> {
    /// A waiting sequence with `prompt` (non-empty) that draws blocks from `blocks`.
    pub fn new(id: u64, prompt: Vec<u32>, blocks: &SharedBlocks, payload: P) -> Self {
        Self {
            id,
            prompt_len: prompt.len(),
            tokens: prompt,
            computed: 0,
            blocks: SeqBlocks::new(blocks.clone()),
            hashes: Vec::new(),
            cached_tokens: None,
            preemptions: 0,
            reuse_prefix: true,
            max_chunk: usize::MAX,
            payload,
        }
    }

    /// Tokens not yet run.
    pub fn pending(&self) -> usize {
        self.tokens.len() - self.computed
    }
}

/// One sequence's share of a step: run `tokens[start..end]` at positions `start..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Work {
    /// Index into [`Scheduler::running`].
    pub seq: usize,
    /// First position.
    pub start: usize,
    /// One past the last.
    pub end: usize,
}

/// The waiting and running queues.
pub struct Scheduler<P> {
    config: SchedulerConfig,
    blocks: SharedBlocks,
    /// Admitted sequences, oldest first.
    pub running: Vec<Seq<P>>,
    /// Sequences not yet admitted (or preempted), next first.
    pub waiting: VecDeque<Seq<P>>,
    /// Preemptions so far.
    pub preemptions: u64,
    /// Times a waiting sequence was passed over to await a shared prefix being computed.
    pub deferred: u64,
}

impl<P> Scheduler<P> {
    /// Empty queues over the block manager `blocks`.
    pub fn new(config: SchedulerConfig, blocks: SharedBlocks) -> Self {
        assert!(config.block_size > 0 && config.max_batched_tokens >= config.max_num_seqs);
        Self {
            config,
            blocks,
            running: Vec::new(),
            waiting: VecDeque::new(),
            preemptions: 0,
            deferred: 0,
        }
    }

    /// Whether nothing is queued or running.
    pub fn is_idle(&self) -> bool {
        self.running.is_empty() && self.waiting.is_empty()
    }

    fn blocks_for(&self, positions: usize) -> usize {
        positions.div_ceil(self.config.block_size)
    }

    /// Sends running sequence `i` back to the front of the queue without its blocks.
    fn preempt(&mut self, i: usize) {
        let mut s = self.running.remove(i);
        s.blocks.clear();
        s.hashes.clear();
        s.computed = 0;
        s.preemptions += 1;
        self.preemptions += 1;
        self.waiting.push_front(s);
    }

    /// Picks this step's work: decodes first (preempting when blocks run out), then prompt
    /// chunks, then admissions, within the token budget.
    pub fn schedule(&mut self) -> Vec<Work> {
        loop {
            let work = self.plan();
            // Nothing fits although sequences are running: every one is inside its prompt
            // and the pool is full of their blocks (prompts computed side by side, as
            // sequences scoring theirs do 128 tokens a step). Only a decode preempts in
            // `plan`, so give way here: the newest goes back to the queue, freeing its
            // blocks for the older ones. Each round takes one out, so this ends.
            if work.is_empty() && !self.running.is_empty() {
                let victim = self.running.len() - 1;
                self.preempt(victim);
                continue;
            }
            return work;
        }
    }

    /// One planning pass of [`Self::schedule`]; empty when nothing has room.
    fn plan(&mut self) -> Vec<Work> {
        let mut budget = self.config.max_batched_tokens;
        // (sequence id, start, end)
        let mut plan: Vec<(u64, usize, usize)> = Vec::new();
        let mut i = 0;
        while i < self.running.len() && budget > 0 {
            if self.running[i].pending() != 1 {
                i += 1;
                continue;
            }
            let need = self.blocks_for(self.running[i].computed + 1);
            if self.running[i].blocks.grow_to(need) {
                let s = &self.running[i];
                plan.push((s.id, s.computed, s.computed + 1));
                budget -= 1;
                i += 1;
            } else {
                // The newest sequence gives way (possibly this one). Everything after `i` is
                // not planned yet.
                let victim = self.running.len() - 1;
                self.preempt(victim);
            }
        }
        for i in 0..self.running.len() {
            if budget == 0 {
                break;
            }
            let pending = self.running[i].pending();
            if pending <= 1 {
                continue;
            }
            let s = &mut self.running[i];
            let want = pending.min(budget).min(s.max_chunk);
            let chunk = fit_chunk(&self.blocks, self.config.block_size, s, want);
            if chunk > 0 {
                plan.push((s.id, s.computed, s.computed + chunk));
                budget -= chunk;
            }
        }
        // Admissions in queue order, passing over (for now) a sequence whose prompt starts with
        // full blocks that a running sequence is still computing: once those are in the
        // prefix cache it will reuse them instead of computing them again.
        let mut k = 0;
        while budget > 0 && self.running.len() < self.config.max_num_seqs {
            if k >= self.waiting.len() {
                break;
            }
            if self.awaits_shared_prefix(&self.waiting[k]) {
                self.deferred += 1;
                k += 1;
                continue;
            }
            let mut s = self.waiting.remove(k).expect("k < len");
            self.reuse_cached_prefix(&mut s);
            let want = s.pending().min(budget).min(s.max_chunk);
            let chunk = fit_chunk(&self.blocks, self.config.block_size, &mut s, want);
            if chunk == 0 {
                s.blocks.clear();
                s.hashes.clear();
                s.computed = 0;
                self.waiting.insert(k, s);
                break;
            }
            plan.push((s.id, s.computed, s.computed + chunk));
            budget -= chunk;
            self.running.push(s);
        }
        plan.into_iter()
            .map(|(id, start, end)| Work {
                seq: self
                    .running
                    .iter()
                    .position(|s| s.id == id)
                    .expect("planned"),
                start,
                end,
            })
            .collect()
    }

    /// Whether waiting `s` would reuse full prompt blocks that a running sequence has not
    /// finished computing and that are not in the prefix cache yet.
    fn awaits_shared_prefix(&self, s: &Seq<P>) -> bool {
        let bs = self.config.block_size;
        // Blocks `reuse_cached_prefix` could take: all full ones but a last token to run.
        let reusable = (s.tokens.len() - 1) / bs;
        if !self.config.prefix_caching || !s.reuse_prefix || reusable == 0 {
            return false;
        }
        // Leading blocks the cache already has (a running sequence that skips the cache,
        // scoring its prompt, may be computing them again).
        let cached = {
            let m = lock(&self.blocks);
            let mut parent = 0;
            s.tokens[..reusable * bs]
                .chunks_exact(bs)
                .take_while(|b| {
                    parent = block_hash(parent, b);
                    m.is_cached(parent)
                })
                .count()
        };
        self.running.iter().any(|r| {
            // Full prompt blocks both share, counted from the start.
            let shared = r.tokens[..r.prompt_len]
                .chunks_exact(bs)
                .zip(s.tokens[..reusable * bs].chunks_exact(bs))
                .take_while(|(a, b)| a == b)
                .count();
            // Blocks are registered as a step completes them.
            shared > cached && r.computed < shared * bs
        })
    }

    /// Takes the longest run of the prompt's full blocks found in the prefix cache (always
    /// leaving at least one token to run, whose logits start the generation).
    fn reuse_cached_prefix(&self, s: &mut Seq<P>) {
        let bs = self.config.block_size;
        let mut m = lock(&self.blocks);
        let reusable = if self.config.prefix_caching && s.reuse_prefix {
            (s.tokens.len() - 1) / bs
        } else {
            0
        };
        for j in 0..reusable {
            let parent = s.hashes.last().copied().unwrap_or(0);
            let h = block_hash(parent, &s.tokens[j * bs..(j + 1) * bs]);
            match m.lookup(h) {
                Some(b) => {
                    s.blocks.push(b);
                    s.hashes.push(h);
                }
                None => break,
            }
        }
        s.computed = s.blocks.len() * bs;
        s.cached_tokens.get_or_insert(s.computed);
    }

    /// Records that `work` ran: advances the sequences and registers their newly full blocks
    /// in the prefix cache.
    pub fn complete(&mut self, work: &[Work]) {
        let bs = self.config.block_size;
        let mut m = lock(&self.blocks);
        for w in work {
            let s = &mut self.running[w.seq];
            debug_assert_eq!(s.computed, w.start);
            s.computed = w.end;
            while self.config.prefix_caching && s.hashes.len() < s.computed / bs {
                let j = s.hashes.len();
                let parent = s.hashes.last().copied().unwrap_or(0);
                let h = block_hash(parent, &s.tokens[j * bs..(j + 1) * bs]);
                m.register(s.blocks.table()[j], h);
                s.hashes.push(h);
            }
        }
    }

    /// Removes running sequences for which `done` says so (finished or cancelled), dropping
    /// their blocks; returns them.
    pub fn retire(&mut self, mut done: impl FnMut(&Seq<P>) -> bool) -> Vec<Seq<P>> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.running.len() {
            if done(&self.running[i]) {
                out.push(self.running.remove(i));
            } else {
                i += 1;
            }
        }
        let mut keep = VecDeque::with_capacity(self.waiting.len());
        for s in self.waiting.drain(..) {
            if done(&s) {
                out.push(s);
            } else {
                keep.push_back(s);
            }
        }
        self.waiting = keep;
        out
    }
}

/// Largest chunk (≤ `want`) of `s`'s pending tokens that its blocks can take after growing by
/// what the pool has available; grows the table to fit it.
fn fit_chunk<P>(blocks: &SharedBlocks, bs: usize, s: &mut Seq<P>, want: usize) -> usize {
    let room = (s.blocks.len() + lock(blocks).available()) * bs - s.computed;
    let chunk = want.min(room);
    if chunk > 0 {
        let grown = s.blocks.grow_to((s.computed + chunk).div_ceil(bs));
        debug_assert!(grown, "the room was counted");
    }
    chunk
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::blocks::BlockManager;

    /// Random prompts (half share a 40-token prefix), random lengths, a small pool that forces
    /// preemption: every step respects the budget and the sequence limit, every planned
    /// position has a block, and at the end every block is back.
    #[test]
    fn random_load_respects_limits_and_returns_every_block() {
        let blocks: SharedBlocks = Arc::new(Mutex::new(BlockManager::new(24)));
        let config = SchedulerConfig {
            max_num_seqs: 6,
            max_batched_tokens: 48,
            block_size: 8,
            prefix_caching: true,
        };
        let mut sched: Scheduler<usize> = Scheduler::new(config, blocks.clone());
        let mut seed = 11u64;
        let mut rnd = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n) as usize
        };
        let shared: Vec<u32> = (0..40).collect();
        let mut finished = 0;
        for id in 0..60u64 {
            let mut prompt: Vec<u32> = if id % 2 == 0 { shared.clone() } else { vec![] };
            prompt.extend((0..1 + rnd(30)).map(|_| rnd(1000) as u32));
            let gen_len = 1 + rnd(40);
            sched
                .waiting
                .push_back(Seq::new(id, prompt, &blocks, gen_len));
        }
        let mut steps = 0;
        while !sched.is_idle() {
            steps += 1;
            assert!(steps < 10_000, "no progress");
            let work = sched.schedule();
            assert!(!work.is_empty(), "a step with nothing to run");
            let total: usize = work.iter().map(|w| w.end - w.start).sum();
            assert!(total <= config.max_batched_tokens);
            assert!(sched.running.len() <= config.max_num_seqs);
            for w in &work {
                let s = &sched.running[w.seq];
                assert_eq!(w.start, s.computed);
                assert!(s.blocks.len() * config.block_size >= w.end);
            }
            sched.complete(&work);
            for w in &work {
                let s = &mut sched.running[w.seq];
                if w.end == s.tokens.len() {
                    s.tokens.push(7);
                }
            }
            finished += sched
                .retire(|s| s.tokens.len() >= s.prompt_len + s.payload)
                .len();
            lock(&blocks).check().unwrap();
        }
        assert_eq!(finished, 60);
        assert!(sched.preemptions > 0, "the pool was meant to run out");
        let stats = lock(&blocks).stats();
        assert_eq!(stats.used, 0);
        assert!(stats.hits > 0, "the shared prefix was found in the cache");
    }

    /// Four sequences with one 64-token prompt arrive together: the first computes it, the
    /// others wait for its blocks and then reuse all but the last token's.
    #[test]
    fn equal_prompts_arriving_together_compute_their_prefix_once() {
        let blocks: SharedBlocks = Arc::new(Mutex::new(BlockManager::new(64)));
        let config = SchedulerConfig {
            max_num_seqs: 8,
            max_batched_tokens: 512,
            block_size: 16,
            prefix_caching: true,
        };
        let mut sched: Scheduler<()> = Scheduler::new(config, blocks.clone());
        let prompt: Vec<u32> = (100..164).collect();
        for id in 0..4 {
            sched
                .waiting
                .push_back(Seq::new(id, prompt.clone(), &blocks, ()));
        }
        // An unrelated prompt behind them is not held up.
        sched
            .waiting
            .push_back(Seq::new(9, (0..20).collect(), &blocks, ()));
        let work = sched.schedule();
        let ran: Vec<(u64, usize, usize)> = work
            .iter()
            .map(|w| (sched.running[w.seq].id, w.start, w.end))
            .collect();
        assert_eq!(ran, vec![(0, 0, 64), (9, 0, 20)]);
        assert_eq!(sched.deferred, 3);
        sched.complete(&work);
        let work = sched.schedule();
        let mut ran: Vec<(u64, usize, usize)> = work
            .iter()
            .map(|w| (sched.running[w.seq].id, w.start, w.end))
            .collect();
        ran.sort();
        assert_eq!(ran, vec![(1, 48, 64), (2, 48, 64), (3, 48, 64)]);
        assert!(
            sched
                .running
                .iter()
                .filter(|s| s.id < 4 && s.id > 0)
                .all(|s| s.cached_tokens == Some(48))
        );
    }

    /// Two prompts run side by side in small chunks (as sequences scoring their prompt are)
    /// fill the pool before either is through; each fits alone. The newer gives way and both
    /// finish, where before every step came back empty.
    #[test]
    fn prompts_that_fill_the_pool_together_do_not_stall() {
        let blocks: SharedBlocks = Arc::new(Mutex::new(BlockManager::new(8)));
        let config = SchedulerConfig {
            max_num_seqs: 4,
            max_batched_tokens: 16,
            block_size: 8,
            prefix_caching: false,
        };
        let mut sched: Scheduler<()> = Scheduler::new(config, blocks.clone());
        for id in 0..2 {
            let mut s = Seq::new(
                id,
                (0..48).map(|t| t + 100 * id as u32).collect(),
                &blocks,
                (),
            );
            s.max_chunk = 8;
            s.reuse_prefix = false;
            sched.waiting.push_back(s);
        }
        let mut done = Vec::new();
        for _ in 0..100 {
            if sched.is_idle() {
                break;
            }
            let work = sched.schedule();
            assert!(!work.is_empty(), "a step with nothing to run");
            sched.complete(&work);
            for w in &work {
                let s = &mut sched.running[w.seq];
                if w.end == s.tokens.len() {
                    s.tokens.push(7);
                }
            }
            done.extend(
                sched
                    .retire(|s| s.tokens.len() > s.prompt_len + 2)
                    .iter()
                    .map(|s| s.id),
            );
        }
        assert_eq!(done, vec![0, 1]);
        assert!(sched.preemptions > 0, "the pool was meant to fill");
        assert_eq!(lock(&blocks).stats().used, 0);
    }

    /// A sequence that skips the cache (scoring its prompt) recomputes cached blocks; one
    /// arriving behind it with the same prompt takes them from the cache at once.
    #[test]
    fn no_wait_for_blocks_already_cached() {
        let blocks: SharedBlocks = Arc::new(Mutex::new(BlockManager::new(64)));
        let config = SchedulerConfig {
            max_num_seqs: 8,
            max_batched_tokens: 16,
            block_size: 16,
            prefix_caching: true,
        };
        let mut sched: Scheduler<()> = Scheduler::new(config, blocks.clone());
        let prompt: Vec<u32> = (100..164).collect();
        // Cache the prompt's blocks: run it through and let it go.
        sched
            .waiting
            .push_back(Seq::new(0, prompt.clone(), &blocks, ()));
        while sched.running.first().is_none_or(|s| s.pending() > 0) {
            let work = sched.schedule();
            sched.complete(&work);
        }
        assert_eq!(sched.retire(|_| true).len(), 1);
        let mut scoring = Seq::new(1, prompt.clone(), &blocks, ());
        scoring.reuse_prefix = false;
        sched.waiting.push_back(scoring);
        let work = sched.schedule();
        sched.complete(&work);
        assert_eq!(
            sched.running[0].computed, 16,
            "the scoring one starts from 0"
        );
        // The same prompt arriving now need not wait for it; a sequence that would need
        // blocks neither has yet (one more full block than the prompt) would.
        let same = Seq::new(2, prompt.clone(), &blocks, ());
        assert!(!sched.awaits_shared_prefix(&same));
        let mut longer = prompt.clone();
        longer.extend(164..200);
        sched.running[0].tokens.extend(164..200);
        sched.running[0].prompt_len += 36;
        assert!(sched.awaits_shared_prefix(&Seq::new(3, longer, &blocks, ())));
    }

    /// A sequence's `max_chunk` bounds its prompt chunks, at admission and after.
    #[test]
    fn chunks_respect_a_sequence_limit() {
        let blocks: SharedBlocks = Arc::new(Mutex::new(BlockManager::new(16)));
        let config = SchedulerConfig {
            max_num_seqs: 4,
            max_batched_tokens: 64,
            block_size: 8,
            prefix_caching: true,
        };
        let mut sched: Scheduler<()> = Scheduler::new(config, blocks.clone());
        let mut s = Seq::new(0, (0..30).collect(), &blocks, ());
        s.max_chunk = 12;
        sched.waiting.push_back(s);
        let mut spans = Vec::new();
        while sched.running.first().is_none_or(|s| s.pending() > 0) {
            let work = sched.schedule();
            spans.extend(work.iter().map(|w| (w.start, w.end)));
            sched.complete(&work);
        }
        assert_eq!(spans, vec![(0, 12), (12, 24), (24, 30)]);
    }
}

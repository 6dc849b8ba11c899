//! What a llama layer reads and writes, apart from the model itself: its seven matrices and the
//! four activations they multiply, one sequence's share of a batched pass, the calibration tap,
//! and the per-pass scratch buffers.

use smelt_kernels::{ActKinds, Activations, QMatrix};

use crate::kv_cache::BlockTable;
use crate::llama::Logits;
use crate::ops::Rope;

/// A decoder layer's seven weight matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Linear {
    /// Query projection, (q_dim, n_embd).
    Q,
    /// Key projection, (kv_dim, n_embd).
    K,
    /// Value projection, (kv_dim, n_embd).
    V,
    /// Attention output, (n_embd, q_dim).
    O,
    /// Feed-forward gate, (n_ff, n_embd).
    Gate,
    /// Feed-forward up, (n_ff, n_embd).
    Up,
    /// Feed-forward down, (n_embd, n_ff).
    Down,
}

impl Linear {
    /// All seven, in a layer's order.
    pub const ALL: [Linear; 7] = [
        Linear::Q,
        Linear::K,
        Linear::V,
        Linear::O,
        Linear::Gate,
        Linear::Up,
        Linear::Down,
    ];

    /// The tensor name inside a block, e.g. `attn_q.weight`.
    pub fn gguf_name(self) -> &'static str {
        match self {
            Linear::Q => "attn_q.weight",
            Linear::K => "attn_k.weight",
            Linear::V => "attn_v.weight",
            Linear::O => "attn_output.weight",
            Linear::Gate => "ffn_gate.weight",
            Linear::Up => "ffn_up.weight",
            Linear::Down => "ffn_down.weight",
        }
    }

    /// Which activation this matrix multiplies.
    pub fn input(self) -> LinearInput {
        match self {
            Linear::Q | Linear::K | Linear::V => LinearInput::Attn,
            Linear::O => LinearInput::AttnOut,
            Linear::Gate | Linear::Up => LinearInput::Ffn,
            Linear::Down => LinearInput::FfnDown,
        }
    }
}

/// The four activations a layer's matrices read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinearInput {
    /// The attention norm's output, read by q, k and v: (n, n_embd).
    Attn,
    /// The attention heads' output, read by o: (n, q_dim).
    AttnOut,
    /// The feed-forward norm's output, read by gate and up: (n, n_embd).
    Ffn,
    /// SwiGLU's output, read by down: (n, n_ff).
    FfnDown,
}

impl LinearInput {
    /// All four, in a layer's order.
    pub const ALL: [LinearInput; 4] = [
        LinearInput::Attn,
        LinearInput::AttnOut,
        LinearInput::Ffn,
        LinearInput::FfnDown,
    ];
}

/// One sequence in a batched pass ([`Llama::forward_seqs`]).
#[derive(Debug, Clone, Copy)]
pub struct SeqInput<'a> {
    /// Tokens to run, at positions `pos0..pos0 + tokens.len()`.
    pub tokens: &'a [u32],
    /// Position of the first token (the positions before it are in the pool).
    pub pos0: usize,
    /// Where its positions live in the pool.
    pub kv: BlockTable<'a>,
    /// Which logits to return.
    pub want: Logits,
}

/// One sequence's consecutive rows of a layer's input: `n` tokens at `pos0..pos0 + n`.
#[derive(Debug, Clone, Copy)]
pub struct Span<'a> {
    /// Rows (tokens).
    pub n: usize,
    /// Position of the first.
    pub pos0: usize,
    /// Where its positions live in the pool.
    pub kv: BlockTable<'a>,
}

/// Sees the input of every linear product during [`Llama::run_layer`] (calibration).
pub trait Tap {
    /// `x` is the (n, cols) activation that layer `layer`'s matrices at `at` multiply.
    fn input(&mut self, layer: usize, at: LinearInput, x: &[f32], n: usize);

    /// `x` is the (n, cols) intermediate `name` of layer `layer`, named as llama.cpp's graph
    /// names it (`Qcur`, `Kcur`, `Vcur`, `attn_out`, `ffn_gate`, `ffn_up`, `ffn_out`; the roped
    /// query and keys, which llama.cpp calls `Qcur`/`Kcur` again, are `Qrope`/`Krope`), so the
    /// two runtimes can be compared op by op (`benches/numerics_vs_llamacpp.sh`).
    fn tensor(&mut self, _layer: usize, _name: &'static str, _x: &[f32], _n: usize) {}
}

/// A tap that looks at nothing.
pub struct NoTap;

impl Tap for NoTap {
    fn input(&mut self, _: usize, _: LinearInput, _: &[f32], _: usize) {}
}

/// Per-pass buffers of [`Llama::run_layer`], reused across layers.
#[derive(Default)]
pub struct Scratch {
    /// (n, n_embd) normed input.
    pub(crate) h: Vec<f32>,
    /// (n, q_dim) queries.
    pub(crate) q: Vec<f32>,
    /// (n, kv_dim) keys.
    pub(crate) k: Vec<f32>,
    /// (n, kv_dim) values.
    pub(crate) v: Vec<f32>,
    /// (n, q_dim) attention output.
    pub(crate) att: Vec<f32>,
    /// (n, n_embd) a product before the residual add.
    pub(crate) tmp: Vec<f32>,
    /// (n, n_ff) gate, then SwiGLU's output.
    pub(crate) gate: Vec<f32>,
    /// (n, n_ff) up.
    pub(crate) up: Vec<f32>,
    pub(crate) acts: Activations,
    /// The rotation angles of the last pass, reused by every layer of the next pass that asks
    /// for the same positions.
    pub(crate) rope: RopeTable,
    /// The same for local layers, which rotate with their own base (Gemma 3; Gemma 2's share
    /// the global rotation).
    pub(crate) rope_swa: RopeTable,
}

/// (n, n_rot / 2) cos and sin of a pass's rows, and what they were built for: the rotation and
/// each sequence's (first position, rows). Building them costs one `sinf` and `cosf` per pair
/// per row, which was redone for each of 30 layers (reusing them: pp512 1732/1769/1756 →
/// 1748/1770/1789 t/s, alternating, `smelt bench smollm2-135m -p 512 -n 128 -t 2 -r 3`).
#[derive(Default)]
pub(crate) struct RopeTable {
    key: Option<(Rope, Vec<(usize, usize)>)>,
    /// (n, n_rot / 2) cos.
    pub(crate) cos: Vec<f32>,
    /// (n, n_rot / 2) sin.
    pub(crate) sin: Vec<f32>,
}

impl RopeTable {
    /// Makes the table hold `rope`'s angles for `spans` (rows of each sequence in order),
    /// rebuilding it only if they differ from what it holds.
    pub(crate) fn fill(&mut self, rope: &Rope, spans: &[Span]) {
        let same = self.key.as_ref().is_some_and(|(r, k)| {
            r == rope
                && k.len() == spans.len()
                && k.iter()
                    .zip(spans)
                    .all(|(&(p, n), sp)| p == sp.pos0 && n == sp.n)
        });
        if same {
            return;
        }
        self.cos.clear();
        self.sin.clear();
        for sp in spans {
            let (c, s) = rope.table(sp.pos0, sp.n);
            self.cos.extend(c);
            self.sin.extend(s);
        }
        self.key = Some((
            rope.clone(),
            spans.iter().map(|sp| (sp.pos0, sp.n)).collect(),
        ));
    }
}

impl Scratch {
    /// Sizes the buffers for `n` rows: width `e`, all query heads `q`, all key/value heads
    /// `kv`, feed-forward `ff`.
    pub(crate) fn size(&mut self, n: usize, e: usize, q: usize, kv: usize, ff: usize) {
        for (b, len) in [
            (&mut self.h, n * e),
            (&mut self.q, n * q),
            (&mut self.k, n * kv),
            (&mut self.v, n * kv),
            (&mut self.att, n * q),
            (&mut self.tmp, n * e),
            (&mut self.gate, n * ff),
            (&mut self.up, n * ff),
        ] {
            b.resize(len, 0.0);
        }
    }
}

pub(crate) fn kinds(mats: &[&QMatrix]) -> ActKinds {
    mats.iter()
        .fold(ActKinds::default(), |k, m| k | m.act_kinds())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::RopeLayout;

    #[test]
    fn rope_table_follows_the_spans_it_is_asked_for() {
        let rope = Rope {
            layout: RopeLayout::Normal,
            n_rot: 8,
            base: 10000.0,
            linear_scale: 1.0,
            freq_factors: None,
            long_rope: None,
            attn_factor: 1.0,
        };
        let blocks = [0u32; 4];
        let kv = BlockTable {
            table: &blocks,
            block: 16,
        };
        let span = |pos0, n| Span { n, pos0, kv };
        let want = |spans: &[Span]| {
            let (mut c, mut s) = (Vec::new(), Vec::new());
            for sp in spans {
                let (c1, s1) = rope.table(sp.pos0, sp.n);
                c.extend(c1);
                s.extend(s1);
            }
            (c, s)
        };
        let mut t = RopeTable::default();
        // A pass, the same pass again (kept), then passes that differ in a position, in a
        // length, in the number of sequences and in the rotation: each must rebuild.
        let passes: [&[Span]; 4] = [
            &[span(0, 5), span(7, 1)],
            &[span(0, 5), span(7, 1)],
            &[span(0, 5), span(8, 1)],
            &[span(0, 6)],
        ];
        for spans in passes {
            t.fill(&rope, spans);
            assert_eq!((t.cos.clone(), t.sin.clone()), want(spans));
        }
        let scaled = Rope {
            linear_scale: 2.0,
            ..rope.clone()
        };
        t.fill(&scaled, &[span(0, 6)]);
        assert_eq!((t.cos.clone(), t.sin.clone()), scaled.table(0, 6));
    }
}

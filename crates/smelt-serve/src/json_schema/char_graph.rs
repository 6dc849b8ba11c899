//! A pattern's DFA seen a character at a time, for the questions the recognizer asks before
//! it lets a byte through: can the string still end in a match from here (liveness), and with
//! how many more characters (lengths, when the string also has `minLength`/`maxLength`).
//!
//! A node is (state, UTF-8 continuation bytes still due): `state * 4 + due`. An edge costs one
//! character where a character starts (ASCII or a lead byte) and none on a continuation byte.

/// Most `maxLength` (or `minLength` alone) a patterned string may have.
pub const MAX_PATTERN_LENGTH: u32 = 4096;

/// Most (layers × edges) steps the length analysis may take.
const MAX_LENGTH_WORK: usize = 64 << 20;

/// The character edges of a DFA table.
pub(super) struct CharGraph {
    /// (nodes,) targets one character on (from nodes with nothing due).
    out1: Vec<Vec<u32>>,
    /// (nodes,) targets over one continuation byte (from nodes with bytes due).
    out0: Vec<Vec<u32>>,
    /// (nodes,) sources of each node's edges, either cost.
    back: Vec<Vec<u32>>,
    /// (nodes,) entered with a match seen: any ending from here matches.
    matched: Vec<bool>,
    /// (nodes,) the string may end here, with no more characters.
    ends: Vec<bool>,
}

/// Which numbers of further characters can end a patterned string in a match, for each node:
/// bits `0..=top` exact, except that with no `maxLength` bit `top` means "`top` or more".
#[derive(Debug, Clone, PartialEq)]
pub struct Lengths {
    /// (nodes × words,) the bits.
    bits: Vec<u64>,
    /// u64 words per node.
    words: usize,
    /// The last bit kept.
    top: u32,
    /// The string's `minLength`.
    min: u32,
    /// The string's `maxLength` (`u32::MAX`: none; bit `top` is then open-ended).
    max: u32,
}

impl Lengths {
    /// Whether a node `chars` characters into the string can still end in a match within
    /// the string's lengths.
    pub fn fits(&self, node: usize, chars: u32) -> bool {
        let lo = self.min.saturating_sub(chars).min(self.top);
        let hi = if self.max == u32::MAX {
            self.top
        } else {
            match self.max.checked_sub(chars) {
                Some(h) => h.min(self.top),
                None => return false,
            }
        };
        let row = &self.bits[node * self.words..(node + 1) * self.words];
        (lo..=hi).any(|l| row[l as usize / 64] >> (l % 64) & 1 == 1)
    }
}

impl CharGraph {
    /// From a table: `next` (states × stride) over byte `classes`, and which states are
    /// entered with a match and which accept the end of the text.
    pub(super) fn new(
        next: &[u32],
        classes: &[u8],
        stride: usize,
        matched: &[bool],
        at_end: &[bool],
    ) -> Self {
        let states = matched.len();
        let nodes = states * 4;
        let (mut out1, mut out0) = (vec![Vec::new(); nodes], vec![Vec::new(); nodes]);
        for s in 0..states {
            for b in 0..=255u8 {
                let t = next[s * stride + classes[b as usize] as usize] as usize * 4;
                match b {
                    0x00..=0x7f => out1[s * 4].push(t as u32),
                    0x80..=0xbf => (1..4).for_each(|k| out0[s * 4 + k].push((t + k - 1) as u32)),
                    0xc2..=0xdf => out1[s * 4].push(t as u32 + 1),
                    0xe0..=0xef => out1[s * 4].push(t as u32 + 2),
                    0xf0..=0xf4 => out1[s * 4].push(t as u32 + 3),
                    _ => {}
                }
            }
        }
        let mut back = vec![Vec::new(); nodes];
        for (n, list) in out1.iter_mut().chain(out0.iter_mut()).enumerate() {
            list.sort_unstable();
            list.dedup();
            for &m in list.iter() {
                back[m as usize].push((n % nodes) as u32);
            }
        }
        Self {
            out1,
            out0,
            back,
            matched: (0..nodes).map(|n| matched[n / 4]).collect(),
            ends: (0..nodes).map(|n| n % 4 == 0 && at_end[n / 4]).collect(),
        }
    }

    /// For each node, whether some ending from it matches: backwards from the nodes that
    /// accept.
    pub(super) fn liveness(&self) -> Vec<bool> {
        let seeds = (0..self.matched.len()).filter(|&n| self.matched[n] || self.ends[n]);
        self.backwards(seeds.collect())
    }

    /// Every node with a path to one of `seeds` (them included).
    fn backwards(&self, seeds: Vec<usize>) -> Vec<bool> {
        let mut reach = vec![false; self.matched.len()];
        for &n in &seeds {
            reach[n] = true;
        }
        let mut queue = seeds;
        while let Some(n) = queue.pop() {
            for &from in &self.back[n] {
                if !reach[from as usize] {
                    reach[from as usize] = true;
                    queue.push(from as usize);
                }
            }
        }
        reach
    }

    /// The lengths that can end each node in a match, for a string of `min..=max`
    /// characters (`max` `u32::MAX`: none); `Err` past [`MAX_PATTERN_LENGTH`] or the work
    /// bound.
    pub(super) fn lengths(&self, min: u32, max: u32) -> Result<Lengths, String> {
        let open = max == u32::MAX;
        let top = if open { min } else { max };
        if top > MAX_PATTERN_LENGTH {
            return Err(format!(
                "a pattern beside lengths past {MAX_PATTERN_LENGTH} characters is not supported"
            ));
        }
        let nodes = self.matched.len();
        let edges: usize = self.out1.iter().chain(&self.out0).map(Vec::len).sum();
        if (top as usize + 1) * edges > MAX_LENGTH_WORK {
            return Err("the pattern is too large to check beside its lengths".into());
        }
        let words = top as usize / 64 + 1;
        let mut bits = vec![0u64; nodes * words];
        let mut set = |n: usize, l: u32| bits[n * words + l as usize / 64] |= 1 << (l % 64);
        // Layer l: the nodes that can end in a match with exactly l more characters.
        let exact = if open { top } else { top + 1 };
        let mut prev = vec![false; nodes];
        for l in 0..exact {
            let mut cur: Vec<bool> = (0..nodes)
                .map(|n| self.matched[n] || l == 0 && self.ends[n])
                .collect();
            if l > 0 {
                for n in (0..nodes).step_by(4) {
                    cur[n] |= self.out1[n].iter().any(|&m| prev[m as usize]);
                }
            }
            // Continuation bytes cost nothing: due 1 leads to due 0, 2 to 1, 3 to 2.
            for due in 1..4 {
                for n in (due..nodes).step_by(4) {
                    cur[n] |= self.out0[n].iter().any(|&m| cur[m as usize]);
                }
            }
            for (n, &c) in cur.iter().enumerate() {
                if c {
                    set(n, l);
                }
            }
            prev = cur;
        }
        if open {
            // `top` or more: one character onto layer top − 1 (or any match, for top 0),
            // then anything that leads there.
            let seeds = (0..nodes).filter(|&n| {
                self.matched[n]
                    || if top == 0 {
                        self.ends[n]
                    } else {
                        n % 4 == 0 && self.out1[n].iter().any(|&m| prev[m as usize])
                    }
            });
            for (n, r) in self.backwards(seeds.collect()).into_iter().enumerate() {
                if r {
                    set(n, top);
                }
            }
        }
        Ok(Lengths {
            bits,
            words,
            top,
            min,
            max,
        })
    }
}

//! One reading of a text against a JSON grammar: a stack of frames, outermost first, stepped
//! byte by byte. Where a union's alternatives can start alike (two objects, an integer and a
//! number), the reading forks and [`super::JsonState`] keeps every reading still alive.

use super::MAX_WHITESPACE;
use super::number::NumRead;
use super::string::{StrRead, StrStep};
use crate::json_schema::{ANY_STRING, Grammar, Node, NodeId, height};

/// Where an object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ObjPhase {
    /// After `{`: a key or `}`.
    Open,
    /// After `,`: a key.
    Key,
    /// A key is being read (the frame above).
    InKey,
    /// After a key: `:`.
    Colon,
    /// A value is being read (the frame above).
    InValue,
    /// After a value: `,` or `}`.
    AfterValue,
}

/// Where an array is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ArrPhase {
    /// After `[`: a value or `]`.
    Open,
    /// An item is being read (the frame above).
    InValue,
    /// After an item: `,` or `]`.
    AfterValue,
}

/// One level of what is being read; the top of [`JsonState`]'s stack is the innermost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Frame {
    /// A value of `node` is due; none of it read yet.
    Value { node: NodeId },
    /// Inside an object; `next`: the first listed property that may still come.
    Object {
        node: NodeId,
        next: u16,
        phase: ObjPhase,
    },
    /// Inside an array with `count` items so far.
    Array {
        node: NodeId,
        count: u32,
        phase: ArrPhase,
    },
    /// Inside a string of `node` (a [`Node::String`]) after its opening quote.
    Str { node: NodeId, read: StrRead },
    /// Inside a number of `node` (a [`Node::Number`]).
    Number { node: NodeId, read: NumRead },
    /// Inside a whole text held to a pattern (a [`Node::Regex`] root): the pattern's state,
    /// continuation bytes due, whether the text matches as it stands (`end`) and whether
    /// more may follow (`more`).
    Raw {
        node: NodeId,
        dfa: u32,
        due: u8,
        end: bool,
        more: bool,
    },
    /// Inside one of the texts of literal set `set`: `alive` marks those still matching after
    /// `at` bytes; `whole`: one of them ends here (others go on).
    Literal {
        set: u16,
        alive: u64,
        at: u16,
        whole: bool,
    },
}

/// One way of reading the text so far.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Reading {
    /// (levels,) outermost first; empty once the root has closed.
    frames: Vec<Frame>,
    /// Whitespace bytes in a row so far.
    whitespace: u8,
}

impl Clone for Reading {
    fn clone(&self) -> Self {
        Self {
            frames: self.frames.clone(),
            whitespace: self.whitespace,
        }
    }

    /// Reuses the frames' memory: a mask copies every reading for each byte it tries.
    fn clone_from(&mut self, source: &Self) {
        self.frames.clone_from(&source.frames);
        self.whitespace = source.whitespace;
    }
}

impl Reading {
    /// A hash of the depth, the innermost frame and the whitespace run: what
    /// [`Reading::same`] compares first.
    pub(super) fn key(&self, hasher: &impl std::hash::BuildHasher) -> u64 {
        hasher.hash_one((self.frames.len(), self.frames.last(), self.whitespace))
    }

    /// Whether two readings are in the same state, comparing the innermost frames first
    /// (where readings of one text differ, if they do).
    pub(super) fn same(&self, other: &Self) -> bool {
        self.whitespace == other.whitespace
            && self.frames.len() == other.frames.len()
            && self.frames.iter().rev().eq(other.frames.iter().rev())
    }

    /// Before any text of `g`.
    pub(super) fn new(g: &Grammar) -> Self {
        Self {
            frames: vec![Frame::Value { node: g.root }],
            whitespace: 0,
        }
    }

    /// Whether the root has closed.
    pub(super) fn closed(&self) -> bool {
        self.frames.is_empty()
    }

    /// Whether the text may stop here: the root has closed, or a whole-text pattern matches
    /// it as it stands.
    pub(super) fn may_end(&self) -> bool {
        match self.frames.last() {
            None | Some(Frame::Raw { end: true, .. }) => true,
            // A raw root's choice that ends here while longer ones go on.
            Some(Frame::Literal { whole: true, .. }) => self.frames.len() == 1,
            _ => false,
        }
    }

    /// Whether the text must stop here: it may, and nothing more could follow.
    pub(super) fn must_end(&self) -> bool {
        self.closed()
            || matches!(
                self.frames.last(),
                Some(Frame::Raw {
                    end: true,
                    more: false,
                    ..
                })
            )
    }

    /// Inside a string between characters and escapes, how many more characters it may take.
    pub(super) fn string_room(&self, g: &Grammar) -> Option<u32> {
        match self.frames.last() {
            Some(Frame::Str { node, read }) => read.room(g, *node),
            _ => None,
        }
    }

    /// The top frame ended a value (or key, with the listed property `key` it matched): pop
    /// it and move its container on.
    fn finish(&mut self, key: Option<u16>) {
        self.frames.pop();
        match self.frames.last_mut() {
            Some(Frame::Object { next, phase, .. }) => {
                if let Some(k) = key {
                    *next = k + 1;
                }
                *phase = if *phase == ObjPhase::InKey {
                    ObjPhase::Colon
                } else {
                    ObjPhase::AfterValue
                };
            }
            Some(Frame::Array { count, phase, .. }) => {
                *count += 1;
                *phase = ArrPhase::AfterValue;
            }
            // The root closed, or (not reached) a leaf under a leaf.
            _ => {}
        }
    }

    pub(super) fn step(&mut self, g: &Grammar, b: u8, forks: &mut Vec<Reading>) -> bool {
        let Some(&top) = self.frames.last() else {
            return false;
        };
        let space = matches!(b, b' ' | b'\t' | b'\n' | b'\r');
        let between = match top {
            // A raw root (choices) starts at once.
            Frame::Value { .. } => !(g.raw && self.frames.len() == 1),
            Frame::Object { phase, .. } => !matches!(phase, ObjPhase::InKey | ObjPhase::InValue),
            Frame::Array { phase, .. } => phase != ArrPhase::InValue,
            _ => false,
        };
        if space && between {
            self.whitespace += 1;
            return self.whitespace <= MAX_WHITESPACE;
        }
        if !space {
            self.whitespace = 0;
        }
        match top {
            Frame::Value { node } => self.value(g, node, b, forks),
            Frame::Object { node, next, phase } => self.object(g, node, next, phase, b, forks),
            Frame::Array { node, count, phase } => {
                let Node::Array {
                    items,
                    prefix,
                    min,
                    max,
                } = &g.nodes[node as usize]
                else {
                    return false;
                };
                let (min, max) = (*min, *max);
                let items = prefix.get(count as usize).copied().unwrap_or(*items);
                let close = b == b']' && count >= min;
                // Another item only where its shallowest instance fits below this array.
                let more = count < max && fits(g, items, self.frames.len() + 1);
                match phase {
                    _ if close && phase != ArrPhase::InValue => {
                        self.finish(None);
                        true
                    }
                    ArrPhase::Open if more => {
                        self.set_array_phase(ArrPhase::InValue);
                        self.frames.push(Frame::Value { node: items });
                        self.step(g, b, forks)
                    }
                    ArrPhase::AfterValue if b == b',' && more => {
                        self.set_array_phase(ArrPhase::InValue);
                        self.frames.push(Frame::Value { node: items });
                        true
                    }
                    _ => false,
                }
            }
            Frame::Str { node, read } => match read.step(g, node, b) {
                StrStep::Close => {
                    self.finish(None);
                    true
                }
                StrStep::Next(read) => {
                    self.replace_top(Frame::Str { node, read });
                    true
                }
                StrStep::Refuse => false,
            },
            Frame::Number { node, read } => {
                let Node::Number { integer, range } = &g.nodes[node as usize] else {
                    return false;
                };
                match read.next(b, *integer, range.as_ref()) {
                    Some(read) => {
                        self.replace_top(Frame::Number { node, read });
                        true
                    }
                    // The number ends; `b` belongs to what follows it.
                    None if read.complete(range.as_ref()) => {
                        self.finish(None);
                        self.step(g, b, forks)
                    }
                    None => false,
                }
            }
            Frame::Literal { set, alive, at, .. } => self.literal(g, set, alive, at, b, forks),
            Frame::Raw { node, dfa, due, .. } => self.raw(g, node, dfa, due, b),
        }
    }

    /// A byte of a whole text held to a pattern.
    fn raw(&mut self, g: &Grammar, node: NodeId, dfa: u32, due: u8, b: u8) -> bool {
        let Node::Regex { pattern } = g.nodes[node as usize] else {
            return false;
        };
        let p = &g.patterns[pattern as usize];
        let Some((dfa, due)) = p.continues(dfa, due, b) else {
            return false;
        };
        self.replace_top(Frame::Raw {
            node,
            dfa,
            due,
            end: due == 0 && p.ends(dfa),
            more: due > 0 || p.goes_on(dfa),
        });
        true
    }

    fn replace_top(&mut self, frame: Frame) {
        if let Some(top) = self.frames.last_mut() {
            *top = frame;
        }
    }

    fn set_array_phase(&mut self, to: ArrPhase) {
        if let Some(Frame::Array { phase, .. }) = self.frames.last_mut() {
            *phase = to;
        }
    }

    /// The first byte of a value of `node`: picks the union alternative it starts, then
    /// replaces the [`Frame::Value`] with that value's own frame.
    fn value(&mut self, g: &Grammar, node: NodeId, b: u8, forks: &mut Vec<Reading>) -> bool {
        let mut n = node;
        let level = self.frames.len();
        while let Node::Union { alts } = &g.nodes[n as usize] {
            let mut starting = alts
                .iter()
                .filter(|&&a| g.starts(a, b) && fits(g, a, level));
            let Some(&first) = starting.next() else {
                return false;
            };
            // Every other alternative `b` can start is a reading of its own.
            for &other in starting {
                let mut fork = self.clone();
                if let Some(top) = fork.frames.last_mut() {
                    *top = Frame::Value { node: other };
                }
                if fork.step(g, b, forks) {
                    forks.push(fork);
                }
            }
            n = first;
        }
        // Nothing is started that could not be finished within the nesting bound.
        if !g.starts(n, b) || !fits(g, n, level) {
            return false;
        }
        let frame = match g.nodes[n as usize] {
            Node::Object { .. } => Frame::Object {
                node: n,
                next: 0,
                phase: ObjPhase::Open,
            },
            Node::Array { .. } => Frame::Array {
                node: n,
                count: 0,
                phase: ArrPhase::Open,
            },
            Node::String { .. } => Frame::Str {
                node: n,
                read: StrRead::new(g, n),
            },
            Node::Number { range, .. } => match NumRead::start(b, range.as_ref()) {
                Some(read) => Frame::Number { node: n, read },
                None => return false,
            },
            Node::Literals { set } => {
                let count = g.literals[set as usize].len();
                self.frames.pop();
                self.frames.push(Frame::Literal {
                    set,
                    alive: u64::MAX >> (64 - count.max(1)),
                    at: 0,
                    whole: false,
                });
                return self.step(g, b, forks);
            }
            Node::Regex { pattern } => {
                let start = g.patterns[pattern as usize].start;
                self.replace_top(Frame::Raw {
                    node: n,
                    dfa: start,
                    due: 0,
                    end: false,
                    more: true,
                });
                return self.step(g, b, forks);
            }
            Node::Union { .. } => return false,
        };
        self.frames.pop();
        self.frames.push(frame);
        true
    }

    fn object(
        &mut self,
        g: &Grammar,
        node: NodeId,
        next: u16,
        phase: ObjPhase,
        b: u8,
        forks: &mut Vec<Reading>,
    ) -> bool {
        let Node::Object { props, keys, extra } = &g.nodes[node as usize] else {
            return false;
        };
        let set_phase = |s: &mut Self, to: ObjPhase| {
            if let Some(Frame::Object { phase, .. }) = s.frames.last_mut() {
                *phase = to;
            }
        };
        let rest = &props[(next as usize).min(props.len())..];
        // The keys that may come: the next ones up to and including the first required one,
        // less those whose value could not be finished within the nesting bound (a required
        // one always can: this object could not have started otherwise).
        let level = self.frames.len() + 1;
        let upto = rest
            .iter()
            .position(|p| p.required)
            .map_or(rest.len(), |i| i + 1);
        let keys_due = rest[..upto]
            .iter()
            .enumerate()
            .filter(|(_, p)| fits(g, p.node, level))
            .fold(0u64, |m, (i, _)| m | 1 << (next as usize + i));
        let any_key = props.is_empty() && extra.is_some_and(|x| fits(g, x, level));
        match (phase, b) {
            (ObjPhase::Open | ObjPhase::AfterValue, b'}') if !rest.iter().any(|p| p.required) => {
                self.finish(None);
                true
            }
            (ObjPhase::AfterValue, b',') if keys_due != 0 || any_key => {
                set_phase(self, ObjPhase::Key);
                true
            }
            (ObjPhase::Open | ObjPhase::Key, b'"') => {
                set_phase(self, ObjPhase::InKey);
                if props.is_empty() {
                    if !any_key {
                        return false;
                    }
                    // Any key: a string.
                    self.frames.push(Frame::Str {
                        node: ANY_STRING,
                        read: StrRead::new(g, ANY_STRING),
                    });
                    return true;
                }
                if keys_due == 0 {
                    return false;
                }
                self.frames.push(Frame::Literal {
                    set: *keys,
                    alive: keys_due,
                    at: 0,
                    whole: false,
                });
                self.step(g, b, forks)
            }
            (ObjPhase::Colon, b':') => {
                // The matched property's value, or any key's.
                let value = if props.is_empty() {
                    extra.unwrap_or(ANY_STRING)
                } else {
                    match (next as usize).checked_sub(1).and_then(|i| props.get(i)) {
                        Some(p) => p.node,
                        None => return false,
                    }
                };
                set_phase(self, ObjPhase::InValue);
                self.frames.push(Frame::Value { node: value });
                true
            }
            _ => false,
        }
    }

    fn literal(
        &mut self,
        g: &Grammar,
        set: u16,
        alive: u64,
        at: u16,
        b: u8,
        forks: &mut Vec<Reading>,
    ) -> bool {
        let texts = &g.literals[set as usize];
        let at_ = at as usize;
        let mut still = 0u64;
        let mut ended = None;
        for (i, t) in texts.iter().enumerate() {
            if alive >> i & 1 == 0 {
                continue;
            }
            if t.len() > at_ && t[at_] == b {
                still |= 1 << i;
            } else if t.len() == at_ {
                ended = Some(i as u16);
            }
        }
        let is_key = |s: &Self| {
            s.frames.len() >= 2
                && matches!(
                    s.frames[s.frames.len() - 2],
                    Frame::Object {
                        phase: ObjPhase::InKey,
                        ..
                    }
                )
        };
        if still == 0 {
            // A text ended at the byte before; `b` belongs to what follows it.
            return match ended {
                Some(i) => {
                    let key = is_key(self).then_some(i);
                    self.finish(key);
                    self.step(g, b, forks)
                }
                None => false,
            };
        }
        let at = at + 1;
        // One text left and it is whole: end it now (keys end at their closing quote).
        if still.count_ones() == 1 {
            let i = still.trailing_zeros() as u16;
            if texts[i as usize].len() == at as usize {
                let key = is_key(self).then_some(i);
                self.finish(key);
                return true;
            }
        }
        let whole = texts
            .iter()
            .enumerate()
            .any(|(i, t)| still >> i & 1 == 1 && t.len() == at as usize);
        if let Some(top) = self.frames.last_mut() {
            *top = Frame::Literal {
                set,
                alive: still,
                at,
                whole,
            };
        }
        true
    }
}

/// Whether a value of `node` may start as the `level`-th frame (see [`height::fits`]).
fn fits(g: &Grammar, node: NodeId, level: usize) -> bool {
    height::fits(g.height[node as usize], level)
}

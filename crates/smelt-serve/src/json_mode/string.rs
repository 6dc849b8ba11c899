//! A string being read: its lexer (exact UTF-8, escapes, surrogate pairs) and, for a string
//! with a `pattern` or `format`, the pattern's DFA over the decoded bytes, so a byte that
//! leaves no way to a match is refused as it is written. Under a pattern, `\u` escapes are
//! kept to the control characters that need them (`\u0000`–`\u001f`): every other character
//! is written as itself, which keeps each step's check to a handful of candidates.

use crate::json_schema::pattern::Pattern;
use crate::json_schema::{Grammar, Node, NodeId};

/// Where a string's lexer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Lex {
    /// Between characters.
    Char,
    /// Inside a multi-byte UTF-8 character: `left` continuation bytes due, the next within
    /// `lo..=hi` (no overlong form, surrogate or code point past U+10FFFF).
    Utf8 { left: u8, lo: u8, hi: u8 },
    /// After `\`.
    Backslash,
    /// In `\uXXXX` with `left` hex digits due, `cp` the digits so far; `d`: the first was D;
    /// `high`: the digits make a high surrogate (D800–DBFF); `low`: this escape must be the
    /// low half (DC00–DFFF) of a pair, as a lone surrogate is refused by JSON readers
    /// (serde_json, Python's `json`).
    Hex {
        left: u8,
        cp: u16,
        d: bool,
        high: bool,
        low: bool,
    },
    /// After a high surrogate's escape: its low half's `\` (`at` 0), then `u` (`at` 1).
    Pair { at: u8 },
}

/// A string read so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct StrRead {
    /// Characters (code points; an escape is one) so far.
    chars: u32,
    lex: Lex,
    /// The pattern's state after the decoded bytes so far (0 without a pattern).
    dfa: u32,
}

/// What a byte does to a string.
pub(super) enum StrStep {
    /// It is the closing quote.
    Close,
    /// The string goes on.
    Next(StrRead),
    /// It is not allowed here.
    Refuse,
}

/// The string node's bounds and pattern.
fn parts(g: &Grammar, node: NodeId) -> Option<(u32, u32, Option<&Pattern>)> {
    match g.nodes[node as usize] {
        Node::String { min, max, pattern } => {
            Some((min, max, pattern.map(|p| &g.patterns[p as usize])))
        }
        _ => None,
    }
}

impl StrRead {
    /// After the opening quote of a string of `node`.
    pub(super) fn new(g: &Grammar, node: NodeId) -> Self {
        let dfa = match parts(g, node) {
            Some((_, _, Some(p))) => p.start,
            _ => 0,
        };
        Self {
            chars: 0,
            lex: Lex::Char,
            dfa,
        }
    }

    /// Between characters of a string without a pattern, how many more characters it may
    /// take: a run of plain characters that fits is then allowed without trying it.
    pub(super) fn room(&self, g: &Grammar, node: NodeId) -> Option<u32> {
        match (self.lex, parts(g, node)) {
            (Lex::Char, Some((_, max, None))) => Some(max - self.chars),
            _ => None,
        }
    }

    /// Takes byte `b`.
    pub(super) fn step(self, g: &Grammar, node: NodeId, b: u8) -> StrStep {
        let Some((min, max, pattern)) = parts(g, node) else {
            return StrStep::Refuse;
        };
        let Self { chars, lex, dfa } = self;
        // The string goes on with the pattern at `dfa` and `due` continuation bytes to come.
        let go = |chars, lex, dfa, due| match pattern {
            Some(p) if !p.fits(dfa, due, chars) => StrStep::Refuse,
            _ => StrStep::Next(Self { chars, lex, dfa }),
        };
        // `b` decodes to byte `d` of the text.
        let take = |d: u8| pattern.map_or(0, |p| p.step(dfa, d));
        // Some byte of `bytes` (each a whole character, the escape's, already counted) keeps
        // a match reachable.
        let any = |chars: u32, mut bytes: std::ops::Range<u8>, more: &[u8]| {
            pattern.is_none_or(|p| {
                let ok = |c: u8| p.fits(p.step(dfa, c), 0, chars);
                bytes.any(ok) || more.iter().any(|&c| ok(c))
            })
        };
        match lex {
            Lex::Utf8 { left, lo, hi } => {
                if !(lo..=hi).contains(&b) {
                    return StrStep::Refuse;
                }
                let lex = if left == 1 {
                    Lex::Char
                } else {
                    Lex::Utf8 {
                        left: left - 1,
                        lo: 0x80,
                        hi: 0xbf,
                    }
                };
                go(chars, lex, take(b), left - 1)
            }
            Lex::Backslash => {
                let d = match b {
                    b'"' | b'\\' | b'/' => b,
                    b'b' => 0x08,
                    b'f' => 0x0c,
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'u' => {
                        let lex = Lex::Hex {
                            left: 4,
                            cp: 0,
                            d: false,
                            high: false,
                            low: false,
                        };
                        return match any(chars, 0..0x20, &[]) {
                            true => StrStep::Next(Self { chars, lex, dfa }),
                            false => StrStep::Refuse,
                        };
                    }
                    _ => return StrStep::Refuse,
                };
                go(chars, Lex::Char, take(d), 0)
            }
            Lex::Pair { at: 0 } if b == b'\\' => go(chars, Lex::Pair { at: 1 }, dfa, 0),
            Lex::Pair { at: 1 } if b == b'u' => {
                let lex = Lex::Hex {
                    left: 4,
                    cp: 0,
                    d: false,
                    high: false,
                    low: true,
                };
                go(chars, lex, dfa, 0)
            }
            Lex::Pair { .. } => StrStep::Refuse,
            Lex::Hex {
                left,
                cp,
                d,
                high,
                low,
            } => {
                let Some(v) = (b as char).to_digit(16) else {
                    return StrStep::Refuse;
                };
                let cp = cp << 4 | v as u16;
                if pattern.is_some() {
                    // Only `\u0000`–`\u001f`: the digits so far must leave one of them.
                    let span = 1u32 << (4 * (left as u32 - 1));
                    let first = cp as u32 * span;
                    if first >= 0x20 {
                        return StrStep::Refuse;
                    }
                    if left > 1 {
                        let lex = Lex::Hex {
                            left: left - 1,
                            cp,
                            d,
                            high,
                            low,
                        };
                        let upto = (first + span).min(0x20);
                        return match any(chars, first as u8..upto as u8, &[]) {
                            true => StrStep::Next(Self { chars, lex, dfa }),
                            false => StrStep::Refuse,
                        };
                    }
                    return go(chars, Lex::Char, take(cp as u8), 0);
                }
                let (d, high) = match left {
                    4 if low && v != 0xd => return StrStep::Refuse,
                    4 => (v == 0xd, false),
                    3 if d => match v {
                        0x8..=0xb if !low => (true, true),
                        0xc..=0xf if low => (true, false),
                        0x0..=0x7 if !low => (true, false),
                        _ => return StrStep::Refuse,
                    },
                    _ => (d, high),
                };
                let lex = if left > 1 {
                    Lex::Hex {
                        left: left - 1,
                        cp,
                        d,
                        high,
                        low,
                    }
                } else if high {
                    Lex::Pair { at: 0 }
                } else {
                    Lex::Char
                };
                go(chars, lex, dfa, 0)
            }
            Lex::Char => {
                let utf8 = |left, lo, hi| go(chars + 1, Lex::Utf8 { left, lo, hi }, take(b), left);
                match b {
                    b'"' if chars >= min && pattern.is_none_or(|p| p.ends(dfa)) => StrStep::Close,
                    b'"' => StrStep::Refuse,
                    _ if chars >= max => StrStep::Refuse,
                    b'\\' if any(chars + 1, 0..0x20, b"\"\\/") => StrStep::Next(Self {
                        chars: chars + 1,
                        lex: Lex::Backslash,
                        dfa,
                    }),
                    0..0x20 | b'\\' => StrStep::Refuse,
                    0x20..0x80 => go(chars + 1, Lex::Char, take(b), 0),
                    // Lead bytes, and the range of the byte after each (RFC 3629's table).
                    0xc2..=0xdf => utf8(1, 0x80, 0xbf),
                    0xe0 => utf8(2, 0xa0, 0xbf),
                    0xed => utf8(2, 0x80, 0x9f),
                    0xe1..=0xef => utf8(2, 0x80, 0xbf),
                    0xf0 => utf8(3, 0x90, 0xbf),
                    0xf4 => utf8(3, 0x80, 0x8f),
                    0xf1..=0xf3 => utf8(3, 0x80, 0xbf),
                    _ => StrStep::Refuse,
                }
            }
        }
    }
}

//! A string's `pattern` (and the `format`s written as one): the regular expression compiled
//! once, by regex-automata, to a DFA over the string's decoded UTF-8 bytes, then copied into a
//! table with, for every state, whether a match can still be reached from it. The recognizer
//! steps the table one decoded byte at a time and refuses a byte that leaves no way to a
//! match, so a patterned string never strands the model.
//!
//! Semantics are JSON Schema's (and pydantic's, whose validator is the same `regex` syntax):
//! the pattern is searched for anywhere in the string unless it anchors itself with `^`/`$`.
//! Once a match has been seen, the rest of the string is free.

use std::collections::HashMap;

use regex_automata::dfa::{Automaton, StartKind, dense};
use regex_automata::nfa::thompson;
use regex_automata::util::{primitives::StateID, start};
use regex_automata::{Anchored, MatchKind};

use super::char_graph::{CharGraph, Lengths};

/// Most DFA states one pattern may have.
pub const MAX_PATTERN_STATES: usize = 4096;

/// A state id meaning "a match was seen": everything after it is allowed.
pub const MATCHED: u32 = u32::MAX;

/// A compiled pattern: a byte-class DFA table and what each state can still reach.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    /// The expression as written (for errors and tests).
    pub source: String,
    /// (256,) each byte's class: bytes of one class move every state alike.
    classes: Vec<u8>,
    /// Number of classes (the table's row length).
    stride: usize,
    /// (states × stride,) the state after each class of byte.
    next: Vec<u32>,
    /// (states,) entering this state means a match ended just before the byte taken.
    matched: Vec<bool>,
    /// (states,) a match ends at the end of the string here.
    at_end: Vec<bool>,
    /// (states × 4,) with `k` UTF-8 continuation bytes still due, whether some ending of the
    /// string from here matches.
    live: Vec<bool>,
    /// With `minLength`/`maxLength`: which numbers of further characters can end in a match.
    lengths: Option<Lengths>,
    /// (states,) between characters, whether some byte can follow and still end in a match
    /// (for a whole-text pattern, whether the text may go on); only filled by
    /// [`Pattern::for_whole_text`], as a string's closing quote needs no such table.
    goes_on: Vec<bool>,
    /// The state before any character.
    pub start: u32,
}

/// The `format`s smelt holds a string to, as patterns (the rest are refused). Dates follow
/// RFC 3339 and the Gregorian calendar (a 29th of February only in leap years), as Python's
/// `date.fromisoformat` and pydantic read them; no leap seconds.
pub fn format_pattern(format: &str) -> Option<String> {
    const LEAP: &str =
        r"(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29";
    const DAYS: &str = r"[0-9]{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))";
    let date = format!("(?:{DAYS}|{LEAP})");
    let time = r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])";
    let octet = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";
    let label = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
    let atom = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+";
    let hex = |n: usize| format!("[0-9a-fA-F]{{{n}}}");
    Some(match format {
        "date" => format!("^{date}$"),
        "time" => format!("^{time}$"),
        "date-time" => format!("^{date}[Tt]{time}$"),
        "uuid" => format!("^{}-{}-{}-{}-{}$", hex(8), hex(4), hex(4), hex(4), hex(12)),
        "ipv4" => format!(r"^{octet}(?:\.{octet}){{3}}$"),
        "email" => format!(r"^{atom}(?:\.{atom})*@(?:{label}\.)+[A-Za-z]{{2,63}}$"),
        _ => return None,
    })
}

impl Pattern {
    /// Compiles `source` for a string of `min..=max` characters (`max` `u32::MAX`: no
    /// bound); `Err` names what is wrong (syntax, a feature a DFA cannot track, too many
    /// states, no string that fits).
    pub fn new(source: &str, min: u32, max: u32) -> Result<Self, String> {
        let config = dense::Config::new()
            .start_kind(StartKind::Unanchored)
            .match_kind(MatchKind::LeftmostFirst)
            .dfa_size_limit(Some(16 << 20))
            .determinize_size_limit(Some(16 << 20));
        // The NFA too: counted repetitions are written out copy by copy, so
        // `((a{1000}){1000}){1000}` would otherwise build 10⁹ states before the DFA's limits
        // are ever consulted.
        let dfa = dense::Builder::new()
            .configure(config)
            .thompson(thompson::Config::new().nfa_size_limit(Some(16 << 20)))
            .build(source)
            .map_err(|e| {
                // The builder's own message is generic ("error building NFA"); the cause
                // says which limit or which syntax.
                let mut msg = format!("pattern {source:?}: {e}");
                let mut cause = std::error::Error::source(&e);
                while let Some(c) = cause {
                    msg.push_str(&format!(": {c}"));
                    cause = c.source();
                }
                msg
            })?;
        let first = dfa
            .start_state(&start::Config::new().anchored(Anchored::No))
            .map_err(|e| format!("pattern {source:?}: {e}"))?;
        let byte_classes = dfa.byte_classes();
        let classes: Vec<u8> = (0..=255u8).map(|b| byte_classes.get(b)).collect();
        let stride = classes.iter().map(|&c| c as usize + 1).max().unwrap_or(1);
        // One byte of each class.
        let mut example = vec![0u8; stride];
        for b in (0..=255u8).rev() {
            example[classes[b as usize] as usize] = b;
        }
        let mut ids: HashMap<StateID, u32> = HashMap::from([(first, 0)]);
        let mut order = vec![first];
        let (mut next, mut matched, mut at_end) = (Vec::new(), Vec::new(), Vec::new());
        let mut i = 0;
        while i < order.len() {
            let sid = order[i];
            if dfa.is_quit_state(sid) {
                return Err(format!(
                    "pattern {source:?} needs a look-around smelt cannot track"
                ));
            }
            matched.push(dfa.is_match_state(sid));
            at_end.push(dfa.is_match_state(dfa.next_eoi_state(sid)));
            for &b in &example {
                let to = dfa.next_state(sid, b);
                let n = ids.len() as u32;
                let id = *ids.entry(to).or_insert_with(|| {
                    order.push(to);
                    n
                });
                next.push(id);
            }
            if order.len() > MAX_PATTERN_STATES {
                return Err(format!(
                    "pattern {source:?} needs over {MAX_PATTERN_STATES} states"
                ));
            }
            i += 1;
        }
        let graph = CharGraph::new(&next, &classes, stride, &matched, &at_end);
        let lengths = match (min, max) {
            (0, u32::MAX) => None,
            _ => Some(graph.lengths(min, max)?),
        };
        let p = Self {
            source: source.to_owned(),
            classes,
            stride,
            next,
            matched,
            at_end,
            live: graph.liveness(),
            lengths,
            goes_on: vec![],
            start: 0,
        };
        if !p.fits(0, 0, 0) {
            return Err(match p.lengths {
                None => format!("pattern {source:?} matches no string"),
                Some(_) => format!("pattern {source:?} matches no string of its lengths"),
            });
        }
        Ok(p)
    }

    /// How many states its table holds.
    pub fn states(&self) -> usize {
        self.matched.len()
    }

    /// The state after decoded byte `b` ([`MATCHED`] once a match has been seen).
    pub fn step(&self, state: u32, b: u8) -> u32 {
        if state == MATCHED {
            return MATCHED;
        }
        let t = self.next[state as usize * self.stride + self.classes[b as usize] as usize];
        if self.matched[t as usize] { MATCHED } else { t }
    }

    /// The state after character `c`'s UTF-8 bytes.
    pub fn step_char(&self, state: u32, c: char) -> u32 {
        let mut buf = [0u8; 4];
        c.encode_utf8(&mut buf)
            .bytes()
            .fold(state, |s, b| self.step(s, b))
    }

    /// Whether, `chars` characters in with `due` continuation bytes of the last still to
    /// come, the string can still end in a match (within its lengths).
    pub fn fits(&self, state: u32, due: u8, chars: u32) -> bool {
        if state == MATCHED {
            // Anything may follow a match; the lexer holds the lengths.
            return true;
        }
        let node = state as usize * 4 + due as usize;
        match &self.lengths {
            None => self.live.get(node) == Some(&true),
            Some(l) => node < self.live.len() && l.fits(node, chars),
        }
    }

    /// The state and continuation bytes due after raw byte `b` of a whole text (not a JSON
    /// string), if it is UTF-8 so far and can still end in a match.
    pub fn continues(&self, state: u32, due: u8, b: u8) -> Option<(u32, u8)> {
        let due = match (due, b) {
            (0, 0x00..=0x7f) => 0,
            (0, 0xc2..=0xdf) => 1,
            (0, 0xe0..=0xef) => 2,
            (0, 0xf0..=0xf4) => 3,
            (1..=3, 0x80..=0xbf) => due - 1,
            _ => return None,
        };
        let next = self.step(state, b);
        self.fits(next, due, 0).then_some((next, due))
    }

    /// The pattern made ready to hold a whole text (vLLM's `guided_regex`): for each state,
    /// whether the text may go on (256 steps a state).
    pub fn for_whole_text(mut self) -> Self {
        self.goes_on = (0..self.states() as u32)
            .map(|s| (0..=255u8).any(|b| self.continues(s, 0, b).is_some()))
            .collect();
        self
    }

    /// Between characters of a whole text ([`Pattern::for_whole_text`]), whether more may
    /// follow.
    pub fn goes_on(&self, state: u32) -> bool {
        state == MATCHED || self.goes_on.get(state as usize) == Some(&true)
    }

    /// Whether the string may end here.
    pub fn ends(&self, state: u32) -> bool {
        state == MATCHED || self.at_end[state as usize]
    }
}

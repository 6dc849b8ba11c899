//! Helpers shared by the grammar tests: compiling schemas, reading whole texts, and random
//! walks through a grammar.

use serde_json::Value;
use smelt_quant::rng::Rng;
use smelt_serve::json_mode::JsonState;
use smelt_serve::json_schema::{Grammar, Json, compile};

/// Compiles a schema written as JSON text; panics with the error if it is refused.
pub fn schema(text: &str) -> Grammar {
    let j: Json = serde_json::from_str(text).unwrap();
    compile(&j).unwrap_or_else(|e| panic!("{e}"))
}

/// The error a refused schema gives.
pub fn refused_schema(text: &str) -> String {
    let j: Json = serde_json::from_str(text).unwrap();
    compile(&j).expect_err(text).to_string()
}

/// Whether `text` is a whole instance of `g`.
pub fn whole(g: &Grammar, text: &str) -> bool {
    let mut s = JsonState::new(g);
    s.feed(g, text.as_bytes()) && s.done()
}

/// A random text through `g`: at each step a random byte among those allowed (bytes that end
/// strings and containers more likely as it grows), until the object closes.
pub fn random_walk(g: &Grammar, rng: &mut Rng) -> Vec<u8> {
    weighted_walk(g, rng, |b, len| match b {
        b'"' | b'}' | b']' => 1 + len as u64 / 16,
        b' ' | b'\n' | b'\t' => 1,
        _ => 4,
    })
}

/// A random text through `g` whose bytes are drawn by `weight(byte, length so far)` among
/// those allowed, until the object closes; fails if no byte is allowed before that.
pub fn weighted_walk(g: &Grammar, rng: &mut Rng, weight: impl Fn(u8, usize) -> u64) -> Vec<u8> {
    let alphabet: Vec<u8> = (0x20..0x7f)
        .chain([
            b'\n', b'\t', 0xc3, 0xa9, 0xe6, 0x97, 0xa5, 0xf0, 0x9f, 0x98, 0x80,
        ])
        .collect();
    let mut s = JsonState::new(g);
    let mut text = Vec::new();
    while !s.done() {
        assert!(
            text.len() < 20_000,
            "no end: {}",
            String::from_utf8_lossy(&text)
        );
        let pick_from = |bytes: &mut dyn Iterator<Item = u8>| -> Vec<(u8, u64)> {
            bytes
                .filter(|&b| s.allows(g, &[b]))
                .map(|b| (b, weight(b, text.len())))
                .collect()
        };
        let mut allowed = pick_from(&mut alphabet.iter().copied());
        if allowed.is_empty() {
            // Inside a character whose next byte the alphabet lacks: any byte (a byte-level
            // vocabulary has them all).
            allowed = pick_from(&mut (0..=255));
        }
        assert!(
            !allowed.is_empty(),
            "stuck after {:?}",
            String::from_utf8_lossy(&text)
        );
        let mut pick = rng.next_u64() % allowed.iter().map(|a| a.1).sum::<u64>();
        let mut b = allowed[0].0;
        for &(byte, w) in &allowed {
            if pick < w {
                b = byte;
                break;
            }
            pick -= w;
        }
        assert!(s.feed(g, &[b]));
        text.push(b);
    }
    text
}

/// serde_json's reading of a walk; `None` for a number past f64's range (JSON has none, and
/// a walk may write `1e999`).
pub fn read(text: &[u8]) -> Option<Value> {
    match serde_json::from_slice(text) {
        Ok(v) => Some(v),
        Err(e) if e.to_string().starts_with("number out of range") => None,
        Err(e) => panic!("{e}: {}", String::from_utf8_lossy(text)),
    }
}

/// Strings held to patterns and formats, numbers to bounds, and a tuple, as pydantic writes
/// `constr`, `EmailStr`-like formats, `conint`, `confloat` and `tuple[int, bool]`.
pub const VALUES: &str = r##"{"type": "object", "properties": {
  "zip": {"type": "string", "pattern": "^[0-9]{5}(-[0-9]{4})?$"},
  "code": {"type": "string", "pattern": "[0-9]"},
  "word": {"type": "string", "pattern": "^\\w+é?$"},
  "line": {"type": "string", "pattern": "^a\\nb\"$"},
  "day": {"type": "string", "format": "date"},
  "at": {"type": "string", "format": "date-time"},
  "id": {"type": "string", "format": "uuid"},
  "mail": {"type": "string", "format": "email"},
  "ip": {"type": "string", "format": "ipv4"},
  "age": {"type": "integer", "minimum": 0, "maximum": 120},
  "temp": {"type": "number", "exclusiveMinimum": -273.15, "maximum": 1e3},
  "p": {"type": "number", "minimum": 0, "maximum": 1},
  "big": {"type": "integer", "minimum": 1000},
  "neg": {"type": "integer", "maximum": -5, "minimum": -1000},
  "tag": {"type": "string", "pattern": "^[a-z]+$", "minLength": 2, "maxLength": 4},
  "even": {"type": "string", "pattern": "^(ab)+$", "minLength": 3, "maxLength": 7},
  "long": {"type": "string", "pattern": "[0-9]", "minLength": 3},
  "pair": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "boolean"}],
           "items": false, "minItems": 1}
}, "required": ["zip", "code", "word", "line", "day", "at", "id", "mail", "ip", "age", "temp",
                "p", "big", "neg", "tag", "even", "long", "pair"]}"##;

//! Patterns, formats and numeric bounds in JSON schemas, without a model: texts accepted and
//! refused at the byte where they leave the schema, and random walks through the grammar
//! (which must never strand: some byte is always allowed) whose every text meets checks
//! written apart from the grammar (the `regex` crate's own matcher for patterns, calendar
//! arithmetic for dates, `std::net` for addresses, serde_json's numbers for bounds).

mod walk;

use std::net::Ipv4Addr;

use serde_json::Value;
use smelt_quant::rng::{Rng, test_seed};
use smelt_serve::json_mode::JsonState;
use walk::{VALUES, random_walk, read, refused_schema, schema, whole};

/// An instance of [`VALUES`] with one field's text replaced.
fn with(field: &str, text: &str) -> String {
    let mut fields = vec![
        ("zip", r#""12345""#),
        ("code", r#""ab7cd""#),
        ("word", r#""naïve""#),
        ("line", r#""a\nb\"""#),
        ("day", r#""2024-02-29""#),
        ("at", r#""2024-11-28T23:59:01.5+01:00""#),
        ("id", r#""123e4567-e89b-12d3-a456-426614174000""#),
        ("mail", r#""first.last@mail.example.org""#),
        ("ip", r#""192.168.0.255""#),
        ("age", "42"),
        ("temp", "-273.14"),
        ("p", "0.25"),
        ("big", "1000"),
        ("neg", "-5"),
        ("tag", r#""ab""#),
        ("even", r#""abab""#),
        ("long", r#""x1y""#),
        ("pair", "[3, true]"),
    ];
    for f in &mut fields {
        if f.0 == field {
            f.1 = text;
        }
    }
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("\"{k}\": {v}"))
        .collect();
    format!("{{{}}}", body.join(", "))
}

#[test]
fn patterns_formats_and_bounds_hold_exactly() {
    let g = schema(VALUES);
    assert!(whole(&g, &with("", "")), "{}", with("", ""));
    let ok = [
        ("zip", r#""12345-6789""#),
        ("code", r#""7""#),
        ("word", r#""日本é""#),
        ("line", r#""a\u000ab\"""#),
        ("day", r#""2000-02-29""#),
        ("day", r#""1999-12-31""#),
        ("at", r#""1970-01-01t00:00:00Z""#),
        ("mail", r#""x@y.co""#),
        ("ip", r#""0.0.0.0""#),
        ("age", "0"),
        ("age", "-0"),
        ("age", "120"),
        ("temp", "1000"),
        ("temp", "-273.149999999999"),
        ("p", "1.000"),
        ("p", "0"),
        ("big", "123456789012345678901234567890"),
        ("neg", "-1000"),
        ("pair", "[-7]"),
        ("tag", r#""abcd""#),
        ("even", r#""ababab""#),
        ("long", r#""1bc""#),
        ("long", r#""abcdef7""#),
    ];
    for (field, text) in ok {
        assert!(whole(&g, &with(field, text)), "{field}: {text}");
    }
    let bad = [
        ("zip", r#""1234""#),
        ("zip", r#""12345-""#),
        ("code", r#""abc""#),
        ("word", r#""a b""#),
        // Under a pattern, `\u` escapes are kept to control characters.
        ("line", r#""\u0061\nb\"""#),
        ("day", r#""2023-02-29""#),
        ("day", r#""2100-02-29""#),
        ("day", r#""2024-04-31""#),
        ("at", r#""2024-11-28T24:00:00Z""#),
        ("at", r#""2024-11-28T12:00:00""#),
        ("id", r#""123e4567-e89b-12d3-a456-42661417400""#),
        ("mail", r#""a..b@x.org""#),
        ("mail", r#""a@b""#),
        ("ip", r#""256.1.1.1""#),
        ("ip", r#""01.1.1.1""#),
        ("age", "121"),
        ("age", "-1"),
        ("age", "4.0"),
        ("temp", "-273.15"),
        ("temp", "1000.000000000001"),
        ("temp", "1e2"),
        ("p", "1.01"),
        ("p", "0.1234567890123"),
        ("big", "999"),
        ("neg", "-4"),
        ("neg", "-1001"),
        ("tag", r#""a""#),
        ("tag", r#""abcde""#),
        ("tag", r#""aB""#),
        ("even", r#""ab""#),
        ("even", r#""abababab""#),
        ("long", r#""12""#),
        ("long", r#""abc""#),
        ("pair", "[]"),
        ("pair", "[3, true, 1]"),
        ("pair", "[true]"),
        ("pair", "[3, 4]"),
    ];
    for (field, text) in bad {
        assert!(!whole(&g, &with(field, text)), "{field}: {text}");
    }
    // Refused at the byte that leaves the schema, not at the end.
    let refused_at = |field: &str, text: &str, prefix: &str| {
        let full = with(field, text);
        let at = full.find(&format!("\"{field}\": ")).unwrap() + field.len() + 4;
        let mut s = JsonState::new(&g);
        assert!(
            s.feed(&g, &full.as_bytes()[..at + prefix.len()]),
            "{prefix}"
        );
        let next = full.as_bytes()[at + prefix.len()];
        assert!(
            !s.allows(&g, &[next]),
            "{field}: {prefix} then {}",
            next as char
        );
    };
    refused_at("age", "121", "12");
    refused_at("age", "-1", "-");
    refused_at("big", "-5", "");
    refused_at("neg", "-4", "-4");
    refused_at("p", "1.01", "1.0");
    refused_at("day", r#""2023-02-29""#, r#""2023-02-2"#);
    refused_at("ip", r#""256.1.1.1""#, r#""25"#);
    refused_at("zip", r#""1234a""#, r#""1234"#);
    // Past six characters no even-length string of ab fits in seven.
    refused_at("even", r#""abababa""#, r#""ababab"#);
    refused_at("tag", r#""abcde""#, r#""abcd"#);
}

/// Whether `y-m-d` is a day of the Gregorian calendar.
fn is_date(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    let [y, m, d] = parts[..] else { return false };
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if !(digits(y, 4) && digits(m, 2) && digits(d, 2)) {
        return false;
    }
    let (y, m, d): (u32, u32, u32) = (y.parse().unwrap(), m.parse().unwrap(), d.parse().unwrap());
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

/// Whether `text` is an RFC 3339 time with an offset and no leap second.
fn is_time(text: &str) -> bool {
    let two = |s: &str, max: u32| {
        s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u32>().unwrap() <= max
    };
    let (clock, offset) = match text.find(['Z', 'z', '+', '-']) {
        Some(i) => text.split_at(i),
        None => return false,
    };
    let offset_ok = match offset {
        "Z" | "z" => true,
        _ => {
            offset.len() == 6
                && two(&offset[1..3], 23)
                && &offset[3..4] == ":"
                && two(&offset[4..], 59)
        }
    };
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, "0"));
    let hms: Vec<&str> = hms.split(':').collect();
    offset_ok
        && hms.len() == 3
        && two(hms[0], 23)
        && two(hms[1], 59)
        && two(hms[2], 59)
        && !frac.is_empty()
        && frac.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `text` looks like an address: dot-atoms before one `@`, hostname labels after it,
/// and a final label of letters.
fn is_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    let atom_char = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c);
    let labels: Vec<&str> = domain.split('.').collect();
    local
        .split('.')
        .all(|a| !a.is_empty() && a.chars().all(atom_char))
        && labels.len() >= 2
        && labels.iter().all(|l| {
            (1..=63).contains(&l.len())
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
        && labels
            .last()
            .is_some_and(|t| t.len() >= 2 && t.chars().all(|c| c.is_ascii_alphabetic()))
}

/// Whether `v` is an instance of [`VALUES`], checked without the grammar.
fn is_values(v: &Value) -> bool {
    let s = |k: &str| v[k].as_str().unwrap_or_default();
    let matches = |k: &str, p: &str| regex::Regex::new(p).unwrap().is_match(s(k));
    let num = |k: &str| v[k].as_f64().unwrap();
    // serde_json reads `-0` as a float.
    let int = |k: &str| {
        v[k].as_i64()
            .or(v[k].as_f64().filter(|f| *f == 0.0).map(|_| 0))
    };
    let uuid = s("id").split('-').map(str::len).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && s("id").chars().all(|c| c == '-' || c.is_ascii_hexdigit());
    let at = s("at").split_once(['T', 't']);
    matches("zip", "^[0-9]{5}(-[0-9]{4})?$")
        && matches("code", "[0-9]")
        && matches("word", "^\\w+é?$")
        && s("line") == "a\nb\""
        && is_date(s("day"))
        && at.is_some_and(|(d, t)| is_date(d) && is_time(t))
        && uuid
        && is_email(s("mail"))
        && s("ip").parse::<Ipv4Addr>().is_ok()
        && int("age").is_some_and(|a| (0..=120).contains(&a))
        && num("temp") > -273.15
        && num("temp") <= 1000.0
        && (0.0..=1.0).contains(&num("p"))
        // serde_json reads integers past u64 as floats.
        && num("big") >= 1000.0
        && int("neg").is_some_and(|n| (-1000..=-5).contains(&n))
        && matches("tag", "^[a-z]+$")
        && (2..=4).contains(&s("tag").chars().count())
        && matches("even", "^(ab)+$")
        && (3..=7).contains(&s("even").chars().count())
        && matches("long", "[0-9]")
        && s("long").chars().count() >= 3
        && v["pair"].as_array().is_some_and(|p| {
            (1..=2).contains(&p.len())
                && p[0].as_f64().is_some_and(|f| f.fract() == 0.0)
                && p.get(1).is_none_or(Value::is_boolean)
        })
}

#[test]
fn random_walks_meet_patterns_formats_and_bounds() {
    let g = schema(VALUES);
    let mut rng = Rng::new(test_seed());
    let mut lengths = Vec::new();
    for _ in 0..300 {
        let text = random_walk(&g, &mut rng);
        let v = read(&text).expect("bounded numbers have no exponent");
        assert!(is_values(&v), "{v}");
        lengths.push(text.len());
    }
    // The walks are not all alike: the unanchored pattern and the bounds leave room.
    lengths.sort_unstable();
    assert!(lengths[0] < lengths[lengths.len() - 1], "{lengths:?}");
    eprintln!(
        "300 walks: {} to {} bytes",
        lengths[0],
        lengths[lengths.len() - 1]
    );
}

#[test]
fn patterns_and_bounds_that_cannot_be_held_are_refused_with_where() {
    for (text, says) in [
        (
            r##"{"properties": {"a": {"type": "string", "pattern": "(x"}}}"##,
            "at /properties/a/pattern: pattern \"(x\"",
        ),
        (
            r##"{"properties": {"a": {"type": "string", "pattern": "(?=x)"}}}"##,
            "at /properties/a/pattern",
        ),
        (
            r##"{"properties": {"a": {"type": "string", "pattern": "^a{5}$", "maxLength": 3}}}"##,
            "matches no string of its lengths",
        ),
        (
            r##"{"properties": {"a": {"type": "string", "pattern": "a", "maxLength": 5000}}}"##,
            "lengths past 4096",
        ),
        (
            r##"{"properties": {"a": {"type": "string", "format": "hostname"}}}"##,
            r##"at /properties/a/format: format "hostname" is not supported"##,
        ),
        (
            r##"{"properties": {"a": {"type": "string", "pattern": "x\\by"}}}"##,
            "at /properties/a/pattern",
        ),
        (
            r##"{"properties": {"a": {"type": "integer", "minimum": 0.2, "maximum": 0.8}}}"##,
            "no integer lies within the bounds",
        ),
        (
            r##"{"properties": {"a": {"type": "number", "exclusiveMaximum": 1, "minimum": 1}}}"##,
            "no number with 12 decimal places",
        ),
        (
            r##"{"properties": {"a": {"type": "number", "maximum": 1e300}}}"##,
            "at /properties/a/maximum: bounds past",
        ),
        (
            r##"{"properties": {"a": {"prefixItems": {"type": "integer"}}}}"##,
            "at /properties/a/prefixItems: must be an array",
        ),
        (
            r##"{"properties": {"a": {"prefixItems": [{}], "items": false, "minItems": 2}}}"##,
            "minItems 2 is over the 1 items allowed",
        ),
    ] {
        let e = refused_schema(text);
        assert!(e.contains(says), "{text}: {e}");
    }
}

#[test]
fn guided_regex_holds_the_whole_text_and_ends_where_it_may() {
    use smelt_serve::json_schema::compile_regex;
    let g = compile_regex(r"(yes|no), because [a-z ]{3,12}\.").unwrap();
    let feed = |text: &str| {
        let mut s = JsonState::new(&g);
        s.feed(&g, text.as_bytes()).then_some(s)
    };
    let s = feed("yes, because it is.").unwrap();
    assert!(s.may_end() && s.done(), "nothing may follow the full stop");
    let s = feed("no, because").unwrap();
    assert!(!s.may_end() && !s.done());
    assert!(feed("maybe").is_none() && feed(" yes").is_none());
    assert!(
        feed("yes, because it is not so, you see.").is_none(),
        "over 12 letters"
    );
    let digits = compile_regex("[0-9]+").unwrap();
    let mut s = JsonState::new(&digits);
    assert!(!s.may_end());
    assert!(s.feed(&digits, b"12"));
    assert!(s.may_end() && !s.done(), "more digits may follow");
    for bad in ["(", "a(?=b)", "x\\by"] {
        assert!(compile_regex(bad).is_err(), "{bad}");
    }
    // Random texts through each grammar, stopping at random where they may: the regex
    // crate's own matcher accepts every one as a whole.
    let mut rng = Rng::new(test_seed());
    let mut stopped_early = 0;
    for source in [
        r"(yes|no), because [a-z ]{3,12}\.",
        r"[0-9]{3}-[0-9]{4}",
        r"\w+@\w+\.com",
        r"(ab|c)*d?",
        r"日本[a-zé]*",
        r"[^x]{2}",
    ] {
        let g = compile_regex(source).unwrap();
        let whole = regex::Regex::new(&format!("^(?:{source})$")).unwrap();
        for _ in 0..200 {
            let mut s = JsonState::new(&g);
            let mut text = Vec::new();
            while !s.done() {
                if s.may_end() && rng.next_u64().is_multiple_of(4) {
                    stopped_early += 1;
                    break;
                }
                let allowed: Vec<u8> = (0..=255u8).filter(|&b| s.allows(&g, &[b])).collect();
                assert!(!allowed.is_empty(), "{source}: stuck after {text:?}");
                let b = allowed[(rng.next_u64() % allowed.len() as u64) as usize];
                assert!(s.feed(&g, &[b]));
                text.push(b);
                assert!(text.len() < 4096, "{source}: no end");
            }
            let text = String::from_utf8(text).expect("UTF-8");
            assert!(whole.is_match(&text), "{source}: {text:?}");
        }
    }
    assert!(
        stopped_early > 100,
        "{stopped_early} texts stopped where they could go on"
    );
}

//! The Jinja environment chat templates are written for: Hugging Face `transformers` renders
//! them with jinja2 (`trim_blocks`, `lstrip_blocks`, loop controls, Python string and dict
//! methods, and its own `tojson`, `raise_exception` and `strftime_now`), and vLLM serves
//! through that. This module gives minijinja the same behaviour, so a model sees the prompt
//! text it was trained on (`tests/chat_templates_vs_jinja2.rs` compares real templates with
//! jinja2's output).

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Value};

/// A minijinja environment set up as `transformers`' `_compile_jinja_template`.
pub(crate) fn hf_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", |msg: String| -> Result<String, Error> {
        Err(Error::new(ErrorKind::InvalidOperation, msg))
    });
    env.add_function("strftime_now", |format: String| {
        strftime(&format, civil_now())
    });
    env.add_filter("tojson", tojson);
    // jinja2 prints values as Python's `str()` does: True/False, None, dicts and lists in
    // their repr (`{'type': 'function'}`), where minijinja writes true, none and JSON.
    env.set_formatter(|out, state, value| match python_str(value) {
        Some(text) => out.write_str(&text).map_err(Error::from),
        None => minijinja::escape_formatter(out, state, value),
    });
    env.add_filter("string", |value: Value| match python_str(&value) {
        Some(text) => Value::from(text),
        None if value.kind() == ValueKind::String => value,
        None => Value::from(value.to_string()),
    });
    // jinja2's `iterable` is false for None (templates test `tools is iterable` before
    // `tools | length`) and true for undefined (Hermes' tool_use template reads a
    // parameter without a `type` that way); minijinja's is the other way round.
    env.add_test("iterable", |v: Value| match v.kind() {
        ValueKind::Undefined => true,
        ValueKind::None | ValueKind::Number | ValueKind::Bool => false,
        _ => v.try_iter().is_ok(),
    });
    env
}

/// `source` with `transformers`' `{% generation %}` … `{% endgeneration %}` blocks (which mark
/// the assistant's text for training masks and render their body) turned into blocks
/// minijinja knows, whitespace control kept.
pub(crate) fn without_generation_tags(source: &str) -> std::borrow::Cow<'_, str> {
    static TAG: std::sync::OnceLock<fancy_regex::Regex> = std::sync::OnceLock::new();
    let tag = TAG.get_or_init(|| {
        fancy_regex::Regex::new(r"\{%([-+]?)\s*(end)?generation\s*([-+]?)%\}")
            .expect("a valid pattern")
    });
    tag.replace_all(source, |c: &fancy_regex::Captures<'_, str>| {
        let (lead, trail) = (&c[1], &c[3]);
        match c.get(2) {
            Some(_) => format!("{{%{lead} endif {trail}%}}"),
            None => format!("{{%{lead} if true {trail}%}}"),
        }
    })
}

/// Python's `str(value)` where it differs from minijinja's output (booleans, None, numbers
/// that are floats, dicts and lists); `None` for values both print alike.
fn python_str(value: &Value) -> Option<String> {
    match value.kind() {
        ValueKind::Bool | ValueKind::None | ValueKind::Seq | ValueKind::Map => {
            Some(python_repr(value))
        }
        ValueKind::Number if !value.is_integer() => {
            f64::try_from(value.clone()).ok().map(python_float)
        }
        _ => None,
    }
}

/// Python's `repr(value)`: strings in quotes (single unless the text holds only single
/// quotes), dicts as `{k: v, ...}`, lists as `[...]`, True/False/None.
fn python_repr(value: &Value) -> String {
    match value.kind() {
        ValueKind::Bool => if value.is_true() { "True" } else { "False" }.into(),
        ValueKind::None | ValueKind::Undefined => "None".into(),
        ValueKind::Number => python_str(value).unwrap_or_else(|| value.to_string()),
        ValueKind::String => python_string_repr(value.as_str().unwrap_or_default()),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<String> = value
                .try_iter()
                .map(|it| it.map(|v| python_repr(&v)).collect())
                .unwrap_or_default();
            format!("[{}]", items.join(", "))
        }
        ValueKind::Map => {
            let items: Vec<String> = value
                .try_iter()
                .map(|keys| {
                    keys.map(|k| {
                        let v = value.get_item(&k).unwrap_or_default();
                        format!("{}: {}", python_repr(&k), python_repr(&v))
                    })
                    .collect()
                })
                .unwrap_or_default();
            format!("{{{}}}", items.join(", "))
        }
        _ => value.to_string(),
    }
}

/// `repr(s)` of a Python string: the quote Python picks, backslashes, that quote and
/// control characters escaped.
fn python_string_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || (0x7f..0xa0).contains(&(c as u32)) => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// `tojson` as `transformers` defines it: Python's `json.dumps(x, ensure_ascii=False,
/// indent=indent, separators=separators, sort_keys=sort_keys)`, so objects keep their key
/// order and `", "`/`": "` separate items (minijinja's own filter writes compact,
/// HTML-escaped JSON, which is not what the models saw in training).
fn tojson(value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent = match kwargs.get::<Option<Value>>("indent")? {
        None => None,
        Some(v) if v.kind() == ValueKind::None => None,
        Some(v) => match v.as_str() {
            Some(s) => Some(s.to_owned()),
            None => Some(" ".repeat(usize::try_from(v.clone()).map_err(|_| {
                Error::new(
                    ErrorKind::InvalidOperation,
                    format!("tojson: bad indent {v}"),
                )
            })?)),
        },
    };
    let (item_sep, key_sep) = match kwargs.get::<Option<Vec<String>>>("separators")? {
        Some(s) if s.len() == 2 => (s[0].clone(), s[1].clone()),
        Some(_) => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be a pair",
            ));
        }
        None if indent.is_some() => (",".into(), ": ".into()),
        None => (", ".into(), ": ".into()),
    };
    let sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    let ensure_ascii = kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false);
    kwargs.assert_all_used()?;
    let style = Style {
        indent,
        item_sep,
        key_sep,
        sort_keys,
        ensure_ascii,
    };
    let mut out = String::new();
    dump(&value, &style, 0, &mut out)?;
    Ok(Value::from(out))
}

/// How [`dump`] lays JSON out (Python's `json.dumps` options).
struct Style {
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
    /// Non-ASCII characters as `\uXXXX` escapes (UTF-16 units), as Python's default.
    ensure_ascii: bool,
}

/// Writes `v` as Python's `json.dumps` would, at nesting `level`.
fn dump(v: &Value, style: &Style, level: usize, out: &mut String) -> Result<(), Error> {
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number if v.is_integer() => out.push_str(&v.to_string()),
        ValueKind::Number => out.push_str(&python_float(f64::try_from(v.clone())?)),
        ValueKind::String => out.push_str(&json_string(v.as_str().unwrap_or_default(), style)),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            container(out, style, level, '[', ']', &items, |item, out| {
                dump(item, style, level + 1, out)
            })?;
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = v.try_iter()?.collect();
            if style.sort_keys {
                keys.sort_by_key(|k| k.to_string());
            }
            container(out, style, level, '{', '}', &keys, |key, out| {
                out.push_str(&json_string(&key.to_string(), style));
                out.push_str(&style.key_sep);
                dump(&v.get_item(key)?, style, level + 1, out)
            })?;
        }
        kind => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: a {kind} is not JSON serializable"),
            ));
        }
    }
    Ok(())
}

/// Writes `items` between `open` and `close`, one per line under `indent` when set.
fn container(
    out: &mut String,
    style: &Style,
    level: usize,
    open: char,
    close: char,
    items: &[Value],
    mut each: impl FnMut(&Value, &mut String) -> Result<(), Error>,
) -> Result<(), Error> {
    out.push(open);
    if items.is_empty() {
        out.push(close);
        return Ok(());
    }
    let newline = |out: &mut String, depth: usize| {
        if let Some(ind) = &style.indent {
            out.push('\n');
            for _ in 0..depth {
                out.push_str(ind);
            }
        }
    };
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(&style.item_sep);
        }
        newline(out, level + 1);
        each(item, out)?;
    }
    newline(out, level);
    out.push(close);
    Ok(())
}

/// A JSON string as Python writes it: quotes, backslashes and control characters escaped
/// (serde_json escapes the same set), and with `ensure_ascii` every other non-ASCII character
/// as `\uxxxx` (a surrogate pair past U+FFFF).
fn json_string(s: &str, style: &Style) -> String {
    let text = serde_json::to_string(s).unwrap_or_default();
    if !style.ensure_ascii || text.is_ascii() {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

/// `repr(f)` of a Python float, as `json.dumps` writes it: the shortest digits that read
/// back as `f`, positional for exponents -4..16 (always with a fraction), otherwise
/// `d.ddde+XX`.
fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "-1.5e-7", "1e20", "0e0".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if (-4..16).contains(&exp) {
        let body = if exp < 0 {
            format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
        } else {
            let point = exp as usize + 1;
            if digits.len() > point {
                format!("{}.{}", &digits[..point], &digits[point..])
            } else {
                format!("{digits}{}.0", "0".repeat(point - digits.len()))
            }
        };
        format!("{sign}{body}")
    } else {
        let sign_exp = if exp < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{sign_exp}{:02}", exp.abs())
    }
}

/// A UTC date and time: (year, month 1–12, day 1–31, weekday 0 = Monday, hour, minute,
/// second).
type Civil = (i64, u32, u32, u32, u32, u32, u32);

/// Now, in UTC.
fn civil_now() -> Civil {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    civil_from_unix(secs)
}

/// The UTC calendar date and time of `secs` since 1970 (Howard Hinnant's `civil_from_days`).
fn civil_from_unix(secs: i64) -> Civil {
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400) as u32;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    // 1970-01-01 was a Thursday (3 with Monday as 0).
    let weekday = (days + 3).rem_euclid(7) as u32;
    (
        year,
        month,
        day,
        weekday,
        tod / 3600,
        tod / 60 % 60,
        tod % 60,
    )
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Python's `strftime` for the codes chat templates use (`%d %b %Y`, `%B %d, %Y`, ...);
/// another code is an error rather than a silently wrong date.
fn strftime(format: &str, (y, mo, d, wd, h, mi, s): Civil) -> Result<String, Error> {
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let month = MONTHS[(mo - 1) as usize];
        let weekday = WEEKDAYS[wd as usize];
        match chars.next() {
            Some('Y') => out.push_str(&y.to_string()),
            Some('y') => out.push_str(&format!("{:02}", y.rem_euclid(100))),
            Some('m') => out.push_str(&format!("{mo:02}")),
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('e') => out.push_str(&format!("{d:2}")),
            Some('B') => out.push_str(month),
            Some('b') => out.push_str(&month[..3]),
            Some('A') => out.push_str(weekday),
            Some('a') => out.push_str(&weekday[..3]),
            Some('H') => out.push_str(&format!("{h:02}")),
            Some('M') => out.push_str(&format!("{mi:02}")),
            Some('S') => out.push_str(&format!("{s:02}")),
            Some('%') => out.push('%'),
            other => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!(
                        "strftime_now: %{} is not supported",
                        other.map(String::from).unwrap_or_default()
                    ),
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_blocks_become_plain_blocks() {
        let t = "a{%- generation -%} b {% endgeneration %}{{ x }}{% if y %}generation{% endif %}";
        assert_eq!(
            without_generation_tags(t),
            "a{%- if true -%} b {% endif %}{{ x }}{% if y %}generation{% endif %}"
        );
        // Text that only looks like a tag is left alone, and nothing panics.
        let odd = "{{ '{%}' }}{% generation %}x{% endgeneration %}{%";
        assert_eq!(
            without_generation_tags(odd),
            "{{ '{%}' }}{% if true %}x{% endif %}{%"
        );
    }

    #[test]
    fn values_print_as_python_prints_them() {
        let v: Value = serde_json::from_str(
            r#"{"b": true, "n": null, "x": 1.5, "s": "it's", "q": "say \"hi\"", "l": [1, "a\n"]}"#,
        )
        .unwrap();
        // Python: str({'b': True, ...}) with the keys in order.
        assert_eq!(
            python_repr(&v),
            r#"{'b': True, 'n': None, 'x': 1.5, 's': "it's", 'q': 'say "hi"', 'l': [1, 'a\n']}"#
        );
        let env = hf_environment();
        let out = env
            .render_str(
                "{{ t }} {{ f }} {{ n }} {{ 2.0 }} {{ d|string }}",
                minijinja::context! {
                    t => true, f => false, n => (), d => v,
                },
            )
            .unwrap();
        assert_eq!(
            out,
            r#"True False None 2.0 {'b': True, 'n': None, 'x': 1.5, 's': "it's", 'q': 'say "hi"', 'l': [1, 'a\n']}"#
        );
    }

    #[test]
    fn floats_print_as_python_repr() {
        // Each pair is Python 3's repr(float(x)).
        for (f, py) in [
            (1.0, "1.0"),
            (-0.5, "-0.5"),
            (0.1, "0.1"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123456.789, "123456.789"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-1.5e-7, "-1.5e-07"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (0.0, "0.0"),
            (2.5e100, "2.5e+100"),
        ] {
            assert_eq!(python_float(f), py, "{f}");
        }
    }

    #[test]
    fn dates_come_from_the_civil_calendar() {
        // date -u -d @951782400: Tue Feb 29 00:00:00 UTC 2000; @0 a Thursday.
        assert_eq!(civil_from_unix(951_782_400), (2000, 2, 29, 1, 0, 0, 0));
        assert_eq!(civil_from_unix(0), (1970, 1, 1, 3, 0, 0, 0));
        assert_eq!(civil_from_unix(-1), (1969, 12, 31, 2, 23, 59, 59));
        let t = civil_from_unix(1_785_000_000);
        assert_eq!(
            strftime("%d %b %Y|%B %e, %y|%A %a %H:%M:%S %%", t).unwrap(),
            "25 Jul 2026|July 25, 26|Saturday Sat 17:20:00 %"
        );
        assert!(strftime("%Q", t).is_err());
    }
}

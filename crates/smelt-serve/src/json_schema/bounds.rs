//! Numeric bounds (`minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`) as a closed
//! range of integers in units of 10^-[`BOUNDED_DECIMALS`] (or of 1 for an integer), so the
//! recognizer compares exactly, as JSON Schema's mathematical values ask, with no float
//! rounding. A bounded number is written in plain decimal (no exponent) with at most
//! [`BOUNDED_DECIMALS`] decimal places.

use super::{Json, SchemaError, err};

/// Decimal places a bounded `number` may be written with.
pub const BOUNDED_DECIMALS: u32 = 12;

/// Largest magnitude a bound may have.
const MAX_BOUND: i128 = 1_000_000_000_000_000;

/// The values a bounded number may take: `lo ..= hi` in units of 10^-`scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// Least value (`i128::MIN`: none).
    pub lo: i128,
    /// Greatest value (`i128::MAX`: none).
    pub hi: i128,
    /// 0 for integers, [`BOUNDED_DECIMALS`] for numbers.
    pub scale: u32,
}

/// A JSON number's exact value times 10^`scale`, rounded down and up. `None` past
/// [`MAX_BOUND`].
fn scaled(n: &serde_json::Number, scale: u32) -> Option<(i128, i128)> {
    let text = n.to_string();
    let (neg, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.as_str()),
    };
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], body[i + 1..].parse::<i32>().ok()?),
        None => (body, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: String = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > 30 {
        return None;
    }
    let m: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    // value = m × 10^shift, times 10^scale.
    let shift = exp - frac.len() as i32 + scale as i32;
    let (down, up) = if shift >= 0 {
        let v = m.checked_mul(10i128.checked_pow(shift as u32)?)?;
        (v, v)
    } else {
        let d = 10i128
            .checked_pow(shift.unsigned_abs())
            .unwrap_or(i128::MAX);
        let q = m / d;
        (q, if q * d == m { q } else { q + 1 })
    };
    let (down, up) = if neg { (-up, -down) } else { (down, up) };
    let limit = MAX_BOUND * 10i128.pow(scale);
    (down.abs() <= limit && up.abs() <= limit).then_some((down, up))
}

impl Range {
    /// The bounds of schema `s` for an integer or a number at `path`; `None` if it has none.
    pub fn of(s: &Json, integer: bool, path: &str) -> Result<Option<Range>, SchemaError> {
        let scale = if integer { 0 } else { BOUNDED_DECIMALS };
        let mut range = Range {
            lo: i128::MIN,
            hi: i128::MAX,
            scale,
        };
        let mut any = false;
        // Draft 4 writes `exclusiveMinimum: true` beside `minimum`; later drafts a number.
        let strict = |k: &str| matches!(s.get(k), Some(Json::Bool(true)));
        for key in ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"] {
            let n = match s.get(key) {
                None | Some(Json::Bool(_)) if key.starts_with("exclusive") => continue,
                None => continue,
                Some(Json::Number(n)) => n,
                Some(_) => return Err(err(&format!("{path}/{key}"), "must be a number")),
            };
            let Some((down, up)) = scaled(n, scale) else {
                return Err(err(
                    &format!("{path}/{key}"),
                    format!("bounds past ±{MAX_BOUND} are not supported"),
                ));
            };
            any = true;
            let (low, exclusive) = match key {
                "minimum" => (true, strict("exclusiveMinimum")),
                "maximum" => (false, strict("exclusiveMaximum")),
                "exclusiveMinimum" => (true, true),
                _ => (false, true),
            };
            // The least (greatest) value on the grid past the bound.
            if low {
                let lo = if exclusive { down + 1 } else { up };
                range.lo = range.lo.max(lo);
            } else {
                let hi = if exclusive { up - 1 } else { down };
                range.hi = range.hi.min(hi);
            }
        }
        if !any {
            return Ok(None);
        }
        if range.lo > range.hi {
            let what = if integer {
                "no integer".to_owned()
            } else {
                format!("no number with {BOUNDED_DECIMALS} decimal places")
            };
            return Err(err(path, format!("{what} lies within the bounds")));
        }
        Ok(Some(range))
    }
}

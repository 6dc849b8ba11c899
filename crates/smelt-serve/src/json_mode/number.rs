//! A number being read: where its text is in JSON's grammar and, for a bounded one
//! ([`Range`]), its digits so far, so a byte that leaves no way to end inside the bounds is
//! refused as soon as it is written.

use crate::json_schema::Range;
use crate::json_schema::bounds::BOUNDED_DECIMALS;

/// Where a number is in `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Num {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    E,
    ESign,
    Exp,
}

/// Integer parts past this are all alike to a [`Range`] (whose bounds are far smaller).
const HUGE: u64 = 10_000_000_000_000_000_000;

/// A number read so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct NumRead {
    num: Num,
    /// Written with a leading `-`.
    neg: bool,
    /// Fraction digits so far (counted only when bounded).
    frac_len: u8,
    /// The integer part (up to [`HUGE`]; counted only when bounded).
    int: u64,
    /// The fraction digits as an integer.
    frac: u64,
}

/// 10^`n`, saturating.
fn pow10(n: u32) -> i128 {
    10i128.checked_pow(n).unwrap_or(i128::MAX)
}

impl NumRead {
    /// After the number's first byte; `None` if `b` cannot start one in `range`.
    pub(super) fn start(b: u8, range: Option<&Range>) -> Option<Self> {
        let num = match b {
            b'-' => Num::Minus,
            b'0' => Num::Zero,
            b'1'..=b'9' => Num::Int,
            _ => return None,
        };
        let r = Self {
            num,
            neg: b == b'-',
            frac_len: 0,
            int: if b == b'-' { 0 } else { (b - b'0') as u64 },
            frac: 0,
        };
        r.reachable(range).then_some(r)
    }

    /// Whether the number may end here.
    pub(super) fn complete(&self, range: Option<&Range>) -> bool {
        matches!(self.num, Num::Zero | Num::Int | Num::Frac | Num::Exp)
            && range.is_none_or(|r| {
                let v = self.magnitude(r.scale);
                let v = if self.neg { -v } else { v };
                (r.lo..=r.hi).contains(&v)
            })
    }

    /// The state after `b`, or `None` if `b` does not continue the number (an integer has
    /// no fraction or exponent; a bounded number no exponent, no more than
    /// [`BOUNDED_DECIMALS`] places, and no digit that leaves the range out of reach).
    pub(super) fn next(self, b: u8, integer: bool, range: Option<&Range>) -> Option<Self> {
        use Num::*;
        let num = match (self.num, b) {
            (Minus, b'0') => Zero,
            (Minus, b'1'..=b'9') => Int,
            (Int, b'0'..=b'9') => Int,
            (Zero | Int, b'.') => Dot,
            (Dot | Frac, b'0'..=b'9') => Frac,
            (Zero | Int | Frac, b'e' | b'E') => E,
            (E, b'+' | b'-') => ESign,
            (E | ESign | Exp, b'0'..=b'9') => Exp,
            _ => return None,
        };
        if integer && !matches!(num, Zero | Int) {
            return None;
        }
        let Some(range) = range else {
            return Some(Self { num, ..self });
        };
        let d = u64::from(b.wrapping_sub(b'0'));
        let next = match num {
            E | ESign | Exp => return None,
            Frac if u32::from(self.frac_len) >= BOUNDED_DECIMALS => return None,
            Frac => Self {
                num,
                frac: self.frac * 10 + d,
                frac_len: self.frac_len + 1,
                ..self
            },
            Zero | Int => Self {
                num,
                int: self.int.saturating_mul(10).saturating_add(d).min(HUGE),
                ..self
            },
            _ => Self { num, ..self },
        };
        next.reachable(Some(range)).then_some(next)
    }

    /// The value written so far, in units of 10^-`scale` (the integer part alone before a
    /// fraction).
    fn magnitude(&self, scale: u32) -> i128 {
        let frac = if self.frac_len == 0 {
            0
        } else {
            self.frac as i128 * pow10(scale.saturating_sub(self.frac_len as u32))
        };
        (self.int as i128).saturating_mul(pow10(scale)) + frac
    }

    /// Whether some ending of the text so far lies in `range`. The endings' magnitudes form
    /// ranges of the grid: after `p.f` (n places) `[p.f, p.f + 10^-n)`; after the integer
    /// digits `p`, `[p·10^k, (p+1)·10^k)` for every k more digits (fractions included for a
    /// number).
    fn reachable(&self, range: Option<&Range>) -> bool {
        let Some(r) = range else {
            return true;
        };
        let one = pow10(r.scale);
        let meets = |lo: i128, hi: i128| {
            let (lo, hi) = if self.neg { (-hi, -lo) } else { (lo, hi) };
            lo <= r.hi && hi >= r.lo
        };
        match self.num {
            Num::Minus => meets(0, i128::MAX),
            Num::Zero => meets(0, one - 1),
            Num::Dot => {
                let p = self.magnitude(r.scale);
                meets(p, p + one - 1)
            }
            Num::Frac => {
                let v = self.magnitude(r.scale);
                let step = pow10(r.scale.saturating_sub(self.frac_len as u32));
                meets(v, v + step - 1)
            }
            Num::Int => {
                let p = self.int as i128;
                (0..40).any(|k| {
                    let lo = p.saturating_mul(pow10(k)).saturating_mul(one);
                    let hi = (p + 1).saturating_mul(pow10(k)).saturating_mul(one);
                    meets(lo, hi.saturating_sub(1))
                })
            }
            // Not reached: a bounded number has no exponent.
            Num::E | Num::ESign | Num::Exp => false,
        }
    }
}

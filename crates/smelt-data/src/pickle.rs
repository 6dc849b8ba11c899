//! A small, safe reader for Python pickles (protocols 0–5, the binary opcodes), enough to load
//! numpy arrays (MNIST's `mnist.pkl.gz`) and PyTorch `state_dict` pickles without Python.
//!
//! The reader never executes anything: `GLOBAL` + `REDUCE` become [`Value::Call`] nodes that the
//! caller interprets (see [`crate::numpy::NdArray::from_value`]). Every length read from the stream is checked
//! against the bytes that remain, values nest at most 256 deep, and the copies `DUP` and the memo
//! make are bounded by the input's size, so a hostile or truncated file gives an error, never a
//! panic, a stack overflow or an allocation out of proportion to the input.
//!
//! Python mutates objects in place (`BUILD`, `APPEND`, `SETITEMS`) after they were memoized;
//! values here are immutable trees, so a mutation of the value on top of the stack is copied
//! back into its memo slot. A mutation that happens after the value left the stack is not seen
//! by later memo reads (pickle writers do not produce that).

use std::rc::Rc;

/// A decoded pickle object.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An integer that fits in 64 bits (larger `LONG1` values are an error).
    Int(i64),
    /// A float.
    Float(f64),
    /// Python 2 `str` or Python 3 `bytes`; shared so memo copies of large buffers are free.
    Bytes(Rc<Vec<u8>>),
    /// Python 3 `str` (Python 2 `unicode`).
    Str(String),
    /// A tuple.
    Tuple(Vec<Value>),
    /// A list.
    List(Vec<Value>),
    /// A dict, in insertion order.
    Dict(Vec<(Value, Value)>),
    /// A reference to `module.name`, not resolved.
    Global {
        /// Module path, e.g. `numpy.core.multiarray`.
        module: String,
        /// Attribute name, e.g. `_reconstruct`.
        name: String,
    },
    /// `callable(*args)` (`REDUCE`, `NEWOBJ`), not evaluated.
    Call {
        /// What would be called, usually a [`Value::Global`].
        callable: Box<Value>,
        /// The argument tuple.
        args: Box<Value>,
    },
    /// `obj.__setstate__(state)` (`BUILD`), not evaluated.
    Build {
        /// The object being built.
        obj: Box<Value>,
        /// Its state.
        state: Box<Value>,
    },
    /// A persistent id (`BINPERSID`), used by PyTorch for tensor storages.
    PersistentId(Box<Value>),
}

impl Value {
    /// Whether this is a `Global` naming `module.name`.
    pub fn is_global(&self, module: &str, name: &str) -> bool {
        matches!(self, Value::Global { module: m, name: n } if m == module && n == name)
    }

    /// The elements of a tuple or list.
    pub fn as_seq(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(v) | Value::List(v) => Some(v),
            _ => None,
        }
    }

    /// Integer value, if this is an int.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }

    /// Text of a `str`, or of a Python 2 `str` (bytes) that is valid UTF-8.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            Value::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }
}

/// Why a pickle could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PickleError {
    /// The stream ended in the middle of an opcode or its argument.
    #[error("pickle truncated at byte {0}")]
    Truncated(usize),
    /// An opcode this reader does not implement.
    #[error("unsupported pickle opcode 0x{op:02x} at byte {at}")]
    Unsupported {
        /// The opcode byte.
        op: u8,
        /// Its offset.
        at: usize,
    },
    /// The opcodes do not form a valid program (stack underflow, missing mark, bad memo key).
    #[error("malformed pickle at byte {at}: {what}")]
    Malformed {
        /// Offset of the offending opcode.
        at: usize,
        /// What was wrong.
        what: String,
    },
}

/// Parses a whole pickle and returns the object `STOP` leaves on the stack.
pub fn parse(data: &[u8]) -> Result<Value, PickleError> {
    Machine::new(data).run()
}

/// A stack entry: a value, the memo key it was last stored under (Python mutates objects in
/// place: BUILD, APPEND, SETITEMS, so a mutation must reach the memo copy too), and how many
/// levels of nesting it holds (at most one more than its true depth).
enum Slot {
    Value(Value, Option<u64>, u32),
    Mark,
}

/// Values nested deeper than this are refused: a deeper tree would overflow the stack when
/// it is walked, cloned or dropped (`)` then a million `TUPLE1` is a valid pickle).
const MAX_DEPTH: u32 = 256;

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    op_at: usize,
    stack: Vec<Slot>,
    /// Memoized values and their nesting.
    memo: std::collections::HashMap<u64, (Value, u32)>,
    /// The deepest nesting among the values the current opcode has popped.
    popped: u32,
    /// The deepest nesting any value has reached.
    deepest: u32,
    /// Value nodes that copies (DUP, memo puts and gets) may still make: each copy is a
    /// deep clone, so without a bound `]` and forty DUP + TUPLE2 would ask for 2^40 nodes.
    copy_budget: usize,
}

impl<'a> Machine<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            pos: 0,
            op_at: 0,
            stack: Vec::new(),
            memo: Default::default(),
            popped: 0,
            deepest: 0,
            copy_budget: copy_limit(data.len()),
        }
    }

    fn bad(&self, what: impl Into<String>) -> PickleError {
        PickleError::Malformed {
            at: self.op_at,
            what: what.into(),
        }
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], PickleError> {
        let remaining = (self.data.len() - self.pos) as u64;
        if n > remaining {
            return Err(PickleError::Truncated(self.pos));
        }
        let s = &self.data[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, PickleError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32, PickleError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64, PickleError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn line(&mut self) -> Result<&'a str, PickleError> {
        let rest = &self.data[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(PickleError::Truncated(self.data.len()))?;
        self.pos += end + 1;
        std::str::from_utf8(&rest[..end]).map_err(|_| self.bad("non-UTF-8 text line"))
    }

    /// Pushes a value built from what the current opcode popped (a leaf when nothing).
    fn push(&mut self, v: Value) {
        self.push_with(v, None, self.popped + 1);
    }

    fn push_with(&mut self, v: Value, key: Option<u64>, depth: u32) {
        self.deepest = self.deepest.max(depth);
        self.stack.push(Slot::Value(v, key, depth));
    }

    /// After an in-place change of the top value from what was popped: its nesting grows to
    /// hold it (`wrap`: the value itself went one level down, as `set_items` does).
    fn grow_top(&mut self, wrap: bool) {
        let (popped, extra) = (self.popped, wrap as u32);
        if let Some(Slot::Value(_, _, d)) = self.stack.last_mut() {
            *d = (*d + extra).max(popped + 1 + extra);
            self.deepest = self.deepest.max(*d);
        }
    }

    /// Charges a copy of `v` to the budget, or refuses it.
    fn charge(&mut self, v: &Value) -> Result<(), PickleError> {
        let n = nodes(v, self.copy_budget);
        if n > self.copy_budget {
            return Err(self.bad(format!(
                "copies of memoized or duplicated values exceed {} nodes",
                copy_limit(self.data.len())
            )));
        }
        self.copy_budget -= n;
        Ok(())
    }

    fn pop(&mut self) -> Result<Value, PickleError> {
        self.pop_keyed().map(|(v, _)| v)
    }

    fn pop_keyed(&mut self) -> Result<(Value, Option<u64>), PickleError> {
        match self.stack.pop() {
            Some(Slot::Value(v, k, d)) => {
                self.popped = self.popped.max(d);
                Ok((v, k))
            }
            Some(Slot::Mark) => Err(self.bad("found a mark where a value was expected")),
            None => Err(self.bad("stack underflow")),
        }
    }

    fn top(&mut self) -> Result<&mut Value, PickleError> {
        let at = self.op_at;
        match self.stack.last_mut() {
            Some(Slot::Value(v, _, _)) => Ok(v),
            _ => Err(PickleError::Malformed {
                at,
                what: "expected a value on top of the stack".into(),
            }),
        }
    }

    /// Pops everything above the topmost mark, and the mark.
    fn pop_mark(&mut self) -> Result<Vec<Value>, PickleError> {
        let mark = self
            .stack
            .iter()
            .rposition(|s| matches!(s, Slot::Mark))
            .ok_or_else(|| self.bad("no mark on the stack"))?;
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        for s in &items {
            if let Slot::Value(_, _, d) = s {
                self.popped = self.popped.max(*d);
            }
        }
        Ok(items
            .into_iter()
            .map(|s| match s {
                Slot::Value(v, _, _) => v,
                Slot::Mark => unreachable!("rposition found the topmost mark"),
            })
            .collect())
    }

    fn bytes(&mut self, n: u64) -> Result<Value, PickleError> {
        Ok(Value::Bytes(Rc::new(self.take(n)?.to_vec())))
    }

    fn text(&mut self, n: u64) -> Result<Value, PickleError> {
        let raw = self.take(n)?;
        let s = std::str::from_utf8(raw).map_err(|_| self.bad("invalid UTF-8 in a str"))?;
        Ok(Value::Str(s.to_string()))
    }

    fn memo_put(&mut self, key: u64) -> Result<(), PickleError> {
        let Some(Slot::Value(v, k, d)) = self.stack.last_mut() else {
            return Err(self.bad("expected a value on top of the stack"));
        };
        *k = Some(key);
        let (v, d) = (v.clone(), *d);
        self.charge(&v)?;
        self.memo.insert(key, (v, d));
        Ok(())
    }

    /// After an in-place mutation of the top value, refreshes its memo copy.
    fn memo_refresh(&mut self) -> Result<(), PickleError> {
        if let Some(Slot::Value(v, Some(k), d)) = self.stack.last() {
            let (v, k, d) = (v.clone(), *k, *d);
            self.charge(&v)?;
            self.memo.insert(k, (v, d));
        }
        Ok(())
    }

    fn memo_get(&mut self, key: u64) -> Result<(), PickleError> {
        let (v, d) = self
            .memo
            .get(&key)
            .cloned()
            .ok_or_else(|| self.bad(format!("memo key {key} was never stored")))?;
        self.charge(&v)?;
        self.push_with(v, None, d);
        Ok(())
    }

    fn run(mut self) -> Result<Value, PickleError> {
        loop {
            if self.deepest > MAX_DEPTH {
                return Err(self.bad(format!("values nested deeper than {MAX_DEPTH}")));
            }
            self.popped = 0;
            self.op_at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        return Err(self.bad(format!("pickle protocol {proto} is newer than 5")));
                    }
                }
                0x95 => {
                    self.u64()?; // FRAME: a size hint only
                }
                b'.' => return self.pop(),
                b'(' => self.stack.push(Slot::Mark),
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let Some(Slot::Value(v, _, d)) = self.stack.last() else {
                        return Err(self.bad("DUP with no value on top"));
                    };
                    let (v, d) = (v.clone(), *d);
                    self.charge(&v)?;
                    self.push_with(v, None, d);
                }
                b'N' => self.push(Value::None),
                0x88 => self.push(Value::Bool(true)),
                0x89 => self.push(Value::Bool(false)),
                b'J' => {
                    let v = self.u32()? as i32;
                    self.push(Value::Int(v as i64));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v as i64));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Value::Int(v as i64));
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    let raw = self.take(n as u64)?;
                    if n > 8 {
                        return Err(self.bad("LONG1 integer wider than 64 bits"));
                    }
                    let fill = if n > 0 && raw[n - 1] & 0x80 != 0 {
                        0xff
                    } else {
                        0
                    };
                    let mut le = [fill; 8];
                    le[..n].copy_from_slice(raw);
                    self.push(Value::Int(i64::from_le_bytes(le)));
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take(8)?.try_into().unwrap());
                    self.push(Value::Float(v));
                }
                b'I' => {
                    let line = self.line()?;
                    let v = match line {
                        "01" => Value::Bool(true),
                        "00" => Value::Bool(false),
                        s => Value::Int(s.parse().map_err(|_| self.bad("bad INT literal"))?),
                    };
                    self.push(v);
                }
                b'U' => {
                    let n = self.u8()? as u64;
                    let v = self.bytes(n)?;
                    self.push(v);
                }
                b'T' => {
                    let n = self.u32()? as u64;
                    let v = self.bytes(n)?;
                    self.push(v);
                }
                b'C' => {
                    let n = self.u8()? as u64;
                    let v = self.bytes(n)?;
                    self.push(v);
                }
                b'B' => {
                    let n = self.u32()? as u64;
                    let v = self.bytes(n)?;
                    self.push(v);
                }
                0x8e => {
                    let n = self.u64()?;
                    let v = self.bytes(n)?;
                    self.push(v);
                }
                0x8c => {
                    let n = self.u8()? as u64;
                    let v = self.text(n)?;
                    self.push(v);
                }
                b'X' => {
                    let n = self.u32()? as u64;
                    let v = self.text(n)?;
                    self.push(v);
                }
                0x8d => {
                    let n = self.u64()?;
                    let v = self.text(n)?;
                    self.push(v);
                }
                b')' => self.push(Value::Tuple(Vec::new())),
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err(self.bad("stack underflow building a tuple"));
                    }
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push(Value::Tuple(items));
                }
                b']' => self.push(Value::List(Vec::new())),
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Value::List(items));
                }
                b'a' => {
                    let v = self.pop()?;
                    match self.top()? {
                        Value::List(l) => l.push(v),
                        _ => return Err(self.bad("APPEND to a non-list")),
                    }
                    self.grow_top(false);
                    self.memo_refresh()?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    match self.top()? {
                        Value::List(l) => l.extend(items),
                        _ => return Err(self.bad("APPENDS to a non-list")),
                    }
                    self.grow_top(false);
                    self.memo_refresh()?;
                }
                b'}' => self.push(Value::Dict(Vec::new())),
                b'd' => {
                    let items = self.pop_mark()?;
                    let d = pairs(items).ok_or_else(|| self.bad("odd number of dict items"))?;
                    self.push(Value::Dict(d));
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let wrapped = self.set_items(vec![(k, v)])?;
                    self.grow_top(wrapped);
                    self.memo_refresh()?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let d = pairs(items).ok_or_else(|| self.bad("odd number of dict items"))?;
                    let wrapped = self.set_items(d)?;
                    self.grow_top(wrapped);
                    self.memo_refresh()?;
                }
                0x8f => self.push(Value::List(Vec::new())), // EMPTY_SET, kept as a list
                0x90 => {
                    let items = self.pop_mark()?;
                    match self.top()? {
                        Value::List(l) => l.extend(items),
                        _ => return Err(self.bad("ADDITEMS to a non-set")),
                    }
                    self.grow_top(false);
                    self.memo_refresh()?;
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    self.push(Value::List(items));
                }
                b'c' => {
                    let module = self.line()?.to_string();
                    let name = self.line()?.to_string();
                    self.push(Value::Global { module, name });
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(module), Value::Str(name)) => {
                            self.push(Value::Global { module, name })
                        }
                        _ => return Err(self.bad("STACK_GLOBAL needs two strings")),
                    }
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    self.push(Value::Call {
                        callable: Box::new(callable),
                        args: Box::new(args),
                    });
                }
                0x92 => {
                    let _kwargs = self.pop()?;
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    self.push(Value::Call {
                        callable: Box::new(callable),
                        args: Box::new(args),
                    });
                }
                b'b' => {
                    let state = self.pop()?;
                    let (obj, key) = self.pop_keyed()?;
                    let built = Value::Build {
                        obj: Box::new(obj),
                        state: Box::new(state),
                    };
                    self.push_with(built, key, self.popped + 1);
                    self.memo_refresh()?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.push(Value::PersistentId(Box::new(pid)));
                }
                b'q' => {
                    let k = self.u8()? as u64;
                    self.memo_put(k)?;
                }
                b'r' => {
                    let k = self.u32()? as u64;
                    self.memo_put(k)?;
                }
                0x94 => {
                    let k = self.memo.len() as u64;
                    self.memo_put(k)?;
                }
                b'h' => {
                    let k = self.u8()? as u64;
                    self.memo_get(k)?;
                }
                b'j' => {
                    let k = self.u32()? as u64;
                    self.memo_get(k)?;
                }
                _ => return Err(PickleError::Unsupported { op, at: self.op_at }),
            }
        }
    }

    /// Adds `items` to the mapping on top; `Ok(true)` when that wrapped the top value one
    /// level down (a mapping built by REDUCE).
    fn set_items(&mut self, items: Vec<(Value, Value)>) -> Result<bool, PickleError> {
        match self.top()? {
            Value::Dict(d) => {
                d.extend(items);
                Ok(false)
            }
            // An OrderedDict (or other mapping) built by REDUCE: keep its items as the state.
            Value::Call { .. } | Value::Build { .. } => {
                let obj = std::mem::replace(self.top()?, Value::None);
                *self.top()? = Value::Build {
                    obj: Box::new(obj),
                    state: Box::new(Value::Dict(items)),
                };
                Ok(true)
            }
            _ => Err(self.bad("SETITEM on a non-dict")),
        }
    }
}

/// Value nodes copies may make in all for an input of `len` bytes.
fn copy_limit(len: usize) -> usize {
    16 * len + (1 << 20)
}

/// The nodes of `v`, counting no further than just past `limit`.
fn nodes(v: &Value, limit: usize) -> usize {
    let mut n = 1;
    let add = |c: &Value, n: &mut usize| {
        if *n <= limit {
            *n += nodes(c, limit - *n);
        }
    };
    match v {
        Value::Tuple(items) | Value::List(items) => items.iter().for_each(|c| add(c, &mut n)),
        Value::Dict(pairs) => pairs.iter().for_each(|(k, c)| {
            add(k, &mut n);
            add(c, &mut n);
        }),
        Value::Call {
            callable: a,
            args: b,
        }
        | Value::Build { obj: a, state: b } => {
            add(a, &mut n);
            add(b, &mut n);
        }
        Value::PersistentId(a) => add(a, &mut n),
        _ => {}
    }
    n
}

fn pairs(items: Vec<Value>) -> Option<Vec<(Value, Value)>> {
    if !items.len().is_multiple_of(2) {
        return None;
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Some(out)
}

#[cfg(test)]
#[path = "pickle_tests.rs"]
mod tests;

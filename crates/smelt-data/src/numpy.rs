//! numpy arrays inside pickles: interpreting the `_reconstruct` + `__setstate__` form that
//! [`crate::pickle`] leaves as data, without running numpy.

use std::rc::Rc;

use crate::pickle::Value;

/// A numpy array recovered from its pickled form.
#[derive(Debug, Clone, PartialEq)]
pub struct NdArray {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// numpy type string with byte order, e.g. `<f4`, `<i8`, `|u1`.
    pub dtype: String,
    /// Raw element bytes in C order; `len == product(shape) * itemsize`.
    pub data: Rc<Vec<u8>>,
}

impl NdArray {
    /// Interprets `numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')` + `__setstate__`
    /// (the form numpy has pickled arrays in since 2006).
    pub fn from_value(v: &Value) -> Result<Self, String> {
        let Value::Build { obj, state } = v else {
            return Err("not a pickled numpy array (no BUILD)".into());
        };
        let Value::Call { callable, .. } = obj.as_ref() else {
            return Err("not a pickled numpy array (no _reconstruct call)".into());
        };
        if !(callable.is_global("numpy.core.multiarray", "_reconstruct")
            || callable.is_global("numpy._core.multiarray", "_reconstruct"))
        {
            return Err(format!("expected numpy _reconstruct, found {callable:?}"));
        }
        let st = state.as_seq().ok_or("array state is not a tuple")?;
        if st.len() != 5 {
            return Err(format!("array state has {} fields, expected 5", st.len()));
        }
        let shape = st[1]
            .as_seq()
            .ok_or("array shape is not a tuple")?
            .iter()
            .map(|d| {
                d.as_int()
                    .and_then(|i| usize::try_from(i).ok())
                    .ok_or("bad dimension")
            })
            .collect::<Result<Vec<_>, _>>()?;
        let dtype = dtype_string(&st[2])?;
        if st[3] == Value::Bool(true) {
            return Err("Fortran-ordered arrays are not supported".into());
        }
        let data = match &st[4] {
            Value::Bytes(b) => b.clone(),
            // Python 3 writing protocol 2: `_codecs.encode(text, 'latin1')`.
            Value::Call { callable, args } if callable.is_global("_codecs", "encode") => {
                let text = args
                    .as_seq()
                    .and_then(|a| a.first())
                    .and_then(|t| t.as_text())
                    .ok_or("bad _codecs.encode payload")?;
                Rc::new(
                    text.chars()
                        .map(|c| u8::try_from(c as u32).map_err(|_| "non-latin1 char"))
                        .collect::<Result<Vec<u8>, _>>()?,
                )
            }
            other => return Err(format!("array data is not bytes: {:?}", kind(other))),
        };
        let itemsize: usize = dtype[2..].parse().map_err(|_| "bad dtype size")?;
        let count = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or("shape overflows")?;
        if count.checked_mul(itemsize) != Some(data.len()) {
            return Err(format!(
                "array data has {} bytes, shape {shape:?} × {itemsize} needs {}",
                data.len(),
                count.saturating_mul(itemsize)
            ));
        }
        Ok(Self { shape, dtype, data })
    }

    /// Elements as f32 (dtype must be `<f4`).
    pub fn to_f32(&self) -> Result<Vec<f32>, String> {
        self.expect_dtype("<f4")?;
        Ok(self
            .data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect())
    }

    /// Elements as i64 (dtype must be `<i8`).
    pub fn to_i64(&self) -> Result<Vec<i64>, String> {
        self.expect_dtype("<i8")?;
        Ok(self
            .data
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect())
    }

    fn expect_dtype(&self, want: &str) -> Result<(), String> {
        if self.dtype == want {
            Ok(())
        } else {
            Err(format!("expected dtype {want}, found {}", self.dtype))
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::None => "None",
        Value::Bool(_) => "bool",
        Value::Int(_) => "int",
        Value::Float(_) => "float",
        Value::Bytes(_) => "bytes",
        Value::Str(_) => "str",
        Value::Tuple(_) => "tuple",
        Value::List(_) => "list",
        Value::Dict(_) => "dict",
        Value::Global { .. } => "global",
        Value::Call { .. } => "call",
        Value::Build { .. } => "build",
        Value::PersistentId(_) => "persistent id",
    }
}

/// `numpy.dtype('f4', 0, 1)` + state `(3, '<', ...)` → `"<f4"`.
pub(crate) fn dtype_string(v: &Value) -> Result<String, String> {
    let Value::Build { obj, state } = v else {
        return Err("dtype is not a BUILD".into());
    };
    let Value::Call { callable, args } = obj.as_ref() else {
        return Err("dtype is not a numpy.dtype call".into());
    };
    if !callable.is_global("numpy", "dtype") {
        return Err(format!("expected numpy.dtype, found {callable:?}"));
    }
    let code = args
        .as_seq()
        .and_then(|a| a.first())
        .and_then(|c| c.as_text())
        .ok_or("dtype code missing")?;
    let order = state
        .as_seq()
        .and_then(|s| s.get(1))
        .and_then(|o| o.as_text())
        .ok_or("dtype byte order missing")?;
    if order == ">" {
        return Err(format!("big-endian dtype >{code} is not supported"));
    }
    // ASCII only, so the slices below (`code[1..]`, the dtype's `[2..]`) cut between bytes.
    if code.len() < 2 || !code.is_ascii() || !code[1..].chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("unsupported dtype code {code:?}"));
    }
    let order = if order == "|" { "|" } else { "<" };
    Ok(format!("{order}{code}"))
}

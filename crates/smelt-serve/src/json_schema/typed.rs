//! The typed part of the schema compiler: a schema by its `type` (objects, arrays and tuples,
//! strings with bounds and patterns, numbers with bounds).

use super::pattern::{self, Pattern};
use super::{
    ANY, ANY_OBJECT, BOOLEAN, Compiler, INTEGER, Json, MAX_CHOICES, MAX_PATTERN_STATES_IN_ALL,
    NULL, NUMBER, Node, NodeId, Prop, Range, SchemaError, err, strings,
};

impl Compiler<'_> {
    /// A schema by its `type` (or, without one, by the keywords it has).
    pub(super) fn typed(&mut self, s: &Json, path: &str) -> Result<NodeId, SchemaError> {
        // Without a type, the keywords say which.
        let has = |keys: &[&str]| keys.iter().any(|k| s.get(k).is_some());
        let kinds: Vec<&str> = match s.get("type") {
            Some(Json::String(t)) => vec![t.as_str()],
            Some(Json::Array(ts)) => strings(ts, &format!("{path}/type"))?,
            Some(_) => return Err(err(&format!("{path}/type"), "must be a string or a list")),
            None if has(&["properties", "required", "additionalProperties"]) => vec!["object"],
            None if has(&["items", "prefixItems", "minItems", "maxItems"]) => vec!["array"],
            None if has(&["minLength", "maxLength", "pattern", "format"]) => vec!["string"],
            None if has(&["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"]) => {
                vec!["number"]
            }
            None => return Ok(ANY),
        };
        let mut ids = Vec::new();
        for kind in kinds {
            ids.push(match kind {
                "object" => self.object(s, path)?,
                "array" => self.array(s, path)?,
                "string" => {
                    let (min, max) = self.bounds(s, path, "minLength", "maxLength")?;
                    let pattern = self.pattern(s, path, min, max)?;
                    self.push(Node::String { min, max, pattern }, path)?
                }
                "number" | "integer" => {
                    let integer = kind == "integer";
                    match Range::of(s, integer, path)? {
                        None if integer => INTEGER,
                        None => NUMBER,
                        range => self.push(Node::Number { integer, range }, path)?,
                    }
                }
                "boolean" => BOOLEAN,
                "null" => NULL,
                other => {
                    return Err(err(
                        &format!("{path}/type"),
                        format!("unknown type {other:?}"),
                    ));
                }
            });
        }
        self.union(ids, path)
    }

    /// An array: `items`, a tuple's `prefixItems` (or draft 7's `items` list), item counts.
    fn array(&mut self, s: &Json, path: &str) -> Result<NodeId, SchemaError> {
        let (key, tuple) = match (s.get("prefixItems"), s.get("items")) {
            (Some(_), Some(Json::Array(_))) => {
                return Err(err(path, "prefixItems together with a list of items"));
            }
            (Some(t), _) => ("prefixItems", Some(t)),
            (None, Some(t @ Json::Array(_))) => ("items", Some(t)),
            (None, _) => ("", None),
        };
        let prefix = match tuple {
            None => vec![],
            Some(Json::Array(list)) => list
                .iter()
                .enumerate()
                .map(|(i, item)| self.node(item, &format!("{path}/{key}/{i}")))
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => return Err(err(&format!("{path}/{key}"), "must be an array")),
        };
        let (min, mut max) = self.bounds(s, path, "minItems", "maxItems")?;
        let items = match s.get("items") {
            None | Some(Json::Array(_)) => ANY,
            // No items past the tuple.
            Some(Json::Bool(false)) => {
                max = max.min(prefix.len() as u32);
                if min > max {
                    return Err(err(
                        path,
                        format!("minItems {min} is over the {max} items allowed"),
                    ));
                }
                ANY
            }
            Some(items) => self.node(items, &format!("{path}/items"))?,
        };
        self.push(
            Node::Array {
                items,
                prefix,
                min,
                max,
            },
            path,
        )
    }

    /// A string's `pattern` or `format` (one of them at most), compiled for its lengths
    /// `min..=max`.
    fn pattern(
        &mut self,
        s: &Json,
        path: &str,
        min: u32,
        max: u32,
    ) -> Result<Option<u16>, SchemaError> {
        let source = match (s.get("pattern"), s.get("format")) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => return Err(err(path, "pattern together with format")),
            (Some(Json::String(p)), None) => p.clone(),
            (Some(_), None) => return Err(err(&format!("{path}/pattern"), "must be a string")),
            (None, Some(Json::String(f))) => pattern::format_pattern(f).ok_or_else(|| {
                err(
                    &format!("{path}/format"),
                    format!(
                        "format {f:?} is not supported (date, time, date-time, uuid, ipv4 \
                         and email are)"
                    ),
                )
            })?,
            (None, Some(_)) => return Err(err(&format!("{path}/format"), "must be a string")),
        };
        let key = if s.get("pattern").is_some() {
            "pattern"
        } else {
            "format"
        };
        let compiled =
            Pattern::new(&source, min, max).map_err(|why| err(&format!("{path}/{key}"), why))?;
        let states: usize = self.g.patterns.iter().map(Pattern::states).sum();
        if states + compiled.states() > MAX_PATTERN_STATES_IN_ALL {
            return Err(err(
                path,
                format!("the patterns need over {MAX_PATTERN_STATES_IN_ALL} states in all"),
            ));
        }
        self.g.patterns.push(compiled);
        Ok(Some((self.g.patterns.len() - 1) as u16))
    }

    fn bounds(&self, s: &Json, path: &str, lo: &str, hi: &str) -> Result<(u32, u32), SchemaError> {
        let get = |k: &str, default: u32| match s.get(k) {
            None => Ok(default),
            Some(Json::Number(n)) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| err(&format!("{path}/{k}"), "must be a non-negative integer")),
            Some(_) => Err(err(
                &format!("{path}/{k}"),
                "must be a non-negative integer",
            )),
        };
        let (min, max) = (get(lo, 0)?, get(hi, u32::MAX)?);
        if min > max {
            return Err(err(path, format!("{lo} {min} is over {hi} {max}")));
        }
        Ok((min, max))
    }

    fn object(&mut self, s: &Json, path: &str) -> Result<NodeId, SchemaError> {
        let listed: &[(String, Json)] = match s.get("properties") {
            None => &[],
            Some(Json::Object(m)) => m,
            Some(_) => return Err(err(&format!("{path}/properties"), "must be an object")),
        };
        if listed.len() > MAX_CHOICES {
            return Err(err(path, format!("over {MAX_CHOICES} properties")));
        }
        let required: Vec<&str> = match s.get("required") {
            None => vec![],
            Some(Json::Array(v)) => strings(v, &format!("{path}/required"))?,
            Some(_) => return Err(err(&format!("{path}/required"), "must be an array")),
        };
        if let Some(r) = required
            .iter()
            .find(|r| !listed.iter().any(|(k, _)| k == *r))
        {
            return Err(err(
                &format!("{path}/required"),
                format!("{r:?} is required but not among the properties"),
            ));
        }
        let mut props = Vec::new();
        let mut keys = Vec::new();
        for (name, sub) in listed {
            if keys.contains(&Json::String(name.clone()).to_text().into_bytes()) {
                return Err(err(path, format!("property {name:?} is listed twice")));
            }
            let escaped = name.replace('~', "~0").replace('/', "~1");
            let node = self.node(sub, &format!("{path}/properties/{escaped}"))?;
            props.push(Prop {
                node,
                required: required.contains(&name.as_str()),
            });
            keys.push(Json::String(name.clone()).to_text().into_bytes());
        }
        let extra = if props.is_empty() {
            match s.get("additionalProperties") {
                None | Some(Json::Bool(true)) => return Ok(ANY_OBJECT),
                Some(Json::Bool(false)) => None,
                Some(sub) => Some(self.node(sub, &format!("{path}/additionalProperties"))?),
            }
        } else {
            None
        };
        let keys = if props.is_empty() {
            2
        } else {
            self.literal_set(keys, path)?
        };
        self.push(Node::Object { props, keys, extra }, path)
    }
}

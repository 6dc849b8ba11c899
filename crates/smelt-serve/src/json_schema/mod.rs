//! JSON Schema → a grammar for constrained decoding (`response_format: json_schema`, OpenAI's
//! structured outputs; vLLM's `guided_json`). [`compile`] turns the schema into a graph of
//! [`Node`]s that [`crate::json_mode::JsonState`] walks byte by byte, so every token drawn keeps
//! the text a prefix of some instance of the schema.
//!
//! The subset is what OpenAI's strict mode and pydantic's `model_json_schema` produce: `type`
//! (one or a list), `properties` + `required`, `additionalProperties`, `items`, `prefixItems`
//! (tuples; `items: false` closes them), `min/maxItems`,
//! `min/maxLength`, `pattern` and the `format`s of [`pattern::format_pattern`] (DFAs over the
//! decoded text, [`pattern`]), `minimum`/`maximum` and their exclusive forms ([`bounds`]),
//! `enum`, `const`, `anyOf`/`oneOf`, one-element `allOf`, `nullable`, and `$ref` into
//! `$defs`/`definitions` (recursion included). Annotations (`title`, `description`, …) are
//! ignored. Any other keyword (`multipleOf`, `patternProperties`, …, or one that narrows an
//! `enum`/`const`) is refused with a clear error rather than ignored: the model would not be
//! held to it. `oneOf` is read as `anyOf`, as xgrammar reads it.
//!
//! Choices the grammar makes, as xgrammar's and OpenAI's strict mode do: an object's listed
//! properties come in the schema's order, optional ones may be left out, and no unlisted one is
//! written (`additionalProperties` applies only to objects that list no properties); `enum` and
//! `const` values are written as serde_json writes them, compactly. The alternatives of an
//! `anyOf` may start alike (two objects, an integer and a number): the recognizer then keeps
//! one reading per alternative until the text tells them apart. The root must be an object,
//! with a finite instance that nests at most [`crate::json_mode::MAX_DEPTH`] containers
//! ([`height`]); elsewhere a value starts only where its shallowest instance still fits.

use std::collections::HashMap;

pub mod bounds;
mod calls;
mod char_graph;
pub mod height;
pub mod pattern;
mod typed;
mod value;

pub use bounds::Range;
pub use calls::{compile_calls, compile_choice, compile_regex, no_parameters};
use pattern::Pattern;
pub use value::Json;

/// A node's index in [`Grammar::nodes`].
pub type NodeId = u32;

/// Any JSON value.
pub const ANY: NodeId = 0;
/// Any object.
pub const ANY_OBJECT: NodeId = 1;
/// Any array.
pub const ANY_ARRAY: NodeId = 2;
/// Any string.
pub const ANY_STRING: NodeId = 3;
/// Any number.
pub const NUMBER: NodeId = 4;
/// `true` or `false`.
pub const BOOLEAN: NodeId = 5;
/// `null`.
pub const NULL: NodeId = 6;
/// An integer (no fraction or exponent).
pub const INTEGER: NodeId = 7;

/// Most values one `enum` (or merged `anyOf` of literals) and most properties one object may
/// have: the recognizer tracks the candidates still matching in a `u64`.
pub const MAX_CHOICES: usize = 64;

/// Longest text of one literal (an `enum` or `const` value as JSON, a property name with its
/// quotes, a choice): the recognizer counts its bytes in a `u16`.
pub const MAX_LITERAL_BYTES: usize = 4096;

/// Most nodes a schema may compile to.
pub const MAX_NODES: usize = 4096;

/// Most DFA states the `pattern`s and `format`s of one schema may hold together (each one
/// at most [`pattern::MAX_PATTERN_STATES`]); a state's row is up to 1 KiB.
pub const MAX_PATTERN_STATES_IN_ALL: usize = 16384;

/// Deepest nesting of inline subschemas.
const MAX_SCHEMA_DEPTH: usize = 64;

/// One kind of value the grammar allows at a place.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// An object.
    Object {
        /// The listed properties, in the order they are written; each optional unless
        /// required.
        props: Vec<Prop>,
        /// Index into [`Grammar::literals`]: each listed property's name as a JSON string,
        /// quotes included.
        keys: u16,
        /// With no `props`: the node of any key's value (`None`: only `{}`).
        extra: Option<NodeId>,
    },
    /// An array.
    Array {
        /// The node of each item past `prefix`.
        items: NodeId,
        /// The nodes of the first items, in order (`prefixItems`, a tuple).
        prefix: Vec<NodeId>,
        /// Fewest items.
        min: u32,
        /// Most items.
        max: u32,
    },
    /// A string (an escape counts as one character).
    String {
        /// Fewest characters.
        min: u32,
        /// Most characters.
        max: u32,
        /// Index into [`Grammar::patterns`]: a pattern the decoded text must match.
        pattern: Option<u16>,
    },
    /// A number.
    Number {
        /// No fraction or exponent.
        integer: bool,
        /// Bounds its value must lie within.
        range: Option<Range>,
    },
    /// One of the texts of a literal set (enum, const, true/false, null).
    Literals {
        /// Index into [`Grammar::literals`].
        set: u16,
    },
    /// A whole text (raw, not JSON) that a pattern matches from start to end (vLLM's
    /// `guided_regex`); only as a raw root.
    Regex {
        /// Index into [`Grammar::patterns`].
        pattern: u16,
    },
    /// One of several nodes (read in parallel while more than one fits the text).
    Union {
        /// The alternatives.
        alts: Vec<NodeId>,
    },
}

/// A listed property of an object.
#[derive(Debug, Clone, PartialEq)]
pub struct Prop {
    /// Its value's node.
    pub node: NodeId,
    /// Whether it must be written.
    pub required: bool,
}

/// A compiled schema: the nodes, the literal sets they name, and each node's first bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Grammar {
    /// (nodes,) the graph; [`ANY`] .. [`INTEGER`] are the fixed nodes.
    pub nodes: Vec<Node>,
    /// (sets,) each a list of at most [`MAX_CHOICES`] texts.
    pub literals: Vec<Vec<Vec<u8>>>,
    /// (patterns,) the `pattern`s and `format`s of strings, compiled.
    pub patterns: Vec<Pattern>,
    /// (nodes,) a 256-bit set of the bytes each node's values can start with.
    pub first: Vec<[u64; 4]>,
    /// (nodes,) containers nested in each node's shallowest instance ([`height::heights`]):
    /// a value starts only where that still fits the recognizer's nesting bound.
    pub height: Vec<u32>,
    /// The top-level node (an object, or for calls an array, or for choices a literal set).
    pub root: NodeId,
    /// The text is the root's bytes alone, with no whitespace before (choices).
    pub raw: bool,
}

/// Why a schema cannot be used, with where in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("json_schema{}: {why}", if path.is_empty() { String::new() } else { format!(" at {path}") })]
pub struct SchemaError {
    /// JSON pointer into the schema (`""` is its root).
    pub path: String,
    /// What is wrong there.
    pub why: String,
}

fn has(set: &[u64; 4], b: u8) -> bool {
    set[b as usize / 64] >> (b % 64) & 1 == 1
}

fn add(set: &mut [u64; 4], b: u8) {
    set[b as usize / 64] |= 1 << (b % 64);
}

impl Grammar {
    /// The fixed nodes, before any schema's.
    fn base() -> Self {
        let nodes = vec![
            Node::Union {
                alts: vec![ANY_OBJECT, ANY_ARRAY, ANY_STRING, NUMBER, BOOLEAN, NULL],
            },
            Node::Object {
                props: vec![],
                keys: 2,
                extra: Some(ANY),
            },
            Node::Array {
                items: ANY,
                prefix: vec![],
                min: 0,
                max: u32::MAX,
            },
            Node::String {
                min: 0,
                max: u32::MAX,
                pattern: None,
            },
            Node::Number {
                integer: false,
                range: None,
            },
            Node::Literals { set: 0 },
            Node::Literals { set: 1 },
            Node::Number {
                integer: true,
                range: None,
            },
        ];
        Self {
            nodes,
            // 0: booleans, 1: null, 2: the (no) listed keys of any object.
            literals: vec![
                vec![b"true".to_vec(), b"false".to_vec()],
                vec![b"null".to_vec()],
                vec![],
            ],
            patterns: vec![],
            first: vec![],
            height: vec![],
            root: ANY_OBJECT,
            raw: false,
        }
    }

    /// JSON mode (`response_format: json_object`): any one object.
    pub fn json_object() -> Self {
        let mut g = Self::base();
        // The fixed nodes have no overlapping unions and no cycles without a container.
        g.first = first_bytes(&g).unwrap_or_default();
        g.height = height::heights(&g);
        g
    }

    /// Whether a value of `node` can start with `b`.
    pub fn starts(&self, node: NodeId, b: u8) -> bool {
        has(&self.first[node as usize], b)
    }
}

/// Compiles a JSON Schema (see the module doc for the subset) into a [`Grammar`].
pub fn compile(schema: &Json) -> Result<Grammar, SchemaError> {
    let mut c = Compiler::new(schema, Grammar::base(), HashMap::new());
    let root = c.node(schema, "")?;
    let (g, paths) = (c.g, c.paths);
    let g = finish(g, &paths, root)?;
    if g.first[root as usize] != only(b'{') {
        return Err(SchemaError {
            path: String::new(),
            why: "the root must be an object (as OpenAI's structured outputs require)".into(),
        });
    }
    Ok(g)
}

/// The set holding only `b`.
fn only(b: u8) -> [u64; 4] {
    let mut set = [0u64; 4];
    add(&mut set, b);
    set
}

/// Sets `g`'s root, first bytes and heights; refuses a root with no finite instance (or none
/// within the nesting bound).
fn finish(
    mut g: Grammar,
    paths: &HashMap<NodeId, String>,
    root: NodeId,
) -> Result<Grammar, SchemaError> {
    g.root = root;
    g.first = first_bytes(&g).map_err(|(node, why)| SchemaError {
        path: paths.get(&node).cloned().unwrap_or_default(),
        why,
    })?;
    g.height = height::heights(&g);
    height::check_root(&g, paths)?;
    Ok(g)
}

/// Every node's first-byte set; `Err((node, why))` where a `$ref` loops back to itself without
/// an object or array between.
fn first_bytes(g: &Grammar) -> Result<Vec<[u64; 4]>, (NodeId, String)> {
    // 0: not yet, 1: in progress, 2: done.
    let mut state = vec![0u8; g.nodes.len()];
    let mut first = vec![[0u64; 4]; g.nodes.len()];
    fn visit(
        g: &Grammar,
        n: NodeId,
        state: &mut [u8],
        first: &mut [[u64; 4]],
    ) -> Result<[u64; 4], (NodeId, String)> {
        let i = n as usize;
        match state[i] {
            2 => return Ok(first[i]),
            1 => {
                return Err((
                    n,
                    "a $ref refers back to itself with nothing written between".into(),
                ));
            }
            _ => {}
        }
        state[i] = 1;
        let mut set = [0u64; 4];
        match &g.nodes[i] {
            Node::Object { .. } => add(&mut set, b'{'),
            Node::Array { .. } => add(&mut set, b'['),
            Node::String { .. } => add(&mut set, b'"'),
            Node::Number { .. } => {
                for b in b"-0123456789" {
                    add(&mut set, *b);
                }
            }
            Node::Literals { set: s } => {
                for text in &g.literals[*s as usize] {
                    if let Some(&b) = text.first() {
                        add(&mut set, b);
                    }
                }
            }
            Node::Regex { pattern } => {
                let p = &g.patterns[*pattern as usize];
                for b in 0..=255u8 {
                    if p.continues(p.start, 0, b).is_some() {
                        add(&mut set, b);
                    }
                }
            }
            Node::Union { alts } => {
                for &a in alts {
                    let alt = visit(g, a, state, first)?;
                    for (s, a) in set.iter_mut().zip(alt) {
                        *s |= a;
                    }
                }
            }
        }
        state[i] = 2;
        first[i] = set;
        Ok(set)
    }
    for n in 0..g.nodes.len() {
        visit(g, n as NodeId, &mut state, &mut first)?;
    }
    Ok(first)
}

/// Keywords that only describe; they do not constrain the value.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "default",
    "examples",
    "$schema",
    "$id",
    "$comment",
    "readOnly",
    "writeOnly",
    "deprecated",
    // OpenAPI's hint for a oneOf; the alternatives themselves say what is allowed.
    "discriminator",
    "$defs",
    "definitions",
];

/// Keywords this compiler enforces.
const CONSTRAINTS: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "prefixItems",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "enum",
    "const",
    "anyOf",
    "oneOf",
    "allOf",
    "$ref",
    "nullable",
];

struct Compiler<'a> {
    /// The whole schema, which `$ref` pointers index.
    doc: &'a Json,
    g: Grammar,
    /// `$ref` target → its node (an alias filled in once compiled; recursion reuses it).
    refs: HashMap<String, NodeId>,
    /// Union and alias nodes → where in the schema they came from, for errors.
    paths: HashMap<NodeId, String>,
    depth: usize,
}

/// The strings of a list that must hold only strings (`type`, `required`) at `path`.
fn strings<'j>(list: &'j [Json], path: &str) -> Result<Vec<&'j str>, SchemaError> {
    list.iter()
        .map(|v| match v {
            Json::String(t) => Ok(t.as_str()),
            _ => Err(err(path, "must hold strings")),
        })
        .collect()
}

fn err(path: &str, why: impl Into<String>) -> SchemaError {
    SchemaError {
        path: path.to_owned(),
        why: why.into(),
    }
}

impl<'a> Compiler<'a> {
    fn new(doc: &'a Json, g: Grammar, paths: HashMap<NodeId, String>) -> Self {
        Self {
            doc,
            g,
            refs: HashMap::new(),
            paths,
            depth: 0,
        }
    }

    fn push(&mut self, node: Node, path: &str) -> Result<NodeId, SchemaError> {
        if self.g.nodes.len() >= MAX_NODES {
            return Err(err(
                path,
                format!("the schema needs over {MAX_NODES} nodes"),
            ));
        }
        self.g.nodes.push(node);
        let id = (self.g.nodes.len() - 1) as NodeId;
        self.paths.insert(id, path.to_owned());
        Ok(id)
    }

    fn literal_set(&mut self, texts: Vec<Vec<u8>>, path: &str) -> Result<u16, SchemaError> {
        if texts.len() > MAX_CHOICES {
            return Err(err(path, format!("over {MAX_CHOICES} choices")));
        }
        if texts.iter().any(|t| t.len() > MAX_LITERAL_BYTES) {
            return Err(err(
                path,
                format!("a value or property name over {MAX_LITERAL_BYTES} bytes"),
            ));
        }
        if self.g.literals.len() >= u16::MAX as usize {
            return Err(err(path, "too many enums and objects"));
        }
        self.g.literals.push(texts);
        Ok((self.g.literals.len() - 1) as u16)
    }

    fn node(&mut self, s: &Json, path: &str) -> Result<NodeId, SchemaError> {
        if self.depth >= MAX_SCHEMA_DEPTH {
            return Err(err(path, format!("nested deeper than {MAX_SCHEMA_DEPTH}")));
        }
        self.depth += 1;
        let r = self.node_inner(s, path);
        self.depth -= 1;
        r
    }

    fn node_inner(&mut self, s: &Json, path: &str) -> Result<NodeId, SchemaError> {
        let members = match s {
            Json::Bool(true) => return Ok(ANY),
            Json::Bool(false) => return Err(err(path, "the schema `false` allows no value")),
            Json::Object(m) => m,
            _ => return Err(err(path, "a schema must be an object or a boolean")),
        };
        for (k, _) in members {
            if !ANNOTATIONS.contains(&k.as_str()) && !CONSTRAINTS.contains(&k.as_str()) {
                return Err(err(
                    path,
                    format!("keyword {k:?} is not supported: smelt cannot hold the model to it"),
                ));
            }
        }
        let at = |k: &str| format!("{path}/{k}");
        let constraints: Vec<&str> = members
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| CONSTRAINTS.contains(k))
            .collect();
        let alone = |k: &str| -> Result<(), SchemaError> {
            match constraints.iter().find(|&&c| c != k && c != "nullable") {
                Some(other) => Err(err(
                    path,
                    format!("{k} together with {other:?} is not supported"),
                )),
                None => Ok(()),
            }
        };
        let inner = if let Some(r) = s.get("$ref") {
            alone("$ref")?;
            let Json::String(r) = r else {
                return Err(err(&at("$ref"), "must be a string"));
            };
            self.reference(r, &at("$ref"))?
        } else if s.get("enum").is_some() || s.get("const").is_some() {
            // The values are the whole answer; a keyword that narrows them is refused, not
            // ignored.
            let beside = ["enum", "const", "type", "nullable"];
            if let Some(other) = constraints.iter().find(|c| !beside.contains(c)) {
                return Err(err(
                    path,
                    format!("enum or const together with {other:?} is not supported"),
                ));
            }
            self.literals(s, path)?
        } else if let Some(alts) = s.get("anyOf").or_else(|| s.get("oneOf")) {
            let key = if s.get("anyOf").is_some() {
                "anyOf"
            } else {
                "oneOf"
            };
            alone(key)?;
            let Json::Array(alts) = alts else {
                return Err(err(&at(key), "must be an array"));
            };
            let ids = alts
                .iter()
                .enumerate()
                .map(|(i, a)| self.node(a, &format!("{path}/{key}/{i}")))
                .collect::<Result<Vec<_>, _>>()?;
            self.union(ids, path)?
        } else if let Some(all) = s.get("allOf") {
            alone("allOf")?;
            match all {
                Json::Array(v) if v.len() == 1 => self.node(&v[0], &format!("{path}/allOf/0"))?,
                _ => return Err(err(&at("allOf"), "only a one-element allOf is supported")),
            }
        } else {
            self.typed(s, path)?
        };
        match s.get("nullable") {
            Some(Json::Bool(true)) => self.union(vec![inner, NULL], path),
            None | Some(Json::Bool(false)) => Ok(inner),
            Some(_) => Err(err(&at("nullable"), "must be a boolean")),
        }
    }

    /// `$ref` to a JSON pointer in this document (`#`, `#/$defs/Name`, …).
    fn reference(&mut self, r: &str, path: &str) -> Result<NodeId, SchemaError> {
        if let Some(&id) = self.refs.get(r) {
            return Ok(id);
        }
        let Some(pointer) = r.strip_prefix('#') else {
            return Err(err(
                path,
                format!("{r:?}: only references inside the schema (#/...)"),
            ));
        };
        let Some(target) = self.doc.pointer(pointer) else {
            return Err(err(path, format!("{r:?} points at nothing")));
        };
        // An alias node first, so the target may refer back to it.
        let alias = self.push(Node::Union { alts: vec![] }, path)?;
        self.refs.insert(r.to_owned(), alias);
        let id = self.node(target, pointer)?;
        self.g.nodes[alias as usize] = Node::Union { alts: vec![id] };
        Ok(alias)
    }

    /// `enum` or `const`: the values' compact texts.
    fn literals(&mut self, s: &Json, path: &str) -> Result<NodeId, SchemaError> {
        let values: Vec<&Json> = match (s.get("enum"), s.get("const")) {
            (Some(_), Some(_)) => return Err(err(path, "enum together with const")),
            (Some(Json::Array(v)), None) => v.iter().collect(),
            (Some(_), None) => return Err(err(&format!("{path}/enum"), "must be an array")),
            (None, Some(v)) => vec![v],
            (None, None) => vec![],
        };
        if values.is_empty() {
            return Err(err(path, "an empty enum allows no value"));
        }
        let types = match s.get("type") {
            None => None,
            Some(Json::String(t)) => Some(vec![t.as_str()]),
            Some(Json::Array(ts)) => Some(
                ts.iter()
                    .filter_map(|t| match t {
                        Json::String(t) => Some(t.as_str()),
                        _ => None,
                    })
                    .collect(),
            ),
            Some(_) => return Err(err(&format!("{path}/type"), "must be a string or a list")),
        };
        let mut texts: Vec<Vec<u8>> = Vec::new();
        for v in values {
            let name = v.type_name();
            if let Some(ts) = &types
                && !ts
                    .iter()
                    .any(|&t| t == name || t == "number" && name == "integer")
            {
                return Err(err(
                    path,
                    format!("the {name} {} is not of its type", v.to_text()),
                ));
            }
            let text = v.to_text().into_bytes();
            if !texts.contains(&text) {
                texts.push(text);
            }
        }
        let set = self.literal_set(texts, path)?;
        self.push(Node::Literals { set }, path)
    }

    /// An `anyOf`: literal alternatives merge into one set (one reading for all of them); the
    /// others stay alternatives.
    fn union(&mut self, ids: Vec<NodeId>, path: &str) -> Result<NodeId, SchemaError> {
        if ids.is_empty() {
            return Err(err(
                path,
                "an empty anyOf, oneOf or type list allows no value",
            ));
        }
        let mut texts: Vec<Vec<u8>> = Vec::new();
        let mut alts = Vec::new();
        let mut literal_alts = 0;
        for id in ids {
            match &self.g.nodes[id as usize] {
                Node::Literals { set } => {
                    literal_alts += 1;
                    for t in &self.g.literals[*set as usize] {
                        if !texts.contains(t) {
                            texts.push(t.clone());
                        }
                    }
                }
                Node::Union { alts: inner } if !inner.is_empty() && self.is_plain_union(id) => {
                    alts.extend(inner.iter().copied())
                }
                _ => alts.push(id),
            }
        }
        if literal_alts > 0 {
            let set = self.literal_set(texts, path)?;
            alts.push(self.push(Node::Literals { set }, path)?);
        }
        if alts.len() == 1 {
            return Ok(alts[0]);
        }
        self.push(Node::Union { alts }, path)
    }

    /// A union that is not a `$ref` alias (whose contents may still be filled in).
    fn is_plain_union(&self, id: NodeId) -> bool {
        !self.refs.values().any(|&r| r == id)
    }
}

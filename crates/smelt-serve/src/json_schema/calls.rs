//! Grammars that are not a user's schema: forced tool calls (`tool_choice: "required"`) and
//! vLLM's `guided_choice` and `guided_regex`.

use std::collections::HashMap;

use super::pattern::Pattern;
use super::{
    Compiler, Grammar, Json, MAX_CHOICES, MAX_LITERAL_BYTES, Node, Prop, SchemaError, err, finish,
    only,
};

/// A tool's `parameters`, or `None` where it has none or they are `{}` (OpenAI and vLLM read
/// both as "no parameters": any object).
pub fn no_parameters(parameters: Option<&Json>) -> Option<&Json> {
    parameters.filter(|p| !matches!(p, Json::Object(m) if m.is_empty()))
}

/// The grammar of forced tool calls (`tool_choice: "required"`, as vLLM writes them): a
/// non-empty array of `{"name": NAME, "parameters": ARGS}`, where ARGS meets that tool's
/// parameters schema (`None`: any object), at most `most` calls (OpenAI's
/// `parallel_tool_calls: false` is 1). `tools`: (name, parameters) each, the schemas' `$ref`s
/// resolved within their own parameters; errors point at `/tools/i/function/parameters`.
pub fn compile_calls(tools: &[(&str, Option<&Json>)], most: u32) -> Result<Grammar, SchemaError> {
    if tools.is_empty() || tools.len() > MAX_CHOICES {
        // Each tool is a reading of its own until the name parts them.
        return Err(err("/tools", format!("between 1 and {MAX_CHOICES} tools")));
    }
    let any_object = Json::Object(vec![("type".into(), Json::String("object".into()))]);
    let (mut g, mut paths) = (Grammar::base(), HashMap::new());
    let (mut calls, mut arguments) = (Vec::new(), Vec::new());
    for (i, &(name, parameters)) in tools.iter().enumerate() {
        let path = format!("/tools/{i}/function/parameters");
        let doc = no_parameters(parameters).unwrap_or(&any_object);
        let mut c = Compiler::new(doc, g, paths);
        let args = c.node(doc, &path)?;
        let name = c.literal_set(
            vec![Json::String(name.into()).to_text().into_bytes()],
            &path,
        )?;
        let name = c.push(Node::Literals { set: name }, &path)?;
        let keys = c.literal_set(
            vec![b"\"name\"".to_vec(), b"\"parameters\"".to_vec()],
            &path,
        )?;
        let props = [name, args].map(|node| Prop {
            node,
            required: true,
        });
        calls.push(c.push(
            Node::Object {
                props: props.to_vec(),
                keys,
                extra: None,
            },
            &path,
        )?);
        (g, paths) = (c.g, c.paths);
        arguments.push((path, args));
    }

    let mut c = Compiler::new(&any_object, g, paths);
    let items = c.union(calls, "/tools")?;
    let root = c.push(
        Node::Array {
            items,
            prefix: vec![],
            min: 1,
            max: most.max(1),
        },
        "/tools",
    )?;
    let (g, paths) = (c.g, c.paths);
    let g = finish(g, &paths, root)?;
    // Each tool's arguments must be an object (OpenAI's `parameters` always are), with an
    // instance that fits where the arguments start (the third level: array, call, arguments);
    // otherwise the tool could never be called, and is refused rather than silently skipped.
    for (path, args) in arguments {
        if g.first[args as usize] != only(b'{') {
            return Err(err(&path, "a tool's parameters must be an object schema"));
        }
        let h = g.height[args as usize];
        if !super::height::fits(h, 3) {
            let why = if h == super::height::NO_INSTANCE {
                "no finite value meets the parameters: a required value refers back to itself"
                    .to_owned()
            } else {
                format!("every value nests {h} containers deep, over the 30 a call's arguments may")
            };
            return Err(err(&path, why));
        }
    }
    Ok(g)
}

/// The grammar of vLLM's `guided_choice`: the text is exactly one of `choices` (raw text, not
/// JSON), none empty. Where one choice starts another (`yes`, `yes!`), the text may stop after
/// the shorter (the end of turn is let through) or go on to the longer.
pub fn compile_choice(choices: &[String]) -> Result<Grammar, SchemaError> {
    let path = "/guided_choice";
    if choices.is_empty() {
        return Err(err(path, "no choices"));
    }
    for (i, a) in choices.iter().enumerate() {
        if a.is_empty() || a.len() > MAX_LITERAL_BYTES {
            return Err(err(
                path,
                format!("choice {i} is empty or over {MAX_LITERAL_BYTES} bytes"),
            ));
        }
    }
    let mut texts: Vec<Vec<u8>> = Vec::new();
    for c in choices {
        if !texts.contains(&c.as_bytes().to_vec()) {
            texts.push(c.as_bytes().to_vec());
        }
    }
    let any = Json::Null;
    let mut c = Compiler::new(&any, Grammar::base(), HashMap::new());
    let set = c.literal_set(texts, path)?;
    let root = c.push(Node::Literals { set }, path)?;
    let (g, paths) = (c.g, c.paths);
    let mut g = finish(g, &paths, root)?;
    g.raw = true;
    Ok(g)
}

/// The grammar of vLLM's `guided_regex`: the whole text (raw, not JSON) matches `source`
/// from its start to its end. The text may stop (the model's end of turn is let through)
/// wherever it matches, and stops by itself where nothing more could.
pub fn compile_regex(source: &str) -> Result<Grammar, SchemaError> {
    let path = "/guided_regex";
    let p = Pattern::new(&format!("^(?:{source})$"), 0, u32::MAX)
        .map_err(|why| err(path, why))?
        .for_whole_text();
    let mut g = Grammar::base();
    g.patterns.push(p);
    g.nodes.push(Node::Regex { pattern: 0 });
    g.raw = true;
    let root = (g.nodes.len() - 1) as u32;
    finish(g, &HashMap::new(), root)
}

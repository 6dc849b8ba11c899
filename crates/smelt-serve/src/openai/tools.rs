//! Forced tool calls, as vLLM serves them: `tool_choice` naming a function holds the answer to
//! that function's `parameters` schema (the answer is its arguments); `"required"` holds it to
//! a non-empty array of `{"name": ..., "parameters": ...}` over the request's tools. The
//! answer then comes back as OpenAI's `tool_calls`, streamed as it is written (each call's
//! name once whole, then its arguments in pieces). `"none"` generates text. `"auto"` (the
//! default with tools) lets the model choose, and its answer is read for calls in its own
//! format ([`super::tool_parsers`]) when the server was started with `--tool-call-parser`;
//! without one it is a 400, as on vLLM. The tools also go to the chat template, for templates
//! that describe them to the model.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::ApiError;
use super::tool_parsers::ToolParser;
use crate::json_schema::{self, Grammar, Json};

/// One of the request's `tools`.
#[derive(Deserialize, Serialize)]
pub(super) struct Tool {
    #[serde(rename = "type")]
    kind: String,
    function: Function,
}

/// A tool's function.
#[derive(Deserialize, Serialize)]
struct Function {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Json>,
}

/// `tool_choice`: `"none"`, `"auto"`, `"required"`, or `{"type": "function", "function":
/// {"name": ...}}`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum ToolChoice {
    Mode(String),
    Named { function: NamedFunction },
}

#[derive(Deserialize)]
pub(super) struct NamedFunction {
    name: String,
}

/// How a request's answers are tool calls.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Calls {
    /// The named function's arguments.
    Named(String),
    /// An array of calls.
    Required,
}

/// `tool_choice: "auto"` answers: read for calls by `parser`; with `one` (OpenAI's
/// `parallel_tool_calls: false`), only the first call is kept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct AutoCalls {
    pub parser: ToolParser,
    pub one: bool,
}

/// What the request's `tools` and `tool_choice` ask.
pub(super) enum Plan {
    /// Plain text.
    Text,
    /// Calls the grammar holds the answer to.
    Forced(Calls, Arc<Grammar>),
    /// The model may call tools in its own format.
    Auto(AutoCalls),
}

/// What the request's `tools` and `tool_choice` ask; without `parallel` (OpenAI's
/// `parallel_tool_calls: false`), one call. `parser`: the server's `--tool-call-parser`, which
/// `"auto"` needs.
pub(super) fn plan(
    tools: Option<&[Tool]>,
    choice: Option<&ToolChoice>,
    parallel: bool,
    parser: Option<ToolParser>,
) -> Result<Plan, ApiError> {
    let tools = tools.unwrap_or_default();
    let mode = match choice {
        Some(ToolChoice::Mode(m)) => m.as_str(),
        Some(ToolChoice::Named { .. }) => "named",
        None if tools.is_empty() => "none",
        None => "auto",
    };
    if tools.is_empty() {
        return match mode {
            "none" => Ok(Plan::Text),
            _ => Err(ApiError::bad_request("tool_choice needs tools")),
        };
    }
    for (i, t) in tools.iter().enumerate() {
        if t.kind != "function" {
            return Err(ApiError::bad_request(format!(
                "tools[{i}] is of type {:?}; only function tools are supported",
                t.kind
            )));
        }
        if t.function.name.is_empty()
            || tools[..i]
                .iter()
                .any(|u| u.function.name == t.function.name)
        {
            return Err(ApiError::bad_request(format!(
                "tools[{i}]: function names must be non-empty and distinct ({:?})",
                t.function.name
            )));
        }
    }
    let schema_error = |e: json_schema::SchemaError| ApiError::bad_request(e.to_string());
    match (mode, choice) {
        ("none", _) => Ok(Plan::Text),
        ("required", _) => {
            let list: Vec<(&str, Option<&Json>)> = tools
                .iter()
                .map(|t| (t.function.name.as_str(), t.function.parameters.as_ref()))
                .collect();
            let most = if parallel { u32::MAX } else { 1 };
            let g = json_schema::compile_calls(&list, most).map_err(schema_error)?;
            Ok(Plan::Forced(Calls::Required, Arc::new(g)))
        }
        ("named", Some(ToolChoice::Named { function })) => {
            let Some(t) = tools.iter().find(|t| t.function.name == function.name) else {
                return Err(ApiError::bad_request(format!(
                    "tool_choice names {:?}, which is not among the tools",
                    function.name
                )));
            };
            let any = Json::Object(vec![("type".into(), Json::String("object".into()))]);
            let params = json_schema::no_parameters(t.function.parameters.as_ref());
            let g = json_schema::compile(params.unwrap_or(&any)).map_err(schema_error)?;
            Ok(Plan::Forced(
                Calls::Named(function.name.clone()),
                Arc::new(g),
            ))
        }
        ("auto", _) => match parser {
            Some(parser) => Ok(Plan::Auto(AutoCalls {
                parser,
                one: !parallel,
            })),
            None => Err(ApiError::bad_request(
                "tool_choice \"auto\" needs the server started with --tool-call-parser (hermes \
                 or llama3_json, the model's own tool-call format); or ask for \"required\" \
                 or name a function",
            )),
        },
        (other, _) => Err(ApiError::bad_request(format!(
            "tool_choice {other:?} is not one of none, auto, required or a named function"
        ))),
    }
}

/// One call read from an answer's text so far: the function's name (once whole) and its
/// arguments' text so far.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct CallSoFar {
    pub name: String,
    pub arguments: String,
}

/// `text` without the whitespace outside strings (a prefix of the answer compacts to a prefix
/// of the whole answer's compact text, so streamed pieces add up to the final arguments).
fn compact(text: &str) -> String {
    let (mut in_string, mut escaped) = (false, false);
    text.chars()
        .filter(|&c| {
            if in_string {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => in_string = false,
                    _ => {}
                }
                true
            } else {
                in_string = c == '"';
                !matches!(c, ' ' | '\t' | '\n' | '\r')
            }
        })
        .collect()
}

/// Where the JSON value starting at `b[i]` ends (exclusive), and whether it is whole; `b` is
/// compact text.
fn value_end(b: &[u8], i: usize) -> (usize, bool) {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (j, &c) in b.iter().enumerate().skip(i) {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => {
                    in_string = false;
                    if depth == 0 {
                        return (j + 1, true);
                    }
                }
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' if depth == 0 => return (j, true),
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return (j + 1, true);
                }
            }
            b',' if depth == 0 => return (j, true),
            _ => {}
        }
    }
    (b.len(), false)
}

/// The calls in an answer's `text` so far, each once its name is whole; the arguments are
/// compact text (whitespace outside strings dropped), whole or cut.
pub(super) fn calls_so_far(calls: &Calls, text: &str) -> Vec<CallSoFar> {
    let c = compact(text);
    let name = match calls {
        Calls::Named(name) => {
            return vec![CallSoFar {
                name: name.clone(),
                arguments: c,
            }];
        }
        Calls::Required => "{\"name\":",
    };
    // The grammar writes `[{"name":"f","parameters":{...}},...]`, keys in that order.
    let mut out = Vec::new();
    let b = c.as_bytes();
    let mut i = 1;
    if b.first() != Some(&b'[') {
        return out;
    }
    while c[i..].starts_with(name) {
        i += name.len();
        let (end, whole) = value_end(b, i);
        let Some(f) = whole
            .then(|| serde_json::from_str::<String>(&c[i..end]).ok())
            .flatten()
        else {
            break;
        };
        i = end;
        let key = ",\"parameters\":";
        if !c[i..].starts_with(key) {
            out.push(CallSoFar {
                name: f,
                arguments: String::new(),
            });
            break;
        }
        i += key.len();
        let (end, whole) = value_end(b, i);
        out.push(CallSoFar {
            name: f,
            arguments: c[i..end].to_owned(),
        });
        if !whole || !c[end..].starts_with("},") {
            break;
        }
        i = end + 2;
    }
    out
}

/// The `tool_calls` entries of the calls begun in an answer `text` (ids `{id}-{k}`), and
/// whether the text is whole calls (not cut by `max_tokens`).
pub(super) fn tool_calls(calls: &Calls, text: &str, id: &str) -> (Vec<Value>, bool) {
    let c = compact(text);
    let whole = match calls {
        Calls::Named(_) => serde_json::from_str::<Json>(&c).is_ok(),
        Calls::Required => serde_json::from_str::<Vec<Json>>(&c).is_ok(),
    };
    let list = calls_so_far(calls, text)
        .iter()
        .enumerate()
        .map(|(k, call)| call_json(&format!("{id}-{k}"), &call.name, &call.arguments))
        .collect();
    (list, whole)
}

/// One `tool_calls` entry.
pub(super) fn call_json(id: &str, name: &str, arguments: &str) -> Value {
    json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_grow_by_prefixes_and_names_come_whole() {
        let text = "[ {\"name\": \"get_weather\", \"parameters\": {\"city\": \"Pa ris\",\n \
                    \"unit\": \"c\\\"\"}},\n {\"name\":\"ti\\u006de\",\"parameters\":{}}]";
        let end = calls_so_far(&Calls::Required, text);
        assert_eq!(
            end,
            [
                CallSoFar {
                    name: "get_weather".into(),
                    arguments: r#"{"city":"Pa ris","unit":"c\""}"#.into()
                },
                CallSoFar {
                    name: "time".into(),
                    arguments: "{}".into()
                }
            ]
        );
        for cut in 0..text.len() {
            let so_far = calls_so_far(&Calls::Required, &text[..cut]);
            assert!(so_far.len() <= end.len(), "{cut}");
            for (a, b) in so_far.iter().zip(&end) {
                assert_eq!(a.name, b.name, "a name before it is whole, at {cut}");
                assert!(b.arguments.starts_with(&a.arguments), "{cut}: {a:?}");
            }
        }
        let (ids, whole) = tool_calls(&Calls::Required, text, "x");
        assert!(whole);
        assert_eq!(ids[1]["id"], "x-1");
        assert_eq!(ids[1]["function"]["name"], "time");
        assert!(!tool_calls(&Calls::Required, &text[..text.len() - 1], "x").1);
        let named = Calls::Named("f".into());
        assert_eq!(
            calls_so_far(&named, "{ \"a\" : [1, 2] }")[0].arguments,
            r#"{"a":[1,2]}"#
        );
    }

    #[test]
    fn auto_needs_a_parser_and_then_reads_the_models_format() {
        let tools: Vec<Tool> = serde_json::from_str(
            r#"[{"type": "function", "function": {"name": "f", "parameters": {}}}]"#,
        )
        .unwrap();
        let auto = ToolChoice::Mode("auto".into());
        for choice in [None, Some(&auto)] {
            let e = plan(Some(&tools), choice, true, None).err().expect("a 400");
            assert!(e.message.contains("--tool-call-parser"), "{}", e.message);
            match plan(Some(&tools), choice, false, Some(ToolParser::Hermes)) {
                Ok(Plan::Auto(a)) => assert_eq!(
                    a,
                    AutoCalls {
                        parser: ToolParser::Hermes,
                        one: true
                    }
                ),
                _ => panic!("auto with a parser plans auto"),
            }
        }
    }
}

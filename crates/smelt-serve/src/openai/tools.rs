//! Forced tool calls, as vLLM serves them: `tool_choice` naming a function holds the answer to
//! that function's `parameters` schema (the answer is its arguments); `"required"` holds it to
//! a non-empty array of `{"name": ..., "parameters": ...}` over the request's tools. The
//! answer then comes back as OpenAI's `tool_calls`. `"none"` generates text. `"auto"` (the
//! default with tools) would need a parser for the model's own tool-call format, which smelt
//! does not have: it is a 400, as it is on vLLM without `--tool-call-parser`. The tools also go
//! to the chat template, for templates that describe them to the model.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::ApiError;
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

/// What the request's `tools` and `tool_choice` ask: the calls and their grammar, or `None`
/// for plain text.
pub(super) fn plan(
    tools: Option<&[Tool]>,
    choice: Option<&ToolChoice>,
) -> Result<Option<(Calls, Arc<Grammar>)>, ApiError> {
    let tools = tools.unwrap_or_default();
    let mode = match choice {
        Some(ToolChoice::Mode(m)) => m.as_str(),
        Some(ToolChoice::Named { .. }) => "named",
        None if tools.is_empty() => "none",
        None => "auto",
    };
    if tools.is_empty() {
        return match mode {
            "none" => Ok(None),
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
        ("none", _) => Ok(None),
        ("required", _) => {
            let list: Vec<(&str, Option<&Json>)> = tools
                .iter()
                .map(|t| (t.function.name.as_str(), t.function.parameters.as_ref()))
                .collect();
            let g = json_schema::compile_calls(&list).map_err(schema_error)?;
            Ok(Some((Calls::Required, Arc::new(g))))
        }
        ("named", Some(ToolChoice::Named { function })) => {
            let Some(t) = tools.iter().find(|t| t.function.name == function.name) else {
                return Err(ApiError::bad_request(format!(
                    "tool_choice names {:?}, which is not among the tools",
                    function.name
                )));
            };
            let any = Json::Object(vec![("type".into(), Json::String("object".into()))]);
            let g = json_schema::compile(t.function.parameters.as_ref().unwrap_or(&any))
                .map_err(schema_error)?;
            Ok(Some((Calls::Named(function.name.clone()), Arc::new(g))))
        }
        ("auto", _) => Err(ApiError::bad_request(
            "tool_choice \"auto\" needs a parser for this model's own tool-call format, which \
             smelt does not have; ask for \"required\" or name a function",
        )),
        (other, _) => Err(ApiError::bad_request(format!(
            "tool_choice {other:?} is not one of none, auto, required or a named function"
        ))),
    }
}

/// The `tool_calls` entries of a finished answer `text` (ids `{id}-{k}`), or `None` if the
/// text is not whole calls (cut by `max_tokens`).
pub(super) fn tool_calls(calls: &Calls, text: &str, id: &str) -> Option<Vec<Value>> {
    let call = |k: usize, name: &str, arguments: String| {
        json!({"id": format!("{id}-{k}"), "type": "function",
               "function": {"name": name, "arguments": arguments}})
    };
    let parsed: Json = serde_json::from_str(text).ok()?;
    match calls {
        Calls::Named(name) => Some(vec![call(0, name, parsed.to_text())]),
        Calls::Required => {
            let Json::Array(items) = parsed else {
                return None;
            };
            items
                .iter()
                .enumerate()
                .map(
                    |(k, item)| match (item.get("name"), item.get("parameters")) {
                        (Some(Json::String(name)), Some(args)) => {
                            Some(call(k, name, args.to_text()))
                        }
                        _ => None,
                    },
                )
                .collect()
        }
    }
}

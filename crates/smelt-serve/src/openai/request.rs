//! Request bodies of the OpenAI-compatible endpoints: the fields both share, each endpoint's
//! own, and the grammar a request holds its answer to. Fields smelt does not read are
//! collected so the server can say which it ignored (as vLLM logs them); the few whose
//! meaning smelt cannot give (`best_of` other than `n`, a completion `suffix`) are 400s.

use std::sync::{Arc, OnceLock};

use serde::Deserialize;
use smelt_models::chat::ChatMessage;

use super::ApiError;
use super::tools::{Tool, ToolChoice};
use crate::json_schema::{self, Grammar, Json};

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum PromptInput {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

#[derive(Deserialize, Default)]
pub(super) struct StreamOptions {
    #[serde(default)]
    pub(super) include_usage: bool,
}

/// Fields both endpoints share.
#[derive(Deserialize)]
pub(super) struct Common {
    pub(super) model: Option<String>,
    pub(super) max_tokens: Option<usize>,
    pub(super) max_completion_tokens: Option<usize>,
    pub(super) temperature: Option<f32>,
    pub(super) top_p: Option<f32>,
    pub(super) top_k: Option<i64>,
    pub(super) min_p: Option<f32>,
    pub(super) seed: Option<u64>,
    pub(super) stop: Option<OneOrMany>,
    pub(super) n: Option<usize>,
    #[serde(default)]
    pub(super) stream: bool,
    pub(super) stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub(super) ignore_eos: bool,
    pub(super) presence_penalty: Option<f32>,
    pub(super) frequency_penalty: Option<f32>,
    /// Token id (as a string, OpenAI's map keys) → bias.
    pub(super) logit_bias: Option<std::collections::HashMap<String, f32>>,
    /// vLLM's: llama.cpp's multiplicative penalty over prompt and output.
    pub(super) repetition_penalty: Option<f32>,
    /// vLLM's: stop tokens are held back, and stop strings do not count, until this many
    /// tokens are out.
    pub(super) min_tokens: Option<usize>,
    /// vLLM's: the stop string that ends the text stays in it.
    #[serde(default)]
    pub(super) include_stop_str_in_output: bool,
    /// OpenAI's: draw this many and return the best `n`; only `n` itself is accepted.
    pub(super) best_of: Option<usize>,
    /// OpenAI's end-user id: accepted, not used.
    #[serde(rename = "user")]
    pub(super) _user: Option<String>,
    /// vLLM's: more tokens that end the text.
    pub(super) stop_token_ids: Option<Vec<u32>>,
    pub(super) response_format: Option<ResponseFormat>,
    /// vLLM's older spelling of a JSON schema constraint (a schema, or its text).
    pub(super) guided_json: Option<Json>,
    /// vLLM's: the answer is exactly one of these strings.
    pub(super) guided_choice: Option<Vec<String>>,
    /// vLLM's: the whole answer matches this regular expression.
    pub(super) guided_regex: Option<String>,
    /// vLLM's newer spelling of both.
    pub(super) structured_outputs: Option<StructuredOutputs>,
    pub(super) tools: Option<Vec<Tool>>,
    pub(super) tool_choice: Option<ToolChoice>,
    /// OpenAI's: `false` allows one call at most.
    pub(super) parallel_tool_calls: Option<bool>,
}

/// OpenAI's `response_format`.
#[derive(Deserialize)]
pub(super) struct ResponseFormat {
    #[serde(rename = "type")]
    pub(super) kind: String,
    pub(super) json_schema: Option<JsonSchemaFormat>,
}

/// `response_format.json_schema`: a named schema (`strict` is accepted; smelt always holds
/// the model to the schema).
#[derive(Deserialize)]
pub(super) struct JsonSchemaFormat {
    pub(super) schema: Option<Json>,
}

/// vLLM's `structured_outputs` (its newer spelling of `guided_json` / `guided_choice` /
/// `guided_regex`).
#[derive(Deserialize)]
pub(super) struct StructuredOutputs {
    pub(super) json: Option<Json>,
    pub(super) choice: Option<Vec<String>>,
    pub(super) regex: Option<String>,
}

/// The grammar the answer is held to, if any: from `response_format`, or vLLM's `guided_json`,
/// `guided_choice`, `guided_regex` or `structured_outputs` (at most one of them); compiled
/// once per request.
pub(super) fn grammar(c: &Common) -> Result<Option<Arc<Grammar>>, ApiError> {
    static JSON_OBJECT: OnceLock<Arc<Grammar>> = OnceLock::new();
    let bad = |e: json_schema::SchemaError| ApiError::bad_request(e.to_string());
    let schema = |j: &Json| -> Result<Grammar, ApiError> {
        match j {
            // A schema may come as its text.
            Json::String(text) => {
                let parsed: Json = serde_json::from_str(text)
                    .map_err(|e| ApiError::bad_request(format!("json schema text: {e}")))?;
                json_schema::compile(&parsed).map_err(bad)
            }
            j => json_schema::compile(j).map_err(bad),
        }
    };
    let format = c.response_format.as_ref().filter(|f| f.kind != "text");
    let so = c.structured_outputs.as_ref();
    let given = [
        format.is_some(),
        c.guided_json.is_some(),
        c.guided_choice.is_some(),
        so.is_some_and(|s| s.json.is_some()),
        so.is_some_and(|s| s.choice.is_some()),
        c.guided_regex.is_some(),
        so.is_some_and(|s| s.regex.is_some()),
    ];
    if given.iter().filter(|&&g| g).count() > 1 {
        return Err(ApiError::bad_request(
            "give at most one of response_format, guided_json, guided_choice, guided_regex, \
             structured_outputs",
        ));
    }
    let g = if let Some(f) = format {
        match f.kind.as_str() {
            "json_object" => {
                return Ok(Some(
                    JSON_OBJECT
                        .get_or_init(|| Arc::new(Grammar::json_object()))
                        .clone(),
                ));
            }
            "json_schema" => match f.json_schema.as_ref().and_then(|j| j.schema.as_ref()) {
                Some(j) => schema(j)?,
                None => {
                    return Err(ApiError::bad_request(
                        "response_format json_schema needs json_schema.schema",
                    ));
                }
            },
            other => {
                return Err(ApiError::bad_request(format!(
                    "response_format {other:?} is not one of text, json_object, json_schema"
                )));
            }
        }
    } else if let Some(j) = c.guided_json.as_ref().or(so.and_then(|s| s.json.as_ref())) {
        schema(j)?
    } else if let Some(choices) = c
        .guided_choice
        .as_ref()
        .or(so.and_then(|s| s.choice.as_ref()))
    {
        json_schema::compile_choice(choices).map_err(bad)?
    } else if let Some(regex) = c
        .guided_regex
        .as_ref()
        .or(so.and_then(|s| s.regex.as_ref()))
    {
        json_schema::compile_regex(regex).map_err(bad)?
    } else {
        return Ok(None);
    };
    Ok(Some(Arc::new(g)))
}

#[derive(Deserialize)]
pub(super) struct CompletionBody {
    pub(super) prompt: PromptInput,
    pub(super) logprobs: Option<u32>,
    /// Put the prompt before the completion (and, with `logprobs`, score its tokens).
    #[serde(default)]
    pub(super) echo: bool,
    /// OpenAI's text after the insertion point: only empty is accepted (no model here is
    /// trained to fill in the middle).
    pub(super) suffix: Option<String>,
    #[serde(flatten)]
    pub(super) common: Common,
    /// Every other field: ignored, and named in the log.
    #[serde(flatten)]
    pub(super) ignored: Ignored,
}

#[derive(Deserialize)]
pub(super) struct ChatBody {
    pub(super) messages: Vec<ChatMessage>,
    #[serde(default)]
    pub(super) logprobs: bool,
    pub(super) top_logprobs: Option<usize>,
    #[serde(flatten)]
    pub(super) common: Common,
    /// Every other field: ignored, and named in the log.
    #[serde(flatten)]
    pub(super) ignored: Ignored,
}

/// The fields of a body that no other field of its type read (serde hands a flattened map
/// whatever the fields before it left).
#[derive(Deserialize, Default)]
pub(super) struct Ignored(std::collections::BTreeMap<String, serde::de::IgnoredAny>);

impl Ignored {
    /// Logs the ignored fields' names, as vLLM does, so a client learns that e.g. a
    /// sampling option it relies on had no effect.
    pub(super) fn warn(&self, endpoint: &str) {
        if !self.0.is_empty() {
            tracing::warn!(
                "{endpoint}: these fields were present in the request but ignored: {}",
                self.names().join(", ")
            );
        }
    }

    /// The ignored fields' names, in order.
    pub(super) fn names(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

pub(super) fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Bytes;

    #[test]
    fn fields_no_one_reads_are_collected_and_the_rest_are_read() {
        let body = Bytes::from_static(
            br#"{"messages": [{"role": "user", "content": "Hi"}], "temperature": 0.5,
                 "frobnicate": {"a": [1]}, "user": "u1", "top_logprobs": 2, "logprobs": true,
                 "include_stop_str_in_output": true, "best_of": 1, "zeta": null}"#,
        );
        let b: ChatBody = parse(&body).unwrap_or_else(|e| panic!("{}", e.message));
        assert_eq!(b.ignored.names(), ["frobnicate", "zeta"]);
        assert_eq!(b.common.temperature, Some(0.5));
        assert_eq!(b.top_logprobs, Some(2));
        assert!(b.logprobs && b.common.include_stop_str_in_output);
        assert_eq!(b.common.best_of, Some(1));
        let body = Bytes::from_static(br#"{"prompt": "x", "suffix": "", "echo": true}"#);
        let b: CompletionBody = parse(&body).unwrap_or_else(|e| panic!("{}", e.message));
        assert!(b.ignored.names().is_empty() && b.echo && b.suffix.as_deref() == Some(""));
        // A known field of the wrong type is still a 400.
        let body = Bytes::from_static(br#"{"prompt": "x", "temperature": "hot"}"#);
        assert!(parse::<CompletionBody>(&body).is_err());
    }
}

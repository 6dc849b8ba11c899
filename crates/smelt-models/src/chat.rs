//! Chat prompts from the model's own template (`tokenizer.chat_template`, the Jinja source the
//! Hugging Face tokenizer carries), rendered with minijinja set up as `transformers` sets up
//! jinja2 ([`crate::chat_env`]); ChatML when a model has none.

use minijinja::value::ValueKind;
use minijinja::{Value, context};
use serde::Serialize;

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ChatMessage {
    /// "system", "user", "assistant" or "tool".
    pub role: String,
    /// The text (an assistant turn that only calls tools sends `null`: empty here; a list of
    /// text parts is joined with newlines, as vLLM does).
    #[serde(default, deserialize_with = "content_text")]
    pub content: String,
    /// An assistant turn's tool calls, as the client sent them back (for templates that
    /// render them), keys in the client's order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Value>,
    /// A tool turn's answer is to this call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// A tool turn's function name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A message's `content`: text, `null`, or OpenAI's list of parts (text parts only).
fn content_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Content {
        Text(String),
        Parts(Vec<Part>),
    }
    #[derive(serde::Deserialize)]
    struct Part {
        #[serde(rename = "type")]
        kind: String,
        text: Option<String>,
    }
    match <Option<Content> as serde::Deserialize>::deserialize(d)? {
        None => Ok(String::new()),
        Some(Content::Text(t)) => Ok(t),
        Some(Content::Parts(parts)) => parts
            .into_iter()
            .map(|p| match (p.kind.as_str(), p.text) {
                ("text", Some(t)) => Ok(t),
                (kind, _) => Err(serde::de::Error::custom(format!(
                    "content part of type {kind:?}: only text parts are supported"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|t| t.join("\n")),
    }
}

impl ChatMessage {
    /// A message with `role` and `content`.
    pub fn new(role: &str, content: &str) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
            tool_calls: None,
            tool_call_id: None,
            name: None,
        }
    }
}

/// ChatML, the format SmolLM2 and many others use; the fallback when a GGUF has no template.
pub const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// A chat template with the special-token strings it may refer to.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    /// Jinja source.
    pub source: String,
    /// The model's `tool_use` template (`tokenizer.chat_template.tool_use`: Hermes 2 Pro and
    /// Command R ship one), which `transformers` picks instead of `source` when a request
    /// has tools.
    pub tool_use: Option<String>,
    /// `bos_token` as the template sees it.
    pub bos_token: String,
    /// `eos_token` as the template sees it.
    pub eos_token: String,
}

impl ChatTemplate {
    /// The template in a GGUF's metadata, or ChatML. `token` maps ids to their text.
    pub fn from_gguf(h: &smelt_gguf::Header, token: impl Fn(u32) -> Option<String>) -> Self {
        let tok = |key: &str| {
            h.get(key)
                .and_then(|v| v.as_u64())
                .and_then(|id| token(id as u32))
                .unwrap_or_default()
        };
        Self {
            source: h
                .get("tokenizer.chat_template")
                .and_then(|v| v.as_str())
                .unwrap_or(CHATML)
                .to_string(),
            tool_use: h
                .get("tokenizer.chat_template.tool_use")
                .and_then(|v| v.as_str())
                .map(str::to_owned),
            bos_token: tok("tokenizer.ggml.bos_token_id"),
            eos_token: tok("tokenizer.ggml.eos_token_id"),
        }
    }

    /// The prompt text for `messages`, ending with the assistant's turn opener when
    /// `add_generation_prompt`.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, String> {
        self.render_with_tools(messages, None::<&()>, add_generation_prompt)
    }

    /// [`ChatTemplate::render`] with the request's `tools` in the template's `tools` variable
    /// (templates that know tools describe them to the model; others ignore them).
    pub fn render_with_tools<T: Serialize>(
        &self,
        messages: &[ChatMessage],
        tools: Option<&T>,
        add_generation_prompt: bool,
    ) -> Result<String, String> {
        let mut env = crate::chat_env::hf_environment();
        let source = match (&tools, &self.tool_use) {
            (Some(_), Some(t)) => t,
            _ => &self.source,
        };
        let source = crate::chat_env::without_generation_tags(source);
        env.add_template("chat", &source)
            .map_err(|e| format!("the chat template does not parse: {e}"))?;
        let t = env.get_template("chat").map_err(|e| e.to_string())?;
        let messages: Vec<TemplateMessage> = messages.iter().map(TemplateMessage::of).collect();
        t.render(context! {
            messages => messages,
            tools => tools,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token,
            eos_token => self.eos_token,
        })
        .map_err(|e| format!("the chat template failed: {e:#}"))
    }
}

/// A message as templates see it: an assistant turn's tool-call `arguments`, which OpenAI
/// clients send as JSON text, are parsed into objects, as vLLM does before rendering
/// (tool-use templates are written for objects: `tool_call.arguments | tojson`).
#[derive(Serialize)]
struct TemplateMessage<'a> {
    role: &'a str,
    content: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

impl<'a> TemplateMessage<'a> {
    fn of(m: &'a ChatMessage) -> Self {
        Self {
            role: &m.role,
            content: &m.content,
            tool_calls: m.tool_calls.as_ref().map(parsed_arguments),
            tool_call_id: m.tool_call_id.as_deref(),
            name: m.name.as_deref(),
        }
    }
}

/// `calls` with each `function.arguments` that is JSON text replaced by its value (keys in
/// order); anything else is left as it is.
fn parsed_arguments(calls: &Value) -> Value {
    let (ValueKind::Seq, Ok(items)) = (calls.kind(), calls.try_iter()) else {
        return calls.clone();
    };
    items
        .map(|call| {
            let parsed = call
                .get_attr("function")
                .and_then(|f| f.get_attr("arguments"))
                .ok()
                .and_then(|a| serde_json::from_str::<Value>(a.as_str()?).ok());
            match parsed {
                Some(args) => {
                    replace_key(&call, "function", |f| replace_key(f, "arguments", |_| args))
                }
                None => call,
            }
        })
        .collect::<Vec<Value>>()
        .into()
}

/// The map `m` with `key`'s value replaced by `f(old)`, keys in their order (other values
/// are returned as they are).
fn replace_key(m: &Value, key: &str, f: impl FnOnce(&Value) -> Value) -> Value {
    let (ValueKind::Map, Ok(keys)) = (m.kind(), m.try_iter()) else {
        return m.clone();
    };
    let mut f = Some(f);
    let pairs: Vec<(Value, Value)> = keys
        .map(|k| {
            let v = m.get_item(&k).unwrap_or_default();
            match f.take_if(|_| k.as_str() == Some(key)) {
                Some(f) => (k, f(&v)),
                None => (k, v),
            }
        })
        .collect();
    pairs.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_renders_turns_and_the_generation_prompt() {
        let t = ChatTemplate {
            source: CHATML.into(),
            tool_use: None,
            bos_token: String::new(),
            eos_token: String::new(),
        };
        let m = [
            ChatMessage::new("system", "Be brief."),
            ChatMessage::new("user", "Hi"),
        ];
        assert_eq!(
            t.render(&m, true).unwrap(),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert!(!t.render(&m, false).unwrap().ends_with("assistant\n"));
    }

    #[test]
    fn tool_turns_parse_and_templates_see_the_tools() {
        // An assistant turn that only called tools sends content null; a tool turn answers.
        let m: Vec<ChatMessage> = serde_json::from_str(
            r#"[{"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1"}]},
                {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]"#,
        )
        .unwrap();
        assert_eq!(m[1].content, "");
        // OpenAI's list of text parts; other parts (images) are refused.
        let parts: ChatMessage = serde_json::from_str(
            r#"{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}"#,
        )
        .unwrap();
        assert_eq!(parts.content, "a\nb");
        let image =
            r#"{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}"#;
        let e = serde_json::from_str::<ChatMessage>(image)
            .unwrap_err()
            .to_string();
        assert!(e.contains("only text parts"), "{e}");
        assert_eq!(m[2].tool_call_id.as_deref(), Some("c1"));
        let t = ChatTemplate {
            source: "{% for t in tools %}[{{ t.name }}]{% endfor %}{% for m in messages %}\
                     {{ m.role }}:{{ m.content }}{% if m.tool_calls %}{{ m.tool_calls[0].id }}{% endif %};\
                     {% endfor %}"
                .into(),
            tool_use: None,
            bos_token: String::new(),
            eos_token: String::new(),
        };
        let tools = serde_json::json!([{"name": "get_weather"}]);
        assert_eq!(
            t.render_with_tools(&m, Some(&tools), false).unwrap(),
            "[get_weather]user:Weather?;assistant:c1;tool:sunny;"
        );
        assert_eq!(
            t.render(&m, false).unwrap(),
            "user:Weather?;assistant:c1;tool:sunny;"
        );
    }

    #[test]
    fn template_errors_are_reported() {
        let t = ChatTemplate {
            source:
                "{% if messages|length > 1 %}{{ raise_exception('one message only') }}{% endif %}"
                    .into(),
            tool_use: None,
            bos_token: String::new(),
            eos_token: String::new(),
        };
        let m = [ChatMessage::new("user", "a"), ChatMessage::new("user", "b")];
        assert!(t.render(&m, true).unwrap_err().contains("one message only"));
        let bad = ChatTemplate {
            source: "{% for %}".into(),
            ..t
        };
        assert!(bad.render(&m, true).unwrap_err().contains("does not parse"));
    }
}

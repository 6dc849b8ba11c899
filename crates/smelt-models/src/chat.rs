//! Chat prompts from the model's own template (`tokenizer.chat_template`, the Jinja source the
//! Hugging Face tokenizer carries), rendered with minijinja; ChatML when a model has none.

use minijinja::{Environment, Error, ErrorKind, context};
use serde::Serialize;

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ChatMessage {
    /// "system", "user" or "assistant".
    pub role: String,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A message with `role` and `content`.
    pub fn new(role: &str, content: &str) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
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
        let mut env = Environment::new();
        env.add_function("raise_exception", |msg: String| -> Result<String, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_template("chat", &self.source)
            .map_err(|e| format!("the chat template does not parse: {e}"))?;
        let t = env.get_template("chat").map_err(|e| e.to_string())?;
        t.render(context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token,
            eos_token => self.eos_token,
        })
        .map_err(|e| format!("the chat template failed: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_renders_turns_and_the_generation_prompt() {
        let t = ChatTemplate {
            source: CHATML.into(),
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
    fn template_errors_are_reported() {
        let t = ChatTemplate {
            source:
                "{% if messages|length > 1 %}{{ raise_exception('one message only') }}{% endif %}"
                    .into(),
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

//! `smelt chat`: an interactive, multi-turn conversation using the model's chat template. The KV
//! cache keeps the conversation, so each turn only runs the tokens that are new.

use std::io::{BufRead, Write};

use anyhow::{Result, bail};
use smelt_models::chat::{ChatMessage, ChatTemplate};
use smelt_models::generate::{FinishReason, GenerateOptions, generate};

use super::run::SamplingArgs;
use crate::Context;

/// Arguments of `smelt chat`.
#[derive(clap::Args)]
pub struct ChatArgs {
    /// A .gguf path, or a model asset name (e.g. smollm2-135m).
    model: String,
    /// A system message to start the conversation with.
    #[arg(long)]
    system: Option<String>,
    /// Most tokens per reply.
    #[arg(short = 'n', long, default_value_t = 256)]
    tokens: usize,
    /// Context length of the whole conversation.
    #[arg(long, default_value_t = 2048)]
    ctx: usize,
    #[command(flatten)]
    sampling: SamplingArgs,
}

/// `smelt chat`: reads user turns from stdin (one per line; `/exit` or end of input stops).
pub fn run(ctx: &Context, args: &ChatArgs) -> Result<()> {
    let l = super::run::load(ctx, &args.model, args.sampling.threads)?;
    let template = ChatTemplate::from_gguf(&l.file.header, |id| l.tok.token(id).map(String::from));
    let mut messages = Vec::new();
    if let Some(s) = &args.system {
        messages.push(ChatMessage::new("system", s));
    }
    let mut cache = l.model.new_cache(args.ctx);
    // Tokens whose keys and values are in the cache.
    let mut cached: Vec<u32> = Vec::new();
    let opts = GenerateOptions {
        max_tokens: args.tokens,
        sampler: args.sampling.config(0.8),
        stop_tokens: l.stop_tokens.clone(),
        stop_strings: args.sampling.stop.clone(),
    };
    eprintln!(
        "chatting with {} (context {}, /exit to quit)",
        l.file.path.display(),
        cache.capacity()
    );
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        eprint!("> ");
        let Some(line) = lines.next() else { break };
        let line = line?;
        let line = line.trim();
        if line == "/exit" {
            break;
        }
        if line.is_empty() {
            continue;
        }
        messages.push(ChatMessage::new("user", line));
        let text = template
            .render(&messages, true)
            .map_err(anyhow::Error::msg)?;
        let ids = l.prompt_ids(&text);
        if ids.len() + 1 > cache.capacity() {
            bail!(
                "the conversation ({} tokens) no longer fits the context of {}; start again with a larger --ctx",
                ids.len(),
                cache.capacity()
            );
        }
        let common = cached.iter().zip(&ids).take_while(|(a, b)| a == b).count();
        cache.truncate(common);
        let max_tokens = opts.max_tokens.min(cache.capacity() - ids.len());
        let turn = GenerateOptions {
            max_tokens,
            ..opts.clone()
        };
        let g = generate(
            &l.model,
            &mut cache,
            &ids,
            &turn,
            &|t| l.tok.decode_bytes(t),
            |piece| {
                print!("{piece}");
                let _ = std::io::stdout().flush();
            },
        )?;
        println!();
        cached = ids
            .iter()
            .chain(&g.tokens)
            .copied()
            .take(cache.len())
            .collect();
        eprintln!(
            "[{} prompt tokens ({} new) in {:.2} s, {} tokens at {:.1} t/s{}]",
            ids.len(),
            ids.len() - common,
            g.prompt_seconds,
            g.tokens.len(),
            g.tokens.len().saturating_sub(1) as f64 / g.generate_seconds.max(1e-9),
            if g.finish == FinishReason::Length {
                ", cut at the token limit"
            } else {
                ""
            }
        );
        messages.push(ChatMessage::new("assistant", &g.text));
    }
    Ok(())
}

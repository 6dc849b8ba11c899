//! `smelt tokenize`: token ids and pieces of a text under a GGUF model's tokenizer.

use anyhow::Result;

use crate::Context;

/// Prints `text`'s tokens, one per line (`id  piece`), then the count.
pub fn run(ctx: &Context, model: &str, text: &str, parse_special: bool) -> Result<()> {
    let path = super::gguf::resolve_model(ctx, model)?;
    let file = smelt_gguf::GgufFile::open(&path)?;
    let tok = smelt_models::tokenizer::from_gguf(&file.header)?;
    let ids = tok.encode(text, parse_special);
    for &id in &ids {
        println!("{id:>7}  {:?}", tok.decode(&[id]));
    }
    println!("{} tokens", ids.len());
    Ok(())
}

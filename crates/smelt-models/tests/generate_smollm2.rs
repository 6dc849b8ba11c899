//! The reference llama decoder on the real SmolLM2: a greedy continuation is coherent English
//! that starts the way the model is known to continue, and errors are clear.

mod made_models;

use smelt_models::generate::{FinishReason, GenerateOptions, generate};
use smelt_models::llama::{Llama, Logits, ModelError};
use smelt_models::sampler::SamplerConfig;
use smelt_models::tokenizer;

fn smollm2() -> std::sync::Arc<smelt_gguf::GgufFile> {
    let path = smelt_data::Fetcher::new(smelt_data::fetch::default_home(), true)
        .ensure_gguf(smelt_data::assets::find("smollm2-135m").unwrap())
        .unwrap();
    std::sync::Arc::new(smelt_gguf::GgufFile::open(path).unwrap())
}

fn greedy(n: usize, stop_strings: &[&str]) -> GenerateOptions {
    GenerateOptions {
        max_tokens: n,
        sampler: SamplerConfig::greedy(),
        stop_tokens: vec![],
        stop_strings: stop_strings.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn greedy_continuation_of_smollm2_is_coherent() {
    let file = smollm2();
    let tok = tokenizer::from_gguf(&file.header).unwrap();
    let model = Llama::load(&file).unwrap();
    assert_eq!(
        (
            model.config.n_layer,
            model.config.n_head,
            model.config.n_head_kv
        ),
        (30, 9, 3)
    );
    let prompt = tok.encode("The capital of France is", true);
    let mut cache = model.new_cache(64);
    let mut streamed = String::new();
    let g = generate(
        &model,
        &mut cache,
        &prompt,
        &greedy(8, &[]),
        &|ids| tok.decode_bytes(ids),
        |p| streamed.push_str(p),
    )
    .unwrap();
    assert!(g.text.contains("Paris"), "continuation: {:?}", g.text);
    assert_eq!(streamed, g.text);
    // The text is built from each token's bytes in turn; it equals decoding them all at once.
    assert_eq!(g.text, tok.decode(&g.tokens));
    assert_eq!(g.finish, FinishReason::Length);
    assert_eq!(cache.len(), prompt.len() + g.tokens.len() - 1);

    // A stop string cuts the text before it, and nothing after it is streamed.
    let mut cache = model.new_cache(64);
    let mut streamed = String::new();
    let g2 = generate(
        &model,
        &mut cache,
        &prompt,
        &greedy(8, &["Paris"]),
        &|ids| tok.decode_bytes(ids),
        |p| streamed.push_str(p),
    )
    .unwrap();
    assert_eq!(g2.finish, FinishReason::Stop);
    assert_eq!(g2.text, g.text[..g.text.find("Paris").unwrap()]);
    assert_eq!(streamed, g2.text);
}

#[test]
fn a_batched_prompt_gives_the_same_logits_as_token_by_token() {
    let file = smollm2();
    let tok = tokenizer::from_gguf(&file.header).unwrap();
    let model = Llama::load(&file).unwrap();
    let prompt = tok.encode("One two three four five six seven", true);
    let mut a = model.new_cache(32);
    let batched = model.forward_batch(&prompt, &mut a, Logits::All).unwrap();
    let mut b = model.new_cache(32);
    let v = model.config.n_vocab;
    for (i, &t) in prompt.iter().enumerate() {
        let one = model.forward(t, &mut b).unwrap();
        let row = &batched[i * v..(i + 1) * v];
        let max_diff = one
            .iter()
            .zip(row)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        // Same kernels and rounding; only the float summation order of attention differs.
        assert!(max_diff < 1e-3, "token {i}: logits differ by {max_diff}");
    }
}

#[test]
fn full_context_and_empty_prompt_are_errors() {
    let file = smollm2();
    let model = Llama::load(&file).unwrap();
    let mut cache = model.new_cache(4);
    let decode = |_: &[u32]| Vec::new();
    let err = generate(
        &model,
        &mut cache,
        &[1, 2, 3, 4, 5],
        &greedy(2, &[]),
        &decode,
        |_| {},
    );
    assert!(matches!(err, Err(ModelError::ContextFull(4))));
    let mut cache = model.new_cache(4);
    assert!(generate(&model, &mut cache, &[], &greedy(2, &[]), &decode, |_| {}).is_err());
    // A context that fills while generating ends the answer with `length`, keeping it: 3
    // prompt tokens in 4 positions leave room for 2 tokens (the last needs no position).
    let mut cache = model.new_cache(4);
    let g = generate(
        &model,
        &mut cache,
        &[1, 2, 3],
        &greedy(10, &[]),
        &decode,
        |_| {},
    )
    .unwrap();
    assert_eq!((g.tokens.len(), g.finish), (2, FinishReason::Length));
    // Perplexity of tokens past the vocabulary (another model's) is an error, not a score
    // of the last token.
    let opts = smelt_models::perplexity::PerplexityOptions {
        n_ctx: 8,
        max_chunks: None,
        bos: None,
    };
    let mut tokens = vec![1u32; 8];
    tokens[6] = model.config.n_vocab as u32;
    let e = smelt_models::perplexity::perplexity(&model, None, &tokens, &opts, |_, _, _| {})
        .unwrap_err();
    assert!(e.to_string().contains("past the model's vocabulary"), "{e}");
}

#[test]
fn sequences_batched_through_a_paged_pool_match_each_run_alone() {
    use smelt_models::kv_cache::{BlockTable, KvPool};
    use smelt_models::llama::SeqInput;
    let file = smollm2();
    let tok = tokenizer::from_gguf(&file.header).unwrap();
    let model = Llama::load(&file).unwrap();
    let c = &model.config;
    let block = 16;
    let kv_dim = c.n_head_kv * c.head_dim();
    let prompts: Vec<Vec<u32>> = [
        "To be, or not to be",
        "Now is the winter of our discontent made glorious summer by this sun of York",
        "A",
    ]
    .iter()
    .map(|p| tok.encode(p, true))
    .collect();
    made_models::assert_batched_equals_alone(&model, &prompts);
    let alone = made_models::paged_greedy(&model, &prompts, 1, false);
    // The contiguous single-sequence cache gives the same logits as the paged pool.
    let mut cache = model.new_cache(64);
    let first = model
        .forward_batch(&prompts[1], &mut cache, Logits::Last)
        .unwrap();
    assert!(
        first
            .iter()
            .zip(&alone[1][0])
            .all(|(p, q)| p.to_bits() == q.to_bits())
    );
    // A table that does not reach the last position is an error, not a panic.
    let mut pool = KvPool::new(c.n_layer, 2, block, kv_dim);
    let long = [prompts[1].as_slice(), &prompts[1]].concat();
    let short = SeqInput {
        tokens: &long,
        pos0: 0,
        kv: BlockTable { table: &[0], block },
        want: Logits::Last,
    };
    assert!(long.len() > block);
    assert!(matches!(
        model.forward_seqs(&[short], &mut pool),
        Err(ModelError::ContextFull(16))
    ));
}

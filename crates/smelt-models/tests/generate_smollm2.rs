//! The reference llama decoder on the real SmolLM2: a greedy continuation is coherent English
//! that starts the way the model is known to continue, and errors are clear.

use smelt_models::generate::{FinishReason, GenerateOptions, generate};
use smelt_models::llama::{Llama, Logits, ModelError};
use smelt_models::sampler::SamplerConfig;
use smelt_models::tokenizer;

fn smollm2() -> std::sync::Arc<smelt_gguf::GgufFile> {
    let home = smelt_data::fetch::default_home();
    let fetcher = smelt_data::Fetcher::new(&home, true);
    let dir = fetcher
        .ensure(smelt_data::assets::find("smollm2-135m").unwrap())
        .unwrap();
    let path = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "gguf"))
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
        &|ids| tok.decode(ids),
        |p| streamed.push_str(p),
    )
    .unwrap();
    assert!(g.text.contains("Paris"), "continuation: {:?}", g.text);
    assert_eq!(streamed, g.text);
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
        &|ids| tok.decode(ids),
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
    let decode = |_: &[u32]| String::new();
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
}

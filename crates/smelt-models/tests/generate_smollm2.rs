//! The reference llama decoder on the real SmolLM2: a greedy continuation is coherent English
//! that starts the way the model is known to continue, and errors are clear.

use smelt_models::generate::{Sampling, generate};
use smelt_models::llama::{Llama, ModelError};
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
    let out = generate(
        &model,
        &mut cache,
        &prompt,
        8,
        Sampling::Greedy,
        &[],
        |_| {},
    )
    .unwrap();
    let text = tok.decode(&out);
    assert!(text.contains("Paris"), "continuation: {text:?}");
    assert_eq!(cache.len(), prompt.len() + out.len() - 1);
}

#[test]
fn full_context_and_empty_prompt_are_errors() {
    let file = smollm2();
    let model = Llama::load(&file).unwrap();
    let mut cache = model.new_cache(4);
    let err = generate(
        &model,
        &mut cache,
        &[1, 2, 3, 4, 5],
        2,
        Sampling::Greedy,
        &[],
        |_| {},
    );
    assert!(matches!(err, Err(ModelError::ContextFull(4))));
    let mut cache = model.new_cache(4);
    assert!(generate(&model, &mut cache, &[], 2, Sampling::Greedy, &[], |_| {}).is_err());
}

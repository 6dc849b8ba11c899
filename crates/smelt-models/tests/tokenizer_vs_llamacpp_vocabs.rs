//! llama.cpp's own tokenizer tests (`tests/test-tokenizer-0`) on its test vocabularies: each
//! `ggml-vocab-NAME.gguf` comes with `.inp` (texts separated by `__ggml_vocab_test__` lines)
//! and `.out` (the token ids Hugging Face `transformers` gives each text, one line per text,
//! without special tokens). The vocabularies come from the `llamacpp-vocabs` asset (the
//! llama-cpp-python 0.3.36 sdist on PyPI). Among them: Llama 3's (`llama-bpe`), Qwen 2's and
//! 3.5's, GPT-2's, DeepSeek's, Falcon's, Command-R's, Gemma 4's (BPE on raw UTF-8), and the
//! SentencePiece vocabularies of Llama 2 and Phi-3.

use std::path::Path;

use smelt_models::tokenizer;

/// The (text, ids) pairs of one vocabulary's test files, read as test-tokenizer-0 reads them.
fn cases(dir: &Path, name: &str) -> Vec<(String, Vec<u32>)> {
    let read = |ext: &str| {
        std::fs::read_to_string(dir.join(format!("ggml-vocab-{name}.gguf.{ext}"))).unwrap()
    };
    let raw = read("inp");
    // Each text ends with the separator line (the file's last one too).
    let sep = "\n__ggml_vocab_test__\n";
    let inputs: Vec<String> = raw
        .strip_suffix(sep)
        .unwrap_or(&raw)
        .split(sep)
        .map(str::to_owned)
        .collect();
    let outputs: Vec<Vec<u32>> = read("out")
        .lines()
        .map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect())
        .collect();
    assert_eq!(inputs.len(), outputs.len(), "{name}: tests and answers");
    inputs.into_iter().zip(outputs).collect()
}

#[test]
fn llamacpp_vocab_tests_give_hugging_faces_token_ids() {
    let dir = smelt_data::Fetcher::new(smelt_data::fetch::default_home(), true)
        .ensure(smelt_data::assets::find("llamacpp-vocabs").unwrap())
        .unwrap();
    let mut failures = Vec::new();
    let mut checked = 0;
    for name in [
        "gpt-2",
        "mpt",
        "starcoder",
        "refact",
        "llama-bpe",
        "qwen2",
        "llama-spm",
        "phi-3",
        "command-r",
        "deepseek-llm",
        "deepseek-coder",
        "falcon",
        "qwen35",
        "gemma-4",
    ] {
        let file = smelt_gguf::GgufFile::open(dir.join(format!("ggml-vocab-{name}.gguf"))).unwrap();
        let tok = tokenizer::from_gguf(&file.header).unwrap_or_else(|e| panic!("{name}: {e}"));
        for (text, want) in cases(&dir, name) {
            let got = tok.encode(&text, false);
            checked += 1;
            if got != want {
                failures.push(format!("{name} {text:?}:\n  want {want:?}\n  got  {got:?}"));
            }
            // Byte-level BPE decodes back to the text exactly (SentencePiece adds its space
            // prefix).
            let spm = matches!(tok, tokenizer::Tokenizer::Spm(_));
            if !spm && tok.decode(&got) != text {
                failures.push(format!(
                    "{name} {text:?}: decodes to {:?}",
                    tok.decode(&got)
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} texts differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Every test text of the fourteen vocabularies (the number the README gives).
    assert_eq!(checked, 648);
}

/// Whether a prompt starts with BOS, as llama.cpp decides when the file does not say: yes
/// for Llama 3 (whose vocabulary file has no `add_bos_token`) and SentencePiece, no for other
/// byte-level vocabularies.
#[test]
fn bos_is_added_where_llamacpp_adds_it() {
    let dir = smelt_data::Fetcher::new(smelt_data::fetch::default_home(), true)
        .ensure(smelt_data::assets::find("llamacpp-vocabs").unwrap())
        .unwrap();
    for (name, bos) in [
        ("llama-bpe", Some(128000)),
        ("llama-spm", Some(1)),
        ("qwen2", None),
        ("gpt-2", None),
        ("falcon", None),
        // Gemma 4 always starts with BOS in llama.cpp.
        ("gemma-4", Some(2)),
    ] {
        let file = smelt_gguf::GgufFile::open(dir.join(format!("ggml-vocab-{name}.gguf"))).unwrap();
        assert_eq!(tokenizer::bos_to_add(&file.header), bos, "{name}");
    }
    // Llama 3's vocabulary names <|end_of_text|> (128001) as EOS; a chat turn ends with
    // <|eot_id|> (128009), where llama.cpp stops too (in Llama 3.0's vocabulary 128008 is
    // still a reserved token, not 3.1's <|eom_id|>).
    let file = smelt_gguf::GgufFile::open(dir.join("ggml-vocab-llama-bpe.gguf")).unwrap();
    assert_eq!(tokenizer::end_of_generation(&file.header), [128001, 128009]);
}

/// `gguf export-hf`'s tokenizer.json for Llama 3's and Qwen 2's vocabularies (their
/// pre-tokenizers written as Hugging Face's Split regexes): Hugging Face's `tokenizers`, built
/// from it, gives the same ids as the llama.cpp test files.
#[test]
fn exported_tokenizer_json_gives_the_same_ids_in_hugging_face_tokenizers() {
    let dir = smelt_data::Fetcher::new(smelt_data::fetch::default_home(), true)
        .ensure(smelt_data::assets::find("llamacpp-vocabs").unwrap())
        .unwrap();
    for name in ["llama-bpe", "qwen2", "starcoder"] {
        let file = smelt_gguf::GgufFile::open(dir.join(format!("ggml-vocab-{name}.gguf"))).unwrap();
        let ours = tokenizer::from_gguf(&file.header).unwrap();
        let tokens: Vec<&str> = (0..ours.vocab_size() as u32)
            .map(|i| ours.token(i).unwrap())
            .collect();
        let tmp = tempfile::tempdir().unwrap();
        smelt_gguf::hf::write_tokenizer_files(&file.header, &tokens, tmp.path()).unwrap();
        let hf = tokenizers::Tokenizer::from_file(tmp.path().join("tokenizer.json")).unwrap();
        for (text, want) in cases(&dir, name) {
            let got = hf.encode(text.as_str(), false).unwrap().get_ids().to_vec();
            assert_eq!(got, want, "{name} {text:?}");
        }
    }
}

/// llama.cpp's default pre-tokenizer (no `tokenizer.ggml.pre`, or `default`: four regexes in
/// turn) on GPT-2's vocabulary: smelt's ids equal Hugging Face's `tokenizers` running the
/// tokenizer.json `export-hf` writes for it (the same regexes as Split steps), and differ from
/// GPT-2's own pre-tokenizer on some test text (digits and punctuation split otherwise).
#[test]
fn default_pre_tokenizer_equals_its_exported_hugging_face_form() {
    let dir = smelt_data::Fetcher::new(smelt_data::fetch::default_home(), true)
        .ensure(smelt_data::assets::find("llamacpp-vocabs").unwrap())
        .unwrap();
    let file = smelt_gguf::GgufFile::open(dir.join("ggml-vocab-gpt-2.gguf")).unwrap();
    let mut h = file.header.clone();
    h.metadata.retain(|(k, _)| k != "tokenizer.ggml.pre");
    let ours = tokenizer::from_gguf(&h).unwrap();
    let gpt2 = tokenizer::from_gguf(&file.header).unwrap();
    let tokens: Vec<&str> = (0..ours.vocab_size() as u32)
        .map(|i| ours.token(i).unwrap())
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    smelt_gguf::hf::write_tokenizer_files(&h, &tokens, tmp.path()).unwrap();
    let hf = tokenizers::Tokenizer::from_file(tmp.path().join("tokenizer.json")).unwrap();
    let mut differ = 0;
    for (text, _) in cases(&dir, "gpt-2") {
        let want = hf.encode(text.as_str(), false).unwrap().get_ids().to_vec();
        let got = ours.encode(&text, false);
        assert_eq!(got, want, "{text:?}");
        differ += usize::from(got != gpt2.encode(&text, false));
    }
    assert!(differ > 0);
    eprintln!("{differ} texts tokenize otherwise than with GPT-2's pre-tokenizer");
}
